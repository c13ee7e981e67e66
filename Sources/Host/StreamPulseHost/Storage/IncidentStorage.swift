import Foundation

/// Where incidents and silences are kept: the embedded database (`SQLiteStore`, the default) or PostgreSQL
/// (`PostgresIncidents`, shared by the dashboards of a site deployment, which list the same incidents).
/// The `IncidentService` decides; a storage keeps records.
///
/// Contract — the same tests run against both (`IncidentStorageContract`):
/// - `save` inserts or replaces by id; the evidence picture, once given, stays (a later save without one keeps it);
/// - `incidents` lists newest first: `open` true only unresolved, false only resolved, nil all; `stream` only
///   those it took part in; `from`/`to` those overlapping the period; at most `limit` (1–1,000);
/// - `silences(now:)` returns the silences still running and deletes the ended ones;
/// - times are Unix seconds.
public protocol IncidentStorage: Sendable {
    func save(_ incident: Incident, evidence: (jpeg: Data, at: Date)?) async throws
    func incidents(open: Bool?, stream: String?, from: Date?, to: Date?, limit: Int) async throws -> [StoredIncident]
    func incidentEvidence(_ id: Int64) async throws -> Data?
    /// The highest id stored (0 with none): new incidents are numbered after it.
    func lastIncidentID() async throws -> Int64
    func save(_ silence: Silence) async throws
    func deleteSilence(_ id: Int64) async throws
    func silences(now: Date) async throws -> [Silence]
}

/// Where a notice's evidence pictures come from: the embedded history (`SQLiteStore`), or for a dashboard the
/// agents' state changes in PostgreSQL (`PostgresHistory`; reference views stay with the agents: none).
public protocol EvidenceReading: Sendable {
    /// The newest stored picture of a stream: from its last change to ok (`good`), or from a failing change since
    /// `since`, with its time (and a frozen window's last picture).
    func evidence(stream: String, good: Bool, since: Date?) async throws -> (jpeg: Data, at: Date, last: Data?)?
    /// The stream's reference view, if this store keeps it.
    func referencePicture(of id: String) async throws -> (jpeg: Data, at: Date?)?
}
