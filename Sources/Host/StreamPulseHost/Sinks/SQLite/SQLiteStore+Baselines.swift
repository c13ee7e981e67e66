import Foundation
import GRDB
import StreamPulseCore

extension SQLiteStore {
    /// Stores a stream's picture baseline (insert or replace); the reference JPEG only when the record
    /// carries one (a new reference), otherwise the stored one stays.
    static func storeBaseline(_ record: BaselineRecord, in db: Database) throws {
        let json = String(decoding: try Wire.encode(record.baseline), as: UTF8.self)
        try db.execute(sql: """
            INSERT INTO picture_baselines (stream_id, record, reference_jpeg, updated) VALUES (?, ?, ?, ?)
            ON CONFLICT(stream_id) DO UPDATE SET record = excluded.record, updated = excluded.updated,
              reference_jpeg = COALESCE(excluded.reference_jpeg, picture_baselines.reference_jpeg)
            """, arguments: [record.streamId, json, record.referenceJpeg, Date().timeIntervalSince1970])
    }

    /// Every stored baseline, for the engine at start. A row that no longer decodes is skipped (the stream
    /// learns again) rather than stopping the start.
    public func baselines() async throws -> [String: PictureBaseline] {
        try await pool.read { db in
            var out: [String: PictureBaseline] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT stream_id, record FROM picture_baselines") {
                let id: String = row["stream_id"], record: String = row["record"]
                if let baseline = try? Wire.decode(PictureBaseline.self, from: Data(record.utf8)) { out[id] = baseline }
            }
            return out
        }
    }

    /// The reference picture of a stream (JPEG) and when it was taken, or nil.
    public func referencePicture(of id: String) async throws -> (jpeg: Data, at: Date?)? {
        try await pool.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT record, reference_jpeg FROM picture_baselines WHERE stream_id = ?", arguments: [id]),
                  let jpeg: Data = row["reference_jpeg"] else { return nil }
            let record: String = row["record"]
            let baseline = try? Wire.decode(PictureBaseline.self, from: Data(record.utf8))
            return (jpeg, baseline?.referenceAt)
        }
    }
}
