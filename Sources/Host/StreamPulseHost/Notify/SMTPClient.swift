import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// One mail: a plain-text body and the evidence pictures attached (the picture, and beside it the reference
/// view or the last picture of a frozen window).
struct MailMessage: Sendable {
    var from: String
    var to: [String]
    var subject: String
    var body: String
    /// File name and JPEG of each attached picture.
    var pictures: [(name: String, jpeg: Data)] = []

    /// RFC 5322 + MIME: multipart/mixed when a picture is attached; CRLF line ends, dot-stuffed by the client.
    func rendered(date: Date = Date(), boundary: String = "sp-" + UUID().uuidString) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        let domain = from.split(separator: "@").last.map(String.init) ?? "streampulse"
        var lines = [
            "From: \(Self.headerSafe(from))",
            "To: \(to.map(Self.headerSafe).joined(separator: ", "))",
            "Subject: \(Self.encodedWord(subject))",
            "Date: \(formatter.string(from: date))",
            "Message-ID: <\(UUID().uuidString)@\(domain)>",
            "MIME-Version: 1.0",
        ]
        let text = Data(body.utf8).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])
        if !pictures.isEmpty {
            lines += ["Content-Type: multipart/mixed; boundary=\"\(boundary)\"", "", "--\(boundary)",
                      "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64", "", text]
            for picture in pictures {
                let name = Self.headerSafe(picture.name).replacingOccurrences(of: "\"", with: "")
                lines += ["--\(boundary)", "Content-Type: image/jpeg; name=\"\(name)\"", "Content-Transfer-Encoding: base64",
                          "Content-Disposition: attachment; filename=\"\(name)\"", "",
                          picture.jpeg.base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])]
            }
            lines.append("--\(boundary)--")
        } else {
            lines += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64", "", text]
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    static func headerSafe(_ text: String) -> String { String(text.filter { $0 != "\r" && $0 != "\n" }) }

    /// RFC 2047 for a subject that is not plain ASCII.
    static func encodedWord(_ text: String) -> String {
        let clean = headerSafe(text)
        if clean.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 32 }) { return clean }
        return "=?UTF-8?B?\(Data(clean.utf8).base64EncodedString())?="
    }
}

/// A small SMTP submission client (RFC 5321) on SwiftNIO: EHLO, STARTTLS (RFC 3207) or implicit TLS,
/// AUTH PLAIN or LOGIN (RFC 4954), MAIL/RCPT/DATA, QUIT. Certificates are verified (`ca_file` adds a CA).
/// Each reply is awaited with the channel's timeout. No Swift SMTP library is available to the project.
struct SMTPClient: Sendable {
    var settings: SMTPSettings
    var caFile: String?
    var timeout: Duration

    struct Failure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    func send(_ mail: MailMessage) async throws {
        let tls = try tlsContext()
        let serverName = settings.host.allSatisfy { $0.isNumber || $0 == "." || $0 == ":" } ? nil : settings.host
        let seconds = Int64(max(1, timeout.components.seconds))
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(seconds))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if settings.tls { try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: serverName)) }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPReplyDecoder()))
                    try channel.pipeline.syncOperations.addHandler(SMTPSessionHandler(timeout: .seconds(seconds)))
                }
            }
            .connect(host: settings.host, port: settings.port).get()
        do {
            try await session(channel, mail: mail, tls: tls, serverName: serverName)
            try? await channel.close()
        } catch {
            try? await channel.close()
            throw error
        }
    }

    private func session(_ channel: any Channel, mail: MailMessage, tls: NIOSSLContext, serverName: String?) async throws {
        try await expect(channel, nil, 220, "greeting")
        var features = try await expect(channel, "EHLO streampulse", 250, "EHLO")
        if settings.starttls && !settings.tls {
            guard features.contains(where: { $0.uppercased().hasPrefix("STARTTLS") }) else {
                throw Failure(message: "the SMTP server does not offer STARTTLS (set starttls: false only on a trusted network)")
            }
            try await expect(channel, "STARTTLS", 220, "STARTTLS")
            try await channel.pipeline.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: serverName), position: .first).get()
            features = try await expect(channel, "EHLO streampulse", 250, "EHLO after STARTTLS")
        }
        if let credentials = settings.credentials {
            let auth = features.first { $0.uppercased().hasPrefix("AUTH") }?.uppercased() ?? ""
            if auth.contains("PLAIN") || !auth.contains("LOGIN") {
                let token = Data("\0\(credentials.username)\0\(credentials.password)".utf8).base64EncodedString()
                try await expect(channel, "AUTH PLAIN \(token)", 235, "AUTH", secret: true)
            } else {
                try await expect(channel, "AUTH LOGIN", 334, "AUTH")
                try await expect(channel, Data(credentials.username.utf8).base64EncodedString(), 334, "AUTH", secret: true)
                try await expect(channel, Data(credentials.password.utf8).base64EncodedString(), 235, "AUTH", secret: true)
            }
        }
        try await expect(channel, "MAIL FROM:<\(MailMessage.headerSafe(mail.from))>", 250, "MAIL FROM")
        for address in mail.to { try await expect(channel, "RCPT TO:<\(MailMessage.headerSafe(address))>", 250, "RCPT TO \(address)", also: [251]) }
        try await expect(channel, "DATA", 354, "DATA")
        // Dot-stuffing (RFC 5321 §4.5.2), then the end-of-data line.
        let body = mail.rendered().components(separatedBy: "\r\n").map { $0.hasPrefix(".") ? "." + $0 : $0 }.joined(separator: "\r\n")
        try await expect(channel, body + ".", 250, "end of DATA")
        _ = try? await expect(channel, "QUIT", 221, "QUIT")
    }

    /// Sends `command` (nil: only wait) and checks the reply code; returns the reply's lines.
    @discardableResult
    private func expect(_ channel: any Channel, _ command: String?, _ code: Int, _ step: String, also: [Int] = [],
                        secret: Bool = false) async throws -> [String] {
        let promise = channel.eventLoop.makePromise(of: SMTPReply.self)
        try await channel.writeAndFlush(SMTPRequest(line: command, reply: promise))
        let reply: SMTPReply
        do { reply = try await promise.futureResult.get() } catch {
            throw Failure(message: "SMTP \(step): \(error)")
        }
        guard reply.code == code || also.contains(reply.code) else {
            // A refused AUTH echoes nothing of ours; other replies are the server's words.
            let said = reply.lines.joined(separator: " ").prefix(200)
            throw Failure(message: "SMTP \(step) refused: \(reply.code) \(secret ? "(credentials rejected)" : String(said))")
        }
        return reply.lines
    }

    private func tlsContext() throws -> NIOSSLContext {
        try NIOSSLContext(configuration: TLSTrust.client(caFile: caFile))
    }
}

struct SMTPReply: Sendable {
    var code: Int
    var lines: [String]
}

/// A command line to write (nil: none, only await the next reply, e.g. the greeting) and its reply promise.
struct SMTPRequest: Sendable {
    var line: String?
    var reply: EventLoopPromise<SMTPReply>
}

/// Cuts replies: lines `250-…` continue, `250 …` ends one (RFC 5321 §4.2.1). Lines are bounded.
struct SMTPReplyDecoder: ByteToMessageDecoder {
    typealias InboundOut = SMTPReply
    private var lines: [String] = []

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let view = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > 4096 { throw SMTPClient.Failure(message: "SMTP reply line longer than 4 KiB") }
            return .needMoreData
        }
        let length = view - buffer.readerIndex + 1
        var line = buffer.readString(length: length) ?? ""
        while line.hasSuffix("\n") || line.hasSuffix("\r") { line.removeLast() }
        guard line.count >= 3, let code = Int(line.prefix(3)) else { throw SMTPClient.Failure(message: "not an SMTP reply") }
        let more = line.count > 3 && line[line.index(line.startIndex, offsetBy: 3)] == "-"
        lines.append(line.count > 4 ? String(line.dropFirst(4)) : "")
        if lines.count > 100 { throw SMTPClient.Failure(message: "SMTP reply of more than 100 lines") }
        if !more {
            context.fireChannelRead(wrapInboundOut(SMTPReply(code: code, lines: lines)))
            lines = []
        }
        return .continue
    }
}

/// Matches replies to requests in order, each bounded by the timeout.
final class SMTPSessionHandler: ChannelDuplexHandler {
    typealias InboundIn = SMTPReply
    typealias OutboundIn = SMTPRequest
    typealias OutboundOut = ByteBuffer

    private let timeout: TimeAmount
    private var waiting: [(promise: EventLoopPromise<SMTPReply>, timer: Scheduled<Void>)] = []
    /// Replies that came before anyone waited for them (the greeting can beat the first request).
    private var early: [SMTPReply] = []

    init(timeout: TimeAmount) { self.timeout = timeout }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        let reply = request.reply
        if request.line == nil, !early.isEmpty {
            reply.succeed(early.removeFirst())
            promise?.succeed(())
            return
        }
        let timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            self?.waiting.removeAll { $0.promise.futureResult === reply.futureResult }
            reply.fail(SMTPClient.Failure(message: "no reply within the timeout"))
            context.close(promise: nil)
        }
        waiting.append((reply, timer))
        if let line = request.line {
            context.write(wrapOutboundOut(ByteBuffer(string: line + "\r\n")), promise: promise)
        } else {
            promise?.succeed(())
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = unwrapInboundIn(data)
        guard !waiting.isEmpty else {
            if early.count < 4 { early.append(reply) }
            return
        }
        let first = waiting.removeFirst()
        first.timer.cancel()
        first.promise.succeed(reply)
    }

    func channelInactive(context: ChannelHandlerContext) {
        for entry in waiting {
            entry.timer.cancel()
            entry.promise.fail(SMTPClient.Failure(message: "the server closed the connection"))
        }
        waiting = []
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        for entry in waiting {
            entry.timer.cancel()
            entry.promise.fail(SMTPClient.Failure(message: "\(error)"))
        }
        waiting = []
        context.close(promise: nil)
    }
}
