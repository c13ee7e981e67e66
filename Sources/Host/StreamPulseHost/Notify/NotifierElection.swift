import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Which of several dashboards sharing PostgreSQL (`serve --no-probe`) opens incidents and notifies: the one
/// holding a session advisory lock on a connection of its own. The others list the same incidents (they are in
/// PostgreSQL) and take acknowledgements and silences, which the notifier adopts at its next tick. When the
/// notifier dies or loses PostgreSQL its lock goes with its session and another dashboard takes over within
/// `retry`, first reading the open incidents from PostgreSQL (nothing already told is told again).
///
/// Not guaranteed: a notifier cut off from PostgreSQL keeps notifying until its next check of the connection
/// (at most `retry`) while another may already have the lock.
public final class NotifierElection: Sendable {
    let client: PostgresClient
    let logger: Logger
    /// How often a dashboard tries for the lock, and the notifier checks it still has its connection.
    let retry: Duration
    static let lock: Int64 = 1_717_171_720
    private let leading = Atomic<Bool>(false)

    public init(client: PostgresClient, logger: Logger, retry: Duration = .seconds(5)) {
        self.client = client
        self.logger = logger
        self.retry = retry
    }

    /// Whether this dashboard is the notifier now.
    public var isLeading: Bool { leading.load(ordering: .acquiring) }

    /// Tries for the lock until cancelled; holds it as long as its connection lives.
    public func run() async {
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    var got = false
                    for try await value in try await connection.query("SELECT pg_try_advisory_lock(\(Self.lock))", logger: logger).decode(Bool.self) {
                        got = value
                    }
                    guard got else { return }
                    leading.store(true, ordering: .releasing)
                    logger.notice("incidents: this dashboard is the notifier (it opens incidents and sends notifications)")
                    defer {
                        leading.store(false, ordering: .releasing)
                        logger.notice("incidents: this dashboard is no longer the notifier")
                    }
                    while !Task.isCancelled {
                        try? await Task.sleep(for: retry)
                        if Task.isCancelled { break }
                        try await connection.query("SELECT 1", logger: logger)  // the session, and with it the lock, is still there
                    }
                    // Stopping: the connection goes back to the pool, the lock must not stay with it.
                    try await connection.query("SELECT pg_advisory_unlock(\(Self.lock))", logger: logger)
                }
            } catch {
                if !Task.isCancelled { logger.debug("incidents: the notifier election lost its connection: \(String(describing: error).prefix(200))") }
            }
            try? await Task.sleep(for: retry)
        }
    }
}

struct NotifierElectionService: Service {
    let election: NotifierElection
    func run() async throws {
        await cancelWhenGracefulShutdown { await election.run() }
    }
}
