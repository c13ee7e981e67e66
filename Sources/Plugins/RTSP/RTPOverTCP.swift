import CFFmpeg
import Foundation
import ProberSupport
import StreamPulseCore

/// The deep probe's own RTSP session for H.264 and H.265 cameras over TCP: DESCRIBE, SETUP (interleaved),
/// PLAY, then RTP read in large chunks and put back together into access units for the decoder.
///
/// Why not FFmpeg's reader: it reads an interleaved RTSP stream one RTP packet at a time with three
/// blocking reads (the `$` byte, the rest of the 4-byte header, the payload), each a `poll` and a `recv`:
/// six system calls per RTP packet, 270 packets a second at 1080p. Those calls were most of a deep probe's
/// CPU (perf, stop 26: 3 ms per second of 480p, 5 ms per second of 1080p). Here one `recv` takes whatever
/// gathered in the socket (up to 256 KiB) while the probe pauses between batches.
///
/// Anything else — a camera that refuses the transport or answers DESCRIBE/SETUP/PLAY with an error, any other
/// codec (MJPEG, MPEG-4), TLS, credentials inside the URL — is left to FFmpeg's session (`fallback`), which
/// also words those failures. Only a 401 to DESCRIBE is said here, with FFmpeg's words: a second refused login
/// through FFmpeg would bring a camera's lockout of the monitor's address closer.
final class RTPOverTCP {
    enum Opening {
        case ready(RTPOverTCP)
        /// Let FFmpeg's session try (the reason is for debugging only).
        case fallback(String)
        /// A definitive outcome: cancelled, the deadline passed, or the camera could not be reached.
        case failed(ProbeResult)
    }

    /// The video codec: H.264 or H.265.
    let codecID: AVCodecID
    /// The SDP's parameter sets, one NAL unit each behind its start code (sent in front of keyframes when the
    /// decoder has not been given them: see `RTSPSession`).
    let parameterSets: [[UInt8]]
    /// RTP clock rate of the video track.
    let clockRate: Int
    /// Whether an audio track was set up (its packets are counted).
    let hasAudio: Bool
    private(set) var timings: Timings
    private(set) var audioPackets = 0
    /// RTP packets missing from the video track (sequence gaps).
    private(set) var packetsLost = 0

    private let connection: TCPConnection
    private var exchange: RTSPExchange
    private let videoChannel: UInt8, audioChannel: UInt8?
    private let sessionID: String?
    private let teardownURL: String
    /// Bytes read and not yet taken (`start..<end`); grows only for a packet larger than itself.
    private var storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    private var start = 0, end = 0
    private var assembler: AccessUnitAssembler
    private var lastSequence: UInt16?

    private init(connection: TCPConnection, exchange: RTSPExchange, video: SDPMedia, codecID: AVCodecID, videoChannel: UInt8,
                 audioChannel: UInt8?, sessionID: String?, teardownURL: String) {
        self.connection = connection
        var exchange = exchange
        let buffered = exchange.takeBuffered()
        self.exchange = exchange
        self.codecID = codecID
        self.parameterSets = video.parameterSets
        self.clockRate = video.clockRate
        self.hasAudio = audioChannel != nil
        self.videoChannel = videoChannel
        self.audioChannel = audioChannel
        self.sessionID = sessionID
        self.teardownURL = teardownURL
        self.timings = exchange.timings
        assembler = AccessUnitAssembler(hevc: codecID == AV_CODEC_ID_HEVC)
        reserve(buffered.count)
        buffered.withUnsafeBytes { storage.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        end = buffered.count
    }

    deinit {
        // Ends the camera's session at once (some cameras allow only a few); its answer is not awaited.
        var lines = ["TEARDOWN \(teardownURL) RTSP/1.0", "CSeq: 99", "User-Agent: StreamPulse/1.0"]
        if let sessionID { lines.append("Session: \(sessionID)") }
        try? connection.write(Array((lines + ["", ""]).joined(separator: "\r\n").utf8))
        storage.deallocate()
    }

    /// Connects and runs DESCRIBE, SETUP and PLAY.
    static func open(target: RTSPTarget, credentials: Credentials?, clock: ProbeClock) -> Opening {
        let connection: TCPConnection
        do {
            connection = try TCPConnection(host: target.host, port: target.port, clock: clock)
        } catch {
            return .failed(connectFailure(error, host: target.host, port: target.port))
        }
        var handshake = Handshake(target: target, credentials: credentials,
                                  exchange: RTSPExchange(connection: connection, url: target.url, clock: clock))
        handshake.exchange.timings.connectMs = clock.elapsedMs
        do {
            return try handshake.run(connection: connection)
        } catch {
            switch error {
            case .cancelled: return .failed(.failure(.cancelled, phase: .handshake, "The probe was cancelled."))
            case .timedOut:
                return .failed(ProbeResult(reason: .timeout, phase: .handshake, message: "Connected, but the RTSP handshake did not finish within the deadline.",
                                           timings: handshake.exchange.timings))
            default: return .fallback("socket: \(error)")
            }
        }
    }

    /// The requests before media flows, answering authentication challenges as they come.
    private struct Handshake {
        let target: RTSPTarget
        let credentials: Credentials?
        var exchange: RTSPExchange
        var challenge: AuthChallenge?
        var nonceCount = 0

        init(target: RTSPTarget, credentials: Credentials?, exchange: RTSPExchange) {
            self.target = target
            self.credentials = credentials
            self.exchange = exchange
        }

        mutating func request(_ method: String, url: String, extra: [String]) throws(TCPConnection.Failure) -> (ResponseHead, [UInt8])? {
            for attempt in 0..<2 {
                var headers = extra
                if let challenge, let credentials {
                    nonceCount += 1
                    headers.append("Authorization: " + challenge.authorization(method: method, uri: url, credentials: credentials, nonceCount: nonceCount))
                }
                guard let (head, body) = try exchange.send(method, url: url, extra: headers) else { return nil }
                if head.status == 401, attempt == 0, credentials != nil, let offered = AuthChallenge.best(from: head.headers("www-authenticate")) {
                    challenge = offered
                    nonceCount = 0
                    continue
                }
                return (head, body)
            }
            return nil
        }

        mutating func run(connection: TCPConnection) throws(TCPConnection.Failure) -> Opening {
            guard let (describe, body) = try request("DESCRIBE", url: target.url, extra: ["Accept: application/sdp"]) else { return .fallback("DESCRIBE") }
            if describe.status == 401 {
                // Said here, not by a second login through FFmpeg: cameras lock an address out after a few
                // refused logins.
                return .failed(ProbeResult(reason: .unauthorized, phase: .authenticate, message: credentials == nil
                    ? "The camera requires credentials (RTSP 401)." : "The camera refused the credentials (RTSP 401).", timings: exchange.timings))
            }
            guard describe.status == 200 else { return .fallback("DESCRIBE \(describe.status)") }
            let sdp = SDP(String(decoding: body, as: UTF8.self))
            guard let video = sdp.media.first(where: { $0.kind == "video" }) else { return .fallback("no video track") }
            let codecID: AVCodecID
            switch video.encoding.uppercased() {
            case "H264": codecID = AV_CODEC_ID_H264
            case "H265", "HEVC":
                // Decoding-order numbers in the payload (sprop-max-don-diff > 0) are not handled here.
                if let diff = video.format["sprop-max-don-diff"], diff != "0" { return .fallback("H.265 with DONL") }
                codecID = AV_CODEC_ID_HEVC
            default: return .fallback("codec \(video.encoding)")
            }
            let base = describe.header("content-base") ?? describe.header("content-location") ?? target.url
            guard let (setup, _) = try request("SETUP", url: video.url(base: base), extra: ["Transport: RTP/AVP/TCP;unicast;interleaved=0-1"]),
                  setup.status == 200, let videoChannel = Self.channel(setup) else { return .fallback("SETUP") }
            let sessionID = setup.header("session").map { String($0.split(separator: ";")[0]).trimmingCharacters(in: .whitespaces) }
            let session = sessionID.map { ["Session: \($0)"] } ?? []
            var audioChannel: UInt8?
            if let audio = sdp.media.first(where: { $0.kind == "audio" }),
               let (answer, _) = try request("SETUP", url: audio.url(base: base), extra: ["Transport: RTP/AVP/TCP;unicast;interleaved=2-3"] + session),
               answer.status == 200 {
                audioChannel = Self.channel(answer)
            }
            let playURL = sdp.sessionControl.map { SDPMedia.resolve($0, base: base) } ?? base
            guard let (play, _) = try request("PLAY", url: playURL, extra: session + ["Range: npt=0.000-"]), play.status == 200 else {
                return .fallback("PLAY")
            }
            return .ready(RTPOverTCP(connection: connection, exchange: exchange, video: video, codecID: codecID, videoChannel: videoChannel,
                                     audioChannel: audioChannel, sessionID: sessionID, teardownURL: playURL))
        }

        /// The first interleaved channel the server chose (`Transport: …;interleaved=0-1`).
        static func channel(_ head: ResponseHead) -> UInt8? {
            guard let transport = head.header("transport") else { return nil }
            for part in transport.split(separator: ";") where part.lowercased().hasPrefix("interleaved=") {
                return part.dropFirst("interleaved=".count).split(separator: "-").first.flatMap { UInt8($0) }
            }
            return nil
        }
    }

    /// Keep every picture's bytes, not only keyframes' (see `AccessUnitAssembler.keepsEveryPicture`).
    var keepsEveryPicture: Bool {
        get { assembler.keepsEveryPicture }
        set { assembler.keepsEveryPicture = newValue }
    }

    /// The next video access unit, reading as much as has arrived at once.
    func nextAccessUnit() throws(TCPConnection.Failure) -> AccessUnit {
        while true {
            if let unit = assembler.takeReady() { return unit }
            let (channel, packet) = try nextInterleaved()
            if channel == videoChannel {
                guard let rtp = RTPPacket(packet) else { continue }
                if let last = lastSequence {
                    let gap = Int(rtp.sequence &- last) - 1
                    if gap > 0, gap < 1000 { packetsLost += gap }
                }
                lastSequence = rtp.sequence
                assembler.add(rtp, clockRate: clockRate)
            } else if channel == audioChannel {
                audioPackets += 1
            } else if channel == videoChannel &+ 1, Self.isGoodbye(packet) {
                // RTCP BYE on the video track: the camera ended the stream (GStreamer at end of stream).
                throw .closed
            }
        }
    }

    /// Whether a compound RTCP packet holds a BYE (packet type 203).
    static func isGoodbye(_ packet: UnsafeRawBufferPointer) -> Bool {
        var at = 0
        while at + 4 <= packet.count {
            guard packet[at] >> 6 == 2 else { return false }
            if packet[at + 1] == 203 { return true }
            at += (Int(packet[at + 2]) << 8 | Int(packet[at + 3]) + 1) * 4
        }
        return false
    }

    /// The next `$`-framed packet (valid until the next read); RTSP messages the server interleaves (answers,
    /// announcements) are skipped.
    private func nextInterleaved() throws(TCPConnection.Failure) -> (UInt8, UnsafeRawBufferPointer) {
        while true {
            if end - start >= 4, storage[start] == 0x24 {
                let length = Int(storage[start + 2]) << 8 | Int(storage[start + 3])
                if end - start >= 4 + length {
                    let channel = storage[start + 1]
                    let packet = UnsafeRawBufferPointer(rebasing: storage[(start + 4)..<(start + 4 + length)])
                    start += 4 + length
                    return (channel, packet)
                }
                reserve(4 + length)
            } else if end - start >= 4 {
                // An RTSP message between packets: skip its head and body, or one byte to find the next `$`.
                let rest = Array(UnsafeRawBufferPointer(rebasing: storage[start..<end]))
                if rest.starts(with: Array("RTSP/".utf8)) || rest.starts(with: Array("ANNOUNCE".utf8)) || rest.starts(with: Array("GET_PARAMETER".utf8)) {
                    if let headEnd = ResponseHead.endOfHead(in: rest) {
                        let head = String(decoding: rest[..<headEnd], as: UTF8.self).lowercased()
                        let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                        if rest.count >= headEnd + length { start += headEnd + length; continue }
                        reserve(headEnd + length)
                    }
                } else {
                    start += 1
                    continue
                }
            }
            try fill()
        }
    }

    /// Makes room for `count` unread bytes.
    private func reserve(_ count: Int) {
        guard count > storage.count else { return }
        let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, storage.count * 2), alignment: 16)
        larger.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: end - start)
        storage.deallocate()
        storage = larger
        end -= start
        start = 0
    }

    /// When set, the next read that finds the socket empty (the reader has caught up with the live stream)
    /// first sleeps until this point of the probe's clock (ms), once, so that the packets arriving meanwhile are
    /// read in one batch instead of each waking the probe (perf, stop 28: a waiting read woken by the next
    /// packet, then a pause, cost two wake-ups per batch; sleeping first saved ~0.9 ms per 1080p deep probe).
    var restUntilMs: Double?

    /// Reads what has arrived into the free end of the buffer, moving unread bytes to its front first.
    private func fill() throws(TCPConnection.Failure) {
        if start > 0 {
            if end > start { storage.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: end - start) }
            end -= start
            start = 0
        }
        if end == storage.count { reserve(storage.count + 1) }
        let free = UnsafeMutableRawBufferPointer(rebasing: storage[end...])
        var count = try connection.readAvailable(into: free)
        if count == 0, let until = restUntilMs {
            restUntilMs = nil
            let pause = until - exchange.clock.elapsedMs
            if pause > 0, !exchange.clock.isCancelled { usleep(UInt32(pause * 1000)) }
        }
        if count == 0 { count = try connection.read(into: free) }
        end += count
    }
}

/// One RTP packet's header fields and payload (a view into the reader's buffer).
struct RTPPacket {
    var marker: Bool
    var sequence: UInt16
    var timestamp: UInt32
    var payload: UnsafeRawBufferPointer

    init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= 12, bytes[0] >> 6 == 2 else { return nil }
        var headerLength = 12 + Int(bytes[0] & 0x0F) * 4
        if bytes[0] & 0x10 != 0 {
            guard bytes.count >= headerLength + 4 else { return nil }
            headerLength += 4 + (Int(bytes[headerLength + 2]) << 8 | Int(bytes[headerLength + 3])) * 4
        }
        var end = bytes.count
        if bytes[0] & 0x20 != 0 { end -= Int(bytes[bytes.count - 1]) }
        guard headerLength <= end else { return nil }
        marker = bytes[1] & 0x80 != 0
        sequence = UInt16(bytes[2]) << 8 | UInt16(bytes[3])
        timestamp = UInt32(bytes[4]) << 24 | UInt32(bytes[5]) << 16 | UInt32(bytes[6]) << 8 | UInt32(bytes[7])
        payload = UnsafeRawBufferPointer(rebasing: bytes[headerLength..<end])
    }
}

/// A picture's worth of NAL units in Annex B form.
struct AccessUnit {
    /// The NAL units; only those before the first slice when the unit is not `complete`.
    var data: [UInt8]
    /// Its size on the wire, as NAL units with start codes (kept or not).
    var size: Int
    /// Whether `data` holds the whole unit (see `AccessUnitAssembler.keepsEveryPicture`).
    var complete: Bool
    var key: Bool
    /// An IDR (or H.265 BLA) picture: decoding it drops every reference the decoder held.
    var resets: Bool
    /// RTP time in seconds since the first packet (wrap-around unfolded).
    var seconds: Double
    /// The same in RTP clock ticks, as the decoder's timestamp.
    var ticks: Int64
    /// Where the unit's parameter sets are in `data` (H.264 SPS/PPS, H.265 VPS/SPS/PPS; start codes
    /// included), in order: the session leaves out those its decoder already holds.
    var parameterSets: [Range<Int>] = []
}

/// Puts H.264 (RFC 6184: single NAL, STAP-A, FU-A) and H.265 (RFC 7798: single, AP, FU) payloads back
/// together into access units: a unit ends at the marker bit or when the timestamp changes.
struct AccessUnitAssembler {
    let hevc: Bool
    /// Keep the bytes of every picture. When false (the deep probe decodes keyframes only), a unit whose first
    /// slice is not a keyframe's is counted from there on, not copied: nine tenths of a stream's bytes.
    var keepsEveryPicture = false
    private var data: [UInt8] = []
    /// The unit is known not to be a keyframe and its bytes from its first slice on are only counted.
    private var skipping = false
    private var skipped = 0
    private var key = false
    private var resets = false
    private var timestamp: UInt32?
    private var ready: [AccessUnit] = []
    /// Inside a fragmented NAL unit (its bytes go straight into `data`).
    private var inFragment = false
    /// The last unit's size, reserved for the next (a unit grows packet by packet), and the last keyframe's,
    /// reserved once a unit turns out to be a keyframe (ten times a picture's size, often more: growing by
    /// doubling copied it five times over).
    private var lastSize = 0, lastKeySize = 0
    private var firstTimestamp: UInt32?
    private var unfolded: Int64 = 0
    private var lastTimestamp: UInt32 = 0
    private var clockRate = 90_000
    /// The unit's parameter-set NAL units so far, and where the one being appended began.
    private var parameterSets: [Range<Int>] = []
    private var parameterSetStart: Int?

    init(hevc: Bool) { self.hevc = hevc }

    mutating func takeReady() -> AccessUnit? { ready.isEmpty ? nil : ready.removeFirst() }

    mutating func add(_ rtp: RTPPacket, clockRate: Int) {
        self.clockRate = clockRate
        if let timestamp, timestamp != rtp.timestamp { finish() }
        if timestamp == nil { timestamp = rtp.timestamp }
        hevc ? addH265(rtp.payload) : addH264(rtp.payload)
        if rtp.marker { finish() }
    }

    private mutating func append(nal: UnsafeRawBufferPointer) {
        guard let first = nal.first else { return }
        begin(header: first)
        keep(nal)
        if !hevc, first & 0x1F == 6, Self.isRecoveryPoint(nal) { key = true }
    }

    /// Adds bytes of the NAL unit being appended (counts them only, when the unit is skipped).
    private mutating func keep(_ bytes: UnsafeRawBufferPointer) {
        if skipping { skipped += bytes.count } else { data.append(contentsOf: bytes) }
    }

    /// Starts a NAL unit whose first header byte is `first`: the start code, and what its type says.
    private mutating func begin(header first: UInt8) {
        if data.isEmpty && !skipping { data.reserveCapacity(max(lastSize, 4096)) }
        endParameterSet()
        let start = data.count
        if hevc {
            let type = (first >> 1) & 0x3F
            if (16...21).contains(type) { key = true }
            if (16...20).contains(type) { resets = true }
            if (32...34).contains(type), !skipping { parameterSetStart = start }
            // A slice of a picture that is not a random access point: the rest of the unit is not a keyframe.
            if type <= 9, !key, !keepsEveryPicture { skipping = true }
        } else {
            let type = first & 0x1F
            if type == 5 { key = true; resets = true }
            if type == 7 || type == 8, !skipping { parameterSetStart = start }
            // A non-IDR slice with no recovery point before it (data partitions too).
            if (1...4).contains(type), !key, !keepsEveryPicture { skipping = true }
        }
        if skipping { skipped += 4 } else { data.append(contentsOf: [0, 0, 0, 1] as [UInt8]) }
        if key, data.capacity < lastKeySize { data.reserveCapacity(lastKeySize + lastKeySize / 4) }
    }

    /// Ends the parameter-set NAL unit being appended, if any, where the data ends now.
    private mutating func endParameterSet() {
        if let start = parameterSetStart { parameterSets.append(start..<data.count) }
        parameterSetStart = nil
    }

    /// An SEI whose first message is a recovery point (payload type 6): a keyframe without IDR.
    private static func isRecoveryPoint(_ nal: UnsafeRawBufferPointer) -> Bool {
        var type = 0
        for byte in nal.dropFirst() {
            type += Int(byte)
            if byte != 0xFF { break }
        }
        return type == 6
    }

    /// NAL units of an aggregation packet (H.264 STAP-A, H.265 AP): each behind a 16-bit size.
    private mutating func appendAggregated(_ payload: UnsafeRawBufferPointer, from start: Int) {
        var at = start
        while at + 2 <= payload.count {
            let size = Int(payload[at]) << 8 | Int(payload[at + 1])
            at += 2
            guard size > 0, at + size <= payload.count else { break }
            append(nal: UnsafeRawBufferPointer(rebasing: payload[at..<(at + size)]))
            at += size
        }
    }

    /// One fragment of a NAL unit (H.264 FU-A, H.265 FU): `fu` holds the start and end bits, `header` is the
    /// NAL header rebuilt from the packet's, the fragment's bytes begin at `start`.
    private mutating func appendFragment(_ payload: UnsafeRawBufferPointer, fu: UInt8, header: (UInt8, UInt8?), from start: Int) {
        if fu & 0x80 != 0 {
            begin(header: header.0)
            if skipping {
                skipped += header.1 == nil ? 1 : 2
            } else {
                data.append(header.0)
                if let second = header.1 { data.append(second) }
            }
            inFragment = true
        }
        guard inFragment else { return }  // joined mid-NAL: wait for the next start
        keep(UnsafeRawBufferPointer(rebasing: payload[start...]))
        if fu & 0x40 != 0 { inFragment = false }
    }

    private mutating func addH264(_ payload: UnsafeRawBufferPointer) {
        guard let header = payload.first else { return }
        switch header & 0x1F {
        case 24: appendAggregated(payload, from: 1)  // STAP-A
        case 28:  // FU-A
            guard payload.count >= 2 else { return }
            let fu = payload[1]
            appendFragment(payload, fu: fu, header: ((header & 0xE0) | (fu & 0x1F), nil), from: 2)
        case 1...23: append(nal: payload)
        default: break  // STAP-B, MTAP, FU-B: not sent over unicast RTSP
        }
    }

    private mutating func addH265(_ payload: UnsafeRawBufferPointer) {
        guard payload.count >= 2 else { return }
        switch (payload[0] >> 1) & 0x3F {
        case 48: appendAggregated(payload, from: 2)  // aggregation packet
        case 49:  // fragmentation unit
            guard payload.count >= 3 else { return }
            let fu = payload[2]
            appendFragment(payload, fu: fu, header: ((payload[0] & 0x81) | ((fu & 0x3F) << 1), payload[1]), from: 3)
        default: append(nal: payload)
        }
    }

    private mutating func finish() {
        defer { data = []; key = false; resets = false; timestamp = nil; inFragment = false; parameterSets = []; skipping = false; skipped = 0 }
        endParameterSet()
        guard let timestamp, data.count + skipped > 0 else { return }
        if firstTimestamp == nil { firstTimestamp = timestamp; lastTimestamp = timestamp }
        unfolded += Int64(Int32(bitPattern: timestamp &- lastTimestamp))
        lastTimestamp = timestamp
        lastSize = data.count
        if key { lastKeySize = data.count }
        ready.append(AccessUnit(data: data, size: data.count + skipped, complete: !skipping, key: key, resets: resets,
                                seconds: Double(unfolded) / Double(clockRate), ticks: unfolded, parameterSets: parameterSets))
    }
}

/// The SDP's media sections, as far as the deep probe needs them.
struct SDP {
    var sessionControl: String?
    var media: [SDPMedia] = []

    init(_ text: String) {
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = String(raw.drop { $0 == " " || $0 == "\t" })
            if line.hasPrefix("m=") {
                let fields = line.dropFirst(2).split(separator: " ")
                media.append(SDPMedia(kind: fields.first.map(String.init) ?? "", payloadType: fields.count > 3 ? Int(fields[3]) : nil))
            } else if line.hasPrefix("a=control:") {
                let value = String(line.dropFirst("a=control:".count))
                if media.isEmpty { sessionControl = value } else { media[media.count - 1].control = value }
            } else if line.hasPrefix("a=rtpmap:"), !media.isEmpty {
                let fields = line.dropFirst("a=rtpmap:".count).split(separator: " ", maxSplits: 1)
                guard fields.count == 2, Int(fields[0]) == media[media.count - 1].payloadType else { continue }
                let parts = fields[1].split(separator: "/")
                media[media.count - 1].encoding = parts.first.map(String.init) ?? ""
                if parts.count > 1, let rate = Int(parts[1]), rate > 0 { media[media.count - 1].clockRate = rate }
            } else if line.hasPrefix("a=fmtp:"), !media.isEmpty {
                let fields = line.dropFirst("a=fmtp:".count).split(separator: " ", maxSplits: 1)
                guard fields.count == 2, Int(fields[0]) == media[media.count - 1].payloadType else { continue }
                for pair in fields[1].split(separator: ";") {
                    let kv = pair.split(separator: "=", maxSplits: 1)
                    guard kv.count == 2 else { continue }
                    media[media.count - 1].format[kv[0].filter { $0 != " " }.lowercased()] = kv[1].filter { $0 != " " && $0 != "\r" }
                }
            }
        }
    }
}

/// One `m=` section.
struct SDPMedia {
    var kind: String
    var payloadType: Int?
    var encoding = ""
    var clockRate = 90_000
    var control: String?
    var format: [String: String] = [:]

    /// The track's URL for SETUP.
    func url(base: String) -> String { control.map { Self.resolve($0, base: base) } ?? base }

    static func resolve(_ control: String, base: String) -> String {
        if control == "*" { return base }
        if control.lowercased().hasPrefix("rtsp://") || control.lowercased().hasPrefix("rtsps://") { return control }
        return base.hasSuffix("/") ? base + control : base + "/" + control
    }

    /// H.264 `sprop-parameter-sets` or H.265 `sprop-vps/sps/pps`, decoded, each behind a start code.
    var parameterSets: [[UInt8]] {
        let keys = ["sprop-parameter-sets", "sprop-vps", "sprop-sps", "sprop-pps"]
        var sets: [[UInt8]] = []
        for key in keys {
            for encoded in (format[key] ?? "").split(separator: ",") {
                var text = String(encoded)
                while text.count % 4 != 0 { text += "=" }
                guard let nal = Data(base64Encoded: text), !nal.isEmpty else { continue }
                sets.append([0, 0, 0, 1] + nal)
            }
        }
        return sets
    }
}
