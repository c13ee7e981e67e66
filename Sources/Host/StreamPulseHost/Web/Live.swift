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
            case .baseline(let record): ids.insert(record.streamId)
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

/// Everything one preview session needs, taken from the engine's config at the moment it starts.
public struct PreviewPlan: Sendable {
    /// The stream's plugin (nil: no loaded plugin handles it).
    public var plugin: LoadedPlugin?
    public var request: PreviewRequest
    /// The camera host whose session budget the preview counts against.
    public var host: String
    let budgets: HostBudgets
}

/// Live previews for the dashboard: one upstream plugin session per stream, shared by every viewer
/// that joins while it runs, with a global cap on concurrent sessions. Each session runs inside the camera
/// host's session budget (shared with the engine's probes), so previews never exceed what the camera is
/// allowed. Sessions are child tasks of `run()`, which `PreviewService` runs in the ServiceGroup: shutdown
/// cancels them.
public final class PreviewHub: Sendable {
    public enum Refusal: Error, Equatable {
        case unknownStream
        case busy(Int)
        /// The hub is not running (not started yet, or shutting down).
        case stopped
    }

    final class Session: Sendable {
        let viewers = Mutex<(next: Int, continuations: [Int: AsyncStream<Data>.Continuation], last: Data?, ended: Bool)>((0, [:], nil, false))

        func send(_ frame: Data) {
            viewers.withLock { viewers in
                viewers.last = frame
                for continuation in viewers.continuations.values { continuation.yield(frame) }
            }
        }

        func end() {
            let continuations = viewers.withLock { viewers -> [AsyncStream<Data>.Continuation] in
                viewers.ended = true
                return Array(viewers.continuations.values)
            }
            for continuation in continuations { continuation.finish() }
        }
    }

    private let engine: Engine
    private let settings: LiveSettings
    /// The cap in force (`settings.web.max_previews`, applied live).
    public var maxSessions: Int { max(1, settings.current.maxPreviews) }
    private let sessions = Mutex<[String: Session]>([:])
    /// Upstream sessions started since launch (tests check that viewers share one).
    private let started = Atomic<Int>(0)
    private let running = Atomic<Bool>(false)
    private let jobs = AsyncStream<@Sendable () async -> Void>.makeStream()

    public init(engine: Engine, settings: LiveSettings) {
        self.engine = engine
        self.settings = settings
    }

    public var upstreamSessionsStarted: Int { started.load(ordering: .relaxed) }
    public var activeSessions: Int { sessions.withLock { $0.count } }

    /// Runs every preview session as a child task until cancelled (graceful shutdown).
    public func run() async {
        running.store(true, ordering: .releasing)
        defer { running.store(false, ordering: .releasing) }
        await withDiscardingTaskGroup { group in
            for await job in jobs.stream {
                group.addTask { await job() }
            }
        }
        // A join racing the shutdown finds the queue closed and ends its session at once.
        jobs.continuation.finish()
    }

    /// Frames of stream `id` for up to `seconds`; joins a running session when there is one.
    public func join(_ id: String, seconds: Double) async throws(Refusal) -> AsyncStream<Data> {
        guard running.load(ordering: .acquiring) else { throw .stopped }
        guard let plan = await engine.previewPlan(id: id, seconds: seconds) else { throw .unknownStream }
        let (stream, continuation) = AsyncStream<Data>.makeStream(bufferingPolicy: .bufferingNewest(2))
        let (session, isNew) = try sessions.withLock { sessions throws(Refusal) -> (Session, Bool) in
            if let running = sessions[id] { return (running, false) }
            let cap = maxSessions
            guard sessions.count < cap else { throw .busy(cap) }
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
        let queued = jobs.continuation.yield { [self] in
            if let plugin = plan.plugin {
                await plan.budgets.acquire(plan.host)
                _ = await plugin.preview(plan.request, onFrame: session.send)
                await plan.budgets.release(plan.host)
            }
            sessions.withLock { _ = $0.removeValue(forKey: id) }
            session.end()
        }
        if case .terminated = queued {
            sessions.withLock { _ = $0.removeValue(forKey: id) }
            session.end()
        }
        return stream
    }
}
