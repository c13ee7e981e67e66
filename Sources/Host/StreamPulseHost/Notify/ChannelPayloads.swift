import Crypto
import Foundation
import Mustache
import StreamPulseCore

/// A second picture shown beside the evidence: the reference view for a scene verdict (`reference.jpg`), the
/// last picture of the window for a frozen one (`last.jpg`).
public struct CompanionPicture: Sendable, Equatable {
    /// The attachment's file name.
    public var name: String
    /// What the two pictures are, one line for the notice ("the picture now beside the reference view").
    public var caption: String
    public var jpeg: Data

    public init(name: String, caption: String, jpeg: Data) {
        self.name = name
        self.caption = caption
        self.jpeg = jpeg
    }
}

/// The words of one notice, shared by every channel: a title, a few lines of detail, and the evidence
/// picture when there is one (with its companion, where the channel carries two pictures).
public struct NoticeText: Sendable, Equatable {
    public var title: String
    public var details: String
    /// Whether the notice reports trouble (opened, reminder) or its end.
    public var isTrouble: Bool
    public var evidence: Data?
    public var companion: CompanionPicture?

    /// The pictures to attach, evidence first, with their file names.
    var pictures: [(name: String, jpeg: Data)] {
        guard let evidence else { return [] }
        return [("evidence.jpg", evidence)] + (companion.map { [($0.name, $0.jpeg)] } ?? [])
    }

    /// - Parameters:
    ///   - names: stream id → display name.
    ///   - timeZone: local times in the text.
    public init(_ notice: IncidentNotice, names: [String: String], timeZone: TimeZone, now: Date, evidence: Data?,
                companion: CompanionPicture? = nil) {
        let incident = notice.incident
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = timeZone
        formatter.dateFormat = "yyyy-MM-dd HH:mm"
        let clock = DateFormatter()
        clock.locale = formatter.locale
        clock.timeZone = timeZone
        clock.dateFormat = "HH:mm"
        let members = incident.streams.map { names[$0] ?? $0 }
        let list = members.count <= 12 ? members.joined(separator: ", ") : members.prefix(12).joined(separator: ", ") + " and \(members.count - 12) more"
        switch notice.kind {
        case .opened, .test:
            title = (notice.kind == .test ? "Test notification — " : "") + incident.title
            details = "Failing since \(formatter.string(from: incident.started)) (\(Incident.describe(now.timeIntervalSince(incident.started)))): \(incident.message)"
            isTrouble = true
        case .reminder:
            title = "Still failing: \(incident.title)"
            details = "For \(Incident.describe(now.timeIntervalSince(incident.started))) since \(formatter.string(from: incident.started)), not acknowledged: \(incident.message)"
            isTrouble = true
        case .resolved:
            let end = incident.resolved ?? now
            title = "Resolved: \(incident.title)"
            details = "No pictures from \(clock.string(from: incident.started)) to \(clock.string(from: end)), \(Incident.describe(end.timeIntervalSince(incident.started)))."
            isTrouble = false
        }
        details += "\nStreams: \(list)"
        self.evidence = evidence
        self.companion = evidence == nil ? nil : companion
        if let companion = self.companion, isTrouble { details += "\nPictures: \(companion.caption)." }
    }
}

/// An HTTP request a channel sends: method, URL, headers, body.
struct ChannelRequest: Sendable {
    var method = "POST"
    var url: String
    var headers: [(String, String)] = []
    var body: [UInt8]
}

/// Builds each provider's documented request shape from a notice.
enum ChannelPayloads {
    static func request(for channel: ChannelConfig, notice: IncidentNotice, text: NoticeText) throws -> ChannelRequest {
        switch channel.type {
        case .webhook: return try webhook(channel, notice, text)
        case .slack:
            // Incoming webhooks: `text` is the notification fallback, `blocks` the message.
            let body: [String: Any] = [
                "text": text.title,
                "blocks": [
                    ["type": "header", "text": ["type": "plain_text", "text": String(text.title.prefix(150))]],
                    ["type": "section", "text": ["type": "mrkdwn", "text": text.details]],
                ],
            ]
            return json(channel.url ?? "", body)
        case .teams:
            // Workflows / incoming webhook: a message with one Adaptive Card attachment.
            let card: [String: Any] = [
                "type": "AdaptiveCard", "version": "1.4", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "body": [
                    ["type": "TextBlock", "text": text.title, "weight": "Bolder", "size": "Medium", "wrap": true,
                     "color": text.isTrouble ? "Attention" : "Good"],
                    ["type": "TextBlock", "text": text.details, "wrap": true],
                ],
            ]
            return json(channel.url ?? "", ["type": "message", "attachments": [["contentType": "application/vnd.microsoft.card.adaptive", "content": card]]])
        case .discord:
            var embed: [String: Any] = ["title": String(text.title.prefix(256)), "description": text.details,
                                        "color": text.isTrouble ? 0xE5484D : 0x30A46C]
            guard let jpeg = text.evidence else { return json(channel.url ?? "", ["content": text.title, "embeds": [embed]]) }
            // With the pictures: multipart, `payload_json` plus the files, each shown inside an embed.
            embed["image"] = ["url": "attachment://evidence.jpg"]
            var embeds = [embed]
            if let companion = text.companion {
                embeds.append(["title": companion.caption, "image": ["url": "attachment://\(companion.name)"]])
            }
            let payload = (try? JSONSerialization.data(withJSONObject: ["content": text.title, "embeds": embeds], options: [.sortedKeys])) ?? Data()
            var form = Multipart()
            form.field("payload_json", String(decoding: payload, as: UTF8.self))
            form.file("files[0]", filename: "evidence.jpg", type: "image/jpeg", data: jpeg)
            if let companion = text.companion { form.file("files[1]", filename: companion.name, type: "image/jpeg", data: companion.jpeg) }
            return ChannelRequest(url: channel.url ?? "", headers: [("Content-Type", form.contentType)], body: form.finish())
        case .telegram:
            let base = (channel.url ?? "https://api.telegram.org") + "/bot" + (channel.token ?? "")
            let caption = text.title + "\n" + text.details
            if text.pictures.count > 1 {
                // Two pictures: an album (sendMediaGroup), each photo an attached file, the caption on the first.
                var form = Multipart()
                form.field("chat_id", channel.target ?? "")
                let media: [[String: Any]] = text.pictures.enumerated().map { index, picture in
                    var item: [String: Any] = ["type": "photo", "media": "attach://picture\(index)"]
                    if index == 0 { item["caption"] = String(caption.prefix(1024)) }
                    return item
                }
                let json = (try? JSONSerialization.data(withJSONObject: media, options: [.sortedKeys])) ?? Data()
                form.field("media", String(decoding: json, as: UTF8.self))
                for (index, picture) in text.pictures.enumerated() {
                    form.file("picture\(index)", filename: picture.name, type: "image/jpeg", data: picture.jpeg)
                }
                return ChannelRequest(url: base + "/sendMediaGroup", headers: [("Content-Type", form.contentType)], body: form.finish())
            }
            if let jpeg = text.evidence {
                var form = Multipart()
                form.field("chat_id", channel.target ?? "")
                form.field("caption", String(caption.prefix(1024)))
                form.file("photo", filename: "evidence.jpg", type: "image/jpeg", data: jpeg)
                return ChannelRequest(url: base + "/sendPhoto", headers: [("Content-Type", form.contentType)], body: form.finish())
            }
            return json(base + "/sendMessage", ["chat_id": channel.target ?? "", "text": caption])
        case .ntfy:
            var headers = [("Title", text.title), ("Priority", text.isTrouble ? "high" : "default"),
                           ("Tags", text.isTrouble ? "rotating_light" : "white_check_mark"), ("Content-Type", "text/plain; charset=utf-8")]
            if let token = channel.token { headers.append(("Authorization", "Bearer \(token)")) }
            let url = (channel.url ?? "") + "/" + (channel.target ?? "")
            if let jpeg = text.evidence {
                // ntfy's attachment upload: the picture is the body, the message a header.
                headers.removeAll { $0.0 == "Content-Type" }
                headers += [("Content-Type", "image/jpeg"), ("Filename", "evidence.jpg"), ("Message", text.details.replacingOccurrences(of: "\n", with: " · "))]
                return ChannelRequest(method: "PUT", url: url, headers: headers.map { ($0.0, headerSafe($0.1)) }, body: Array(jpeg))
            }
            return ChannelRequest(url: url, headers: headers.map { ($0.0, headerSafe($0.1)) }, body: Array(text.details.utf8))
        case .gotify:
            var request = json((channel.url ?? "") + "/message", ["title": text.title, "message": text.details, "priority": text.isTrouble ? 8 : 4])
            request.headers.append(("X-Gotify-Key", channel.token ?? ""))
            return request
        case .pushover:
            var form = Multipart()
            form.field("token", channel.token ?? "")
            form.field("user", channel.target ?? "")
            form.field("title", String(text.title.prefix(250)))
            form.field("message", String(text.details.prefix(1024)))
            form.field("priority", text.isTrouble ? "1" : "0")
            if let jpeg = text.evidence { form.file("attachment", filename: "evidence.jpg", type: "image/jpeg", data: jpeg) }
            return ChannelRequest(url: (channel.url ?? "https://api.pushover.net") + "/1/messages.json",
                                  headers: [("Content-Type", form.contentType)], body: form.finish())
        case .email:
            throw ChannelError(message: "email is sent over SMTP, not HTTP")
        }
    }

    /// The generic webhook: the incident as JSON, extra headers, and an HMAC-SHA256 signature of the body.
    private static func webhook(_ channel: ChannelConfig, _ notice: IncidentNotice, _ text: NoticeText) throws -> ChannelRequest {
        let incident = notice.incident
        let body = WebhookBody(
            kind: notice.kind.rawValue, title: text.title, text: text.details,
            incident: .init(id: incident.id, scope: incident.scope.rawValue, key: incident.key, title: incident.title,
                            streams: incident.streams, failing: incident.failing, status: incident.status.rawValue,
                            reason: incident.reason.rawValue, phase: incident.phase?.rawValue, message: incident.message,
                            started: incident.started, resolved: incident.resolved,
                            durationSeconds: incident.resolved.map { $0.timeIntervalSince(incident.started) },
                            acknowledgedBy: incident.acknowledgedBy))
        let bytes: [UInt8]
        if let template = channel.template {
            bytes = Array(try MustacheTemplate(string: template).render(templateContext(notice, text)).utf8)
        } else {
            bytes = Array(try Wire.encode(body))
        }
        var request = ChannelRequest(url: channel.url ?? "", headers: [("Content-Type", channel.contentType)], body: bytes)
        for (name, value) in channel.headers.sorted(by: { $0.key < $1.key }) { request.headers.append((name, headerSafe(value))) }
        if let secret = channel.hmacSecret {
            let mac = HMAC<SHA256>.authenticationCode(for: bytes, using: SymmetricKey(data: Array(secret.utf8)))
            request.headers.append(("X-StreamPulse-Signature", "sha256=" + mac.map { String(format: "%02x", $0) }.joined()))
        }
        return request
    }

    /// What a webhook template sees: `kind`, `title`, `text`, `incident.*` (id, scope, key, title, streams,
    /// failing, status, reason, phase, message, started, resolved, duration_seconds, acknowledged_by), and
    /// `title_json`, `text_json`, `message_json`: the same texts as JSON string literals, for `{{{…}}}` in a JSON body.
    /// (`{{x}}` escapes HTML; `{{{x}}}` inserts as is.)
    static func templateContext(_ notice: IncidentNotice, _ text: NoticeText) -> [String: Any] {
        let incident = notice.incident
        func literal(_ value: String) -> String {
            (try? JSONSerialization.data(withJSONObject: [value], options: [])).map { String(decoding: $0.dropFirst().dropLast(), as: UTF8.self) } ?? "\"\""
        }
        let iso = ISO8601DateFormatter()
        var fields: [String: Any] = [
            "id": incident.id, "scope": incident.scope.rawValue, "key": incident.key, "title": incident.title, "streams": incident.streams,
            "failing": incident.failing, "status": incident.status.rawValue, "reason": incident.reason.rawValue,
            "phase": incident.phase?.rawValue ?? "", "message": incident.message, "started": iso.string(from: incident.started),
        ]
        if let resolved = incident.resolved {
            fields["resolved"] = iso.string(from: resolved)
            fields["duration_seconds"] = Int(resolved.timeIntervalSince(incident.started).rounded())
        }
        if let who = incident.acknowledgedBy { fields["acknowledged_by"] = who }
        return ["kind": notice.kind.rawValue, "title": text.title, "text": text.details, "incident": fields,
                "title_json": literal(text.title), "text_json": literal(text.details), "message_json": literal(incident.message)]
    }

    private static func json(_ url: String, _ object: [String: Any]) -> ChannelRequest {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return ChannelRequest(url: url, headers: [("Content-Type", "application/json")], body: Array(data))
    }

    /// Header values cannot hold line breaks (a stream name must not inject headers).
    static func headerSafe(_ value: String) -> String {
        String(value.map { $0 == "\r" || $0 == "\n" ? " " : $0 })
    }

    struct WebhookBody: Encodable {
        struct Body: Encodable {
            var id: Int64, scope: String, key: String, title: String, streams: [String], failing: [String], status: String
            var reason: String, phase: String?, message: String, started: Date, resolved: Date?, durationSeconds: Double?
            var acknowledgedBy: String?
            enum CodingKeys: String, CodingKey {
                case id, scope, key, title, streams, failing, status, reason, phase, message, started, resolved
                case durationSeconds = "duration_seconds", acknowledgedBy = "acknowledged_by"
            }
        }
        var kind: String, title: String, text: String, incident: Body
    }
}

/// multipart/form-data, for Telegram's sendPhoto and Pushover's attachment.
struct Multipart {
    let boundary = "streampulse-" + UUID().uuidString
    private var bytes: [UInt8] = []

    var contentType: String { "multipart/form-data; boundary=\(boundary)" }

    mutating func field(_ name: String, _ value: String) {
        bytes += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n".utf8) + Array(value.utf8) + [13, 10]
    }

    mutating func file(_ name: String, filename: String, type: String, data: Data) {
        bytes += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"; filename=\"\(filename)\"\r\nContent-Type: \(type)\r\n\r\n".utf8)
        bytes += Array(data) + [13, 10]
    }

    mutating func finish() -> [UInt8] { bytes + Array("--\(boundary)--\r\n".utf8) }
}

public struct ChannelError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}
