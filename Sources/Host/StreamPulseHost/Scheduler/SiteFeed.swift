import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// The source of a dashboard over PostgreSQL (`serve --no-probe --postgres URL`, issue #17): instead of
/// probing, it reads what the site agents wrote and hands it to the engine as if it had probed it itself
/// (`Engine.mirror`), so statuses, live updates, incidents, uptime and history work as in a probing monitor.
///
/// - At the start each stream takes its latest state from `stream_status`; from then on every result written
///   after the newest one seen is read in id order (agents insert results one batch at a time, so ids commit
///   in order and none is skipped).
/// - Agents `NOTIFY` once per written batch; this feed `LISTEN`s on a connection of its own and reads at once,
///   and every `fallback` anyway (a notification sent while that connection was reconnecting is not lost).
/// - A site none of whose agents has reported for a lease period (`site_agents`) is *unreachable*: its
///   streams turn grey with `site_unreachable` (not red), and the incident service opens one incident for
///   the site. The next results of its agents bring their verdicts back.
public actor SiteFeed {
    public let history: PostgresHistory
    let leases: StreamLeases
    private var engineRef: Engine?
    let logger: Logger
    /// Wakes the reader: a notification arrived (or the listener reconnected).
    let wake = Signal()
    /// How often the feed reads without a notification.
    public var fallback: Duration = .seconds(30)
    private var cursor: Int64?
    private var prepared = false
    private var failures = 0
    /// Sites shown unreachable now.
    public private(set) var unreachable: Set<String> = []
    /// Reads that succeeded (for tests and the log).
    public private(set) var rounds = 0

    public init(history: PostgresHistory, leases: StreamLeases, engine: Engine?, logger: Logger) {
        self.history = history
        self.leases = leases
        self.engineRef = engine
        self.logger = logger
    }

    /// The engine this feed fills (set once, before `run`).
    public func attach(_ engine: Engine) { engineRef = engine }
    private var engine: Engine {
        guard let engineRef else { preconditionFailure("SiteFeed.attach(_:) was not called before run()") }
        return engineRef
    }

    /// Reads until cancelled.
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.listen() }
            while !Task.isCancelled {
                do {
                    try await withDeadline(leases.period * 2, "the dashboard's read") { try await self.read() }
                    if failures > 0 { logger.notice("dashboard: PostgreSQL answers again after \(failures) failed reads") }
                    failures = 0
                    rounds += 1
                } catch {
                    failures += 1
                    if failures == 1 || failures % 10 == 0 {
                        logger.error("dashboard phase=read: cannot read the agents' results from PostgreSQL (attempt \(failures)): \(String(describing: error).prefix(300)); the statuses shown are as of the last read")
                    }
                }
                await wake.wait(timeout: fallback)
            }
            group.cancelAll()
        }
    }

    /// One read: new results, then which sites still report.
    func read() async throws {
        if !prepared {
            try await history.migrate()
            try await leases.migrate()
            prepared = true
        }
        if cursor == nil {
            let last = try await history.lastResultID()
            await engine.seed(try await history.latestStates())
            cursor = last
        }
        while let from = cursor {
            let batch = try await history.results(after: from, limit: 5_000)
            guard let last = batch.last else { break }
            await engine.mirror(batch.map(\.record))
            cursor = last.id
            if batch.count < 5_000 { break }
        }
        try await judgeSites()
    }

    /// Marks the sites whose agents all stopped reporting for a lease period.
    private func judgeSites() async throws {
        let seen = try await history.sitesLastSeen()
        let limit = leases.period.seconds
        for site in await engine.currentConfig.sites {
            let age = seen[site]
            let silent = age.map { $0 > limit } ?? true
            if silent, !unreachable.contains(site) {
                unreachable.insert(site)
                let message = age.map {
                    "No agent of site \(site) has reported for \(Int($0.rounded())) s (lease \(Int(limit)) s): the site's link or its agents are down; its cameras' state is not known."
                } ?? "No agent of site \(site) has reported yet; its cameras' state is not known."
                logger.warning("site \(site) phase=agents: \(message)")
                await engine.siteUnreachable(site, message: message)
            } else if !silent, unreachable.contains(site) {
                unreachable.remove(site)
                logger.notice("site \(site): its agents report again; its streams take their verdicts with the next results")
            }
        }
    }

    /// Listens for the agents' notifications on a connection of its own, reconnecting after a loss.
    private func listen() async {
        var losses = 0
        while !Task.isCancelled {
            do {
                try await history.client.withConnection { connection in
                    try await connection.listen(on: PostgresHistory.channel) { notifications in
                        self.wake.fire()  // anything written while this connection was away is read now
                        for try await _ in notifications { self.wake.fire() }
                    }
                }
            } catch {
                losses += 1
                if !Task.isCancelled, losses == 1 || losses % 10 == 0 {
                    logger.warning("dashboard phase=listen: lost the notification connection to PostgreSQL (\(String(describing: error).prefix(200))); reading every \(fallback) until it is back")
                }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}

/// Runs a dashboard's `SiteFeed` until shutdown.
struct SiteFeedService: Service {
    let feed: SiteFeed
    func run() async throws {
        await cancelWhenGracefulShutdown { await feed.run() }
    }
}
