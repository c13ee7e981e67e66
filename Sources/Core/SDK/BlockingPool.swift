import Foundation
import Synchronization

/// A fixed set of threads owned by a plugin for blocking work (C libraries, blocking sockets), so that
/// Swift's cooperative thread pool, shared with the host, is never blocked.
///
/// Work beyond `threads` waits in a FIFO queue; callers await it without holding a cooperative thread.
public final class BlockingPool: Sendable {
    private struct State {
        var queue: [@Sendable () -> Void] = []
        var head = 0
    }
    private let state = Mutex(State())
    private let available = DispatchSemaphore(value: 0)
    public let threads: Int

    /// Starts `threads` threads named `name`.
    public init(name: String, threads: Int) {
        self.threads = max(1, threads)
        for index in 0..<self.threads {
            let thread = Thread { [self] in self.loop() }
            thread.name = "\(name)-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Jobs queued and not yet started.
    public var backlog: Int { state.withLock { $0.queue.count - $0.head } }

    /// Runs `work` on one of the pool's threads and returns its value.
    public func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            state.withLock { $0.queue.append { continuation.resume(returning: work()) } }
            available.signal()
        }
    }

    private func loop() {
        while true {
            available.wait()
            let job = state.withLock { state -> (@Sendable () -> Void)? in
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
