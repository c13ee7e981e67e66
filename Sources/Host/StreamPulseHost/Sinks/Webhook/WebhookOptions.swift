import Foundation
import StreamPulseCore

/// `type: webhook` — a JSON POST of each state change that holds, to an http or https URL.
///
/// ```yaml
/// - type: webhook
///   name: ops
///   url: https://alerts.example.net/hook/SECRET   # the path may hold a token: it is never shown or logged
///   min_duration: 30s      # a state must hold this long before it is sent (flap suppression)
///   timeout: 5s            # per delivery; a failed delivery is kept and retried until it succeeds
///   ca_file: /etc/ssl/private-ca.pem   # extra trusted CA for https (PEM), optional
///   statuses: [down, ok]   # filters; empty means all
///   streams: [gate]
///   tags: [outdoor]
/// ```
public struct WebhookOptions: SinkOptions, Equatable {
    public var url: String
    public var minDuration: Duration = .seconds(30)
    public var timeout: Duration = .seconds(5)
    public var caFile: String?
    public var statuses: [String] = []
    public var streams: [String] = []
    public var tags: [String] = []

    public init(url: String) { self.url = url }

    static let keys = ["url", "min_duration", "timeout", "ca_file", "statuses", "streams", "tags", "retries"]

    init(from entry: inout SinkEntry) {
        url = entry.string("url") ?? ""
        let parts = URLComponents(string: url)
        let usable = ["http", "https"].contains(parts?.scheme?.lowercased() ?? "") && !(parts?.host ?? "").isEmpty
        if !entry.has("url") {
            entry.problem("webhook sink '\(entry.name)' needs a url")
        } else if !usable {
            entry.problem("webhook url must be http(s)://host[:port]/path", at: "url")
        }
        minDuration = entry.duration("min_duration") ?? minDuration
        timeout = entry.duration("timeout") ?? timeout
        caFile = entry.string("ca_file")
        statuses = entry.strings("statuses") ?? []
        for status in statuses where StreamStatus(rawValue: status) == nil {
            entry.problem("unknown status '\(status)'; expected ok, degraded, down or unknown", at: "statuses")
        }
        streams = entry.strings("streams") ?? []
        tags = entry.strings("tags") ?? []
        if entry.has("retries") {
            entry.problem("retries no longer applies: a delivery that fails is kept and retried until it succeeds (see /api/sinks)",
                          at: "retries", severity: .warning)
        }
    }
}

extension SinkType {
    public static let webhook = SinkType(name: "webhook", keys: WebhookOptions.keys, parse: WebhookOptions.init(from:)) { name, options, context in
        try WebhookSink(name: name, options: options, logger: context.logger)
    }
}
