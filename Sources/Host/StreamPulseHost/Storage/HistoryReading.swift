import Foundation

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
}

extension SQLiteStore: HistoryReading {}

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
