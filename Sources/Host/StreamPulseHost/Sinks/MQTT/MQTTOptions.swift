import Foundation

/// `type: mqtt` — retained per-stream status and state-change events on an MQTT 3.1.1 broker.
///
/// ```yaml
/// - type: mqtt
///   host: 127.0.0.1
///   port: 1883
///   topic_prefix: streampulse   # <prefix>/streams/<id>/status, <prefix>/streams/<id>/events, <prefix>/monitor/status
///   qos: 1                      # 0 or 1
///   credentials: broker         # a name from credentials:, optional
/// ```
public struct MQTTOptions: SinkOptions, Equatable {
    public var host = "127.0.0.1"
    public var port = 1883
    public var topicPrefix = "streampulse"
    public var qos = 1
    public var credentials: CredentialRef?

    public init() {}

    static let keys = ["host", "port", "topic_prefix", "qos", "credentials"]

    init(from entry: inout SinkEntry) {
        host = entry.string("host") ?? host
        port = entry.int("port", min: 1, max: 65_535) ?? port
        topicPrefix = entry.string("topic_prefix") ?? topicPrefix
        qos = entry.int("qos", min: 0, max: 1) ?? qos
        credentials = entry.credentials("credentials")
    }
}

extension SinkType {
    public static let mqtt = SinkType(name: "mqtt", keys: MQTTOptions.keys, parse: MQTTOptions.init(from:)) { name, options, context in
        MQTTSink(name: name, options: options, logger: context.logger)
    }
}
