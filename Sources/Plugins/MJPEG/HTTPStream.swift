import Foundation
import ProberSupport
import StreamPulseCore

/// A bounded HTTP/1.1 GET for camera streams: Basic/Digest authentication, a few redirects (credentials
/// never follow to another host), and a hard cap on the response head.
struct HTTPStream {
    struct Target: Sendable {
        var host: String
        var port: Int
        var path: String
        var url: String

        init?(url: String) {
            guard let c = URLComponents(string: url), c.scheme?.lowercased() == "http", let host = c.host, !host.isEmpty else { return nil }
            self.host = host
            port = c.port ?? 80
            var path = c.percentEncodedPath.isEmpty ? "/" : c.percentEncodedPath
            if let query = c.percentEncodedQuery { path += "?" + query }
            self.path = path
            self.url = url
        }
    }

    enum Failure: Error {
        case connect(TCPConnection.Failure)
        case io(TCPConnection.Failure, Phase)
        case headTooLarge
        case notHTTP
        case tooManyRedirects
        case badRedirect(String)
        /// A redirect to another host, which the stream does not allow (the masked location).
        case redirectRefused(String)
    }

    static let maxHead = 16 * 1024
    static let maxRedirects = 3

    let connection: TCPConnection
    let head: ResponseHead
    /// Body bytes already read past the head (decoded, when the body is chunked).
    var leftover: [UInt8]
    var timings: Timings
    /// Set when the answer is `Transfer-Encoding: chunked` (ffmpeg's mpjpeg server): the body is decoded.
    var chunked: ChunkedDecoder?

    /// Opens `target`, answering auth challenges and following redirects — to the same host only, unless
    /// `otherHosts` allows others.
    static func open(_ start: Target, credentials: Credentials?, clock: ProbeClock, otherHosts: Bool = false) throws(Failure) -> HTTPStream {
        var target = start
        var credentials = credentials
        var authorization: String?
        var redirects = 0
        var timings = Timings()
        while true {
            let connection: TCPConnection
            do { connection = try TCPConnection(host: target.host, port: target.port, clock: clock) } catch { throw .connect(error) }
            if timings.connectMs == nil { timings.connectMs = clock.elapsedMs }
            var lines = [
                "GET \(target.path) HTTP/1.1", "Host: \(target.port == 80 ? target.host : "\(target.host):\(target.port)")",
                "User-Agent: StreamPulse/1.0", "Accept: multipart/x-mixed-replace, image/jpeg, */*", "Connection: close",
            ]
            if let authorization { lines.append("Authorization: \(authorization)") }
            var buffer: [UInt8] = []
            do {
                try connection.write(Array((lines.joined(separator: "\r\n") + "\r\n\r\n").utf8))
                while ResponseHead.endOfHead(in: buffer) == nil {
                    if buffer.count > maxHead { throw Failure.headTooLarge }
                    buffer += try connection.read(maximum: 8192)
                    if timings.firstByteMs == nil { timings.firstByteMs = clock.elapsedMs }
                    if buffer.count >= 5, !buffer.starts(with: Array("HTTP/".utf8)) { throw Failure.notHTTP }
                }
            } catch let failure as Failure {
                throw failure
            } catch let error as TCPConnection.Failure {
                throw .io(error, .handshake)
            } catch {
                throw .notHTTP
            }
            let end = ResponseHead.endOfHead(in: buffer)!
            guard end <= maxHead + 4 else { throw .headTooLarge }
            guard let head = try? ResponseHead.parse(buffer[..<end], protocols: ["HTTP/"]) else { throw .notHTTP }
            if head.status == 401, authorization == nil, let credentials,
               let challenge = AuthChallenge.best(from: head.headers("www-authenticate")) {
                authorization = challenge.authorization(method: "GET", uri: target.path, credentials: credentials)
                continue
            }
            if (300...399).contains(head.status), let location = head.header("location") {
                redirects += 1
                guard redirects <= maxRedirects else { throw .tooManyRedirects }
                let resolved = URL(string: location, relativeTo: URL(string: target.url))?.absoluteString ?? location
                guard let next = Target(url: resolved) else { throw .badRedirect(URLRedaction.mask(resolved)) }
                let sameHost = next.host.lowercased() == start.host.lowercased()
                guard sameHost || otherHosts else { throw .redirectRefused(URLRedaction.mask(resolved)) }
                // Credentials go only to the host and port they were configured for.
                if !sameHost || next.port != start.port { credentials = nil }
                authorization = nil
                target = next
                continue
            }
            var stream = HTTPStream(connection: connection, head: head, leftover: Array(buffer[end...]), timings: timings)
            if head.header("transfer-encoding")?.lowercased().contains("chunked") == true {
                var decoder = ChunkedDecoder()
                do { stream.leftover = try decoder.feed(stream.leftover) } catch { throw .io(Self.chunkFailure(error), .handshake) }
                stream.chunked = decoder
            }
            return stream
        }
    }

    /// Reads more body bytes (at least one) or throws at end of stream, deadline or cancellation.
    mutating func read() throws(TCPConnection.Failure) -> [UInt8] {
        guard var decoder = chunked else { return try connection.read(maximum: 64 * 1024) }
        defer { chunked = decoder }
        while true {
            if decoder.finished { throw .closed }
            let raw = try connection.read(maximum: 64 * 1024)
            let payload: [UInt8]
            do { payload = try decoder.feed(raw) } catch { throw Self.chunkFailure(error) }
            if !payload.isEmpty { return payload }
        }
    }

    static func chunkFailure(_ error: ChunkedDecoder.Failure) -> TCPConnection.Failure {
        switch error {
        case .badChunkSize: .io("the chunked body has a malformed chunk-size line")
        case .missingChunkEnd: .io("a chunk of the chunked body is not followed by CRLF")
        }
    }
}
