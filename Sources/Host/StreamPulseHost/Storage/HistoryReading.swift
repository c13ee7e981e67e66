import Foundation
import GRDB

/// Where the history routes read a stream's checks and state changes: the embedded database (`SQLiteStore`),
/// or PostgreSQL for a dashboard (`PostgresHistory`: every agent's results, since long before the dashboard
/// started, with the evidence pictures of their changes).
///
/// Contract: newest first; `from`/`to` bound `at` (inclusive); `before` returns checks with a smaller id
/// (paging); `limit` is capped (1,000 checks, 2,000 changes); pictures by the change's id, nil when none.
public protocol HistoryReading: Sendable {
    func checks(stream: String, from: Date?, to: Date?, before: Int64?, limit: Int) async throws -> [SQLiteStore.Check]
    func changes(stream: String, from: Date?, to: Date?, limit: Int) async throws -> [SQLiteStore.Change]
    func thumbnail(change id: Int64) async throws -> Data?
    func lastPicture(change id: Int64) async throws -> Data?
    /// Checks with an id above `after`, oldest first (the CSV export's pages); `streams` nil or empty: all.
    func checks(after: Int64, streams: [String]?, from: Date?, to: Date?, limit: Int) async throws -> [SQLiteStore.Check]
    /// Every stream's display name by id.
    func streamNames() async throws -> [String: String]
}

extension SQLiteStore: HistoryReading {
    public func checks(after: Int64, streams: [String]?, from: Date?, to: Date?, limit: Int) async throws -> [Check] {
        let only = (streams ?? []).isEmpty ? nil : streams
        let low = from?.timeIntervalSince1970 ?? 0, high = to?.timeIntervalSince1970 ?? 1e12
        return try await pool.read { db in
            var filter = "id > ? AND at >= ? AND at <= ?"
            var arguments: [any DatabaseValueConvertible] = [after, low, high]
            if let only {
                filter += " AND stream_id IN (\(Array(repeating: "?", count: only.count).joined(separator: ",")))"
                arguments += only
            }
            arguments.append(limit)
            return try Row.fetchAll(db, sql: "SELECT * FROM results WHERE \(filter) ORDER BY id LIMIT ?", arguments: StatementArguments(arguments))
                .map(Check.init(row:))
        }
    }

    public func streamNames() async throws -> [String: String] {
        try await pool.read { db in
            Dictionary(try Row.fetchAll(db, sql: "SELECT id, name FROM streams").map { ($0["id"] as String, $0["name"] as String) },
                       uniquingKeysWith: { a, _ in a })
        }
    }
}

extension SQLiteStore.Check {
    public init(id: Int64, streamId: String, at: Date, mode: String, status: String, pending: Bool, reason: String, phase: String?,
                message: String, connectMs: Double?, firstByteMs: Double?, firstFrameMs: Double?, totalMs: Double?, codec: String?,
                width: Int?, height: Int?, fps: Double?, bitrateBps: Double?) {
        self.id = id
        self.streamId = streamId
        self.at = at
        self.mode = mode
        self.status = status
        self.pending = pending
        self.reason = reason
        self.phase = phase
        self.message = message
        self.connectMs = connectMs
        self.firstByteMs = firstByteMs
        self.firstFrameMs = firstFrameMs
        self.totalMs = totalMs
        self.codec = codec
        self.width = width
        self.height = height
        self.fps = fps
        self.bitrateBps = bitrateBps
    }
}
