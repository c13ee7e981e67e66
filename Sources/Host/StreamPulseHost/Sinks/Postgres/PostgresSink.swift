import Foundation
import Logging

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

    public init(history: PostgresHistory, leases: StreamLeases, book: LeaseBook, site: String?, agent: String, logger: Logger) {
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
    }
}
