import Foundation
import Logging
import Synchronization

/// Runs one sink: a bounded buffer filled without blocking, drained in batches by the sink's own task.
public final class SinkRunner: Sendable {
    public let sink: any Sink
    public let capacity: Int
    public let maxBatch: Int
    private struct State {
        var buffer: [SinkEvent] = []
        var dropped = 0
        var written = 0
        var failedBatches = 0
        var lastError: String?
        var failing = false
        var closed = false
    }
    private let state = Mutex(State())
    private let wake = Signal()
    private let finished = Signal()
    private let logger: Logger

    public init(sink: any Sink, capacity: Int = 100_000, maxBatch: Int = 2_000, logger: Logger) {
        self.sink = sink
        self.capacity = max(1, capacity)
        self.maxBatch = max(1, maxBatch)
        self.logger = logger
    }

    /// Queues an event; never waits. Returns false (and counts a drop) when the buffer is full.
    @discardableResult
    public func submit(_ event: SinkEvent) -> Bool {
        // Results are most of the traffic; a sink that reads only changes never buffers them.
        if case .result = event, !wantsResults { return true }
        let accepted = state.withLock { state -> Bool in
            guard !state.closed, state.buffer.count < capacity else {
                state.dropped += 1
                return false
            }
            state.buffer.append(event)
            return true
        }
        if accepted { wake.fire() }
        return accepted
    }

    public var stats: SinkStats {
        state.withLock {
            SinkStats(name: sink.name, queued: $0.buffer.count, dropped: $0.dropped, written: $0.written,
                      failedBatches: $0.failedBatches, lastError: $0.lastError, failing: $0.failing)
        }
    }

    /// Drains the buffer until `stop()` (or cancellation), then writes what is left and closes the sink.
    /// A sink with a `tick` is also written to (with an empty batch) that often.
    public func run() async {
        while !Task.isCancelled {
            if let tick = sink.tick { await wake.wait(timeout: tick) } else { await wake.wait() }
            await drain(ticking: sink.tick != nil)
            if state.withLock({ $0.closed }) { break }
        }
        await drain(ticking: false)
        await sink.close()
        finished.fire()
    }

    /// Stops accepting events; `run` writes what is queued and returns.
    private var wantsResults: Bool { sink.wantsResults }

    public func stop() {
        state.withLock { $0.closed = true }
        sink.willStop()
        wake.fire()
    }

    /// Returns once `run` has written what was queued and closed the sink (one waiter at a time).
    public func waitUntilFinished() async {
        await finished.wait()
    }

    private func drain(ticking: Bool) async {
        var first = true
        while true {
            let batch = state.withLock { state -> [SinkEvent] in
                let count = min(maxBatch, state.buffer.count)
                let batch = Array(state.buffer.prefix(count))
                state.buffer.removeFirst(count)
                return batch
            }
            // On a tick an empty batch is written once, so delayed work falls due (and its failures count).
            if batch.isEmpty && !(ticking && first) { return }
            first = false
            // A failing write (disk full, read-only data folder, locked file) is retried with backoff
            // until it succeeds: the batch is kept, and new events wait in the bounded buffer (beyond
            // its capacity they are counted as dropped). Only at shutdown does a sink give up, after
            // three attempts.
            var attempt = 0
            while true {
                do {
                    try await sink.write(batch)
                    let recovered = state.withLock { state -> Bool in
                        state.written += batch.count
                        defer { state.failing = false }
                        return state.failing
                    }
                    if recovered { logger.notice("sink \(sink.name): writing works again after \(attempt) failed attempts; nothing was lost") }
                    break
                } catch {
                    attempt += 1
                    let closed = state.withLock { state -> Bool in
                        state.failedBatches += 1
                        state.lastError = "\(error)"
                        state.failing = true
                        return state.closed
                    }
                    if attempt == 1 || attempt % 20 == 0 {
                        logger.error("sink \(sink.name): writing \(batch.count) events failed (attempt \(attempt)); keeping them and retrying: \(error)")
                    }
                    if (closed || Task.isCancelled) && attempt >= 3 {
                        logger.error("sink \(sink.name): giving up on \(batch.count) events at shutdown: \(error)")
                        state.withLock { $0.dropped += batch.count }
                        break
                    }
                    try? await Task.sleep(for: .milliseconds(min(5_000, 100 * (1 << min(attempt, 6)))))
                }
            }
        }
    }
}
