import Synchronization

/// A one-shot or repeatable wake-up that one task waits for and any code may fire. Firing before the
/// wait is remembered (the next wait returns at once); a cancelled waiter returns too.
public final class Signal: Sendable {
    private struct State {
        var fired = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    public init() {}

    /// Wakes the waiter, or the next one.
    public func fire() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            defer { state.waiter = nil }
            if state.waiter == nil { state.fired = true }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Whether `fire()` was called and no wait has consumed it yet.
    public var isFired: Bool { state.withLock { $0.fired } }

    /// Returns when fired (clearing it) or when the calling task is cancelled. One waiter at a time.
    public func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.fired || Task.isCancelled {
                        state.fired = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            fire()
        }
    }

    /// Waits until fired, cancelled, or `timeout` passed.
    public func wait(timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: timeout) }
            group.addTask { await self.wait() }
            await group.next()
            group.cancelAll()
        }
    }
}
