import Foundation
import GRDB
import StreamPulseCore

extension SQLiteStore {
    /// Stores an incident (insert or replace), its members and, when given, its evidence picture.
    public func save(_ incident: Incident, evidence: (jpeg: Data, at: Date)? = nil) async throws {
        let record = String(decoding: try Wire.encode(incident), as: UTF8.self)
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO incidents (id, scope, key, started, resolved, record) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET scope = excluded.scope, key = excluded.key, started = excluded.started,
                  resolved = excluded.resolved, record = excluded.record
                """, arguments: [incident.id, incident.scope.rawValue, incident.key, incident.started.timeIntervalSince1970,
                                 incident.resolved?.timeIntervalSince1970, record])
            if let evidence {
                try db.execute(sql: "UPDATE incidents SET evidence = ?, evidence_at = ? WHERE id = ?",
                               arguments: [evidence.jpeg, evidence.at.timeIntervalSince1970, incident.id])
            }
            for id in incident.streams {
                try db.execute(sql: "INSERT OR IGNORE INTO incident_streams (incident_id, stream_id) VALUES (?, ?)", arguments: [incident.id, id])
            }
        }
    }

    /// Incidents, newest first: `open` true only open ones, false only resolved, nil all; optionally of one stream.
    public func incidents(open: Bool? = nil, stream: String? = nil, from: Date? = nil, to: Date? = nil, limit: Int = 100) async throws -> [StoredIncident] {
        try await pool.read { db in
            var sql = "SELECT i.record, i.evidence IS NOT NULL AS has_evidence, i.evidence_at FROM incidents i"
            var conditions: [String] = [], arguments: [any DatabaseValueConvertible] = []
            if let stream {
                sql += " JOIN incident_streams s ON s.incident_id = i.id"
                conditions.append("s.stream_id = ?")
                arguments.append(stream)
            }
            if let open { conditions.append(open ? "i.resolved IS NULL" : "i.resolved IS NOT NULL") }
            if let from { conditions.append("(i.resolved IS NULL OR i.resolved >= ?)"); arguments.append(from.timeIntervalSince1970) }
            if let to { conditions.append("i.started <= ?"); arguments.append(to.timeIntervalSince1970) }
            if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
            sql += " ORDER BY i.id DESC LIMIT ?"
            arguments.append(max(1, min(limit, 1000)))
            return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)).compactMap { row -> StoredIncident? in
                let text: String = row["record"]
                guard let incident = try? Wire.decode(Incident.self, from: Data(text.utf8)) else { return nil }
                let at: Double? = row["evidence_at"]
                return StoredIncident(incident: incident, hasEvidence: row["has_evidence"], evidenceAt: at.map { Date(timeIntervalSince1970: $0) })
            }
        }
    }

    public func incidentEvidence(_ id: Int64) async throws -> Data? {
        try await pool.read { db in try Data.fetchOne(db, sql: "SELECT evidence FROM incidents WHERE id = ?", arguments: [id]) }
    }

    public func lastIncidentID() async throws -> Int64 {
        try await pool.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM incidents") ?? 0 }
    }
}

/// An incident as the API lists it.
public struct StoredIncident: Sendable, Codable, Equatable {
    public var incident: Incident
    public var hasEvidence: Bool
    public var evidenceAt: Date?
}

extension SQLiteStore {
    /// The newest stored picture of a stream: from its last change to ok (`good`), or from a failing change
    /// since `since` (a frozen or black picture), with its time.
    public func evidence(stream: String, good: Bool, since: Date? = nil) async throws -> (jpeg: Data, at: Date, last: Data?)? {
        try await pool.read { db in
            let condition = good ? "to_status = 'ok'" : "to_status <> 'ok' AND at >= \(since?.timeIntervalSince1970 ?? 0)"
            guard let row = try Row.fetchOne(db, sql: """
                SELECT thumbnail, last_picture, at FROM state_changes WHERE stream_id = ? AND thumbnail IS NOT NULL AND \(condition)
                ORDER BY id DESC LIMIT 1
                """, arguments: [stream]) else { return nil }
            let jpeg: Data = row["thumbnail"]
            let at: Double = row["at"]
            return (jpeg, Date(timeIntervalSince1970: at), row["last_picture"])
        }
    }
}

extension SQLiteStore {
    public func save(_ silence: Silence) async throws {
        let record = String(decoding: try Wire.encode(silence), as: UTF8.self)
        try await pool.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO silences (id, until, record) VALUES (?, ?, ?)",
                           arguments: [silence.id, silence.until.timeIntervalSince1970, record])
        }
    }

    public func deleteSilence(_ id: Int64) async throws {
        try await pool.write { db in try db.execute(sql: "DELETE FROM silences WHERE id = ?", arguments: [id]) }
    }

    /// Silences still running at `now` (ended ones are deleted).
    public func silences(now: Date) async throws -> [Silence] {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM silences WHERE until <= ?", arguments: [now.timeIntervalSince1970])
            return try String.fetchAll(db, sql: "SELECT record FROM silences ORDER BY id").compactMap { try? Wire.decode(Silence.self, from: Data($0.utf8)) }
        }
    }
}

extension SQLiteStore: IncidentStorage, EvidenceReading {}
