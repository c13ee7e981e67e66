/// Incremental decoder of an HTTP/1.1 `Transfer-Encoding: chunked` body (RFC 9112 §7.1): bytes go in as
/// they arrive, the payload comes out. Cameras rarely send it, but ffmpeg's own MJPEG server
/// (`-f mpjpeg -listen 1`) does, and a reader that took the chunk-size lines for picture bytes would call
/// every frame a corrupt JPEG. Bounded: a chunk-size line longer than `maxLineBytes` or a size that does not
/// fit is a failure, so a hostile server cannot make it buffer without limit.
public struct ChunkedDecoder: Sendable {
    public enum Failure: Error, Equatable, Sendable {
        /// A chunk-size line that is not hexadecimal, too long, or too large a number.
        case badChunkSize
        /// The bytes after a chunk's data are not CRLF.
        case missingChunkEnd
    }

    private enum State: Equatable { case size, data(remaining: Int), dataEnd, trailer, done }

    public let maxLineBytes: Int
    private var state = State.size
    private var line: [UInt8] = []

    public init(maxLineBytes: Int = 1024) { self.maxLineBytes = max(16, maxLineBytes) }

    /// The last chunk (size 0) and its trailer were read: the body is complete.
    public var finished: Bool { state == .done }

    /// Decodes `bytes`, returning the payload bytes they completed (possibly none).
    public mutating func feed(_ bytes: some Collection<UInt8>) throws(Failure) -> [UInt8] {
        var output: [UInt8] = []
        var index = bytes.startIndex
        while index != bytes.endIndex {
            switch state {
            case .size:
                guard let complete = try takeLine(bytes[index], &index, in: bytes) else { continue }
                let size = try Self.chunkSize(complete)
                state = size == 0 ? .trailer : .data(remaining: size)
            case .data(let remaining):
                let available = bytes.distance(from: index, to: bytes.endIndex)
                let take = min(remaining, available)
                let end = bytes.index(index, offsetBy: take)
                output.append(contentsOf: bytes[index..<end])
                index = end
                state = remaining == take ? .dataEnd : .data(remaining: remaining - take)
            case .dataEnd:
                // CRLF (a bare LF is accepted) after each chunk's data.
                let byte = bytes[index]
                index = bytes.index(after: index)
                if byte == 0x0D { continue }
                guard byte == 0x0A else { throw .missingChunkEnd }
                state = .size
            case .trailer:
                // Trailer fields until an empty line; their content is ignored.
                guard let complete = try takeLine(bytes[index], &index, in: bytes) else { continue }
                if complete.allSatisfy({ $0 == 0x0D }) { state = .done }
            case .done:
                return output
            }
        }
        return output
    }

    /// Adds `byte` to the line being read (bounded) and steps past it; the whole line once `byte` ends it.
    private mutating func takeLine<C: Collection<UInt8>>(_ byte: UInt8, _ index: inout C.Index, in bytes: C) throws(Failure) -> [UInt8]? {
        index = bytes.index(after: index)
        guard byte == 0x0A else {
            line.append(byte)
            if line.count > maxLineBytes { throw .badChunkSize }
            return nil
        }
        defer { line.removeAll(keepingCapacity: true) }
        return line
    }

    /// The hexadecimal size at the start of a chunk-size line (extensions after `;` ignored).
    static func chunkSize(_ line: [UInt8]) throws(Failure) -> Int {
        var size = 0
        var digits = 0
        for byte in line {
            let value: Int
            switch byte {
            case 0x30...0x39: value = Int(byte - 0x30)
            case 0x41...0x46: value = Int(byte - 0x41 + 10)
            case 0x61...0x66: value = Int(byte - 0x61 + 10)
            case 0x3B, 0x20, 0x09, 0x0D:
                guard digits > 0 else { throw .badChunkSize }
                return size
            default: throw .badChunkSize
            }
            digits += 1
            // 15 hex digits stay far below Int.max; no camera frame comes near.
            guard digits <= 15 else { throw .badChunkSize }
            size = size * 16 + value
        }
        guard digits > 0 else { throw .badChunkSize }
        return size
    }
}
