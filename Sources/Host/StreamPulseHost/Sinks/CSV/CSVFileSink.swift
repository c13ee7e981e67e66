import Foundation

/// A rolling CSV file per day (`<dir>/streampulse-YYYY-MM-DD.csv`, in the configured time zone) with the
/// columns of the CSV export, appended as results arrive. Files are plain appends: a `tail -f` works.
public final class CSVFileSink: Sink {
    public let name: String
    let directory: String
    let timeZone: TimeZone
    private let names = NamesBox()

    public init(name: String, timeZone: TimeZone, directory: String) throws {
        self.name = name
        self.directory = directory
        self.timeZone = timeZone
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    final class NamesBox: @unchecked Sendable {
        let lock = NSLock()
        var names: [String: String] = [:]
    }

    public func write(_ batch: [SinkEvent]) async throws {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = timeZone
        formatter.formatOptions = [.withInternetDateTime]
        let day = DateFormatter()
        day.timeZone = timeZone
        day.dateFormat = "yyyy-MM-dd"
        day.locale = Locale(identifier: "en_US_POSIX")
        var byFile: [String: String] = [:]
        for event in batch {
            switch event {
            case .streams(let streams, _):
                names.lock.withLock { for s in streams { names.names[s.id] = s.name } }
            case .result(let r):
                let name = names.lock.withLock { names.names[r.streamId] } ?? ""
                let fields: [String?] = [
                    formatter.string(from: r.at), r.streamId, name, r.status.rawValue, r.pending ? "true" : "false", r.reason.rawValue,
                    r.phase?.rawValue, r.mode.rawValue, r.message, CSVExport.number(r.timings.connectMs), CSVExport.number(r.timings.firstByteMs),
                    CSVExport.number(r.timings.firstFrameMs), CSVExport.number(r.timings.totalMs), r.media?.codec,
                    r.media?.width.map(String.init), r.media?.height.map(String.init), CSVExport.number(r.media?.fps), CSVExport.number(r.media?.bitrateBps),
                ]
                let path = (directory as NSString).appendingPathComponent("streampulse-\(day.string(from: r.at)).csv")
                byFile[path, default: ""] += fields.map { CSVExport.quote($0 ?? "") }.joined(separator: ",") + "\r\n"
            case .change, .baseline:
                break
            }
        }
        for (path, rows) in byFile.sorted(by: { $0.key < $1.key }) {
            let isNew = !FileManager.default.fileExists(atPath: path)
            if isNew { FileManager.default.createFile(atPath: path, contents: Data((CSVExport.columns.joined(separator: ",") + "\r\n").utf8)) }
            guard let handle = FileHandle(forWritingAtPath: path) else { throw SinkSetupError(message: "cannot open \(path) for appending") }
            defer { try? handle.close() }
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(rows.utf8))
        }
    }
}
