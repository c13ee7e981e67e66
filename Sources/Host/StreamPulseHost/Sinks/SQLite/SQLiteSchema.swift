import GRDB

/// The history database's schema, one function per version. Never edit a shipped migration: add a new one
/// at the end of `migrations`.
enum SQLiteSchema {
    /// Every migration, oldest first, with the name GRDB records once it has run.
    static let migrations: [(String, @Sendable (Database) throws -> Void)] = [
        ("v1-streams-results-changes", v1),
        ("v2-pending-rollups", v2),
        ("v3-accounts", v3),
        ("v4-token-owners", v4),
        ("v5-incidents", v5),
        ("v6-monitor-runs", v6),
        ("v7-silences", v7),
        ("v8-picture-baselines", v8),
        ("v9-last-picture", v9),
    ]

    /// Streams, check results and state changes (with evidence thumbnails).
    static func v1(_ db: Database) throws {
        try db.create(table: "streams") { t in
            t.primaryKey("id", .text)
            t.column("name", .text).notNull()
            t.column("url", .text).notNull()          // masked: never credentials
            t.column("protocol", .text)
            t.column("grp", .text)
            t.column("tags", .text).notNull().defaults(to: "")
            t.column("first_seen", .double).notNull()
            t.column("last_seen", .double).notNull()
            t.column("retired_at", .double)
        }
        try db.create(table: "results") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("stream_id", .text).notNull()
            t.column("at", .double).notNull()          // Unix seconds, UTC
            t.column("mode", .text).notNull()
            t.column("status", .text).notNull()
            t.column("reason", .text).notNull()
            t.column("phase", .text)
            t.column("message", .text).notNull()
            t.column("connect_ms", .double)
            t.column("first_byte_ms", .double)
            t.column("first_frame_ms", .double)
            t.column("total_ms", .double)
            t.column("codec", .text)
            t.column("width", .integer)
            t.column("height", .integer)
            t.column("fps", .double)
            t.column("bitrate_bps", .double)
        }
        try db.create(index: "results_stream_at", on: "results", columns: ["stream_id", "at"])
        try db.create(table: "state_changes") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("stream_id", .text).notNull()
            t.column("at", .double).notNull()
            t.column("from_status", .text).notNull()
            t.column("to_status", .text).notNull()
            t.column("reason", .text).notNull()
            t.column("phase", .text)
            t.column("message", .text).notNull()
            t.column("thumbnail", .blob)
        }
        try db.create(index: "state_changes_stream_at", on: "state_changes", columns: ["stream_id", "at"])
    }

    /// A pending flag and hourly/daily uptime rollups (backfilled).
    static func v2(_ db: Database) throws {
        try db.alter(table: "results") { t in t.add(column: "pending", .boolean).notNull().defaults(to: false) }
        try db.alter(table: "state_changes") { t in t.add(column: "pending", .boolean).notNull().defaults(to: false) }
        try db.create(index: "results_at", on: "results", columns: ["at"])
        for (table, period) in [("rollups_hourly", 3600), ("rollups_daily", 86400)] {
            try db.create(table: table) { t in
                t.column("stream_id", .text).notNull()
                t.column("period", .integer).notNull()   // start of the hour/day, Unix seconds
                t.column("checks", .integer).notNull()
                t.column("ok", .integer).notNull()
                t.primaryKey(["stream_id", "period"])
            }
            // Backfill from the rows a version-1 database already holds.
            try db.execute(sql: """
                INSERT INTO \(table) (stream_id, period, checks, ok)
                SELECT stream_id, CAST(at / \(period) AS INTEGER) * \(period), COUNT(*), SUM(status = 'ok')
                FROM results GROUP BY 1, 2
                """)
        }
    }

    /// Dashboard accounts, sessions, API tokens and settings.
    static func v3(_ db: Database) throws {
        // Dashboard accounts (see Web/Auth/Accounts.swift). Passwords are bcrypt hashes; session ids and
        // API tokens are stored as SHA-256 digests only, so a copy of the database opens no session.
        try db.create(table: "users") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("name", .text).notNull().unique()
            t.column("role", .text).notNull()
            t.column("password_hash", .text).notNull()
            t.column("must_change", .boolean).notNull().defaults(to: false)
            t.column("created_at", .double).notNull()
        }
        try db.create(table: "sessions") { t in
            t.primaryKey("id_digest", .text)
            t.column("user_id", .integer).notNull().references("users", onDelete: .cascade)
            t.column("csrf", .text).notNull()
            t.column("created_at", .double).notNull()
            t.column("expires_at", .double).notNull()
            t.column("last_seen", .double).notNull()
        }
        try db.create(table: "api_tokens") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("name", .text).notNull()
            t.column("role", .text).notNull()
            t.column("digest", .text).notNull().unique()
            t.column("created_at", .double).notNull()
            t.column("last_used", .double)
        }
        try db.create(table: "settings_kv") { t in
            t.primaryKey("key", .text)
            t.column("value", .text).notNull()
        }
    }

    /// The user who made each API token.
    static func v4(_ db: Database) throws {
        // The user who made a token (NULL: made on the command line); a deleted user's tokens go too.
        try db.alter(table: "api_tokens") { t in t.add(column: "created_by", .integer) }
    }

    /// Incidents (issue #15): indexed columns for filtering, the whole record as JSON, and the evidence.
    static func v5(_ db: Database) throws {
        try db.create(table: "incidents") { t in
            t.primaryKey("id", .integer)
            t.column("scope", .text).notNull()
            t.column("key", .text).notNull()
            t.column("started", .double).notNull()
            t.column("resolved", .double)
            t.column("record", .text).notNull()
            t.column("evidence", .blob)          // the failing picture or the last good one (JPEG)
            t.column("evidence_at", .double)
        }
        try db.create(index: "incidents_started", on: "incidents", columns: ["started"])
        try db.create(index: "incidents_open", on: "incidents", columns: ["resolved"])
        // Which streams took part, for "incidents of this stream".
        try db.create(table: "incident_streams") { t in
            t.column("incident_id", .integer).notNull().references("incidents", onDelete: .cascade)
            t.column("stream_id", .text).notNull()
            t.primaryKey(["incident_id", "stream_id"])
        }
        try db.create(index: "incident_streams_stream", on: "incident_streams", columns: ["stream_id"])
    }

    /// When the monitor was running (honest uptime: time outside every run is unknown, not up).
    static func v6(_ db: Database) throws {
        try db.create(table: "monitor_runs") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("started", .double).notNull()
            t.column("last_seen", .double).notNull()
        }
    }

    /// Ad hoc silences from the dashboard and API, kept across restarts until they end.
    static func v7(_ db: Database) throws {
        try db.create(table: "silences") { t in
            t.primaryKey("id", .integer)
            t.column("until", .double).notNull()
            t.column("record", .text).notNull()
        }
    }

    /// Picture health (issue #16): each stream's learned profile and reference view, and the reference
    /// picture as JPEG for the evidence.
    static func v8(_ db: Database) throws {
        try db.create(table: "picture_baselines") { t in
            t.primaryKey("stream_id", .text)
            t.column("record", .text).notNull()       // PictureBaseline as JSON
            t.column("reference_jpeg", .blob)
            t.column("updated", .double).notNull()
        }
    }

    /// Frozen evidence (issue #16): the last picture of the window beside the first (the thumbnail).
    static func v9(_ db: Database) throws {
        try db.alter(table: "state_changes") { t in t.add(column: "last_picture", .blob) }
    }
}
