import Foundation
import Logging
import PostgresNIO

/// One agent's hold on one stream: while it holds, only this agent probes the stream and writes its results.
/// `generation` grows at every takeover, so a cut-off agent that returns with an older generation is refused
/// (fencing): its lease is no longer the current one.
public struct StreamLease: Sendable, Hashable, CustomStringConvertible {
    public var streamID: String
    public var generation: Int64

    public init(streamID: String, generation: Int64) {
        self.streamID = streamID
        self.generation = generation
    }

    public var description: String { "\(streamID)#\(generation)" }
}

/// The leases by which several agents of one site share its streams, in PostgreSQL (issue #17): a row per
/// stream with its owner, generation and expiry, taken with `FOR UPDATE SKIP LOCKED` (two agents claiming at
/// once never take the same row) and renewed with the checks. An agent that stops renewing — dead, or cut off
/// from PostgreSQL — loses its streams when their leases expire, and the others take them on their next claim.
///
/// Each agent aims at a fair share (the site's streams divided by its agents seen alive within one lease
/// period): it claims up to its share and releases what it holds beyond it, so a new agent gets work without
/// waiting for anyone to die.
///
/// Time is PostgreSQL's `now()`: the agents' own clocks play no part in who holds what.
public struct StreamLeases: Sendable {
    public let client: PostgresClient
    public let logger: Logger
    /// How long a claim or renewal holds without the next renewal.
    public var period: Duration

    public init(client: PostgresClient, period: Duration = .seconds(30), logger: Logger) {
        self.client = client
        self.period = period
        self.logger = logger
    }

    private var periodSeconds: Double { Double(period.components.seconds) + Double(period.components.attoseconds) / 1e18 }

    /// Creates the tables if they are missing (idempotent; every agent runs it at start).
    public func migrate() async throws {
        try await client.query("""
            CREATE TABLE IF NOT EXISTS stream_leases (
                stream_id TEXT PRIMARY KEY,
                site TEXT NOT NULL,
                owner TEXT,
                generation BIGINT NOT NULL DEFAULT 0,
                expires_at TIMESTAMPTZ NOT NULL DEFAULT 'epoch')
            """, logger: logger)
        try await client.query("CREATE INDEX IF NOT EXISTS stream_leases_site ON stream_leases (site, expires_at)", logger: logger)
        try await client.query("""
            CREATE TABLE IF NOT EXISTS site_agents (
                agent TEXT PRIMARY KEY,
                site TEXT NOT NULL,
                seen_at TIMESTAMPTZ NOT NULL)
            """, logger: logger)
    }

    /// Makes the site's lease rows match its streams in the config: new streams get a free row, streams no
    /// longer in the site lose theirs.
    public func register(site: String, streams: [String]) async throws {
        try await client.query("""
            INSERT INTO stream_leases (stream_id, site) SELECT unnest(\(streams)::text[]), \(site)
            ON CONFLICT (stream_id) DO UPDATE SET site = EXCLUDED.site
            """, logger: logger)
        try await client.query("DELETE FROM stream_leases WHERE site = \(site) AND NOT (stream_id = ANY(\(streams)::text[]))", logger: logger)
    }

    /// One round of an agent's work: says it is alive, renews what it holds (answering which leases are
    /// still its own), releases what exceeds its fair share, and claims free or expired streams up to it.
    /// Returns the leases the agent holds now; a stream missing from them must not be probed or written.
    public func round(site: String, agent: String, holding: Set<StreamLease>) async throws -> Set<StreamLease> {
        let seconds = periodSeconds
        try await client.query("""
            INSERT INTO site_agents (agent, site, seen_at) VALUES (\(agent), \(site), now())
            ON CONFLICT (agent) DO UPDATE SET site = EXCLUDED.site, seen_at = now()
            """, logger: logger)
        var held = try await renew(agent: agent, holding)
        let share = try await fairShare(site: site, seconds: seconds)
        if held.count > share {
            let extra = Array(held.sorted { $0.streamID < $1.streamID }.suffix(held.count - share))
            try await release(agent: agent, extra)
            held.subtract(extra)
        } else if held.count < share {
            held.formUnion(try await claim(site: site, agent: agent, count: share - held.count))
        }
        return held
    }

    /// Streams per live agent of the site, rounded up.
    private func fairShare(site: String, seconds: Double) async throws -> Int {
        let rows = try await client.query("""
            SELECT (SELECT count(*) FROM stream_leases WHERE site = \(site)),
                   (SELECT count(*) FROM site_agents WHERE site = \(site) AND seen_at > now() - make_interval(secs => \(seconds)))
            """, logger: logger)
        for try await (streams, agents) in rows.decode((Int, Int).self) {
            return agents == 0 ? streams : (streams + agents - 1) / agents
        }
        return 0
    }

    /// Takes up to `count` free or expired streams of the site. Rows another agent is claiming at this
    /// moment are skipped, not waited for. A claim by another agent than the last owner increments the
    /// generation; an agent taking back its own expired lease keeps it (nobody wrote for the stream since).
    public func claim(site: String, agent: String, count: Int) async throws -> Set<StreamLease> {
        guard count > 0 else { return [] }
        let rows = try await client.query("""
            WITH free AS (
                SELECT stream_id FROM stream_leases
                WHERE site = \(site) AND (owner IS NULL OR expires_at < now())
                ORDER BY owner IS NOT DISTINCT FROM \(agent) DESC, stream_id LIMIT \(count)
                FOR UPDATE SKIP LOCKED)
            UPDATE stream_leases l
            SET owner = \(agent), expires_at = now() + make_interval(secs => \(periodSeconds)),
                -- Taking back one's own expired lease (nobody held the stream since) keeps its generation, so
                -- results buffered while cut off from PostgreSQL are still written; any other claim is a takeover.
                generation = CASE WHEN l.owner IS NOT DISTINCT FROM \(agent) THEN l.generation ELSE l.generation + 1 END
            FROM free WHERE l.stream_id = free.stream_id
            RETURNING l.stream_id, l.generation
            """, logger: logger)
        var leases = Set<StreamLease>()
        for try await (id, generation) in rows.decode((String, Int64).self) { leases.insert(StreamLease(streamID: id, generation: generation)) }
        return leases
    }

    /// Extends the leases that are still this agent's (same owner, same generation, not expired) by one
    /// period; returns those. A lease that expired meanwhile is not revived, even when nobody took it yet.
    public func renew(agent: String, _ leases: Set<StreamLease>) async throws -> Set<StreamLease> {
        guard !leases.isEmpty else { return [] }
        let ids = leases.map(\.streamID), generations = leases.map(\.generation)
        let rows = try await client.query("""
            UPDATE stream_leases l SET expires_at = now() + make_interval(secs => \(periodSeconds))
            FROM unnest(\(ids)::text[], \(generations)::bigint[]) AS h(stream_id, generation)
            WHERE l.stream_id = h.stream_id AND l.generation = h.generation AND l.owner = \(agent) AND l.expires_at >= now()
            RETURNING l.stream_id, l.generation
            """, logger: logger)
        var kept = Set<StreamLease>()
        for try await (id, generation) in rows.decode((String, Int64).self) { kept.insert(StreamLease(streamID: id, generation: generation)) }
        return kept
    }

    /// Gives streams back at once (an agent stopping, or holding more than its share).
    public func release(agent: String, _ leases: [StreamLease]) async throws {
        guard !leases.isEmpty else { return }
        let ids = leases.map(\.streamID), generations = leases.map(\.generation)
        try await client.query("""
            UPDATE stream_leases l SET owner = NULL, expires_at = 'epoch'
            FROM unnest(\(ids)::text[], \(generations)::bigint[]) AS h(stream_id, generation)
            WHERE l.stream_id = h.stream_id AND l.generation = h.generation AND l.owner = \(agent)
            """, logger: logger)
    }

    /// Runs `write` in one transaction with those of `leases` that are still current (owner and generation
    /// unchanged), their rows locked `FOR SHARE` until it commits; `write` must write only for the stream ids
    /// it is given. A batch of many streams' results costs one check, not one per stream.
    public func fenced<Result: Sendable>(_ leases: Set<StreamLease>, agent: String,
                                         _ write: @Sendable (PostgresConnection, Set<String>) async throws -> Result) async throws -> Result {
        let logger = self.logger
        let ids = leases.map(\.streamID), generations = leases.map(\.generation)
        return try await client.withTransaction(logger: logger) { connection in
            var current = Set<String>()
            if !ids.isEmpty {
                let rows = try await connection.query("""
                    SELECT l.stream_id FROM stream_leases l
                    JOIN unnest(\(ids)::text[], \(generations)::bigint[]) AS h(stream_id, generation)
                      ON l.stream_id = h.stream_id AND l.generation = h.generation
                    WHERE l.owner = \(agent)
                    FOR SHARE OF l
                    """, logger: logger)
                for try await id in rows.decode(String.self) { current.insert(id) }
            }
            return try await write(connection, current)
        }
    }

    /// Why a fenced write was refused.
    public struct Fenced: Error, CustomStringConvertible {
        public var lease: StreamLease
        public var description: String {
            "stream \(lease.streamID): the lease of generation \(lease.generation) is no longer this agent's (taken over or expired); the write was refused"
        }
    }

    /// Runs `write` in a transaction only while `lease` is the stream's current one (same owner, same
    /// generation: nobody took the stream over since): the lease row is locked (`FOR SHARE`) for the
    /// transaction, so no takeover can slip between the check and the write. A returning, cut-off agent whose
    /// streams were taken over gets `Fenced` and writes nothing. A lease that expired but was not taken by
    /// anyone still admits its holder's writes: they are results nobody else produced.
    public func fenced<Result: Sendable>(_ lease: StreamLease, agent: String,
                                         _ write: @Sendable (PostgresConnection) async throws -> Result) async throws -> Result {
        let logger = self.logger
        do {
            return try await transaction(lease, agent: agent, logger: logger, write)
        } catch let error as PostgresTransactionError {
            // The refusal is the caller's answer, not a database failure.
            if let fenced = error.closureError as? Fenced { throw fenced }
            throw error
        }
    }

    private func transaction<Result: Sendable>(_ lease: StreamLease, agent: String, logger: Logger,
                                               _ write: @Sendable (PostgresConnection) async throws -> Result) async throws -> Result {
        try await client.withTransaction(logger: logger) { connection in
            let rows = try await connection.query("""
                SELECT 1 FROM stream_leases
                WHERE stream_id = \(lease.streamID) AND generation = \(lease.generation) AND owner = \(agent)
                FOR SHARE
                """, logger: logger)
            var current = false
            for try await _ in rows { current = true }
            guard current else { throw Fenced(lease: lease) }
            return try await write(connection)
        }
    }
}
