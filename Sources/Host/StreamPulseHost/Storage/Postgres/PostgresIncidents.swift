import Foundation
import Logging
import PostgresNIO
import StreamPulseCore

/// Incidents and silences in PostgreSQL (`IncidentStorage`; tables from the migration `incidents-as-sqlite-v7`,
/// run by `PostgresHistory.migrate`): the dashboards of a site deployment list the same incidents, and the one
/// that notifies (`NotifierElection`) keeps them.
public struct PostgresIncidents: IncidentStorage {
    public let client: PostgresClient
    public let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    public func save(_ incident: Incident, evidence: (jpeg: Data, at: Date)?) async throws {
        let record = String(decoding: try Wire.encode(incident), as: UTF8.self)
        let logger = self.logger
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("""
                INSERT INTO incidents (id, scope, key, started, resolved, record)
                VALUES (\(incident.id), \(incident.scope.rawValue), \(incident.key), \(incident.started.timeIntervalSince1970),
                        \(incident.resolved?.timeIntervalSince1970), \(record))
                ON CONFLICT (id) DO UPDATE SET scope = excluded.scope, key = excluded.key, started = excluded.started,
                  resolved = excluded.resolved, record = excluded.record
                """, logger: logger)
            if let evidence {
                try await connection.query("UPDATE incidents SET evidence = \(evidence.jpeg), evidence_at = \(evidence.at.timeIntervalSince1970) WHERE id = \(incident.id)",
                                           logger: logger)
            }
            if !incident.streams.isEmpty {
                try await connection.query("""
                    INSERT INTO incident_streams (incident_id, stream_id) SELECT \(incident.id), s FROM unnest(\(incident.streams)::text[]) AS s
                    ON CONFLICT DO NOTHING
                    """, logger: logger)
            }
        }
    }

    public func incidents(open: Bool?, stream: String?, from: Date?, to: Date?, limit: Int) async throws -> [StoredIncident] {
        // Every filter is a parameter; an absent one is NULL and matches everything.
        let openText: String? = open.map { $0 ? "open" : "resolved" }
        let rows = try await client.query("""
            SELECT i.record, i.evidence IS NOT NULL, i.evidence_at FROM incidents i
            WHERE (\(stream)::text IS NULL OR EXISTS (SELECT 1 FROM incident_streams s WHERE s.incident_id = i.id AND s.stream_id = \(stream)::text))
              AND (\(openText)::text IS NULL OR (\(openText)::text = 'open') = (i.resolved IS NULL))
              AND (\(from?.timeIntervalSince1970)::float8 IS NULL OR i.resolved IS NULL OR i.resolved >= \(from?.timeIntervalSince1970)::float8)
              AND (\(to?.timeIntervalSince1970)::float8 IS NULL OR i.started <= \(to?.timeIntervalSince1970)::float8)
            ORDER BY i.id DESC LIMIT \(max(1, min(limit, 1000)))
            """, logger: logger)
        var out: [StoredIncident] = []
        for try await (record, hasEvidence, at) in rows.decode((String, Bool, Double?).self) {
            guard let incident = try? Wire.decode(Incident.self, from: Data(record.utf8)) else { continue }
            out.append(StoredIncident(incident: incident, hasEvidence: hasEvidence, evidenceAt: at.map { Date(timeIntervalSince1970: $0) }))
        }
        return out
    }

    public func incidentEvidence(_ id: Int64) async throws -> Data? {
        for try await jpeg in try await client.query("SELECT evidence FROM incidents WHERE id = \(id) AND evidence IS NOT NULL", logger: logger)
            .decode(ByteBuffer.self) { return Data(buffer: jpeg) }
        return nil
    }

    public func lastIncidentID() async throws -> Int64 {
        for try await id in try await client.query("SELECT coalesce(max(id), 0)::bigint FROM incidents", logger: logger).decode(Int64.self) { return id }
        return 0
    }

    public func save(_ silence: Silence) async throws {
        let record = String(decoding: try Wire.encode(silence), as: UTF8.self)
        try await client.query("""
            INSERT INTO silences (id, until, record) VALUES (\(silence.id), \(silence.until.timeIntervalSince1970), \(record))
            ON CONFLICT (id) DO UPDATE SET until = excluded.until, record = excluded.record
            """, logger: logger)
    }

    public func deleteSilence(_ id: Int64) async throws {
        try await client.query("DELETE FROM silences WHERE id = \(id)", logger: logger)
    }

    public func silences(now: Date) async throws -> [Silence] {
        try await client.query("DELETE FROM silences WHERE until <= \(now.timeIntervalSince1970)", logger: logger)
        var out: [Silence] = []
        for try await record in try await client.query("SELECT record FROM silences ORDER BY id", logger: logger).decode(String.self) {
            if let silence = try? Wire.decode(Silence.self, from: Data(record.utf8)) { out.append(silence) }
        }
        return out
    }
}
