import Foundation
import GRDB
import StreamPulseCore

/// The embedded history database (GRDB over the system SQLite): WAL, one transaction per batch,
/// versioned migrations run at start, hourly and daily rollups kept current at write time.
public final class SQLiteStore: Sendable {
    public let path: String
    public let pool: DatabasePool

    /// Opens (creating if needed) and migrates the database.
    public init(path: String, migrateUpTo: String? = nil) throws {
        self.path = path
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            // WAL + NORMAL survives a killed process without losing committed transactions.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        configuration.busyMode = .timeout(5)
        pool = try DatabasePool(path: path, configuration: configuration)
        let migrator = Self.migrator()
        if let migrateUpTo { try migrator.migrate(pool, upTo: migrateUpTo) } else { try migrator.migrate(pool) }
        // Accounts, sessions and history are nobody else's business, whatever the umask.
        for file in [path, path + "-wal", path + "-shm"] { chmod(file, 0o600) }
    }

    /// Schema versions, oldest first (`SQLiteSchema.migrations`).
    public static func migrator() -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        for (name, migrate) in SQLiteSchema.migrations { migrator.registerMigration(name, migrate: migrate) }
        return migrator
    }

    // MARK: Writing

    /// Writes a batch in one transaction on GRDB's writer queue, without holding a cooperative thread.
    public func write(_ batch: [SinkEvent]) async throws {
        try await pool.write { db in try Self.apply(batch, to: db) }
    }

    private static func apply(_ batch: [SinkEvent], to db: Database) throws {
        let insertResult = try db.cachedStatement(sql: """
            INSERT INTO results (stream_id, at, mode, status, pending, reason, phase, message, connect_ms, first_byte_ms,
              first_frame_ms, total_ms, codec, width, height, fps, bitrate_bps)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        let hourly = try db.cachedStatement(sql: """
            INSERT INTO rollups_hourly (stream_id, period, checks, ok) VALUES (?, ?, 1, ?)
            ON CONFLICT (stream_id, period) DO UPDATE SET checks = checks + 1, ok = ok + excluded.ok
            """)
        let daily = try db.cachedStatement(sql: """
            INSERT INTO rollups_daily (stream_id, period, checks, ok) VALUES (?, ?, 1, ?)
            ON CONFLICT (stream_id, period) DO UPDATE SET checks = checks + 1, ok = ok + excluded.ok
            """)
        for event in batch {
            switch event {
            case .result(let r):
                let at = r.at.timeIntervalSince1970
                let args: [(any DatabaseValueConvertible)?] = [
                    r.streamId, at, r.mode.rawValue, r.status.rawValue, r.pending, r.reason.rawValue, r.phase?.rawValue, r.message,
                    r.timings.connectMs, r.timings.firstByteMs, r.timings.firstFrameMs, r.timings.totalMs,
                    r.media?.codec, r.media?.width, r.media?.height, r.media?.fps, r.media?.bitrateBps,
                ]
                try insertResult.execute(arguments: StatementArguments(args))
                let ok = r.status == .ok && !r.pending ? 1 : 0
                try hourly.execute(arguments: [r.streamId, Int(at / 3600) * 3600, ok])
                try daily.execute(arguments: [r.streamId, Int(at / 86400) * 86400, ok])
            case .change(let c):
                try db.execute(sql: """
                    INSERT INTO state_changes (stream_id, at, from_status, to_status, pending, reason, phase, message, thumbnail, last_picture)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [c.streamId, c.at.timeIntervalSince1970, c.from.status.rawValue, c.to.status.rawValue, c.to.pending,
                                     c.to.reason.rawValue, c.to.phase?.rawValue, c.to.message, c.thumbnailJpeg, c.lastPictureJpeg])
            case .streams(let streams, let at):
                let now = at.timeIntervalSince1970
                for s in streams {
                    try db.execute(sql: """
                        INSERT INTO streams (id, name, url, protocol, grp, tags, first_seen, last_seen, retired_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)
                        ON CONFLICT (id) DO UPDATE SET name = excluded.name, url = excluded.url, protocol = excluded.protocol,
                          grp = excluded.grp, tags = excluded.tags, last_seen = excluded.last_seen, retired_at = NULL
                        """, arguments: [s.id, s.name, s.url, s.protocol, s.group, s.tags.joined(separator: ","), now, now])
                }
                // Streams gone from the config keep their history and are marked retired.
                let ids = streams.map(\.id)
                let placeholders = ids.isEmpty ? "''" : Array(repeating: "?", count: ids.count).joined(separator: ",")
                try db.execute(sql: "UPDATE streams SET retired_at = ? WHERE retired_at IS NULL AND id NOT IN (\(placeholders))",
                               arguments: StatementArguments([now] + ids))
            case .baseline(let record):
                try storeBaseline(record, in: db)
            }
        }
    }

    /// Deletes raw rows older than `rawDays` and rollups older than `rollupDays`, `batch` rows per
    /// transaction so writers never wait long. Returns rows deleted.
    @discardableResult
    public func prune(rawDays: Int, rollupDays: Int, now: Date = Date(), batch: Int = 5_000) async throws -> Int {
        var total = 0
        let rawCutoff = now.timeIntervalSince1970 - Double(rawDays) * 86400
        let rollupCutoff = now.timeIntervalSince1970 - Double(rollupDays) * 86400
        for (table, column, cutoff) in [("results", "at", rawCutoff), ("state_changes", "at", rawCutoff),
                                        ("rollups_hourly", "period", rollupCutoff), ("rollups_daily", "period", rollupCutoff)] {
            while true {
                let deleted = try await pool.write { db -> Int in
                    try db.execute(sql: "DELETE FROM \(table) WHERE rowid IN (SELECT rowid FROM \(table) WHERE \(column) < ? LIMIT ?)",
                                   arguments: [cutoff, batch])
                    return db.changesCount
                }
                total += deleted
                if deleted < batch { break }
            }
        }
        return total
    }

    // MARK: Reading

    /// Uptime per stream over the last 24 h, 7 d and 30 d (nil when nothing was observed): the share of time
    /// from `availability(now:excluded:)`, or of green checks from `uptimes(now:)` (the rollups).
    public struct Uptime: Sendable, Codable, Equatable {
        public var day: Double?
        public var week: Double?
        public var month: Double?

        public init(day: Double? = nil, week: Double? = nil, month: Double? = nil) {
            self.day = day
            self.week = week
            self.month = month
        }
    }

    /// Uptime of every stream: 24 h from hourly rollups, 7 d and 30 d from daily rollups (whole hours/days
    /// that overlap the window; the current hour/day is included as it is kept current at write time).
    public func uptimes(now: Date = Date()) async throws -> [String: Uptime] {
        let t = now.timeIntervalSince1970
        return try await pool.read { db in
            var result: [String: Uptime] = [:]
            func fold(_ sql: String, _ since: Double, _ set: (inout Uptime, Double?) -> Void) throws {
                for row in try Row.fetchAll(db, sql: sql, arguments: [since]) {
                    let id: String = row[0]
                    let checks: Int = row[1]
                    let ok: Int = row[2]
                    set(&result[id, default: Uptime()], checks > 0 ? Double(ok) / Double(checks) : nil)
                }
            }
            try fold("SELECT stream_id, SUM(checks), SUM(ok) FROM rollups_hourly WHERE period > ? GROUP BY stream_id", t - 86400) { $0.day = $1 }
            try fold("SELECT stream_id, SUM(checks), SUM(ok) FROM rollups_daily WHERE period > ? GROUP BY stream_id", t - 7 * 86400) { $0.week = $1 }
            try fold("SELECT stream_id, SUM(checks), SUM(ok) FROM rollups_daily WHERE period > ? GROUP BY stream_id", t - 30 * 86400) { $0.month = $1 }
            return result
        }
    }

    /// One stored check.
    public struct Check: Sendable, Codable, Equatable {
        public var id: Int64
        public var streamId: String
        public var at: Date
        public var mode: String
        public var status: String
        public var pending: Bool
        public var reason: String
        public var phase: String?
        public var message: String
        public var connectMs: Double?
        public var firstByteMs: Double?
        public var firstFrameMs: Double?
        public var totalMs: Double?
        public var codec: String?
        public var width: Int?
        public var height: Int?
        public var fps: Double?
        public var bitrateBps: Double?

        init(row: Row) {
            id = row["id"]
            streamId = row["stream_id"]
            at = Date(timeIntervalSince1970: row["at"])
            mode = row["mode"]
            status = row["status"]
            pending = row["pending"]
            reason = row["reason"]
            phase = row["phase"]
            message = row["message"]
            connectMs = row["connect_ms"]
            firstByteMs = row["first_byte_ms"]
            firstFrameMs = row["first_frame_ms"]
            totalMs = row["total_ms"]
            codec = row["codec"]
            width = row["width"]
            height = row["height"]
            fps = row["fps"]
            bitrateBps = row["bitrate_bps"]
        }
    }

    /// Checks of one stream, newest first, in a time range; `before` (an id) pages backwards.
    public func checks(stream: String, from: Date?, to: Date?, before: Int64? = nil, limit: Int = 100) async throws -> [Check] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT * FROM results WHERE stream_id = ? AND at >= ? AND at <= ? AND id < ?
                ORDER BY id DESC LIMIT ?
                """, arguments: [stream, from?.timeIntervalSince1970 ?? 0, to?.timeIntervalSince1970 ?? 1e12, before ?? Int64.max, min(limit, 1000)])
                .map(Check.init(row:))
        }
    }

    /// A state change, with a flag for an evidence thumbnail (fetched separately).
    public struct Change: Sendable, Codable, Equatable {
        public var id: Int64
        public var streamId: String
        public var at: Date
        public var fromStatus: String
        public var toStatus: String
        public var pending: Bool
        public var reason: String
        public var phase: String?
        public var message: String
        public var hasThumbnail: Bool
        /// A frozen verdict's last picture is stored beside the thumbnail (its first).
        public var hasLastPicture: Bool
    }

    public func changes(stream: String, from: Date?, to: Date?, limit: Int = 200) async throws -> [Change] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT id, stream_id, at, from_status, to_status, pending, reason, phase, message, thumbnail IS NOT NULL AS has_thumb,
                       last_picture IS NOT NULL AS has_last
                FROM state_changes WHERE stream_id = ? AND at >= ? AND at <= ? ORDER BY id DESC LIMIT ?
                """, arguments: [stream, from?.timeIntervalSince1970 ?? 0, to?.timeIntervalSince1970 ?? 1e12, min(limit, 2000)])
                .map { row in
                    Change(id: row["id"], streamId: row["stream_id"], at: Date(timeIntervalSince1970: row["at"]), fromStatus: row["from_status"],
                           toStatus: row["to_status"], pending: row["pending"], reason: row["reason"], phase: row["phase"],
                           message: row["message"], hasThumbnail: row["has_thumb"], hasLastPicture: row["has_last"])
                }
        }
    }

    public func thumbnail(change id: Int64) async throws -> Data? {
        try await pool.read { db in try Data.fetchOne(db, sql: "SELECT thumbnail FROM state_changes WHERE id = ?", arguments: [id]) }
    }

    /// A frozen verdict's last picture of the window, stored with its change.
    public func lastPicture(change id: Int64) async throws -> Data? {
        try await pool.read { db in try Data.fetchOne(db, sql: "SELECT last_picture FROM state_changes WHERE id = ?", arguments: [id]) }
    }

    public func resultCount() async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM results") ?? 0 }
    }

    public func integrityCheck() async throws -> String {
        try await pool.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "no answer" }
    }
}
