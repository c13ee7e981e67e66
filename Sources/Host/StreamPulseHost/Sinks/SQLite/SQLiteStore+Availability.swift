import Foundation
import GRDB
import StreamPulseCore

extension SQLiteStore {
    /// Starts a monitor run (at `serve` start); returns its id for `markAlive`.
    public func startRun(at date: Date) async throws -> Int64 {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO monitor_runs (started, last_seen) VALUES (?, ?)",
                           arguments: [date.timeIntervalSince1970, date.timeIntervalSince1970])
            return db.lastInsertedRowID
        }
    }

    /// The monitor is still running at `date`.
    public func markAlive(run: Int64, at date: Date) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE monitor_runs SET last_seen = ? WHERE id = ?", arguments: [date.timeIntervalSince1970, run])
        }
    }

    /// Monitor runs overlapping [from, to); the newest one ends at `now` when it was seen within `alive`.
    func runs(_ db: Database, from: Date, to: Date, now: Date, alive: TimeInterval = 60) throws -> [(start: Date, end: Date)] {
        let rows = try Row.fetchAll(db, sql: "SELECT started, last_seen FROM monitor_runs WHERE last_seen >= ? AND started < ? ORDER BY started",
                                    arguments: [from.timeIntervalSince1970 - alive, to.timeIntervalSince1970])
        return rows.enumerated().map { index, row in
            let start = Date(timeIntervalSince1970: row[0])
            var end = Date(timeIntervalSince1970: row[1])
            if index == rows.count - 1, now.timeIntervalSince(end) <= alive { end = now }
            return (start, end)
        }
    }

    /// What availability is computed from: when the monitoring ran, each stream's last change before `from`,
    /// and its changes in [from, to), oldest first.
    public struct History: Sendable {
        /// The monitor's runs (every stream's, unless `runsBySite` has the stream's site).
        public var runs: [(start: Date, end: Date)]
        public var before: [String: (Date, Availability.State)]
        public var changes: [String: [(at: Date, state: Availability.State)]]
        /// In a site deployment: when some agent of each site was running (merged), and each stream's site.
        public var runsBySite: [String: [(start: Date, end: Date)]] = [:]
        public var siteOf: [String: String] = [:]

        /// When the stream was watched.
        public func runs(of id: String) -> [(start: Date, end: Date)] {
            siteOf[id].flatMap { runsBySite[$0] } ?? runs
        }
    }

    func history(_ db: Database, from: Date, to: Date, now: Date) throws -> History {
        let runs = try self.runs(db, from: from, to: to, now: now)
        var before: [String: (Date, Availability.State)] = [:]
        for row in try Row.fetchAll(db, sql: """
            SELECT c.stream_id, c.at, c.to_status, c.pending FROM state_changes c
            JOIN (SELECT stream_id, MAX(at) AS at FROM state_changes WHERE at < ? GROUP BY stream_id) last
              ON last.stream_id = c.stream_id AND last.at = c.at
            """, arguments: [from.timeIntervalSince1970]) {
            before[row[0]] = (Date(timeIntervalSince1970: row[1]), Availability.state(status: row[2], pending: row[3]))
        }
        var changes: [String: [(at: Date, state: Availability.State)]] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT stream_id, at, to_status, pending FROM state_changes WHERE at >= ? AND at < ? ORDER BY at, id",
                                    arguments: [from.timeIntervalSince1970, to.timeIntervalSince1970]) {
            changes[row[0], default: []].append((Date(timeIntervalSince1970: row[1]), Availability.state(status: row[2], pending: row[3])))
        }
        return History(runs: runs, before: before, changes: changes)
    }

    /// Time-based availability of every stream over the last 24 h, 7 d and 30 d (`Availability`), with each
    /// stream's maintenance intervals (`excluded`) left out.
    public func availability(now: Date = Date(), excluded: (String) -> [(start: Date, end: Date)] = { _ in [] }) async throws -> [String: Uptime] {
        let month = now.addingTimeInterval(-30 * 86_400)
        return Self.uptimes(try await availabilityHistory(from: month, to: now, now: now), now: now, excluded: excluded)
    }

    /// Each stream's uptime over the last 24 h, 7 d and 30 d from `data` (which covers the last 30 days).
    public static func uptimes(_ data: History, now: Date, excluded: (String) -> [(start: Date, end: Date)]) -> [String: Uptime] {
        var result: [String: Uptime] = [:]
        for id in Set(data.before.keys).union(data.changes.keys) {
            let changes = data.changes[id] ?? []
            let excludedHere = excluded(id)
            func ratio(_ days: Double) -> Double? {
                let from = now.addingTimeInterval(-days * 86_400)
                let inside = changes.filter { $0.at >= from }
                let last = changes.last { $0.at < from }.map { (at: $0.at, state: $0.state) } ?? data.before[id].map { (at: $0.0, state: $0.1) }
                return Availability.compute(from: from, to: now, before: last, changes: inside, runs: data.runs(of: id), excluded: excludedHere).ratio
            }
            result[id] = Uptime(day: ratio(1), week: ratio(7), month: ratio(30))
        }
        return result
    }
}

/// What uptime figures and the availability report are computed from: the embedded database's history, or a
/// dashboard's PostgreSQL (every agent's changes, watched while some agent of the stream's site ran).
public protocol AvailabilityReading: Sendable {
    func availabilityHistory(from: Date, to: Date, now: Date) async throws -> SQLiteStore.History
}

extension SQLiteStore: AvailabilityReading {
    public func availabilityHistory(from: Date, to: Date, now: Date) async throws -> History {
        try await pool.read { db in try self.history(db, from: from, to: to, now: now) }
    }
}
