import Foundation

/// Incremental reader of a `multipart/x-mixed-replace` body: bytes go in as they arrive, complete parts
/// come out. Pure and bounded — it never holds more than `maxPartBytes` + `maxHeaderBytes` — so a hostile
/// camera cannot make it grow without limit. This is the parser the fuzz target exercises.
public struct MultipartReader: Sendable {
    public struct Part: Sendable, Equatable {
        public var headers: [(name: String, value: String)]
        public var body: [UInt8]
        public static func == (a: Part, b: Part) -> Bool {
            a.body == b.body && a.headers.map(\.name) == b.headers.map(\.name) && a.headers.map(\.value) == b.headers.map(\.value)
        }
        public func header(_ name: String) -> String? { headers.first { $0.name == name.lowercased() }?.value }
    }

    public enum Failure: Error, Equatable, Sendable {
        /// No boundary line found within the limit: not a multipart stream, or garbage.
        case noBoundary(bytesSeen: Int)
        /// A part's headers exceed `maxHeaderBytes`.
        case headersTooLarge
        /// A part's body exceeds `maxPartBytes` (declared or actual).
        case partTooLarge(Int)
        /// A header line without a colon.
        case badHeader
    }

    private enum State { case seekingBoundary, headers, body(headers: [(String, String)], length: Int?) }

    public let delimiter: [UInt8]
    public let maxPartBytes: Int
    public let maxHeaderBytes: Int
    private var buffer: [UInt8] = []
    private var start = 0
    private var state = State.seekingBoundary
    private var scanned = 0
    /// Bytes dropped while looking for a boundary since the last one found.
    private var skipped = 0
    private(set) public var bytesSeen = 0

    /// `boundary` as given in the Content-Type parameter, quoted or not, with or without a leading `--`.
    public init(boundary: String, maxPartBytes: Int, maxHeaderBytes: Int = 8 * 1024) {
        var b = boundary.trimmingCharacters(in: .whitespaces)
        if b.hasPrefix("\""), b.hasSuffix("\""), b.count >= 2 { b = String(b.dropFirst().dropLast()) }
        if b.hasPrefix("--") { b = String(b.dropFirst(2)) }
        delimiter = Array("--\(b)".utf8)
        self.maxPartBytes = max(1, maxPartBytes)
        self.maxHeaderBytes = max(64, maxHeaderBytes)
    }

    /// The boundary parameter of a Content-Type value, or nil.
    public static func boundary(fromContentType value: String) -> String? {
        for parameter in value.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            if pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == "boundary" {
                let b = pair[1].trimmingCharacters(in: .whitespaces)
                return b.isEmpty ? nil : b
            }
        }
        return nil
    }

    private var pending: ArraySlice<UInt8> { buffer[start...] }

    /// Adds bytes and returns the parts completed by them.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(Failure) -> [Part] {
        let before = buffer.count
        buffer.append(contentsOf: bytes)
        bytesSeen += buffer.count - before
        var parts: [Part] = []
        while let part = try next() { parts.append(part) }
        compact()
        return parts
    }

    private mutating func compact() {
        if start > 0 && (start > 65_536 || start * 2 > buffer.count) {
            buffer.removeFirst(start)
            scanned = max(0, scanned - start)
            start = 0
        }
    }

    /// What one step of the reader did.
    private enum Step { case next, needMore, part(Part) }

    private mutating func next() throws(Failure) -> Part? {
        while true {
            let step: Step
            switch state {
            case .seekingBoundary: step = try seekBoundary()
            case .headers: step = try readHeaders()
            case .body(let headers, let length): step = try readBody(headers: headers, length: length)
            }
            switch step {
            case .next: continue
            case .needMore: return nil
            case .part(let part): return part
            }
        }
    }

    /// Skips to the line after the next boundary delimiter (bounded: garbage without one fails).
    private mutating func seekBoundary() throws(Failure) -> Step {
        guard let found = find(delimiter, from: max(start, scanned)) else {
            // Keep only what could still be the beginning of a delimiter.
            let keep = min(pending.count, delimiter.count)
            skipped += max(0, buffer.count - keep - start)
            start = max(start, buffer.count - keep)
            scanned = start
            if skipped > maxPartBytes + maxHeaderBytes { throw .noBoundary(bytesSeen: bytesSeen) }
            return .needMore
        }
        // The boundary line ends at the next LF; "--boundary--" closes the stream.
        guard let lineEnd = find([0x0A], from: found + delimiter.count) else {
            if buffer.count - found > 256 { throw .badHeader }
            return .needMore
        }
        start = lineEnd + 1
        scanned = start
        skipped = 0
        state = .headers
        return .next
    }

    /// Reads one part's headers (bounded) and its declared Content-Length, if any.
    private mutating func readHeaders() throws(Failure) -> Step {
        guard let end = headerEnd(from: start) else {
            if pending.count > maxHeaderBytes { throw .headersTooLarge }
            return .needMore
        }
        let headerBytes = buffer[start..<end.headerEnd]
        guard end.headerEnd - start <= maxHeaderBytes else { throw .headersTooLarge }
        var headers: [(String, String)] = []
        for raw in headerBytes.split(separator: 0x0A) {
            var line = raw
            if line.last == 0x0D { line = line.dropLast() }
            if line.isEmpty { continue }
            guard let colon = line.firstIndex(of: 0x3A) else { throw .badHeader }
            headers.append((
                String(decoding: line[..<colon], as: UTF8.self).trimmingCharacters(in: .whitespaces).lowercased(),
                String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingCharacters(in: .whitespaces)))
        }
        var length: Int?
        if let value = headers.first(where: { $0.0 == "content-length" })?.1 {
            guard let declared = Int(value), declared >= 0 else { throw .badHeader }
            guard declared <= maxPartBytes else { throw .partTooLarge(declared) }
            length = declared
        }
        start = end.bodyStart
        scanned = start
        state = .body(headers: headers, length: length)
        return .next
    }

    /// Reads one part's body: `length` bytes, or up to the line break before the next delimiter.
    private mutating func readBody(headers: [(String, String)], length: Int?) throws(Failure) -> Step {
        if let length {
            guard pending.count >= length else { return .needMore }
            if Self.isMisdeclaredJPEG(buffer[start..<start + length]) {
                // A JPEG whose declared length cuts it short or runs into the next part (VLC's first part):
                // the part ends at the next delimiter instead.
                state = .body(headers: headers, length: nil)
                return .next
            }
            let body = Array(buffer[start..<start + length])
            start += length
            scanned = start
            state = .seekingBoundary
            return .part(Part(headers: headers, body: body))
        }
        // No Content-Length: the body ends at the line break before the next delimiter.
        guard let found = find(delimiter, from: max(start, scanned)) else {
            scanned = max(start, buffer.count - delimiter.count)
            if pending.count > maxPartBytes { throw .partTooLarge(pending.count) }
            return .needMore
        }
        var end = found
        if end > start, buffer[end - 1] == 0x0A { end -= 1 }
        if end > start, buffer[end - 1] == 0x0D { end -= 1 }
        guard end - start <= maxPartBytes else { throw .partTooLarge(end - start) }
        let body = Array(buffer[start..<end])
        start = found
        scanned = start
        state = .seekingBoundary
        return .part(Part(headers: headers, body: body))
    }

    /// Bytes that start like a JPEG (SOI) but do not end like one (EOI, then at most line-break or NUL
    /// padding): the Content-Length that delimited them was wrong.
    static func isMisdeclaredJPEG(_ body: ArraySlice<UInt8>) -> Bool {
        guard body.count >= 2, body[body.startIndex] == 0xFF, body[body.startIndex + 1] == 0xD8 else { return false }
        var end = body.endIndex
        while end > body.startIndex, [0x0D, 0x0A, 0x00].contains(body[end - 1]), body.endIndex - end < 8 { end -= 1 }
        return !(end - body.startIndex >= 4 && body[end - 2] == 0xFF && body[end - 1] == 0xD9)
    }

    /// End of the header block (blank line, CRLF or bare LF) starting at `from`.
    private func headerEnd(from: Int) -> (headerEnd: Int, bodyStart: Int)? {
        var index = from
        // A part may start with an empty header block.
        if index < buffer.count, buffer[index] == 0x0A { return (index, index + 1) }
        if index + 1 < buffer.count, buffer[index] == 0x0D, buffer[index + 1] == 0x0A { return (index, index + 2) }
        while index < buffer.count {
            if buffer[index] == 0x0A {
                if index + 1 < buffer.count, buffer[index + 1] == 0x0A { return (index + 1, index + 2) }
                if index + 2 < buffer.count, buffer[index + 1] == 0x0D, buffer[index + 2] == 0x0A { return (index + 1, index + 3) }
            }
            if index - from > maxHeaderBytes { return nil }
            index += 1
        }
        return nil
    }

    private func find(_ needle: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, buffer.count >= needle.count else { return nil }
        var index = max(from, 0)
        let first = needle[0]
        let last = buffer.count - needle.count
        while index <= last {
            if buffer[index] == first {
                var match = true
                for offset in 1..<needle.count where buffer[index + offset] != needle[offset] { match = false; break }
                if match { return index }
            }
            index += 1
        }
        return nil
    }
}
