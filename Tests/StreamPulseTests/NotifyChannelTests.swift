import Foundation
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// Every notification channel against real receivers on 127.0.0.1: an HTTPS receiver with a private CA that
/// checks each provider's documented request shape (scripts/test-cameras/notify_receiver.py) and aiosmtpd
/// with STARTTLS + AUTH for email.
@Suite(.serialized) struct NotifyChannelTests {
    static let botToken = "123456:AAE-bot-token-s3cret"
    static let slackPath = "/slack/services/T000/B000/sl4ck-s3cret-path"

    struct Receiver {
        var port: Int
        var out: String
        var process: Process
        var ca: String
        func records() -> [[String: Any]] {
            ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }
    }

    func receiver(fail: Int = 0, hmac: String? = nil) async throws -> Receiver {
        let tls = try await AlertSinkTests().privateCA()
        let out = TestEnvironment.temporaryDirectory("notify") + "/requests"
        FileManager.default.createFile(atPath: out, contents: nil)
        var arguments = ["--out", out, "--cert", tls.cert, "--key", tls.key, "--fail", String(fail)]
        if let hmac { arguments += ["--hmac", hmac] }
        let (process, ports) = try TestCameras.launch(TestEnvironment.root + "/scripts/test-cameras/notify_receiver.py", arguments)
        return Receiver(port: ports["port"]!, out: out, process: process, ca: tls.ca)
    }

    /// A real JPEG (ffmpeg's test pattern).
    func jpeg(size: String = "320x240") async throws -> Data {
        let file = TestEnvironment.temporaryDirectory("jpeg") + "/evidence.jpg"
        let run = try await TestEnvironment.run([], executable: "/usr/bin/ffmpeg", arguments: [
            "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=\(size)", "-frames:v", "1", file])
        #expect(run.status == 0, "\(run.stderr)")
        return try Data(contentsOf: URL(fileURLWithPath: file))
    }

    func notice(_ kind: IncidentNotice.Kind = .opened, channels: [String]) -> IncidentNotice {
        let start = Date().addingTimeInterval(-300)
        let incident = Incident(id: 7, scope: .host, key: "10.0.0.9", title: "Camera host 10.0.0.9: 2 of 2 streams fail", streams: ["gate", "yard"],
                                failing: ["gate", "yard"], started: start, status: .down, reason: .connectionRefused, phase: .connect,
                                message: "Connection refused", resolved: kind == .resolved ? start.addingTimeInterval(2100) : nil)
        return IncidentNotice(kind: kind, incident: incident, channels: channels)
    }

    func channels(_ r: Receiver) -> [ChannelConfig] {
        let base = "https://127.0.0.1:\(r.port)"
        func c(_ name: String, _ type: ChannelKind, _ url: String?, token: String? = nil, target: String? = nil) -> ChannelConfig {
            var channel = ChannelConfig(name: name, type: type, url: url)
            channel.caFile = r.ca
            channel.token = token
            channel.target = target
            return channel
        }
        return [
            c("slack", .slack, base + Self.slackPath),
            c("teams", .teams, base + "/teams/webhookb2/abc/IncomingWebhook/def"),
            c("discord", .discord, base + "/discord/api/webhooks/1/tok"),
            c("telegram", .telegram, base, token: Self.botToken, target: "-100123"),
            c("ntfy", .ntfy, base + "/ntfy", token: "tk_ntfy_s3cret", target: "cams"),
            c("gotify", .gotify, base + "/gotify", token: "AGotifyAppToken"),
            c("pushover", .pushover, base, token: "apptoken-pushover", target: "userkey-pushover"),
        ]
    }

    @Test func eachHTTPChannel_sendsItsProvidersDocumentedShape_overVerifiedTLS() async throws {
        let r = try await receiver()
        defer { kill(r.process.processIdentifier, SIGKILL) }
        let logs = CapturedLogs()
        let notifier = Notifier(channels: channels(r), logger: logs.logger(), retryDelays: [])
        let picture = try await jpeg()
        let n = notice(channels: ["slack", "teams", "discord", "telegram", "ntfy", "gotify", "pushover"])
        let outcomes = await notifier.send(n, text: NoticeText(n, names: ["gate": "Front gate"], timeZone: .gmt, now: Date(), evidence: picture))
        #expect(outcomes.allSatisfy { $0.delivered }, "\(outcomes)")
        let records = r.records()
        #expect(records.count == 7 && records.allSatisfy { $0["ok"] as? Bool == true }, "\(records.map { ($0["path"] ?? "", $0["why"] ?? "") })")
        func fields(_ prefix: String) -> [String: Any] {
            records.first { ($0["path"] as? String)?.hasPrefix(prefix) == true }?["fields"] as? [String: Any] ?? [:]
        }
        #expect((fields("/slack")["blocks"] as? [[String: Any]])?.first?["type"] as? String == "header")
        #expect(((fields("/teams")["attachments"] as? [[String: Any]])?.first?["content"] as? [String: Any])?["type"] as? String == "AdaptiveCard")
        #expect((fields("/discord")["embeds"] as? [[String: Any]])?.first?["title"] as? String == "Camera host 10.0.0.9: 2 of 2 streams fail")
        #expect((fields("/discord")["file"] as? [String: Any])?["bytes"] as? Int == picture.count, "Discord gets the picture in its embed")
        #expect(fields("/ntfy/cams")["jpeg"] as? Bool == true && fields("/ntfy/cams")["method"] as? String == "PUT", "ntfy gets the picture as an attachment")
        // Telegram gets the evidence as a real JPEG through sendPhoto.
        let telegram = records.first { ($0["path"] as? String) == "/bot\(Self.botToken)/sendPhoto" }
        let photo = (telegram?["fields"] as? [String: Any])?["photo"] as? [String: Any]
        #expect(photo?["jpeg"] as? Bool == true && photo?["bytes"] as? Int == picture.count, "\(String(describing: telegram))")
        #expect(((telegram?["fields"] as? [String: Any])?["caption"] as? String)?.contains("Front gate") == true)
        #expect(fields("/ntfy/cams")["title"] as? String == "Camera host 10.0.0.9: 2 of 2 streams fail")
        // Without a picture ntfy gets the text as the body, with the token.
        let plain = notice(channels: ["ntfy"])
        #expect(await notifier.send(plain, text: NoticeText(plain, names: [:], timeZone: .gmt, now: Date(), evidence: nil)).first?.delivered == true)
        let text = r.records().last { ($0["path"] as? String) == "/ntfy/cams" }?["fields"] as? [String: Any] ?? [:]
        #expect(text["authorization"] as? String == "Bearer tk_ntfy_s3cret" && (text["message"] as? String)?.hasPrefix("Failing since") == true)
        #expect(fields("/gotify")["priority"] as? Int == 8 && fields("/gotify")["key"] as? String == "AGotifyAppToken")
        #expect((fields("/1/messages.json")["attachment"] as? [String: Any])?["jpeg"] as? Bool == true)
        #expect(notifier.channelStats.allSatisfy { $0.sent == ($0.name == "ntfy" ? 2 : 1) && !$0.failing }, "\(notifier.channelStats)")
        // No token or secret path reaches the logs.
        for secret in [Self.botToken, "sl4ck-s3cret-path", "tk_ntfy_s3cret", "AGotifyAppToken", "apptoken-pushover"] {
            #expect(!logs.all.contains { $0.contains(secret) }, "\(secret) logged")
        }
        await notifier.shutdown()
    }

    @Test func theGenericWebhook_signsItsBody_andSendsExtraHeaders() async throws {
        let r = try await receiver(hmac: "hmac-key-s3cret")
        defer { kill(r.process.processIdentifier, SIGKILL) }
        var hook = ChannelConfig(name: "hook", type: .webhook, url: "https://127.0.0.1:\(r.port)/hook/streampulse")
        hook.caFile = r.ca
        hook.hmacSecret = "hmac-key-s3cret"
        hook.headers = ["X-Team": "video"]
        let notifier = Notifier(channels: [hook], logger: CapturedLogs().logger(), retryDelays: [])
        let n = notice(.resolved, channels: ["hook"])
        let outcomes = await notifier.send(n, text: NoticeText(n, names: [:], timeZone: .gmt, now: Date(), evidence: nil))
        #expect(outcomes.first?.delivered == true, "\(outcomes)")
        let record = try #require(r.records().first)
        #expect(record["ok"] as? Bool == true, "\(record)")
        let body = try #require(record["fields"] as? [String: Any])
        #expect(body["kind"] as? String == "resolved")
        #expect((body["incident"] as? [String: Any])?["duration_seconds"] as? Double == 2100)
        #expect((body["headers"] as? [String: Any])?["x-team"] as? String == "video")
        // A wrong key is refused by the receiver (the signature is really checked).
        hook.hmacSecret = "another-key"
        let wrong = Notifier(channels: [hook], logger: CapturedLogs().logger(), retryDelays: [])
        #expect(await wrong.send(n, text: NoticeText(n, names: [:], timeZone: .gmt, now: Date(), evidence: nil)).first?.delivered == false)
        await notifier.shutdown()
        await wrong.shutdown()
    }

    @Test func theGenericWebhook_rendersItsMustacheTemplate() async throws {
        let r = try await receiver()
        defer { kill(r.process.processIdentifier, SIGKILL) }
        let loaded = ConfigLoader(environment: [:]).load(yaml: """
            notify:
              channels:
                - name: hook
                  type: webhook
                  url: "https://127.0.0.1:\(r.port)/hook/templated"
                  ca_file: "\(r.ca)"
                  template: '{"kind": "{{kind}}", "incident": {"id": {{incident.id}}}, "msg": {{{text_json}}}, "who": "{{#incident.streams}}{{.}};{{/incident.streams}}"}'
                - { name: broken, type: webhook, url: "https://x/y", template: "{{#open}} never closed" }
            """, file: "c", baseDirectory: "/tmp")
        #expect(loaded.errors.map(\.message).contains { $0.hasPrefix("channel 'broken': the template does not parse") }, "\(loaded.problems)")
        var hook = ChannelConfig(name: "hook", type: .webhook, url: "https://127.0.0.1:\(r.port)/hook/templated")
        hook.caFile = r.ca
        hook.template = #"{"kind": "{{kind}}", "incident": {"id": {{incident.id}}}, "msg": {{{text_json}}}, "who": "{{#incident.streams}}{{.}};{{/incident.streams}}"}"#
        let notifier = Notifier(channels: [hook], logger: CapturedLogs().logger(), retryDelays: [])
        let n = notice(channels: ["hook"])
        let text = NoticeText(n, names: [:], timeZone: .gmt, now: Date(), evidence: nil)
        #expect(await notifier.send(n, text: text).first?.delivered == true)
        let body = try #require(r.records().first?["fields"] as? [String: Any])
        #expect(body["msg"] as? String == text.details, "a text with a newline and quotes survives as JSON: \(body)")
        #expect(body["who"] as? String == "gate;yard;" && (body["incident"] as? [String: Any])?["id"] as? Int == 7)
        await notifier.shutdown()
    }

    @Test func aFailingDelivery_isRetriedWithBackoff_countedAndReported_withoutItsSecrets() async throws {
        let r = try await receiver(fail: 2)
        defer { kill(r.process.processIdentifier, SIGKILL) }
        let notifier = Notifier(channels: channels(r), logger: CapturedLogs().logger(), retryDelays: [.milliseconds(50), .milliseconds(50), .milliseconds(50)])
        let n = notice(channels: ["slack"])
        let outcome = await notifier.send(n, text: NoticeText(n, names: [:], timeZone: .gmt, now: Date(), evidence: nil))
        #expect(outcome.first?.delivered == true && outcome.first?.retries == 2, "\(outcome)")
        // An untrusted certificate: every attempt fails; the error names the cause, never the URL's secret path.
        var untrusted = channels(r)[0]
        untrusted.caFile = nil
        let failing = Notifier(channels: [untrusted], logger: CapturedLogs().logger(), retryDelays: [.milliseconds(10), .milliseconds(10), .milliseconds(10)])
        let failed = await failing.send(n, text: NoticeText(n, names: [:], timeZone: .gmt, now: Date(), evidence: nil))
        #expect(failed.first?.delivered == false && failed.first?.retries == 3)
        let error = failed.first?.error ?? ""
        #expect(!error.isEmpty && !error.contains("sl4ck-s3cret-path"), "\(error)")
        #expect(failing.channelStats.first?.failing == true && failing.channelStats.first?.failed == 1)
        await notifier.shutdown()
        await failing.shutdown()
    }

    /// A scene verdict's notice carries the reference view beside the picture now, where the channel takes
    /// two pictures: Discord (two files, each in an embed), Telegram (an album through sendMediaGroup).
    @Test func theReferenceView_travelsBesideThePicture_inDiscordAndTelegram() async throws {
        let r = try await receiver()
        defer { kill(r.process.processIdentifier, SIGKILL) }
        let notifier = Notifier(channels: channels(r), logger: CapturedLogs().logger(), retryDelays: [])
        let now = try await jpeg(), reference = try await jpeg(size: "160x120")
        let n = notice(channels: ["discord", "telegram", "pushover"])
        let companion = CompanionPicture(name: "reference.jpg", caption: "the picture now beside the reference view", jpeg: reference)
        let text = NoticeText(n, names: [:], timeZone: .gmt, now: Date(), evidence: now, companion: companion)
        #expect(text.details.contains("Pictures: the picture now beside the reference view."))
        let outcomes = await notifier.send(n, text: text)
        #expect(outcomes.allSatisfy { $0.delivered }, "\(outcomes)")
        let records = r.records()
        #expect(records.allSatisfy { $0["ok"] as? Bool == true }, "\(records.map { ($0["path"] ?? "", $0["why"] ?? "") })")
        let discord = records.first { ($0["path"] as? String)?.hasPrefix("/discord") == true }?["fields"] as? [String: Any] ?? [:]
        #expect((discord["file2"] as? [String: Any])?["bytes"] as? Int == reference.count, "\(discord)")
        #expect((discord["file2"] as? [String: Any])?["filename"] as? String == "reference.jpg")
        let album = records.first { ($0["path"] as? String) == "/bot\(Self.botToken)/sendMediaGroup" }?["fields"] as? [String: Any] ?? [:]
        let photos = album["photos"] as? [[String: Any]] ?? []
        #expect(photos.map { $0["bytes"] as? Int } == [now.count, reference.count], "\(album)")
        #expect((photos.first?["caption"] as? String)?.contains("2 of 2 streams fail") == true)
        await notifier.shutdown()
    }

    @Test func email_overSTARTTLSWithAUTH_arrivesWithTheEvidenceAttached() async throws {
        let tls = try await AlertSinkTests().privateCA()
        let out = TestEnvironment.temporaryDirectory("smtp")
        let (server, ports) = try TestCameras.launch(TestEnvironment.root + "/scripts/test-cameras/smtp_server.py", [
            "--out", out, "--cert", tls.cert, "--key", tls.key, "--user", "alerts@example.com", "--password", "smtp-pa55-s3cret"])
        defer { kill(server.processIdentifier, SIGKILL) }
        var mail = ChannelConfig(name: "oncall-mail", type: .email)
        mail.smtp = SMTPSettings(host: "127.0.0.1", port: ports["port"]!, starttls: true, tls: false,
                                 credentials: CredentialRef(username: "alerts@example.com", password: "smtp-pa55-s3cret"))
        mail.caFile = tls.ca
        mail.from = "streampulse@example.com"
        mail.to = ["oncall@example.com", "lead@example.com"]
        let logs = CapturedLogs()
        let notifier = Notifier(channels: [mail], logger: logs.logger(), retryDelays: [])
        let picture = try await jpeg()
        let n = notice(channels: ["oncall-mail"])
        let last = try await jpeg(size: "160x120")
        let companion = CompanionPicture(name: "last.jpg", caption: "the first and the last picture of the frozen window", jpeg: last)
        let outcome = await notifier.send(n, text: NoticeText(n, names: [:], timeZone: .gmt, now: Date(), evidence: picture, companion: companion))
        #expect(outcome.first?.delivered == true, "\(outcome)")
        let file = try String(contentsOfFile: out + "/1.eml", encoding: .utf8)
        #expect(file.contains("X-Envelope-To: oncall@example.com,lead@example.com"))
        #expect(file.contains("Subject: Camera host 10.0.0.9: 2 of 2 streams fail"))
        // The attachment decodes to the very JPEG.
        let message = try #require(file.components(separatedBy: "filename=\"evidence.jpg\"").last)
        let base64 = message.components(separatedBy: "\r\n\r\n").dropFirst().first?.components(separatedBy: "--").first ?? ""
        #expect(Data(base64Encoded: base64, options: .ignoreUnknownCharacters) == picture)
        // The companion picture (here a frozen window's last picture) is the second attachment.
        let second = try #require(file.components(separatedBy: "filename=\"last.jpg\"").last)
        let base64Last = second.components(separatedBy: "\r\n\r\n").dropFirst().first?.components(separatedBy: "--").first ?? ""
        #expect(Data(base64Encoded: base64Last, options: .ignoreUnknownCharacters) == last)
        // A wrong password is refused, and the error does not carry it.
        mail.smtp?.credentials = CredentialRef(username: "alerts@example.com", password: "wrong-pa55")
        let refused = Notifier(channels: [mail], logger: logs.logger(), retryDelays: [])
        let failed = await refused.send(n, text: NoticeText(n, names: [:], timeZone: .gmt, now: Date(), evidence: nil))
        #expect(failed.first?.delivered == false && failed.first?.error?.contains("AUTH refused: 535") == true, "\(failed)")
        #expect(!logs.all.contains { $0.contains("smtp-pa55-s3cret") || $0.contains("wrong-pa55") })
    }
}
