import Foundation
import Logging
import StreamPulseCore
import Synchronization

/// JSON POST of state changes to an HTTP endpoint, with flap suppression (a state must hold
/// `min_duration` before it is sent), retries with exponential backoff, and a filter by status, stream
/// and tag. Delivery runs on the sink's own thread: a receiver that never answers delays only this sink.
public final class WebhookSink: Sink {
    public let name: String
    let config: SinkConfig
    let target: (host: String, port: Int, path: String)
    private let logger: Logger
    private let pool = BlockingPool(name: "webhook", threads: 1, maxThreads: 1)

    struct Pending: Sendable { var change: StateChange; var due: Date }
    private struct State {
        var pending: [String: Pending] = [:]
        var lastSent: [String: String] = [:]
        var tags: [String: [String]] = [:]
        var names: [String: String] = [:]
        var delivered = 0
    }
    private let state = Mutex(State())
    private let ticker: Task<Void, Never>?

    /// Alerts delivered (2xx answers).
    public var delivered: Int { state.withLock { $0.delivered } }

    public init(config: SinkConfig, logger: Logger) throws {
        guard let url = config.url, let c = URLComponents(string: url), let host = c.host else {
            throw SinkSetupError(message: "webhook sink '\(config.name)' has no usable url")
        }
        self.name = config.name
        self.config = config
        self.target = (host, c.port ?? 80, (c.percentEncodedPath.isEmpty ? "/" : c.percentEncodedPath) + (c.percentEncodedQuery.map { "?" + $0 } ?? ""))
        self.logger = logger
        let box = WeakBox()
        ticker = Task.detached {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(200))
                await box.sink?.deliverDue()
            }
        }
        box.sink = self
    }

    deinit { ticker?.cancel() }

    final class WeakBox: @unchecked Sendable { weak var sink: WebhookSink? }

    public func write(_ batch: [SinkEvent]) async throws {
        state.withLock { state in
            for event in batch {
                switch event {
                case .streams(let streams, _):
                    for s in streams { state.tags[s.id] = s.tags; state.names[s.id] = s.name }
                case .change(let change):
                    // A newer state replaces one still waiting out its minimum duration (a flap).
                    state.pending[change.streamId] = nil
                    let label = Self.label(change.to)
                    guard matches(change, tags: state.tags[change.streamId] ?? []), state.lastSent[change.streamId] != label else { continue }
                    state.pending[change.streamId] = Pending(change: change, due: change.at.addingTimeInterval(config.minDuration.seconds))
                case .result:
                    break
                }
            }
        }
        await deliverDue()
    }

    public func close() async {
        ticker?.cancel()
    }

    static func label(_ state: StreamState) -> String { state.pending ? "pending" : state.status.rawValue }

    func matches(_ change: StateChange, tags: [String]) -> Bool {
        (config.statuses.isEmpty || config.statuses.contains(change.to.status.rawValue))
            && (config.streams.isEmpty || config.streams.contains(change.streamId))
            && (config.tags.isEmpty || !Set(config.tags).isDisjoint(with: tags))
    }

    func deliverDue() async {
        let now = Date()
        let due = state.withLock { state -> [Pending] in
            let ready = state.pending.values.filter { $0.due <= now }
            for item in ready { state.pending[item.change.streamId] = nil }
            return ready.sorted { $0.change.at < $1.change.at }
        }
        for item in due { await deliver(item.change) }
    }

    struct Payload: Encodable {
        var streamId: String
        var streamName: String
        var status: String
        var previousStatus: String
        var pending: Bool
        var reason: String
        var phase: String?
        var message: String
        var since: Date
    }

    private func deliver(_ change: StateChange) async {
        let name = state.withLock { $0.names[change.streamId] } ?? change.streamId
        let payload = Payload(streamId: change.streamId, streamName: name, status: change.to.status.rawValue, previousStatus: change.from.status.rawValue,
                              pending: change.to.pending, reason: change.to.reason.rawValue, phase: change.to.phase?.rawValue,
                              message: change.to.message, since: change.at)
        guard let body = try? Wire.encode(payload) else { return }
        for attempt in 0...config.retries {
            let status = await pool.run { [target] in Self.post(body, to: target) }
            if let status, (200...299).contains(status) {
                state.withLock {
                    $0.delivered += 1
                    $0.lastSent[change.streamId] = Self.label(change.to)
                }
                return
            }
            logger.warning("webhook \(name): delivering the \(change.streamId) alert failed (\(status.map { "HTTP \($0)" } ?? "no answer")), attempt \(attempt + 1)")
            if attempt < config.retries { try? await Task.sleep(for: .milliseconds(Int(500 * pow(2, Double(min(attempt, 6)))))) }
        }
        logger.error("webhook \(name): gave up on the \(change.streamId) alert after \(config.retries + 1) attempts")
    }

    /// One POST, at most 5 s; the status code, or nil when there was no HTTP answer.
    static func post(_ body: Data, to target: (host: String, port: Int, path: String)) -> Int? {
        let clock = ProbeClock(timeoutMs: 5000)
        guard let connection = try? TCPConnection(host: target.host, port: target.port, clock: clock) else { return nil }
        let head = "POST \(target.path) HTTP/1.1\r\nHost: \(target.host):\(target.port)\r\nUser-Agent: StreamPulse/1.0\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        do {
            try connection.write(Array(head.utf8) + Array(body))
            var answer: [UInt8] = []
            while !answer.contains(0x0A), answer.count < 4096 { answer += try connection.read(maximum: 4096) }
            let line = String(decoding: answer.prefix { $0 != 0x0A }, as: UTF8.self)
            let parts = line.split(separator: " ")
            return parts.count >= 2 ? Int(parts[1]) : nil
        } catch {
            return nil
        }
    }
}

public struct SinkSetupError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
