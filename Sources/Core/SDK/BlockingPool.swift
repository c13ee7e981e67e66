import Foundation
import Synchronization

/// Threads owned by a plugin for blocking work (C libraries, blocking sockets), so that Swift's
/// cooperative thread pool, shared with the host, is never blocked.
///
/// Starts with `threads` threads and adds more while every thread is busy, up to `maxThreads`; past that,
/// work waits in a FIFO queue. Callers await without holding a cooperative thread. Growing matters
/// because a blocking probe holds its thread until its deadline: a hundred silent cameras must not
/// delay a healthy one behind them.
public final class BlockingPool: Sendable {
    private struct State {
        var queue: [@Sendable () -> Void] = []
        var head = 0
        var threads = 0
        var idle = 0
    }
    private let state = Mutex(State())
    private let available = DispatchSemaphore(value: 0)
    private let name: String
    public let maxThreads: Int

    /// Starts `threads` threads named `name`; grows up to `maxThreads` under load.
    public init(name: String, threads: Int, maxThreads: Int = 512) {
        self.name = name
        self.maxThreads = max(1, maxThreads, threads)
        for _ in 0..<max(1, threads) { spawn() }
    }

    /// Jobs queued and not yet started.
    public var backlog: Int { state.withLock { $0.queue.count - $0.head } }
    /// Threads started so far.
    public var threadCount: Int { state.withLock { $0.threads } }

    private func spawn() {
        let index = state.withLock { state -> Int in
            state.threads += 1
            return state.threads
        }
        let thread = Thread { [self] in self.loop() }
        thread.name = "\(name)-\(index)"
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Runs `work` on one of the pool's threads and returns its value.
    public func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            let grow = state.withLock { state -> Bool in
                state.queue.append { continuation.resume(returning: work()) }
                let waiting = state.queue.count - state.head
                return waiting > state.idle && state.threads < maxThreads
            }
            if grow { spawn() }
            available.signal()
        }
    }

    /// Runs `work` on the pool for a probe: cancelling the calling task cancels `clock`, which the blocking
    /// work polls (TCPConnection, FFmpeg's interrupt callback) so it stops promptly.
    public func run<T: Sendable>(cancelling clock: ProbeClock, _ work: @escaping @Sendable () -> T) async -> T {
        await withTaskCancellationHandler {
            await run(work)
        } onCancel: {
            clock.cancel()
        }
    }

    private func loop() {
        while true {
            state.withLock { $0.idle += 1 }
            available.wait()
            let job = state.withLock { state -> (@Sendable () -> Void)? in
                state.idle -= 1
                guard state.head < state.queue.count else { return nil }
                let job = state.queue[state.head]
                state.head += 1
                if state.head > 1024, state.head * 2 > state.queue.count {
                    state.queue.removeFirst(state.head)
                    state.head = 0
                }
                return job
            }
            job?()
        }
    }
}

/// A point in time after which a probe must stop, plus cancellation; shared with C callbacks.
public final class ProbeClock: Sendable {
    private let start: ContinuousClock.Instant
    public let deadline: ContinuousClock.Instant
    private let cancelled = Atomic<Bool>(false)

    public init(timeoutMs: Int) {
        start = .now
        deadline = start.advanced(by: .milliseconds(max(1, timeoutMs)))
    }

    /// Milliseconds since the probe began.
    public var elapsedMs: Double { start.duration(to: .now).milliseconds }
    /// Milliseconds left before the deadline (never negative).
    public var remainingMs: Double { max(0, ContinuousClock.now.duration(to: deadline).milliseconds) }
    public var expired: Bool { ContinuousClock.now >= deadline }
    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }
    public func cancel() { cancelled.store(true, ordering: .relaxed) }
    /// True when work should stop: deadline passed or cancelled.
    public var shouldStop: Bool { isCancelled || expired }
}
