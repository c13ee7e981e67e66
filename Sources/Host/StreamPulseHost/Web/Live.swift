import Foundation
import StreamPulseCore
import Synchronization

/// The dashboard's sink: remembers, per connected browser, which streams changed since its last push.
///
/// It sits in the sink chain like SQLite or MQTT, so a slow browser never slows probing: the chain
/// buffers for it, and each Server-Sent-Events connection takes its dirty set at most twice a second
/// and sends the fresh snapshots of just those streams.
public final class LiveHub: Sink, Sendable {
    public let name = "dashboard"

    struct Subscriber {
        var dirty: Set<String> = []
        var reload = false
    }

    private let state = Mutex<(next: Int, subscribers: [Int: Subscriber])>((0, [:]))

    public init() {}

    public func subscribe() -> Int {
        state.withLock { state in
            state.next += 1
            state.subscribers[state.next] = Subscriber()
            return state.next
        }
    }

    public func unsubscribe(_ id: Int) {
        _ = state.withLock { $0.subscribers.removeValue(forKey: id) }
    }

    /// The streams changed since the last call, and whether the stream list itself changed.
    public func take(_ id: Int) -> (ids: Set<String>, reload: Bool) {
        state.withLock { state in
            guard let subscriber = state.subscribers[id] else { return ([], false) }
            state.subscribers[id] = Subscriber()
            return (subscriber.dirty, subscriber.reload)
        }
    }

    public func write(_ batch: [SinkEvent]) async throws {
        var ids: Set<String> = []
        var reload = false
        for event in batch {
            switch event {
            case .result(let result): ids.insert(result.streamId)
            case .change(let change): ids.insert(change.streamId)
            case .streams: reload = true
            }
        }
        state.withLock { state in
            for key in state.subscribers.keys {
                state.subscribers[key]!.dirty.formUnion(ids)
                if reload { state.subscribers[key]!.reload = true }
            }
        }
    }
}

/// Live previews for the dashboard: one upstream plugin session per stream, shared by every viewer
/// that joins while it runs, with a global cap on concurrent sessions. The engine runs each session
/// inside the camera host's session budget, so previews never exceed what the camera is allowed.
public final class PreviewHub: Sendable {
    public enum Refusal: Error, Equatable {
        case unknownStream
        case busy(Int)
    }

    final class Session: Sendable {
        let viewers = Mutex<(next: Int, continuations: [Int: AsyncStream<Data>.Continuation], last: Data?, ended: Bool)>((0, [:], nil, false))
    }

    private let engine: Engine
    private let settings: LiveSettings
    /// The cap in force (`settings.web.max_previews`, applied live).
    public var maxSessions: Int { max(1, settings.current.maxPreviews) }
    private let sessions = Mutex<[String: Session]>([:])
    /// Upstream sessions started since launch (tests check that viewers share one).
    private let started = Atomic<Int>(0)

    public init(engine: Engine, settings: LiveSettings) {
        self.engine = engine
        self.settings = settings
    }

    public var upstreamSessionsStarted: Int { started.load(ordering: .relaxed) }
    public var activeSessions: Int { sessions.withLock { $0.count } }

    /// Frames of stream `id` for up to `seconds`; joins a running session when there is one.
    public func join(_ id: String, seconds: Double) async throws -> AsyncStream<Data> {
        guard await engine.snapshot(id: id) != nil else { throw Refusal.unknownStream }
        let (stream, continuation) = AsyncStream<Data>.makeStream(bufferingPolicy: .bufferingNewest(2))
        let (session, isNew) = try sessions.withLock { sessions -> (Session, Bool) in
            if let running = sessions[id] { return (running, false) }
            let cap = maxSessions
            guard sessions.count < cap else { throw Refusal.busy(cap) }
            let session = Session()
            sessions[id] = session
            return (session, true)
        }
        let joined = session.viewers.withLock { viewers -> Bool in
            guard !viewers.ended else { return false }
            viewers.next += 1
            viewers.continuations[viewers.next] = continuation
            if let last = viewers.last { continuation.yield(last) }
            return true
        }
        if !joined { continuation.finish() }
        guard isNew else { return stream }
        started.add(1, ordering: .relaxed)
        let engine = self.engine
        Task {
            _ = await engine.preview(id: id, seconds: seconds) { frame in
                session.viewers.withLock { viewers in
                    viewers.last = frame
                    for continuation in viewers.continuations.values { continuation.yield(frame) }
                }
            }
            self.sessions.withLock { _ = $0.removeValue(forKey: id) }
            let continuations = session.viewers.withLock { viewers -> [AsyncStream<Data>.Continuation] in
                viewers.ended = true
                return Array(viewers.continuations.values)
            }
            for continuation in continuations { continuation.finish() }
        }
        return stream
    }
}
