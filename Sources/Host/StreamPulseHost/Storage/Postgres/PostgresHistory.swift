import Foundation
import Logging
import StreamPulseCore
import PostgresNIO

/// Check history in PostgreSQL, written by the agents of every site (issue #17): the same tables as the
/// embedded SQLite history (`SQLiteSchema`: streams, results, state changes, hourly and daily rollups, times in
/// Unix seconds) plus which agent wrote each result under which lease generation, and each stream's latest state (`stream_status`, for
/// dashboards that read PostgreSQL). Every write is fenced by the agent's leases (`StreamLeases.fenced`).
public struct PostgresHistory: Sendable {
    public let client: PostgresClient
    public let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Schema versions, oldest first; each runs once, in a transaction, recorded in `schema_migrations`.
    /// Never edit a shipped one: add a new one at the end. `history-as-sqlite-v9` is SQLite's history tables
    /// as they stand after its migration v9.
    static let migrations: [(name: String, sql: [String])] = [
        ("history-as-sqlite-v9", [
            """
            CREATE TABLE streams (id TEXT PRIMARY KEY, name TEXT NOT NULL, url TEXT NOT NULL, protocol TEXT, grp TEXT,
              tags TEXT NOT NULL DEFAULT '', site TEXT, first_seen DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL,
              retired_at DOUBLE PRECISION)
            """,
            """
            CREATE TABLE results (id BIGSERIAL PRIMARY KEY, stream_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, mode TEXT NOT NULL,
              status TEXT NOT NULL, pending BOOLEAN NOT NULL DEFAULT false, reason TEXT NOT NULL, phase TEXT, message TEXT NOT NULL,
              connect_ms DOUBLE PRECISION, first_byte_ms DOUBLE PRECISION, first_frame_ms DOUBLE PRECISION, total_ms DOUBLE PRECISION,
              codec TEXT, width INTEGER, height INTEGER, fps DOUBLE PRECISION, bitrate_bps DOUBLE PRECISION, agent TEXT, generation BIGINT)
            """,
            // Unique per stream, time and agent: a write retried after an unanswered commit inserts nothing twice.
            "CREATE UNIQUE INDEX results_stream_at ON results (stream_id, at, agent)",
            "CREATE INDEX results_at ON results (at)",
            """
            CREATE TABLE state_changes (id BIGSERIAL PRIMARY KEY, stream_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
              from_status TEXT NOT NULL, to_status TEXT NOT NULL, pending BOOLEAN NOT NULL DEFAULT false, reason TEXT NOT NULL,
              phase TEXT, message TEXT NOT NULL, thumbnail BYTEA, last_picture BYTEA, agent TEXT, generation BIGINT)
            """,
            "CREATE UNIQUE INDEX state_changes_stream_at ON state_changes (stream_id, at, agent)",
            """
            CREATE TABLE rollups_hourly (stream_id TEXT NOT NULL, period BIGINT NOT NULL, checks BIGINT NOT NULL, ok BIGINT NOT NULL,
              PRIMARY KEY (stream_id, period))
            """,
            """
            CREATE TABLE rollups_daily (stream_id TEXT NOT NULL, period BIGINT NOT NULL, checks BIGINT NOT NULL, ok BIGINT NOT NULL,
              PRIMARY KEY (stream_id, period))
            """,
        ]),
        ("agents-stream-status", [
            """
            CREATE TABLE stream_status (stream_id TEXT PRIMARY KEY, site TEXT, agent TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
              status TEXT NOT NULL, pending BOOLEAN NOT NULL, reason TEXT NOT NULL, phase TEXT, message TEXT NOT NULL)
            """,
        ]),
        // Since when the status holds, across agents: an agent taking a stream over starts from it.
        ("stream-status-since", ["ALTER TABLE stream_status ADD COLUMN since DOUBLE PRECISION"]),
        // Dashboard accounts as SQLite keeps them after its v4 (`PostgresAccounts`): shared by every dashboard.
        ("accounts-as-sqlite-v4", [
            """
            CREATE TABLE users (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL, password_hash TEXT NOT NULL,
              must_change BOOLEAN NOT NULL DEFAULT false, created_at DOUBLE PRECISION NOT NULL)
            """,
            """
            CREATE TABLE sessions (id_digest TEXT PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
              csrf TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL)
            """,
            """
            CREATE TABLE api_tokens (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, digest TEXT NOT NULL UNIQUE,
              created_at DOUBLE PRECISION NOT NULL, last_used DOUBLE PRECISION, created_by BIGINT)
            """,
            "CREATE TABLE settings_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ]),
        // Incidents and silences as SQLite keeps them after its v7 (`PostgresIncidents`): shared by the dashboards.
        ("incidents-as-sqlite-v7", [
            """
            CREATE TABLE incidents (id BIGINT PRIMARY KEY, scope TEXT NOT NULL, key TEXT NOT NULL, started DOUBLE PRECISION NOT NULL,
              resolved DOUBLE PRECISION, record TEXT NOT NULL, evidence BYTEA, evidence_at DOUBLE PRECISION)
            """,
            "CREATE INDEX incidents_started ON incidents (started)",
            "CREATE INDEX incidents_open ON incidents (resolved)",
            """
            CREATE TABLE incident_streams (incident_id BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE, stream_id TEXT NOT NULL,
              PRIMARY KEY (incident_id, stream_id))
            """,
            "CREATE INDEX incident_streams_stream ON incident_streams (stream_id)",
            "CREATE TABLE silences (id BIGINT PRIMARY KEY, until DOUBLE PRECISION NOT NULL, record TEXT NOT NULL)",
        ]),
        // When each agent ran (SQLite's monitor_runs, per agent): time no agent of a site ran is unknown, not up.
        ("agent-runs", [
            """
            CREATE TABLE agent_runs (id BIGSERIAL PRIMARY KEY, agent TEXT NOT NULL, site TEXT NOT NULL, started DOUBLE PRECISION NOT NULL,
              last_seen DOUBLE PRECISION NOT NULL)
            """,
            "CREATE INDEX agent_runs_seen ON agent_runs (last_seen)",
        ]),
    ]

    /// Runs the migrations not yet recorded. Agents starting together take turns (an advisory lock).
    public func migrate() async throws {
        try await client.query("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                               logger: logger)
        let logger = self.logger
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(1717171717)", logger: logger)
            var applied = Set<String>()
            for try await name in try await connection.query("SELECT name FROM schema_migrations", logger: logger).decode(String.self) {
                applied.insert(name)
            }
            for migration in Self.migrations where !applied.contains(migration.name) {
                for statement in migration.sql { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                try await connection.query("INSERT INTO schema_migrations (name) VALUES (\(migration.name))", logger: logger)
                logger.info("postgres: schema migration \(migration.name) applied")
            }
        }
    }

    /// What a fenced write did.
    public struct Written: Sendable, Equatable {
        /// Events written.
        public var written = 0
        /// Events refused: probed under a lease that is no longer this agent's (another agent took the stream).
        public var refused: [String: Int] = [:]
        /// Events of streams this agent held no lease for when they were probed.
        public var unleased = 0
    }

    /// Writes a batch in one transaction, only for the streams whose lease (the one held when each event was
    /// probed, from `book`) is still this agent's; returns what was written and what refused.
    public func write(_ batch: [SinkEvent], site: String?, agent: String, book: LeaseBook, leases: StreamLeases) async throws -> Written {
        var outcome = Written()
        var fencedEvents: [(StreamLease, SinkEvent)] = []
        var streams: [StreamSnapshot] = []
        for event in batch {
            switch event {
            case .result(let r):
                if let lease = book.lease(of: r.streamId, at: r.at) { fencedEvents.append((lease, event)) } else { outcome.unleased += 1 }
            case .change(let c):
                if let lease = book.lease(of: c.streamId, at: c.at) { fencedEvents.append((lease, event)) } else { outcome.unleased += 1 }
            case .streams(let list, _):
                streams = list
            case .baseline:
                break  // picture baselines stay in the agent's own SQLite (not shared between agents yet)
            }
        }
        if !streams.isEmpty { try await upsert(streams) }
        guard !fencedEvents.isEmpty else { return outcome }
        let leaseSet = Set(fencedEvents.map(\.0))
        let logger = self.logger
        let events = fencedEvents
        let (written, refused) = try await leases.fenced(leaseSet, agent: agent) { connection, current -> (Int, [String: Int]) in
            var results: [(ResultRecord, Int64)] = [], changes: [(StateChange, Int64)] = []
            var refused: [String: Int] = [:]
            for (lease, event) in events {
                guard current.contains(lease.streamID) else {
                    refused[lease.streamID, default: 0] += 1
                    continue
                }
                switch event {
                case .result(let r): results.append((r, lease.generation))
                case .change(let c): changes.append((c, lease.generation))
                default: break
                }
            }
            try await Self.insert(results, site: site, agent: agent, on: connection, logger: logger)
            for (c, generation) in changes {
                try await connection.query("""
                    INSERT INTO state_changes (stream_id, at, from_status, to_status, pending, reason, phase, message, thumbnail, last_picture, agent, generation)
                    VALUES (\(c.streamId), \(c.at.timeIntervalSince1970), \(c.from.status.rawValue), \(c.to.status.rawValue), \(c.to.pending),
                            \(c.to.reason.rawValue), \(c.to.phase?.rawValue), \(c.to.message), \(c.thumbnailJpeg), \(c.lastPictureJpeg), \(agent), \(generation))
                    ON CONFLICT (stream_id, at, agent) DO NOTHING
                    """, logger: logger)
            }
            return (results.count + changes.count, refused)
        }
        outcome.written = written
        outcome.refused = refused
        return outcome
    }

    /// Results, their rollups and each stream's latest state: three statements for the whole batch.
    private static func insert(_ leased: [(ResultRecord, Int64)], site: String?, agent: String, on connection: PostgresConnection,
                               logger: Logger) async throws {
        guard !leased.isEmpty else { return }
        // Results are inserted one batch at a time across all agents, so their ids commit in order and a
        // dashboard reading "ids after the last one I saw" misses none (`results(after:)`); the lock is held
        // only to this transaction's commit. The notification reaches listening dashboards at the commit.
        try await connection.query("SELECT pg_advisory_xact_lock(\(Self.resultsLock))", logger: logger)
        try await connection.query("SELECT pg_notify(\(Self.channel), '')", logger: logger)
        let results = leased.map(\.0), generations = leased.map(\.1)
        // Nullable columns travel as text ('' for NULL): postgres-nio's arrays have no optional elements.
        func text(_ value: Double?) -> String { value.map { String($0) } ?? "" }
        func text(_ value: Int?) -> String { value.map { String($0) } ?? "" }
        let ids = results.map(\.streamId), ats = results.map { $0.at.timeIntervalSince1970 }
        let modes = results.map(\.mode.rawValue), statuses = results.map(\.status.rawValue), pendings = results.map(\.pending)
        let reasons = results.map(\.reason.rawValue), phases = results.map { $0.phase?.rawValue ?? "" }, messages = results.map(\.message)
        let connect = results.map { text($0.timings.connectMs) }, firstByte = results.map { text($0.timings.firstByteMs) }
        let firstFrame = results.map { text($0.timings.firstFrameMs) }, total = results.map { text($0.timings.totalMs) }
        let codecs = results.map { $0.media?.codec ?? "" }, widths = results.map { text($0.media?.width) }
        let heights = results.map { text($0.media?.height) }, fps = results.map { text($0.media?.fps) }
        let bitrates = results.map { text($0.media?.bitrateBps) }
        // Rollups count only the rows actually inserted (a retried batch adds nothing twice).
        try await connection.query("""
            WITH ins AS (
              INSERT INTO results (stream_id, at, mode, status, pending, reason, phase, message, connect_ms, first_byte_ms, first_frame_ms,
                total_ms, codec, width, height, fps, bitrate_bps, agent, generation)
              SELECT id, at, mode, status, pending, reason, NULLIF(phase, ''), message, NULLIF(c, '')::float8, NULLIF(fb, '')::float8,
                NULLIF(ff, '')::float8, NULLIF(t, '')::float8, NULLIF(codec, ''), NULLIF(w, '')::int, NULLIF(h, '')::int,
                NULLIF(fps, '')::float8, NULLIF(br, '')::float8, \(agent), g
              FROM unnest(\(ids)::text[], \(ats)::float8[], \(modes)::text[], \(statuses)::text[], \(pendings)::bool[], \(reasons)::text[],
                \(phases)::text[], \(messages)::text[], \(connect)::text[], \(firstByte)::text[], \(firstFrame)::text[], \(total)::text[],
                \(codecs)::text[], \(widths)::text[], \(heights)::text[], \(fps)::text[], \(bitrates)::text[], \(generations)::bigint[])
                AS r(id, at, mode, status, pending, reason, phase, message, c, fb, ff, t, codec, w, h, fps, br, g)
              ON CONFLICT (stream_id, at, agent) DO NOTHING
              RETURNING stream_id, at, (status = 'ok' AND NOT pending)::int AS ok),
            hourly AS (
              INSERT INTO rollups_hourly (stream_id, period, checks, ok)
              SELECT stream_id, (floor(at / 3600) * 3600)::bigint, count(*), sum(ok) FROM ins GROUP BY 1, 2
              ON CONFLICT (stream_id, period) DO UPDATE SET checks = rollups_hourly.checks + excluded.checks, ok = rollups_hourly.ok + excluded.ok)
            INSERT INTO rollups_daily (stream_id, period, checks, ok)
            SELECT stream_id, (floor(at / 86400) * 86400)::bigint, count(*), sum(ok) FROM ins GROUP BY 1, 2
            ON CONFLICT (stream_id, period) DO UPDATE SET checks = rollups_daily.checks + excluded.checks, ok = rollups_daily.ok + excluded.ok
            """, logger: logger)
        try await connection.query("""
            INSERT INTO stream_status (stream_id, site, agent, at, status, pending, reason, phase, message, since)
            SELECT DISTINCT ON (id) id, \(site), \(agent), at, status, pending, reason, NULLIF(phase, ''), message, at
            FROM unnest(\(ids)::text[], \(ats)::float8[], \(statuses)::text[], \(pendings)::bool[], \(reasons)::text[], \(phases)::text[],
              \(messages)::text[]) AS r(id, at, status, pending, reason, phase, message)
            ORDER BY id, at DESC
            ON CONFLICT (stream_id) DO UPDATE SET site = excluded.site, agent = excluded.agent, at = excluded.at, status = excluded.status,
              pending = excluded.pending, reason = excluded.reason, phase = excluded.phase, message = excluded.message,
              since = CASE WHEN stream_status.status = excluded.status AND stream_status.pending = excluded.pending
                             AND stream_status.reason = excluded.reason THEN coalesce(stream_status.since, excluded.since)
                           ELSE excluded.since END
            WHERE stream_status.at <= excluded.at
            """, logger: logger)
    }

    /// Those of these streams no agent has written a state for yet.
    public func unchecked(_ streams: [String]) async throws -> Set<String> {
        guard !streams.isEmpty else { return [] }
        let rows = try await client.query("""
            SELECT id FROM unnest(\(streams)::text[]) AS s(id) WHERE NOT EXISTS (SELECT 1 FROM stream_status WHERE stream_id = s.id)
            """, logger: logger)
        var out = Set<String>()
        for try await id in rows.decode(String.self) { out.insert(id) }
        return out
    }

    /// The latest green, settled state of these streams written by another agent within `maxAge` seconds
    /// (what an agent taking them over starts from).
    public func greenStates(of streams: [String], notBy agent: String, maxAge: Double) async throws -> [String: StreamState] {
        guard !streams.isEmpty else { return [:] }
        let rows = try await client.query("""
            SELECT stream_id, message, at, since FROM stream_status
            WHERE stream_id = ANY(\(streams)::text[]) AND agent <> \(agent) AND status = 'ok' AND NOT pending
              AND at > extract(epoch FROM now()) - \(maxAge)
            """, logger: logger)
        var states: [String: StreamState] = [:]
        for try await (id, message, at, since) in rows.decode((String, String, Double, Double?).self) {
            var state = StreamState.initial
            state.status = .ok
            state.reason = .ok
            state.message = message
            state.since = Date(timeIntervalSince1970: since ?? at)
            state.lastCheck = Date(timeIntervalSince1970: at)
            states[id] = state
        }
        return states
    }

    // MARK: Reading (a dashboard over PostgreSQL)

    /// The channel agents notify once per written batch of results (`LISTEN` on it, then read `results(after:)`).
    public static let channel = "streampulse_results"
    /// The advisory lock that orders result inserts across agents.
    static let resultsLock: Int64 = 1_717_171_718

    /// The id of the newest result (0 with none).
    public func lastResultID() async throws -> Int64 {
        let rows = try await client.query("SELECT coalesce(max(id), 0)::bigint FROM results", logger: logger)
        for try await id in rows.decode(Int64.self) { return id }
        return 0
    }

    /// Results written after the one with id `cursor`, oldest first, at most `limit`.
    public func results(after cursor: Int64, limit: Int = 5_000) async throws -> [(id: Int64, record: ResultRecord)] {
        let rows = try await client.query("""
            SELECT id, stream_id, at, mode, status, pending, reason, coalesce(phase, ''), message, connect_ms, first_byte_ms, first_frame_ms,
              total_ms, codec, width, height, fps, bitrate_bps
            FROM results WHERE id > \(cursor) ORDER BY id LIMIT \(limit)
            """, logger: logger)
        var out: [(Int64, ResultRecord)] = []
        for try await row in rows {
            let (id, stream, at, mode, status, pending, reason, phase, message) = try row.decode(
                (Int64, String, Double, String, String, Bool, String, String, String).self)
            let cells = Array(row)
            func number(_ i: Int) throws -> Double? { try cells[i].decode(Double?.self) }
            let timings = Timings(connectMs: try number(9), firstByteMs: try number(10), firstFrameMs: try number(11), totalMs: try number(12))
            let media = MediaFacts(codec: try cells[13].decode(String?.self), width: try cells[14].decode(Int?.self),
                                   height: try cells[15].decode(Int?.self), fps: try number(16), bitrateBps: try number(17))
            out.append((id, ResultRecord(
                streamId: stream, at: Date(timeIntervalSince1970: at), mode: ProbeMode(rawValue: mode) ?? .deep,
                status: StreamStatus(rawValue: status) ?? .unknown, pending: pending, reason: Reason(rawValue: reason),
                phase: phase.isEmpty ? nil : Phase(rawValue: phase), message: message, timings: timings,
                media: media.codec == nil && media.width == nil && media.fps == nil ? nil : media)))
        }
        return out
    }

    /// Each stream's latest state as its agent last wrote it (what a dashboard starts from).
    public func latestStates() async throws -> [String: StreamState] {
        let rows = try await client.query("""
            SELECT stream_id, status, pending, reason, coalesce(phase, ''), message, at, coalesce(since, at) FROM stream_status
            """, logger: logger)
        var states: [String: StreamState] = [:]
        for try await (id, status, pending, reason, phase, message, at, since) in rows.decode(
            (String, String, Bool, String, String, String, Double, Double).self) {
            var state = StreamState.initial
            state.status = StreamStatus(rawValue: status) ?? .unknown
            state.pending = pending
            state.reason = Reason(rawValue: reason)
            state.phase = phase.isEmpty ? nil : Phase(rawValue: phase)
            state.message = message
            state.since = Date(timeIntervalSince1970: since)
            state.lastCheck = Date(timeIntervalSince1970: at)
            states[id] = state
        }
        return states
    }

    /// Per site, how many seconds ago (PostgreSQL's clock) its most recently seen agent reported.
    public func sitesLastSeen() async throws -> [String: Double] {
        let rows = try await client.query("""
            SELECT site, extract(epoch FROM now() - max(seen_at))::float8 FROM site_agents GROUP BY site
            """, logger: logger)
        var seen: [String: Double] = [:]
        for try await (site, age) in rows.decode((String, Double).self) { seen[site] = age }
        return seen
    }

}

/// A dashboard's history routes read every agent's results and changes here (`HistoryReading`).
extension PostgresHistory: HistoryReading {
    public func checks(stream: String, from: Date?, to: Date?, before: Int64?, limit: Int) async throws -> [SQLiteStore.Check] {
        let rows = try await client.query("""
            SELECT \(unescaped: Self.checkColumns) FROM results WHERE stream_id = \(stream) AND at >= \(from?.timeIntervalSince1970 ?? 0) AND at <= \(to?.timeIntervalSince1970 ?? 1e12)
              AND id < \(before ?? Int64.max)
            ORDER BY id DESC LIMIT \(max(1, min(limit, 1000)))
            """, logger: logger)
        var out: [SQLiteStore.Check] = []
        for try await row in rows { out.append(try Self.check(row)) }
        return out
    }

    /// The columns `check(_:)` decodes, in its order.
    static let checkColumns = """
        id, stream_id, at, mode, status, pending, reason, phase, message, connect_ms, first_byte_ms, first_frame_ms, total_ms, codec, width,
        height, fps, bitrate_bps
        """

    /// One `results` row (selected as `checkColumns`) as the history routes and the CSV export show it.
    static func check(_ row: PostgresRow) throws -> SQLiteStore.Check {
        let c = Array(row)
        func number(_ i: Int) throws -> Double? { try c[i].decode(Double?.self) }
        return SQLiteStore.Check(
            id: try c[0].decode(Int64.self), streamId: try c[1].decode(String.self), at: Date(timeIntervalSince1970: try c[2].decode(Double.self)),
            mode: try c[3].decode(String.self), status: try c[4].decode(String.self), pending: try c[5].decode(Bool.self),
            reason: try c[6].decode(String.self), phase: try c[7].decode(String?.self), message: try c[8].decode(String.self),
            connectMs: try number(9), firstByteMs: try number(10), firstFrameMs: try number(11), totalMs: try number(12),
            codec: try c[13].decode(String?.self), width: try c[14].decode(Int?.self), height: try c[15].decode(Int?.self),
            fps: try number(16), bitrateBps: try number(17))
    }

    public func changes(stream: String, from: Date?, to: Date?, limit: Int) async throws -> [SQLiteStore.Change] {
        let rows = try await client.query("""
            SELECT id, at, from_status, to_status, pending, reason, phase, message, thumbnail IS NOT NULL, last_picture IS NOT NULL
            FROM state_changes WHERE stream_id = \(stream) AND at >= \(from?.timeIntervalSince1970 ?? 0) AND at <= \(to?.timeIntervalSince1970 ?? 1e12)
            ORDER BY id DESC LIMIT \(max(1, min(limit, 2000)))
            """, logger: logger)
        var out: [SQLiteStore.Change] = []
        for try await (id, at, from, to, pending, reason, phase, message, thumb, last) in rows.decode(
            (Int64, Double, String, String, Bool, String, String?, String, Bool, Bool).self) {
            out.append(SQLiteStore.Change(id: id, streamId: stream, at: Date(timeIntervalSince1970: at), fromStatus: from, toStatus: to,
                                          pending: pending, reason: reason, phase: phase, message: message, hasThumbnail: thumb, hasLastPicture: last))
        }
        return out
    }

    public func thumbnail(change id: Int64) async throws -> Data? {
        try await picture("thumbnail", change: id)
    }

    public func checks(after: Int64, streams: [String]?, from: Date?, to: Date?, limit: Int) async throws -> [SQLiteStore.Check] {
        let only = (streams ?? []).isEmpty ? nil : streams
        let rows = try await client.query("""
            SELECT \(unescaped: Self.checkColumns) FROM results WHERE id > \(after) AND at >= \(from?.timeIntervalSince1970 ?? 0) AND at <= \(to?.timeIntervalSince1970 ?? 1e12)
              AND (\(only)::text[] IS NULL OR stream_id = ANY(\(only)::text[]))
            ORDER BY id LIMIT \(max(1, limit))
            """, logger: logger)
        var out: [SQLiteStore.Check] = []
        for try await row in rows { out.append(try Self.check(row)) }
        return out
    }

    public func streamNames() async throws -> [String: String] {
        var names: [String: String] = [:]
        for try await (id, name) in try await client.query("SELECT id, name FROM streams", logger: logger).decode((String, String).self) { names[id] = name }
        return names
    }

    public func lastPicture(change id: Int64) async throws -> Data? {
        try await picture("last_picture", change: id)
    }

    private func picture(_ column: String, change id: Int64) async throws -> Data? {
        let query = column == "thumbnail" ? PostgresQuery("SELECT thumbnail FROM state_changes WHERE id = \(id) AND thumbnail IS NOT NULL")
            : PostgresQuery("SELECT last_picture FROM state_changes WHERE id = \(id) AND last_picture IS NOT NULL")
        for try await jpeg in try await client.query(query, logger: logger).decode(ByteBuffer.self) { return Data(buffer: jpeg) }
        return nil
    }
}

extension PostgresHistory {
    /// The streams' names and masked URLs (never retired from here: each agent sees only its own leases).
    private func upsert(_ streams: [StreamSnapshot]) async throws {
        let now = Date().timeIntervalSince1970
        let ids = streams.map(\.id), names = streams.map(\.name), urls = streams.map(\.url)
        let protocols = streams.map { $0.protocol ?? "" }, groups = streams.map { $0.group ?? "" }
        let tags = streams.map { $0.tags.joined(separator: ",") }, sites = streams.map { $0.site ?? "" }
        try await client.query("""
            INSERT INTO streams (id, name, url, protocol, grp, tags, site, first_seen, last_seen)
            SELECT id, name, url, NULLIF(p, ''), NULLIF(g, ''), tags, NULLIF(site, ''), \(now), \(now)
            FROM unnest(\(ids)::text[], \(names)::text[], \(urls)::text[], \(protocols)::text[], \(groups)::text[], \(tags)::text[],
              \(sites)::text[]) AS s(id, name, url, p, g, tags, site)
            ON CONFLICT (id) DO UPDATE SET name = excluded.name, url = excluded.url, protocol = excluded.protocol, grp = excluded.grp,
              tags = excluded.tags, site = excluded.site, last_seen = excluded.last_seen, retired_at = NULL
            """, logger: logger)
    }
}

/// A dashboard's notices take their evidence pictures from the agents' state changes.
extension PostgresHistory: EvidenceReading {
    public func evidence(stream: String, good: Bool, since: Date?) async throws -> (jpeg: Data, at: Date, last: Data?)? {
        let query: PostgresQuery = good
            ? "SELECT thumbnail, last_picture, at FROM state_changes WHERE stream_id = \(stream) AND thumbnail IS NOT NULL AND to_status = 'ok' ORDER BY id DESC LIMIT 1"
            : """
              SELECT thumbnail, last_picture, at FROM state_changes WHERE stream_id = \(stream) AND thumbnail IS NOT NULL AND to_status <> 'ok'
                AND at >= \(since?.timeIntervalSince1970 ?? 0) ORDER BY id DESC LIMIT 1
              """
        for try await (jpeg, last, at) in try await client.query(query, logger: logger).decode((ByteBuffer, ByteBuffer?, Double).self) {
            return (Data(buffer: jpeg), Date(timeIntervalSince1970: at), last.map { Data(buffer: $0) })
        }
        return nil
    }

    /// Reference views stay in the agents' own databases.
    public func referencePicture(of id: String) async throws -> (jpeg: Data, at: Date?)? { nil }
}

/// Agents' runs, and what a dashboard's uptime figures and availability report are computed from.
extension PostgresHistory: AvailabilityReading {
    /// Starts an agent's run (its first lease round); returns its id for `markAlive`. Times are the agent's clock,
    /// like its results'.
    public func startRun(agent: String, site: String, at date: Date) async throws -> Int64 {
        let rows = try await client.query("""
            INSERT INTO agent_runs (agent, site, started, last_seen) VALUES (\(agent), \(site), \(date.timeIntervalSince1970), \(date.timeIntervalSince1970))
            RETURNING id
            """, logger: logger)
        for try await id in rows.decode(Int64.self) { return id }
        throw PostgresDeadline(description: "PostgreSQL did not return the new run's id")
    }

    /// The agent's run is still going at `date`.
    public func markAlive(run: Int64, at date: Date) async throws {
        try await client.query("UPDATE agent_runs SET last_seen = \(date.timeIntervalSince1970) WHERE id = \(run)", logger: logger)
    }

    /// Each stream's changes (every agent's) and, per site, when some agent of it was running (merged; the
    /// newest run lasts until `now` when it was seen within a minute).
    public func availabilityHistory(from: Date, to: Date, now: Date) async throws -> SQLiteStore.History {
        let alive = 60.0
        var bySite: [String: [(start: Date, end: Date)]] = [:]
        var newest: [String: Double] = [:]
        for try await (site, started, lastSeen) in try await client.query("""
            SELECT site, started, last_seen FROM agent_runs
            WHERE last_seen >= \(from.timeIntervalSince1970 - alive) AND started < \(to.timeIntervalSince1970) ORDER BY site, started
            """, logger: logger).decode((String, Double, Double).self) {
            bySite[site, default: []].append((Date(timeIntervalSince1970: started), Date(timeIntervalSince1970: lastSeen)))
            newest[site] = max(newest[site] ?? 0, lastSeen)
        }
        var runsBySite: [String: [(start: Date, end: Date)]] = [:]
        for (site, runs) in bySite {
            var merged: [(start: Date, end: Date)] = []
            for run in runs.sorted(by: { $0.start < $1.start }) {
                if let last = merged.last, run.start <= last.end { merged[merged.count - 1].end = max(last.end, run.end) } else { merged.append(run) }
            }
            if let last = merged.last, let seen = newest[site], now.timeIntervalSince1970 - seen <= alive { merged[merged.count - 1].end = max(last.end, now) }
            runsBySite[site] = merged
        }
        var siteOf: [String: String] = [:]
        for try await (id, site) in try await client.query("SELECT id, site FROM streams WHERE site IS NOT NULL", logger: logger)
            .decode((String, String).self) { siteOf[id] = site }
        var before: [String: (Date, Availability.State)] = [:]
        for try await (id, at, status, pending) in try await client.query("""
            SELECT DISTINCT ON (stream_id) stream_id, at, to_status, pending FROM state_changes WHERE at < \(from.timeIntervalSince1970)
            ORDER BY stream_id, at DESC, id DESC
            """, logger: logger).decode((String, Double, String, Bool).self) {
            before[id] = (Date(timeIntervalSince1970: at), Availability.state(status: status, pending: pending))
        }
        var changes: [String: [(at: Date, state: Availability.State)]] = [:]
        for try await (id, at, status, pending) in try await client.query("""
            SELECT stream_id, at, to_status, pending FROM state_changes WHERE at >= \(from.timeIntervalSince1970) AND at < \(to.timeIntervalSince1970)
            ORDER BY at, id
            """, logger: logger).decode((String, Double, String, Bool).self) {
            changes[id, default: []].append((Date(timeIntervalSince1970: at), Availability.state(status: status, pending: pending)))
        }
        var history = SQLiteStore.History(runs: [], before: before, changes: changes)
        history.runsBySite = runsBySite
        history.siteOf = siteOf
        return history
    }
}

extension PostgresHistory {
    static let pruneLock: Int64 = 1_717_171_721

    /// Deletes results and state changes older than `rawDays`, rollups and agent runs older than `rollupDays`
    /// (`settings.retention`, as SQLite's history), `batch` rows per transaction. Only one process prunes at a
    /// time: a batch whose lock another holds is skipped. Returns rows deleted.
    @discardableResult
    public func prune(rawDays: Int, rollupDays: Int, now: Date = Date(), batch: Int = 5_000) async throws -> Int {
        let raw = now.timeIntervalSince1970 - Double(rawDays) * 86_400, rollup = now.timeIntervalSince1970 - Double(rollupDays) * 86_400
        var total = 0
        for (table, column, cutoff) in [("results", "at", raw), ("state_changes", "at", raw), ("rollups_hourly", "period", rollup),
                                        ("rollups_daily", "period", rollup), ("agent_runs", "last_seen", rollup)] {
            while true {
                let logger = self.logger
                let deleted = try await client.withTransaction(logger: logger) { connection -> Int in
                    var locked = false
                    for try await got in try await connection.query("SELECT pg_try_advisory_xact_lock(\(Self.pruneLock))", logger: logger).decode(Bool.self) {
                        locked = got
                    }
                    guard locked else { return -1 }
                    var count = 0
                    let sql = "DELETE FROM \(table) WHERE ctid IN (SELECT ctid FROM \(table) WHERE \(column) < $1 LIMIT $2) RETURNING 1"
                    var bindings = PostgresBindings()
                    bindings.append(cutoff)
                    bindings.append(batch)
                    for try await _ in try await connection.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: logger) { count += 1 }
                    return count
                }
                if deleted < 0 { return total }  // another process is pruning
                total += deleted
                if deleted < batch { break }
            }
        }
        return total
    }
}
