import Foundation
import StreamPulseCore

/// `type: jsonl` — every result and state change as one JSON object per line, appended to a file, for log
/// shippers (Vector, Fluent Bit, Promtail) and `jq`.
///
/// ```yaml
/// - type: jsonl
///   file: streampulse.jsonl   # relative paths are inside the data folder
///   changes_only: false       # true: state changes only, no per-check results
/// ```
///
/// Lines: `{"kind":"result","stream_id",…,"status","reason","phase","mode","message","total_ms",…}` and
/// `{"kind":"change","stream_id","from","to","pending","reason","message","at"}`. The file is opened for
/// each batch, so a log rotation that moves it away is followed at the next batch.
public struct JSONLinesOptions: SinkOptions, Equatable {
    public var file = "streampulse.jsonl"
    public var changesOnly = false

    public init() {}

    init(from entry: inout SinkEntry) {
        file = entry.string("file") ?? file
        changesOnly = entry.bool("changes_only") ?? changesOnly
    }
}

extension SinkType {
    public static let jsonl = SinkType(name: "jsonl", keys: ["file", "changes_only"], parse: JSONLinesOptions.init(from:)) { name, options, context in
        try JSONLinesSink(name: name, path: context.path(options.file), changesOnly: options.changesOnly)
    }
}

/// Appends results and changes as JSON lines (see `JSONLinesOptions`).
public final class JSONLinesSink: Sink {
    public let name: String
    let path: String
    let changesOnly: Bool

    public init(name: String, path: String, changesOnly: Bool) throws {
        self.name = name
        self.path = path
        self.changesOnly = changesOnly
        let folder = (path as NSString).deletingLastPathComponent
        do {
            if !folder.isEmpty { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        } catch {
            throw SinkSetupError(message: "jsonl sink '\(name)': cannot create the folder \(folder): \(error.localizedDescription)")
        }
    }

    struct ResultLine: Encodable {
        var kind = "result"
        var streamId: String, at: Date, status: String, pending: Bool, reason: String, phase: String?, mode: String, message: String
        var totalMs: Double?, firstFrameMs: Double?, codec: String?, width: Int?, height: Int?, fps: Double?
    }

    struct ChangeLine: Encodable {
        var kind = "change"
        var streamId: String, at: Date, from: String, to: String, pending: Bool, reason: String, message: String
    }

    public func write(_ batch: [SinkEvent]) async throws {
        var text = Data()
        for event in batch {
            switch event {
            case .result(let r) where !changesOnly:
                text += try Wire.encode(ResultLine(
                    streamId: r.streamId, at: r.at, status: r.status.rawValue, pending: r.pending, reason: r.reason.rawValue,
                    phase: r.phase?.rawValue, mode: r.mode.rawValue, message: r.message, totalMs: r.timings.totalMs,
                    firstFrameMs: r.timings.firstFrameMs, codec: r.media?.codec, width: r.media?.width, height: r.media?.height, fps: r.media?.fps))
                text.append(0x0A)
            case .change(let c):
                text += try Wire.encode(ChangeLine(
                    streamId: c.streamId, at: c.at, from: c.from.status.rawValue, to: c.to.pending ? "pending" : c.to.status.rawValue,
                    pending: c.to.pending, reason: c.to.reason.rawValue, message: c.to.message))
                text.append(0x0A)
            default:
                break
            }
        }
        if text.isEmpty { return }
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o640]) else {
                throw SinkSetupError(message: "cannot create \(path)")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw SinkSetupError(message: "cannot open \(path) for appending") }
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: text)
    }
}
