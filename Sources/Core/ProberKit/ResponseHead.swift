import Foundation

/// The status line and headers of an RTSP or HTTP response.
public struct ResponseHead: Sendable, Equatable {
    public var version: String
    public var status: Int
    public var reasonPhrase: String
    /// Header names lower-cased; repeated headers keep every value in order.
    public var headers: [(name: String, value: String)]

    public static func == (a: ResponseHead, b: ResponseHead) -> Bool {
        a.version == b.version && a.status == b.status && a.reasonPhrase == b.reasonPhrase
            && a.headers.map(\.name) == b.headers.map(\.name) && a.headers.map(\.value) == b.headers.map(\.value)
    }

    /// First value of a header (name is case-insensitive).
    public func header(_ name: String) -> String? {
        let name = name.lowercased()
        return headers.first { $0.name == name }?.value
    }

    /// Every value of a header.
    public func headers(_ name: String) -> [String] {
        let name = name.lowercased()
        return headers.filter { $0.name == name }.map(\.value)
    }

    public enum ParseError: Error, Equatable { case badStatusLine(String), badHeader(String) }

    /// Where the head ends in `buffer` (index just past the blank line), accepting CRLF or bare LF.
    public static func endOfHead(in buffer: [UInt8]) -> Int? {
        var index = 0
        while index < buffer.count {
            if buffer[index] == 0x0A {
                if index + 1 < buffer.count, buffer[index + 1] == 0x0A { return index + 2 }
                if index + 2 < buffer.count, buffer[index + 1] == 0x0D, buffer[index + 2] == 0x0A { return index + 3 }
            }
            index += 1
        }
        return nil
    }

    /// Parses a head (status line + headers) for `protocols` such as ["RTSP/"] or ["HTTP/"].
    public static func parse(_ bytes: ArraySlice<UInt8>, protocols: [String]) throws(ParseError) -> ResponseHead {
        // Split on LF bytes: as Swift Characters, "\r\n" is one grapheme and never equals "\n".
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { line in
            String(decoding: line.last == 0x0D ? line.dropLast() : line, as: UTF8.self)
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let first = lines.first else { throw .badStatusLine("") }
        let parts = first.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        guard parts.count >= 2, protocols.contains(where: { parts[0].hasPrefix($0) }), let status = Int(parts[1]), (100...999).contains(status)
        else { throw .badStatusLine(String(first.prefix(80))) }
        var head = ResponseHead(version: String(parts[0]), status: status, reasonPhrase: parts.count > 2 ? String(parts[2]) : "", headers: [])
        for line in lines.dropFirst() {
            if line.first == " " || line.first == "\t", let last = head.headers.popLast() {
                // Obsolete line folding: continue the previous header.
                head.headers.append((last.name, last.value + " " + trimmed(line)))
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { throw .badHeader(String(line.prefix(80))) }
            head.headers.append((trimmed(line[..<colon]).lowercased(), trimmed(line[line.index(after: colon)...])))
        }
        return head
    }

    /// Without leading and trailing spaces and tabs (Foundation's `trimmingCharacters` was a third of a
    /// deep probe's handshake CPU).
    static func trimmed(_ text: Substring) -> String {
        let bytes = text.utf8
        var start = bytes.startIndex, end = bytes.endIndex
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start = bytes.index(after: start) }
        while start < end {
            let last = bytes.index(before: end)
            guard bytes[last] == 0x20 || bytes[last] == 0x09 else { break }
            end = last
        }
        return String(Substring(bytes[start..<end]))
    }

    static func trimmed(_ text: String) -> String { trimmed(text[...]) }
}
