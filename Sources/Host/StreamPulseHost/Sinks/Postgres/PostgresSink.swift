import Foundation
import Logging
import Synchronization

/// An agent's results and state changes into PostgreSQL (issue #17), fenced by its leases: an event is
/// written only while the lease it was probed under is still this agent's. While PostgreSQL is down the
/// runner keeps the batch and retries (the buffer holds); refused events are logged per stream and dropped,
/// because another agent's results for that time are the stream's history.
public final class PostgresSink: Sink {
    public let name = "postgres"
    public let history: PostgresHistory
    public let leases: StreamLeases
    public let book: LeaseBook
    public let site: String?
    public let agent: String
    private let logger: Logger
    /// `settings.retention`, read at every prune (a reload applies it); nil: no pruning.
    private let settings: LiveSettings?
    private let lastPrune = Mutex(Date.distantPast)

    public init(history: PostgresHistory, leases: StreamLeases, book: LeaseBook, site: String?, agent: String, logger: Logger,
                settings: LiveSettings? = nil) {
        self.settings = settings
        self.history = history
        self.leases = leases
        self.book = book
        self.site = site
        self.agent = agent
        self.logger = logger
    }

    public func write(_ batch: [SinkEvent]) async throws {
        guard !batch.isEmpty else { return }
        // A write left unanswered (a connection lost mid-transaction) is given up and retried by the runner;
        // should the first one still commit, the retry's rows are skipped (the history's writes are idempotent).
        let (history, site, agent, book, leases) = (self.history, self.site, self.agent, self.book, self.leases)
        let outcome = try await withDeadline(max(.seconds(10), leases.period * 2), "a write of \(batch.count) events") {
            try await history.write(batch, site: site, agent: agent, book: book, leases: leases)
        }
        for (stream, count) in outcome.refused.sorted(by: { $0.key < $1.key }).prefix(20) {
            logger.warning("stream=\(stream) phase=store: \(count) result(s) not written to PostgreSQL: the stream was taken over by another agent after they were probed (fencing)")
        }
        if outcome.refused.count > 20 {
            logger.warning("postgres: results of \(outcome.refused.count - 20) more streams refused by fencing")
        }
        if outcome.unleased > 0 {
            logger.debug("postgres: \(outcome.unleased) events of streams probed without a lease were not written")
        }
        // Retention, hourly: one agent at a time prunes the shared history (the others find it locked and skip).
        let now = Date()
        if let current = settings?.current, lastPrune.withLock({ last in defer { if now.timeIntervalSince(last) >= 3600 { last = now } }; return now.timeIntervalSince(last) >= 3600 }) {
            let deleted = try await history.prune(rawDays: current.retentionRawDays, rollupDays: current.retentionRollupDays, now: now)
            if deleted > 0 { logger.info("postgres: pruned \(deleted) rows past retention") }
        }
    }
}
