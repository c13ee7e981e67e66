import Foundation
import GRDB

/// Streamed CSV export of stored checks: read in pages by id, written as it goes (never built in memory).
///
/// Columns (RFC 4180, CRLF line ends, a header row):
/// `time` (ISO 8601 in the chosen time zone, with its offset), `stream_id`, `stream_name`, `status`, `pending`,
/// `reason`, `phase`, `mode`, `message`, `connect_ms`, `first_byte_ms`, `first_frame_ms`, `total_ms`, `codec`,
/// `width`, `height`, `fps`, `bitrate_bps`. No URL and no credentials.
public enum CSVExport {
    public static let columns = ["time", "stream_id", "stream_name", "status", "pending", "reason", "phase", "mode", "message",
                                 "connect_ms", "first_byte_ms", "first_frame_ms", "total_ms", "codec", "width", "height", "fps", "bitrate_bps"]

    /// Writes the export to `emit` in chunks of about `pageSize` rows. Returns the number of rows.
    @discardableResult
    public static func export(
        store: any HistoryReading, streams: [String]?, from: Date?, to: Date?, timeZone: TimeZone, pageSize: Int = 2_000,
        emit: (String) async throws -> Void
    ) async throws -> Int {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = timeZone
        formatter.formatOptions = [.withInternetDateTime]
        try await emit(columns.joined(separator: ",") + "\r\n")
        var after: Int64 = 0
        var total = 0
        let names = try await store.streamNames()
        while true {
            let rows = try await store.checks(after: after, streams: streams, from: from, to: to, limit: pageSize)
            if rows.isEmpty { break }
            var chunk = ""
            chunk.reserveCapacity(rows.count * 160)
            for row in rows {
                after = row.id
                let fields: [String?] = [
                    formatter.string(from: row.at), row.streamId, names[row.streamId] ?? "", row.status, row.pending ? "true" : "false",
                    row.reason, row.phase, row.mode, row.message, number(row.connectMs), number(row.firstByteMs), number(row.firstFrameMs),
                    number(row.totalMs), row.codec, row.width.map(String.init), row.height.map(String.init), number(row.fps),
                    number(row.bitrateBps),
                ]
                chunk += fields.map { quote($0 ?? "") }.joined(separator: ",")
                chunk += "\r\n"
            }
            total += rows.count
            try await emit(chunk)
        }
        return total
    }

    static func number(_ value: Double?) -> String? {
        value.map { $0 == $0.rounded() ? String(Int64($0)) : String(format: "%.3f", $0) }
    }

    /// RFC 4180: quote a field holding a comma, a quote or a line break; double the quotes inside.
    /// A leading =, +, -, @, tab or carriage return is prefixed with ' so spreadsheets do not run it as a
    /// formula (a tab or CR before `=` is skipped by some spreadsheets, which then run the formula).
    public static func quote(_ field: String) -> String {
        var field = field
        if let first = field.unicodeScalars.first, "=+-@\t\r".unicodeScalars.contains(first), Double(field) == nil { field = "'" + field }
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
