import Foundation

/// `type: mqtt` — retained per-stream status and state-change events on an MQTT 3.1.1 broker.
///
/// ```yaml
/// - type: mqtt
///   host: 127.0.0.1
///   port: 1883                  # 8883 turns TLS on unless tls: false
///   tls: false                  # TLS with certificate verification (on by default for port 8883)
///   ca_file: /etc/ssl/mqtt-ca.pem   # extra CA (PEM) trusted for TLS, e.g. a private CA
///   topic_prefix: streampulse   # <prefix>/streams/<id>/status, <prefix>/streams/<id>/events, <prefix>/monitor/status
///   qos: 1                      # 0 or 1
///   keep_alive: 60s             # PINGREQ after half of it with nothing sent; 1 s – 18 h
///   credentials: broker         # a name from credentials:, optional
///   discovery: true             # Home Assistant MQTT discovery (a problem binary_sensor and a status sensor per stream)
///   discovery_prefix: homeassistant
/// ```
public struct MQTTOptions: SinkOptions, Equatable {
    public var host = "127.0.0.1"
    public var port = 1883
    public var tls = false
    public var caFile: String?
    public var topicPrefix = "streampulse"
    public var qos = 1
    public var keepAlive: Duration = .seconds(60)
    public var credentials: CredentialRef?
    public var discovery = false
    public var discoveryPrefix = "homeassistant"

    public init() {}

    static let keys = ["host", "port", "tls", "ca_file", "topic_prefix", "qos", "keep_alive", "credentials", "discovery", "discovery_prefix"]

    init(from entry: inout SinkEntry) {
        host = entry.string("host") ?? host
        port = entry.int("port", min: 1, max: 65_535) ?? port
        tls = entry.bool("tls") ?? (port == 8883)
        caFile = entry.string("ca_file")
        if caFile != nil, !tls { entry.problem("ca_file is only used with tls: true", at: "ca_file", severity: .warning) }
        topicPrefix = entry.string("topic_prefix") ?? topicPrefix
        if let problem = Self.topicProblem(topicPrefix) { entry.problem("topic_prefix \(problem)", at: "topic_prefix") }
        qos = entry.int("qos", min: 0, max: 1) ?? qos
        if let alive = entry.duration("keep_alive") {
            if alive < .seconds(1) || alive > .seconds(65_535) {
                entry.problem("keep_alive must be between 1s and 18h", at: "keep_alive")
            } else {
                keepAlive = alive
            }
        }
        credentials = entry.credentials("credentials")
        discovery = entry.bool("discovery") ?? discovery
        discoveryPrefix = entry.string("discovery_prefix") ?? discoveryPrefix
        if let problem = Self.topicProblem(discoveryPrefix) { entry.problem("discovery_prefix \(problem)", at: "discovery_prefix") }
    }

    /// Why a configured topic level cannot be published to, or nil.
    static func topicProblem(_ topic: String) -> String? {
        if topic.isEmpty { return "must not be empty" }
        if topic.contains("#") || topic.contains("+") { return "must not contain the wildcards '#' or '+'" }
        if topic.hasSuffix("/") || topic.hasPrefix("/") { return "must not start or end with '/'" }
        return nil
    }
}

extension SinkType {
    public static let mqtt = SinkType(name: "mqtt", keys: MQTTOptions.keys, parse: MQTTOptions.init(from:)) { name, options, context in
        try MQTTSink(name: name, options: options, logger: context.logger)
    }
}
