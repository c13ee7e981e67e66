import Foundation
import Logging
import ServiceLifecycle

/// One agent of a site shared through leases in PostgreSQL (`serve --site NAME --postgres URL`, issue #17).
/// Every quarter of a lease period it registers the site's streams from the config, renews and claims its fair
/// share (`StreamLeases.round`), records what it holds in the `LeaseBook` (which fences the PostgreSQL sink)
/// and gives the engine only those streams. When rounds keep failing for a whole lease period — PostgreSQL down
/// or unreachable — it stops probing: by then the leases may have expired and another agent may hold them.
/// On shutdown, after the sinks have written what they hold, it gives its streams back at once.
public actor SiteAgent {
    public let site: String
    public let agent: String
    public let leases: StreamLeases
    public let history: PostgresHistory
    public let book: LeaseBook
    private var config: ConfigService?
    private let logger: Logger
    private var registered: [String]?
    private var migrated = false
    private var lastRenewal: ContinuousClock.Instant?
    private var failures = 0
    /// This agent's run in `agent_runs`.
    private var run: Int64?
    /// Rounds that succeeded (for tests and the log).
    public private(set) var rounds = 0

    public init(site: String, agent: String, leases: StreamLeases, history: PostgresHistory, book: LeaseBook, config: ConfigService?,
                logger: Logger) {
        self.site = site
        self.agent = agent
        self.leases = leases
        self.history = history
        self.book = book
        self.config = config
        self.logger = logger
    }

    /// The config service whose engine this agent feeds (set once, before `run`).
    public func attach(_ config: ConfigService) { self.config = config }
    /// How old another agent's green verdict may be to be taken over with its stream.
    public var handOverAge: Double = 600

    /// Time between rounds: a quarter of the lease period (three renewals may fail before a lease expires).
    private var pause: Duration { leases.period / 4 }

    /// Runs rounds until cancelled.
    public func run() async {
        while !Task.isCancelled {
            let started = ContinuousClock.now
            switch await attempt() {
            case .success:
                if failures > 0 { logger.notice("site \(site): agent \(agent) reaches PostgreSQL again after \(failures) failed rounds") }
                failures = 0
                lastRenewal = started
            case .failure(let error):
                failures += 1
                if failures == 1 || failures % 10 == 0 {
                    logger.error("site \(site) phase=lease: agent \(agent) cannot renew its leases in PostgreSQL (attempt \(failures)): \(String(describing: error).prefix(300)). Results are kept and written when it is back.")
                }
                if let lastRenewal, lastRenewal + leases.period <= .now, !book.current.isEmpty {
                    // The leases have expired on PostgreSQL's side: someone else may probe these streams now.
                    logger.warning("site \(site): agent \(agent) has not renewed its leases for a lease period (\(leases.period)); it stops probing the \(book.current.count) streams it held until PostgreSQL answers again")
                    book.update([])
                    await config?.setLeased([])
                }
            }
            try? await Task.sleep(for: pause)
        }
    }

    /// Why a round did not complete.
    struct Unanswered: Error, CustomStringConvertible {
        var description: String
    }

    /// The round running now (its number and start), if any.
    private var roundInFlight: (number: Int, started: ContinuousClock.Instant)?
    private var roundNumber = 0

    /// One round, given at most half a lease period: a link that drops packets (no reset) would otherwise hold
    /// a query for minutes while the leases expire. A round that outlives its time keeps running (its answer is
    /// still PostgreSQL's truth when it comes) and no new one starts meanwhile — for up to a lease period: a
    /// query on a connection lost during a PostgreSQL restart was seen never to end, so a round older than that
    /// is abandoned (whatever it answers later is ignored) and a new one starts.
    private func attempt() async -> Result<Void, any Error> {
        if let running = roundInFlight {
            guard running.started + leases.period <= .now else {
                return .failure(Unanswered(description: "the previous round is still waiting for PostgreSQL"))
            }
            logger.warning("site \(site) phase=lease: agent \(agent) abandons a lease round unanswered for a lease period (a connection lost mid-query); starting a new one")
        }
        roundNumber += 1
        let number = roundNumber
        roundInFlight = (number, .now)
        do {
            // The round is over when it ends, not when its time is up.
            try await withDeadline(leases.period / 2, "a lease round") {
                do { try await self.round(number) } catch {
                    await self.roundEnded(number)
                    throw error
                }
                await self.roundEnded(number)
            }
            return .success(())
        } catch {
            return .failure(error)
        }
    }

    private func roundEnded(_ number: Int) { if roundInFlight?.number == number { roundInFlight = nil } }

    private func round(_ number: Int) async throws {
        if !migrated {
            try await leases.migrate()
            try await history.migrate()
            migrated = true
        }
        let streams = await config?.siteStreamIDs ?? []
        if streams != registered {
            try await leases.register(site: site, streams: streams)
            registered = streams
        }
        let before = book.current
        let held = try await leases.round(site: site, agent: agent, holding: before)
        // An abandoned round's late answer changes nothing: a newer round has spoken since.
        guard roundInFlight?.number == number else { throw Unanswered(description: "an abandoned round answered late") }
        book.update(held)
        // Streams taken over from another agent start from its green verdict (no "not checked" wobble, and a
        // quick first check instead of a deep one: a takeover of thousands is not a round of deep probes).
        let gained = Set(held.map(\.streamID)).subtracting(before.map(\.streamID))
        let handed = gained.isEmpty ? [:] : ((try? await history.greenStates(of: Array(gained), notBy: agent, maxAge: handOverAge)) ?? [:])
        // Streams taken on are first checked within one pause: the history of a stream taken over from a
        // stopped agent has a gap of at most a lease period, two pauses and one interval. Streams nobody has
        // checked yet (a new site, new streams) have no history to keep: they are spread like a first round, so
        // thousands of them do not hit the cameras within seconds (measured: every RTSP stream of a 3 × 3,000
        // bench failed with handshake timeouts when all were due within 3.75 s).
        let unchecked = gained.isEmpty ? [] : ((try? await history.unchecked(Array(gained))) ?? [])
        await config?.setLeased(Set(held.map(\.streamID)), firstWithin: pause, handOver: handed, unchecked: unchecked)
        if !handed.isEmpty { logger.info("site \(site): agent \(agent) took over \(handed.count) green streams with their state (\(gained.count) gained)") }
        // When this agent ran, for uptime figures read from PostgreSQL (time no agent of the site ran is unknown).
        if let run { try? await history.markAlive(run: run, at: Date()) } else { run = try? await history.startRun(agent: agent, site: site, at: Date()) }
        rounds += 1
        if held.count != before.count {
            logger.info("site \(site): agent \(agent) now probes \(held.count) of the site's \(streams.count) streams")
        }
    }

    /// Gives every held stream back (the others take them on their next round), after the sinks are done.
    public func releaseAll() async {
        let held = book.current
        guard !held.isEmpty else { return }
        book.update([])
        do {
            // Not waited for beyond half a lease period: with PostgreSQL gone the leases simply expire.
            let (leases, agent) = (self.leases, self.agent)
            try await withDeadline(leases.period / 2, "the release of \(held.count) leases") {
                try await leases.release(agent: agent, Array(held))
            }
            logger.notice("site \(site): agent \(agent) gave back its \(held.count) streams")
        } catch {
            logger.warning("site \(site): agent \(agent) could not give back its streams (they expire within \(leases.period)): \(error)")
        }
    }
}

/// Runs a site agent's lease rounds; on graceful shutdown (after the engine and the sinks, which come later
/// in the service list) gives the streams back.
struct SiteAgentService: Service {
    let agent: SiteAgent
    func run() async throws {
        await cancelWhenGracefulShutdown { await agent.run() }
        await agent.releaseAll()
    }
}
