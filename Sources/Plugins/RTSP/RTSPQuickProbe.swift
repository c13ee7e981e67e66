import Foundation
import ProberSupport
import StreamPulseCore

/// OPTIONS + DESCRIBE over a plain socket: reachability, authentication and path, no media.
/// Costs a fraction of a millisecond of CPU; answers `ok` when DESCRIBE returns an SDP with video.
struct RTSPQuickProbe {
    let target: RTSPTarget
    let credentials: Credentials?
    let clock: ProbeClock
    static let maxHead = 16 * 1024
    static let maxBody = 64 * 1024

    func run() -> ProbeResult {
        if target.secure {
            // Over TLS, let FFmpeg do the handshake (OPTIONS … PLAY) and stop before reading media.
            let session = RTSPSession(target: target, credentials: credentials, clock: clock)
            if let failure = session.open(transport: nil) { return failure }
            return ProbeResult(reason: .ok, phase: .handshake, message: "The RTSP handshake over TLS succeeded (quick probe: pictures not decoded).",
                               timings: session.timings, media: MediaFacts(codec: session.codecName))
        }
        let connection: TCPConnection
        do {
            connection = try TCPConnection(host: target.host, port: target.port, clock: clock)
        } catch {
            return connectFailure(error, host: target.host, port: target.port)
        }
        var exchange = RTSPExchange(connection: connection, url: target.url, clock: clock)
        exchange.timings.connectMs = clock.elapsedMs
        do {
            return try handshake(&exchange)
        } catch {
            return failure(error, timings: exchange.timings)
        }
    }

    /// OPTIONS, then DESCRIBE (answering one authentication challenge), then the SDP's video track.
    private func handshake(_ exchange: inout RTSPExchange) throws(TCPConnection.Failure) -> ProbeResult {
        guard let (options, _) = try exchange.send("OPTIONS", extra: []) else {
            return ProbeResult(reason: .protocolError, phase: .handshake, message: "The server at \(target.host):\(target.port) does not speak RTSP.", timings: exchange.timings)
        }
        if options.status >= 500 {
            return classify(options, phase: .handshake, timings: exchange.timings)
        }
        var authorization: [String] = []
        for attempt in 0..<2 {
            guard let (describe, body) = try exchange.send("DESCRIBE", extra: ["Accept: application/sdp"] + authorization) else {
                return ProbeResult(reason: .protocolError, phase: .handshake, message: "DESCRIBE got an answer that is not RTSP.", timings: exchange.timings)
            }
            if describe.status == 401, attempt == 0, let credentials,
               let challenge = AuthChallenge.best(from: describe.headers("www-authenticate")) {
                authorization = ["Authorization: " + challenge.authorization(method: "DESCRIBE", uri: target.url, credentials: credentials)]
                continue
            }
            guard describe.status == 200 else {
                return classify(describe, phase: describe.status == 401 ? .authenticate : .handshake, timings: exchange.timings)
            }
            let sdp = String(decoding: body, as: UTF8.self)
            guard sdp.contains("m=video") else {
                return ProbeResult(reason: .noFrames, phase: .handshake, message: "DESCRIBE answered, but the stream offers no video track.", timings: exchange.timings)
            }
            let codec = sdp.split(whereSeparator: \.isNewline).first { $0.hasPrefix("a=rtpmap:") && !$0.lowercased().contains("audio") }
                .flatMap { $0.split(separator: " ").last?.split(separator: "/").first }.map { String($0).lowercased() }
            return ProbeResult(
                reason: .ok, phase: .handshake,
                message: "DESCRIBE answered with a video track (quick probe: pictures not decoded).",
                timings: exchange.timings, media: MediaFacts(codec: codec))
        }
        return ProbeResult(reason: .unauthorized, phase: .authenticate, message: "The camera refused the credentials.", timings: exchange.timings)
    }

    /// A socket failure after connecting, as a result.
    private func failure(_ error: TCPConnection.Failure, timings: Timings) -> ProbeResult {
        switch error {
        case .cancelled: return .failure(.cancelled, phase: .handshake, "The probe was cancelled.")
        case .timedOut:
            return ProbeResult(reason: .timeout, phase: .handshake, message: "No RTSP answer within the deadline (connected, then silence).", timings: timings)
        case .closed:
            return ProbeResult(reason: .protocolError, phase: .handshake, message: "The server closed the connection during the RTSP handshake.", timings: timings)
        default:
            return ProbeResult(reason: .protocolError, phase: .handshake, message: "RTSP handshake failed: \(error).", timings: timings)
        }
    }

    private func classify(_ head: ResponseHead, phase: Phase, timings: Timings) -> ProbeResult {
        let status = "RTSP \(head.status) \(head.reasonPhrase)"
        let (reason, text): (Reason, String) = switch head.status {
        case 401: (.unauthorized, credentials == nil ? "The camera requires credentials (\(status))." : "The camera refused the credentials (\(status)).")
        case 403: (.forbidden, "The camera forbids this stream (\(status)).")
        case 404: (.notFound, "No such stream path on the camera (\(status)).")
        case 461: (.unsupportedTransport, "The camera refused the transport (\(status)).")
        case 500...599: (.serverError, "The camera reported an error (\(status)).")
        default: (.protocolError, "Unexpected RTSP answer (\(status)).")
        }
        return ProbeResult(reason: reason, phase: phase, message: text, timings: timings)
    }
}

/// One RTSP request/response at a time over a plain socket, with bounded head and body.
struct RTSPExchange {
    let connection: TCPConnection
    let url: String
    let clock: ProbeClock
    var timings = Timings()
    private var cseq = 1
    private var buffer: [UInt8] = []

    init(connection: TCPConnection, url: String, clock: ProbeClock) {
        self.connection = connection
        self.url = url
        self.clock = clock
    }

    /// Sends `method` (for `url`, else the exchange's) and reads its answer; nil when the answer is not RTSP
    /// (or its head is too large).
    mutating func send(_ method: String, url: String? = nil, extra: [String]) throws(TCPConnection.Failure) -> (ResponseHead, [UInt8])? {
        let lines = ["\(method) \(url ?? self.url) RTSP/1.0", "CSeq: \(cseq)", "User-Agent: StreamPulse/1.0"] + extra + ["", ""]
        cseq += 1
        try connection.write(Array(lines.joined(separator: "\r\n").utf8))
        var end = ResponseHead.endOfHead(in: buffer)
        while end == nil {
            if buffer.count > RTSPQuickProbe.maxHead { return nil }
            buffer += try connection.read(maximum: 4096)
            if timings.firstByteMs == nil { timings.firstByteMs = clock.elapsedMs }
            // A non-RTSP banner is recognised from its first bytes.
            if buffer.count >= 5, !buffer.starts(with: Array("RTSP/".utf8)) { return nil }
            end = ResponseHead.endOfHead(in: buffer)
        }
        guard let end, let head = try? ResponseHead.parse(buffer[..<end], protocols: ["RTSP/"]) else { return nil }
        buffer.removeFirst(end)
        let length = min(Int(head.header("content-length") ?? "0") ?? 0, RTSPQuickProbe.maxBody)
        while buffer.count < length { buffer += try connection.read(maximum: 4096) }
        let body = Array(buffer.prefix(length))
        buffer.removeFirst(length)
        return (head, body)
    }

    /// Bytes read past the last answer (media that followed PLAY at once), handed over and forgotten.
    mutating func takeBuffered() -> [UInt8] {
        defer { buffer = [] }
        return buffer
    }
}
