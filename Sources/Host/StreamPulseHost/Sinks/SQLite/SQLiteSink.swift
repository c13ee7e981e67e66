import Foundation
import Logging
import Synchronization

/// The embedded default sink: every result and state change into SQLite, one transaction per batch,
/// with retention pruning in small batches between writes.
public final class SQLiteSink: Sink {
    public let name = "sqlite"
    public let store: SQLiteStore
    private let settings: LiveSettings
    private let lastPrune = LastPrune()
    private let logger: Logger

    /// Retention (`settings.retention`) is read from `settings` at every prune, so a reload applies it.
    public init(store: SQLiteStore, settings: LiveSettings, logger: Logger) {
        self.store = store
        self.settings = settings
        self.logger = logger
    }

    /// The retention in force: raw days, rollup days.
    public var retention: (raw: Int, rollup: Int) {
        let current = settings.current
        return (current.retentionRawDays, current.retentionRollupDays)
    }

    /// Marks the monitor alive in `monitor_runs` (time outside every run counts as unknown in uptime).
    public var tick: Duration? { .seconds(10) }
    private let run = Mutex<(id: Int64, marked: Date)?>(nil)

    public func write(_ batch: [SinkEvent]) async throws {
        let now = Date()
        if let current = run.withLock({ $0 }) {
            if now.timeIntervalSince(current.marked) >= 10 {
                try await store.markAlive(run: current.id, at: now)
                run.withLock { $0 = (current.id, now) }
            }
        } else {
            let id = try await store.startRun(at: now)
            run.withLock { $0 = (id, now) }
        }
        try await store.write(batch)
        if lastPrune.due(every: 3600) {
            let retention = self.retention
            let deleted = try await store.prune(rawDays: retention.raw, rollupDays: retention.rollup)
            if deleted > 0 { logger.info("sqlite: pruned \(deleted) rows past retention") }
        }
    }

    final class LastPrune: @unchecked Sendable {
        private let lock = NSLock()
        private var last = Date.distantPast
        func due(every seconds: Double) -> Bool {
            lock.withLock {
                guard Date().timeIntervalSince(last) >= seconds else { return false }
                last = Date()
                return true
            }
        }
    }
}
