import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOSSL
import StreamPulseCore
import Synchronization

/// JSON POST of state changes to an HTTP(S) endpoint through AsyncHTTPClient, with flap suppression (a
/// state must hold `min_duration` before it is sent) and a filter by status, stream and tag.
///
/// A delivery that fails (no answer within `timeout`, a non-2xx status) is thrown to the runner, which
/// keeps it and retries with backoff, and shows the sink as failing in `/api/sinks`; only the newest state
/// of each stream waits, so a receiver back after an outage gets one alert per stream, not the backlog.
/// The URL is never logged or shown (its path often holds a token).
public final class WebhookSink: Sink {
    public let name: String
    let options: WebhookOptions
    private let logger: Logger

    struct Pending: Sendable { var change: StateChange; var due: Date }
    private struct State {
        var pending: [String: Pending] = [:]
        var lastSent: [String: String] = [:]
        var tags: [String: [String]] = [:]
        var names: [String: String] = [:]
        var delivered = 0
    }
    private let state = Mutex(State())

    /// Alerts delivered (2xx answers).
    public var delivered: Int { state.withLock { $0.delivered } }
    /// Delayed alerts fall due between events.
    public var tick: Duration? { .milliseconds(200) }

    public init(name: String, options: WebhookOptions, logger: Logger) throws {
        self.name = name
        self.options = options
        self.logger = logger
        let tls: TLSConfiguration
        do { tls = try TLSTrust.client(caFile: options.caFile) } catch { throw SinkSetupError(message: "webhook sink '\(name)': \(error)") }
        let timeout = TimeAmount.milliseconds(Int64(options.timeout.milliseconds))
        var configuration = HTTPClient.Configuration(
            tlsConfiguration: tls, redirectConfiguration: .follow(max: 3, allowCycles: false),
            timeout: .init(connect: timeout, read: timeout))
        configuration.httpVersion = .http1Only
        // One connection attempt per delivery: a refused connection or an untrusted certificate is reported
        // as such at once (the runner retries with backoff), not as a timeout after silent retries.
        configuration.connectionPool.retryConnectionEstablishment = false
        self.configuration = configuration
    }

    /// The client is made at the first delivery and shut down by `close()`: a sink that never ran (a
    /// monitor assembled and not served) holds no client.
    private let configuration: HTTPClient.Configuration
    private let client = Mutex<HTTPClient?>(nil)

    private func httpClient() -> HTTPClient {
        client.withLock { client in
            if let client { return client }
            let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            client = made
            return made
        }
    }

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
                    state.pending[change.streamId] = Pending(change: change, due: change.at.addingTimeInterval(options.minDuration.seconds))
                case .result, .baseline:
                    break
                }
            }
        }
        try await deliverDue()
    }

    public func close() async {
        let made = client.withLock { client -> HTTPClient? in
            defer { client = nil }
            return client
        }
        try? await made?.shutdown()
    }

    static func label(_ state: StreamState) -> String { state.pending ? "pending" : state.status.rawValue }

    func matches(_ change: StateChange, tags: [String]) -> Bool {
        (options.statuses.isEmpty || options.statuses.contains(change.to.status.rawValue))
            && (options.streams.isEmpty || options.streams.contains(change.streamId))
            && (options.tags.isEmpty || !Set(options.tags).isDisjoint(with: tags))
    }

    /// Sends every alert that has held long enough, oldest first; the first failure stops and is thrown
    /// (that alert and the rest stay pending unless a newer state replaced them meanwhile).
    func deliverDue() async throws {
        let now = Date()
        let due = state.withLock { state -> [Pending] in
            let ready = state.pending.values.filter { $0.due <= now }
            for item in ready { state.pending[item.change.streamId] = nil }
            return ready.sorted { $0.change.at < $1.change.at }
        }
        for (index, item) in due.enumerated() {
            do {
                try await deliver(item.change)
            } catch {
                state.withLock { state in
                    for unsent in due[index...] where state.pending[unsent.change.streamId] == nil {
                        state.pending[unsent.change.streamId] = unsent
                    }
                }
                throw error
            }
        }
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

    /// Why a delivery failed, without the URL.
    struct DeliveryError: Error, CustomStringConvertible {
        var description: String
    }

    private func deliver(_ change: StateChange) async throws {
        let name = state.withLock { $0.names[change.streamId] } ?? change.streamId
        let payload = Payload(streamId: change.streamId, streamName: name, status: change.to.status.rawValue, previousStatus: change.from.status.rawValue,
                              pending: change.to.pending, reason: change.to.reason.rawValue, phase: change.to.phase?.rawValue,
                              message: change.to.message, since: change.at)
        var request = HTTPClientRequest(url: options.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "StreamPulse/1.0")
        request.body = .bytes(ByteBuffer(bytes: try Wire.encode(payload)))
        let status: UInt
        do {
            let response = try await httpClient().execute(request, timeout: .milliseconds(Int64(options.timeout.milliseconds)))
            status = response.status.code
            _ = try? await response.body.collect(upTo: 64 * 1024)
        } catch {
            throw DeliveryError(description: "the \(change.streamId) alert got no answer from the receiver: \(Self.describe(error))")
        }
        guard (200...299).contains(status) else {
            throw DeliveryError(description: "the receiver answered the \(change.streamId) alert with HTTP \(status)")
        }
        state.withLock {
            $0.delivered += 1
            $0.lastSent[change.streamId] = Self.label(change.to)
        }
    }

    /// AsyncHTTPClient's error, named by its kind only (never the URL it was sent to).
    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError { return String(describing: error).replacingOccurrences(of: "HTTPClientError.", with: "") }
        if error is NIOSSLError || error is BoringSSLError { return "TLS: \(error)" }
        return String(describing: type(of: error)) + ": " + String(describing: error).prefix(200)
    }
}
