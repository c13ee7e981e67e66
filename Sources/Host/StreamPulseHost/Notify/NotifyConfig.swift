import Foundation
import Mustache
import StreamPulseCore
import Yams

/// `notify:` — where incidents are told (channels) and which incidents go where (rules).
///
/// ```yaml
/// notify:
///   open_after: 1m          # an incident opens when a stream has been failing this long (default: the
///                           #   shortest rule `for:`, or 1m)
///   channels:
///     - { name: ops-slack, type: slack, url: "${SLACK_WEBHOOK_URL}" }
///   rules:
///     - { channels: [ops-slack], statuses: [down, degraded], for: 1m, repeat: 1h, resolved: true }
/// ```
public struct NotifyConfig: Sendable, Equatable {
    public var channels: [ChannelConfig] = []
    public var rules: [NotifyRule] = []
    /// Explicit `open_after`; nil: derived from the rules.
    public var openAfterSetting: Duration?

    public init() {}

    /// How long a stream must fail before an incident opens.
    public var openAfter: Duration { openAfterSetting ?? rules.map(\.grace).min() ?? .seconds(60) }
}

/// One notification channel. Secrets (`url` paths, tokens, passwords) are never shown or logged.
public struct ChannelConfig: Sendable, Equatable {
    public var name: String
    public var type: ChannelKind
    /// The endpoint: a webhook URL (Slack, Teams, Discord, generic), a server base URL (ntfy, Gotify), or
    /// nil where the provider's address is fixed (Telegram, Pushover), which `api_url` may override.
    public var url: String?
    public var caFile: String?
    /// Extra HTTP headers (generic webhook).
    public var headers: [String: String] = [:]
    /// A Mustache template for the generic webhook's body (default: StreamPulse's JSON), and its content type.
    public var template: String?
    public var contentType = "application/json"
    /// HMAC-SHA256 key: the generic webhook signs its body in `X-StreamPulse-Signature: sha256=<hex>`.
    public var hmacSecret: String?
    /// Telegram bot token, Gotify app token, Pushover app token, ntfy access token.
    public var token: String?
    /// Telegram chat id, Pushover user key, ntfy topic.
    public var target: String?
    /// Email.
    public var smtp: SMTPSettings?
    public var from: String?
    public var to: [String] = []
    public var timeout: Duration = .seconds(10)

    /// Every secret of this channel (for the log and error scrubber).
    public var secrets: [String] {
        var found = [token, hmacSecret, smtp?.credentials?.password].compactMap { $0 }
        if let url, let path = URLComponents(string: url)?.percentEncodedPath, path.count > 1 { found.append(path) }
        if let url, let query = URLComponents(string: url)?.percentEncodedQuery { found.append(query) }
        return found.filter { $0.count >= 4 }
    }
}

public enum ChannelKind: String, Sendable, CaseIterable {
    case webhook, slack, teams, discord, telegram, ntfy, gotify, pushover, email
}

public struct SMTPSettings: Sendable, Equatable {
    public var host: String
    public var port: Int = 587
    /// STARTTLS after EHLO (port 587); `tls: true` is implicit TLS (port 465).
    public var starttls: Bool = true
    public var tls: Bool = false
    public var credentials: CredentialRef?
}

/// Which incidents go to which channels, after how long, how often again, and whether recovery is told.
public struct NotifyRule: Sendable, Equatable {
    public var channels: [String] = []
    public var statuses: [StreamStatus] = [.down, .degraded]
    public var reasons: [String] = []
    public var streams: [String] = []
    public var groups: [String] = []
    public var tags: [String] = []
    /// The incident must have lasted this long (grace) before this rule notifies.
    public var grace: Duration = .seconds(60)
    /// Reminder interval while open and unacknowledged; nil: none.
    public var repeatEvery: Duration?
    /// Send a recovery notice (with the downtime) when the incident resolves.
    public var resolved: Bool = true
}

extension ConfigParser {
    static let notifyKeys = ["open_after", "channels", "rules"]
    static let channelKeys = ["name", "type", "url", "api_url", "ca_file", "headers", "hmac_secret", "token", "chat_id", "user",
                              "topic", "smtp", "from", "to", "timeout", "template", "content_type"]
    static let ruleKeys = ["channels", "statuses", "reasons", "streams", "groups", "tags", "for", "repeat", "resolved"]
    static let smtpKeys = ["host", "port", "starttls", "tls", "credentials"]

    mutating func parseNotify(_ node: Node, credentials: [String: CredentialRef]) -> NotifyConfig {
        var notify = NotifyConfig()
        guard let map = node.mapping else { problem(node, "notify must be a mapping with channels and rules"); return notify }
        for (key, value) in map {
            switch key.string ?? "" {
            case "open_after": notify.openAfterSetting = duration(value)
            case "channels":
                guard let list = value.sequence else { problem(value, "notify.channels must be a list"); continue }
                for item in list { if let channel = parseChannel(item, credentials: credentials) { notify.channels.append(channel) } }
            case "rules":
                guard let list = value.sequence else { problem(value, "notify.rules must be a list"); continue }
                for item in list { if let rule = parseRule(item) { notify.rules.append(rule) } }
            default: unknownKey(key, key.string ?? "", Self.notifyKeys)
            }
        }
        var names = Set<String>()
        for channel in notify.channels where !names.insert(channel.name).inserted {
            problem(node, "two notification channels are named '\(channel.name)'")
        }
        for rule in notify.rules {
            for name in rule.channels where !names.contains(name) {
                problem(node, "a notify rule names the unknown channel '\(name)'\(suggest(name, Array(names)))")
            }
        }
        return notify
    }

    private mutating func parseChannel(_ node: Node, credentials: [String: CredentialRef]) -> ChannelConfig? {
        guard let map = node.mapping else { problem(node, "each channel must be a mapping with name and type"); return nil }
        guard let typeNode = map["type"], let typeName = typeNode.string else {
            problem(node, "a channel needs a type (\(ChannelKind.allCases.map(\.rawValue).joined(separator: ", ")))")
            return nil
        }
        guard let type = ChannelKind(rawValue: typeName) else {
            problem(typeNode, "unknown channel type '\(typeName)'; expected \(ChannelKind.allCases.map(\.rawValue).joined(separator: ", "))")
            return nil
        }
        var channel = ChannelConfig(name: map["name"].flatMap { string($0) } ?? typeName, type: type)
        for (key, value) in map {
            switch key.string ?? "" {
            case "name", "type": break
            case "url", "api_url": channel.url = expand(value)
            case "ca_file": channel.caFile = string(value)
            case "headers":
                guard let headers = value.mapping else { problem(value, "headers must be a mapping of names to values"); continue }
                for (k, v) in headers { if let name = k.string, let text = expand(v) { channel.headers[name] = text } }
            case "hmac_secret": channel.hmacSecret = expand(value)
            case "token": channel.token = expand(value)
            case "chat_id", "user", "topic": channel.target = expand(value)
            case "smtp": channel.smtp = parseSMTP(value, credentials: credentials)
            case "from": channel.from = string(value)
            case "to": channel.to = stringList(value)
            case "timeout": channel.timeout = duration(value) ?? channel.timeout
            case "template":
                guard let text = string(value) else { continue }
                do {
                    _ = try MustacheTemplate(string: text)
                    channel.template = text
                } catch {
                    problem(value, "channel '\(channel.name)': the template does not parse: \(error)")
                }
            case "content_type": channel.contentType = string(value) ?? channel.contentType
            default: unknownKey(key, key.string ?? "", Self.channelKeys)
            }
        }
        if let url = channel.url {
            let parts = URLComponents(string: url)
            if !["http", "https"].contains(parts?.scheme?.lowercased() ?? "") || (parts?.host ?? "").isEmpty {
                // Never quote the URL: its path is often the secret.
                problem(map["url"] ?? map["api_url"] ?? node, "channel '\(channel.name)': url must be http(s)://host/…")
            }
        }
        let needs: [String]
        switch type {
        case .webhook, .slack, .teams, .discord: needs = channel.url == nil ? ["url"] : []
        case .telegram: needs = [channel.token == nil ? "token" : nil, channel.target == nil ? "chat_id" : nil].compactMap { $0 }
        case .ntfy: needs = [channel.url == nil ? "url" : nil, channel.target == nil ? "topic" : nil].compactMap { $0 }
        case .gotify: needs = [channel.url == nil ? "url" : nil, channel.token == nil ? "token" : nil].compactMap { $0 }
        case .pushover: needs = [channel.token == nil ? "token" : nil, channel.target == nil ? "user" : nil].compactMap { $0 }
        case .email: needs = [channel.smtp == nil ? "smtp" : nil, channel.from == nil ? "from" : nil, channel.to.isEmpty ? "to" : nil].compactMap { $0 }
        }
        if !needs.isEmpty { problem(node, "channel '\(channel.name)' (\(type.rawValue)) needs \(needs.joined(separator: " and "))") }
        if channel.template != nil, type != .webhook { problem(map["template"] ?? node, "channel '\(channel.name)': template is for type webhook only") }
        return channel
    }

    private mutating func parseSMTP(_ node: Node, credentials: [String: CredentialRef]) -> SMTPSettings? {
        guard let map = node.mapping else { problem(node, "smtp must be a mapping with host, port, starttls, credentials"); return nil }
        var smtp = SMTPSettings(host: "")
        var portSet = false
        for (key, value) in map {
            switch key.string ?? "" {
            case "host": smtp.host = string(value) ?? ""
            case "port":
                if let port = int(value, min: 1), port <= 65_535 { smtp.port = port; portSet = true } else { problem(value, "port must be 1–65535") }
            case "starttls": smtp.starttls = bool(value) ?? smtp.starttls
            case "tls": smtp.tls = bool(value) ?? smtp.tls
            case "credentials":
                guard let name = string(value) else { continue }
                if let found = credentials[name] { smtp.credentials = found }
                else if !brokenCredentials.contains(name) { problem(value, "unknown credentials '\(name)'\(suggest(name, Array(credentials.keys)))") }
            default: unknownKey(key, key.string ?? "", Self.smtpKeys)
            }
        }
        if smtp.host.isEmpty { problem(node, "smtp needs a host") }
        if smtp.tls { smtp.starttls = false; if !portSet { smtp.port = 465 } }
        return smtp
    }

    private mutating func parseRule(_ node: Node) -> NotifyRule? {
        guard let map = node.mapping else { problem(node, "each rule must be a mapping with channels"); return nil }
        var rule = NotifyRule()
        for (key, value) in map {
            switch key.string ?? "" {
            case "channels": rule.channels = stringList(value)
            case "statuses":
                rule.statuses = stringList(value).compactMap { name in
                    if let status = StreamStatus(rawValue: name), status != .ok { return status }
                    problem(value, "unknown status '\(name)' in a rule; expected down, degraded or unknown")
                    return nil
                }
            case "reasons": rule.reasons = stringList(value)
            case "streams": rule.streams = stringList(value)
            case "groups": rule.groups = stringList(value)
            case "tags": rule.tags = stringList(value)
            case "for": rule.grace = duration(value) ?? rule.grace
            case "repeat": rule.repeatEvery = duration(value)
            case "resolved": rule.resolved = bool(value) ?? rule.resolved
            default: unknownKey(key, key.string ?? "", Self.ruleKeys)
            }
        }
        if rule.channels.isEmpty { problem(node, "a notify rule needs channels") }
        return rule
    }
}
