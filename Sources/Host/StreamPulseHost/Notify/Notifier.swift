import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// Sends notices to channels: HTTP ones through AsyncHTTPClient (TLS verified; a channel's `ca_file` adds
/// a trusted CA), email through `SMTPClient`. A delivery that fails is retried with backoff
/// (`retryDelays`), counted per channel (`/api/sinks`) and reported back for the incident's record.
/// Channel secrets (URL paths and queries, tokens, passwords) are scrubbed from every error it reports.
public final class Notifier: Sendable {
    /// Per channel, for `/api/sinks` and metrics.
    public struct ChannelStats: Sendable, Codable, Equatable {
        public var name: String
        public var type: String
        public var sent = 0
        public var failed = 0
        public var retries = 0
        public var failing = false
        public var lastError: String?
    }

    /// The outcome of one notice on one channel.
    public struct Outcome: Sendable, Equatable {
        public var channel: String
        public var delivered: Bool
        public var retries: Int
        public var error: String?
    }

    private let channels: Mutex<[String: ChannelConfig]>
    private let clients = Mutex<[String: HTTPClient]>([:])
    private let stats = Mutex<[String: ChannelStats]>([:])
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    /// Waits before each retry (three retries by default: 1 s, 4 s, 15 s).
    let retryDelays: [Duration]

    public init(channels: [ChannelConfig], logger: Logger, retryDelays: [Duration] = [.seconds(1), .seconds(4), .seconds(15)]) {
        self.channels = Mutex(Dictionary(channels.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }))
        self.logger = logger
        self.retryDelays = retryDelays
        stats.withLock { stats in for c in channels { stats[c.name] = ChannelStats(name: c.name, type: c.type.rawValue) } }
    }

    /// Replaces the channels (a reload); clients of changed channels are rebuilt on next use.
    public func update(_ list: [ChannelConfig]) async {
        let old = channels.withLock { current in
            defer { current = Dictionary(list.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }) }
            return current
        }
        let changed = old.filter { name, config in list.first { $0.name == name } != config }.map(\.key)
        let dropped = clients.withLock { clients in changed.compactMap { clients.removeValue(forKey: $0) } }
        for client in dropped { try? await client.shutdown() }
        stats.withLock { stats in
            stats = stats.filter { name, _ in list.contains { $0.name == name } }
            for c in list where stats[c.name] == nil { stats[c.name] = ChannelStats(name: c.name, type: c.type.rawValue) }
        }
    }

    /// No more retries (shutdown): a failing delivery ends at its current attempt.
    public func stopRetrying() { stopping.store(true, ordering: .relaxed) }

    public var channelStats: [ChannelStats] { stats.withLock { $0.values.sorted { $0.name < $1.name } } }
    public var channelNames: [String] { channels.withLock { $0.keys.sorted() } }

    /// Sends `text` for `notice` to each named channel, in parallel; each with its retries.
    public func send(_ notice: IncidentNotice, text: NoticeText) async -> [Outcome] {
        await withTaskGroup(of: Outcome.self) { group in
            for name in notice.channels {
                group.addTask { await self.deliver(notice, text: text, channel: name) }
            }
            var outcomes: [Outcome] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes.sorted { $0.channel < $1.channel }
        }
    }

    private func deliver(_ notice: IncidentNotice, text: NoticeText, channel name: String) async -> Outcome {
        guard let channel = channels.withLock({ $0[name] }) else {
            return Outcome(channel: name, delivered: false, retries: 0, error: "no channel named '\(name)'")
        }
        var retries = 0
        var lastError = ""
        while true {
            do {
                try await attempt(channel, notice: notice, text: text)
                stats.withLock { s in s[name]?.sent += 1; s[name]?.failing = false; s[name]?.retries += retries }
                logger.info("notify \(name): \(notice.kind.rawValue) notice for incident \(notice.incident.id) delivered")
                return Outcome(channel: name, delivered: true, retries: retries, error: nil)
            } catch {
                lastError = scrub("\(error)", channel)
                guard retries < retryDelays.count, !Task.isCancelled, !stopping.load(ordering: .relaxed) else { break }
                logger.warning("notify \(name): delivery failed (\(lastError)); retry \(retries + 1) of \(retryDelays.count)")
                // Waited in short steps, so a shutdown (`stopRetrying`) does not sit out a long backoff.
                let until = ContinuousClock.now + retryDelays[retries]
                while ContinuousClock.now < until, !stopping.load(ordering: .relaxed), !Task.isCancelled {
                    try? await Task.sleep(for: min(.milliseconds(100), ContinuousClock.now.duration(to: until)))
                }
                if stopping.load(ordering: .relaxed) { break }
                retries += 1
            }
        }
        stats.withLock { s in s[name]?.failed += 1; s[name]?.failing = true; s[name]?.lastError = lastError; s[name]?.retries += retries }
        logger.error("notify \(name): \(notice.kind.rawValue) notice for incident \(notice.incident.id) failed after \(retries) retries: \(lastError)")
        return Outcome(channel: name, delivered: false, retries: retries, error: lastError)
    }

    private func attempt(_ channel: ChannelConfig, notice: IncidentNotice, text: NoticeText) async throws {
        if channel.type == .email {
            guard let smtp = channel.smtp, let from = channel.from else { throw ChannelError(message: "email channel without smtp or from") }
            let mail = MailMessage(from: from, to: channel.to, subject: text.title, body: text.details, pictures: text.pictures)
            try await SMTPClient(settings: smtp, caFile: channel.caFile, timeout: channel.timeout).send(mail)
            return
        }
        let built = try ChannelPayloads.request(for: channel, notice: notice, text: text)
        var request = HTTPClientRequest(url: built.url)
        request.method = HTTPMethod(rawValue: built.method)
        for (header, value) in built.headers { request.headers.add(name: header, value: value) }
        request.headers.add(name: "User-Agent", value: "StreamPulse")
        request.body = .bytes(ByteBuffer(bytes: built.body))
        let response = try await client(for: channel).execute(request, timeout: .milliseconds(Int64(channel.timeout.components.seconds * 1000)))
        // Read (and bound) the answer so the connection can be reused; providers explain refusals in it.
        let answer = try await response.body.collect(upTo: 64 * 1024)
        guard (200..<300).contains(Int(response.status.code)) else {
            let said = String(buffer: answer).prefix(200).filter { !$0.isNewline }
            throw ChannelError(message: "HTTP \(response.status.code)\(said.isEmpty ? "" : ": \(said)")")
        }
    }

    private func client(for channel: ChannelConfig) throws -> HTTPClient {
        if let existing = clients.withLock({ $0[channel.name] }) { return existing }
        let tls = try TLSTrust.client(caFile: channel.caFile)
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow,
                                                     timeout: .init(connect: .seconds(10), read: .seconds(30)))
        configuration.connectionPool.retryConnectionEstablishment = false
        let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        return clients.withLock { clients in
            if let raced = clients[channel.name] {
                try? made.syncShutdown()
                return raced
            }
            clients[channel.name] = made
            return made
        }
    }

    /// Closes every client.
    public func shutdown() async {
        let all = clients.withLock { clients in defer { clients = [:] }; return Array(clients.values) }
        for client in all { try? await client.shutdown() }
    }

    /// Replaces every secret of the channel in `text` (an error may quote the URL).
    func scrub(_ text: String, _ channel: ChannelConfig) -> String {
        var result = text
        for secret in channel.secrets.sorted(by: { $0.count > $1.count }) { result = result.replacingOccurrences(of: secret, with: "…") }
        if let url = channel.url { result = result.replacingOccurrences(of: url, with: "<\(channel.name) url>") }
        return result
    }
}
