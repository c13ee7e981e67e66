import Foundation
import Logging
import StreamPulseCore
import Synchronization

/// One probe result as the sinks see it (UTC time, no credentials).
public struct ResultRecord: Sendable, Equatable {
    public var streamId: String
    public var at: Date
    public var mode: ProbeMode
    public var status: StreamStatus
    public var pending: Bool
    public var reason: Reason
    public var phase: Phase?
    public var message: String
    public var timings: Timings
    public var media: MediaFacts?

    public init(streamId: String, at: Date, mode: ProbeMode, status: StreamStatus, pending: Bool, reason: Reason, phase: Phase?,
                message: String, timings: Timings, media: MediaFacts?) {
        self.streamId = streamId
        self.at = at
        self.mode = mode
        self.status = status
        self.pending = pending
        self.reason = reason
        self.phase = phase
        self.message = message
        self.timings = timings
        self.media = media
    }
}

/// What flows down the sink chain.
public enum SinkEvent: Sendable {
    case result(ResultRecord)
    case change(StateChange)
    /// The config now has these streams (names, masked URLs); ids missing from it are retired.
    case streams([StreamSnapshot], at: Date)
}

/// A destination for results and state changes (SQLite, CSV files, webhooks, MQTT…).
///
/// Contract: `write` is called with batches, one at a time (never concurrently), in the order events were
/// submitted. It may take as long as it needs: the chain buffers for it (bounded) and never blocks the
/// engine or the other sinks. A batch is acknowledged when `write` returns without throwing; a thrown
/// error is logged and the runner keeps the batch and retries it with backoff until it is written (a full
/// disk or a receiver that is down loses nothing while the buffer holds). `close` is called
/// once, after the last `write` has finished (on shutdown or when a reload removes the sink).
public protocol Sink: Sendable {
    var name: String { get }
    func write(_ batch: [SinkEvent]) async throws
    func close() async
}

extension Sink {
    public func close() async {}
}

/// Figures of one sink for the API and metrics.
public struct SinkStats: Sendable, Codable, Equatable {
    public var name: String
    public var queued: Int
    /// Events dropped because the buffer was full.
    public var dropped: Int
    /// Events acknowledged (written).
    public var written: Int
    public var failedBatches: Int
    public var lastError: String?
    /// True while the sink's last write failed (disk full, read-only file, receiver down); it clears on
    /// the next successful write.
    public var failing: Bool = false
}

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
    private let wake: AsyncStream<Void>.Continuation
    private let wakeups: AsyncStream<Void>
    private let logger: Logger

    public init(sink: any Sink, capacity: Int = 100_000, maxBatch: Int = 2_000, logger: Logger) {
        self.sink = sink
        self.capacity = max(1, capacity)
        self.maxBatch = max(1, maxBatch)
        self.logger = logger
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Queues an event; never waits. Returns false (and counts a drop) when the buffer is full.
    @discardableResult
    public func submit(_ event: SinkEvent) -> Bool {
        let accepted = state.withLock { state -> Bool in
            guard !state.closed, state.buffer.count < capacity else {
                state.dropped += 1
                return false
            }
            state.buffer.append(event)
            return true
        }
        if accepted { wake.yield() }
        return accepted
    }

    public var stats: SinkStats {
        state.withLock {
            SinkStats(name: sink.name, queued: $0.buffer.count, dropped: $0.dropped, written: $0.written,
                      failedBatches: $0.failedBatches, lastError: $0.lastError, failing: $0.failing)
        }
    }

    /// Drains the buffer until `stop()`, then writes what is left and closes the sink.
    public func run() async {
        for await _ in wakeups {
            await drain()
            if state.withLock({ $0.closed }) { break }
        }
        await drain()
        await sink.close()
    }

    /// Stops accepting events; `run` writes what is queued and returns.
    public func stop() {
        state.withLock { $0.closed = true }
        wake.yield()
        wake.finish()
    }

    private func drain() async {
        while true {
            let batch = state.withLock { state -> [SinkEvent] in
                let count = min(maxBatch, state.buffer.count)
                let batch = Array(state.buffer.prefix(count))
                state.buffer.removeFirst(count)
                return batch
            }
            if batch.isEmpty { return }
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
                    if closed && attempt >= 3 {
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

/// Fans events out to every sink's runner (the shape of swift-log's MultiplexLogHandler).
public final class SinkChain: Sendable {
    private let runners: Mutex<[SinkRunner]>

    public init(_ runners: [SinkRunner] = []) { self.runners = Mutex(runners) }

    public func add(_ runner: SinkRunner) { runners.withLock { $0.append(runner) } }

    /// The runners in the chain, in order.
    public var members: [SinkRunner] { runners.withLock { $0 } }

    public func remove(_ runner: SinkRunner) { runners.withLock { $0.removeAll { $0 === runner } } }

    public func submit(_ event: SinkEvent) {
        for runner in runners.withLock({ $0 }) { runner.submit(event) }
    }

    public var stats: [SinkStats] { runners.withLock { $0 }.map(\.stats) }
    public var all: [SinkRunner] { runners.withLock { $0 } }
}
