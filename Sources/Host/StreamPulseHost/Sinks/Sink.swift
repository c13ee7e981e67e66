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
    /// A stream's picture baseline (profile, reference view) was learned or changed: storage keeps it.
    case baseline(BaselineRecord)
}

/// A destination for results and state changes (SQLite, CSV files, webhooks, MQTT…).
///
/// Contract: `write` is called with batches, one at a time (never concurrently), in the order events were
/// submitted. It may take as long as it needs: the chain buffers for it (bounded) and never blocks the
/// engine or the other sinks. A batch is acknowledged when `write` returns without throwing; a thrown
/// error is logged and the runner keeps the batch and retries it with backoff until it is written (a full
/// disk or a receiver that is down loses nothing while the buffer holds). `close` is called
/// once, after the last `write` has finished (on shutdown or when a reload removes the sink).
///
/// A sink whose work falls due later (a webhook's alert that must first hold `min_duration`) sets
/// `tick`: the runner then also calls `write` with an empty batch that often, so failures of delayed
/// work are thrown — and kept and retried — like any other.
///
/// A new kind of sink is a folder under `Sinks/` with the sink, its options (`SinkOptions`) and its
/// `SinkType`, plus one line in `SinkRegistry.types` (see docs/architecture.md).
public protocol Sink: Sendable {
    /// The sink's name from the config (its `name:` key, or its type).
    var name: String { get }
    /// Writes a batch (possibly empty, on a tick); throws when it could not be written.
    func write(_ batch: [SinkEvent]) async throws
    /// Called once, after the last `write`.
    func close() async
    /// How often `write` is called with no new events; nil (the default): only when events arrive.
    var tick: Duration? { get }
    /// Called (synchronously, from any thread) when the sink is asked to stop, before its last `write`:
    /// a sink that waits between retries of its own stops waiting, so a shutdown is not held up.
    func willStop()
    /// Whether `.result` events reach `write` (default true); a sink that reads only state changes and
    /// stream lists says false, and the runner never buffers results for it.
    var wantsResults: Bool { get }
}

extension Sink {
    public func close() async {}
    public func willStop() {}
    public var wantsResults: Bool { true }
    public var tick: Duration? { nil }
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
