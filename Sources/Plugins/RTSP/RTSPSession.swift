import CFFmpeg
import Foundation
import ProberSupport
import StreamPulseCore

/// One FFmpeg RTSP session: open (with TCP→UDP fallback on 461), decode video frames, classify failures
/// from the session's own state (phase, deadline, cancellation) rather than from FFmpeg's code alone,
/// because a timeout surfaces as INVALIDDATA, EIO, EPERM or EXIT depending on where it struck.
final class RTSPSession {
    let target: RTSPTarget
    let credentials: Credentials?
    let clock: ProbeClock
    private(set) var phase: Phase = .connect
    var timings = Timings()
    private var format: UnsafeMutablePointer<AVFormatContext>?
    private var decoder: UnsafeMutablePointer<AVCodecContext>?
    private var codec: UnsafePointer<AVCodec>?
    /// Deep probes decode keyframes only, a few per window, and spend most of the window waiting for the
    /// network: with this set the session holds a decoder (borrowed from `DecoderPool`) only while a
    /// keyframe is decoded (an H.264 decoder holds about 1.3 MB of context and tables; 64 deep probes waiting
    /// with decoders of their own were most of a 10,000-stream first round's peak memory). Pictures already
    /// decoded stay valid: they hold references to their own buffers.
    var decoderOnlyForKeyframes = false
    /// Parameter sets announced in the SDP, sent in front of each keyframe (a pooled decoder may have
    /// decoded another camera last): FFmpeg's reader.
    private var inBandParameters: Data?
    /// The same, one NAL unit each, for the own reader: sent with a keyframe's own parameter sets only when
    /// the decoder does not hold them already.
    private var announcedParameterSets: [[UInt8]] = []
    /// The parameter-set NAL units the held decoder was last sent, in order (nil: not known). See
    /// `loadCurrentUnit`.
    private var decoderParameterSets: [[UInt8]]?
    private var joined: UnsafeMutablePointer<AVPacket>?
    /// Whether the decoder held now has been sent the parameter sets since it was borrowed; whether it is
    /// new or flushed; whether it must be flushed before it goes back (it decoded something after which the
    /// next borrower's IDR would not reset it: see `DecoderPool`).
    private var decoderHasParameters = false
    private var decoderClean = true
    private var decoderNeedsFlush = false
    /// The deep probe's own reader for H.264/H.265 over TCP (nil: FFmpeg reads), its codec parameters, and
    /// the access unit read last (copied into `packet` only when it is decoded).
    private var media: RTPOverTCP?
    private var mediaParameters: UnsafeMutablePointer<AVCodecParameters>?
    private var currentUnit: AccessUnit?
    private var packet: UnsafeMutablePointer<AVPacket>?
    private var frame: UnsafeMutablePointer<AVFrame>?
    private(set) var videoIndex: Int32 = -1
    private(set) var packetsRead = 0
    private(set) var bytesRead = 0
    private(set) var decodeErrors = 0
    private(set) var transportUsed = "tcp"
    /// The audio track's index (-1: none announced) and its packets read so far.
    private(set) var audioIndex: Int32 = -1
    private(set) var audioPackets = 0

    private var clockBox: Unmanaged<ProbeClock>

    init(target: RTSPTarget, credentials: Credentials?, clock: ProbeClock) {
        self.target = target
        self.credentials = credentials
        self.clock = clock
        clockBox = Unmanaged.passRetained(clock)
    }

    deinit {
        giveBackDecoder()
        avcodec_parameters_free(&mediaParameters)
        avformat_close_input(&format)
        av_packet_free(&packet)
        av_packet_free(&joined)
        av_frame_free(&frame)
        clockBox.release()
    }

    var codecName: String? {
        if let media { return avcodec_get_name(media.codecID).map { String(cString: $0) } }
        guard let format, videoIndex >= 0, let stream = format.pointee.streams[Int(videoIndex)],
              let name = avcodec_get_name(stream.pointee.codecpar.pointee.codec_id) else { return nil }
        return String(cString: name)
    }

    /// The video stream's codec parameters.
    private var videoParameters: UnsafePointer<AVCodecParameters>? {
        if let mediaParameters { return UnsafePointer(mediaParameters) }
        guard let format, videoIndex >= 0, let stream = format.pointee.streams[Int(videoIndex)] else { return nil }
        return UnsafePointer(stream.pointee.codecpar)
    }

    /// Borrows an opened video decoder unless the session holds one; false when none can be opened.
    private func openDecoder() -> Bool {
        if decoder != nil { return true }
        guard let codec, let parameters = videoParameters,
              let loan = DecoderPool.shared.borrow(parameters: parameters, codec: codec, prepare: { PictureBuffers.shared.serve($0) }) else { return false }
        let opened = loan.context
        if let decoderErrors { decoderErrors.attach(to: opened) } else { decoderErrors = DecoderErrorCounter(attachingTo: opened) }
        decoder = opened
        decoderHasParameters = false
        decoderClean = loan.clean
        decoderNeedsFlush = false
        decoderParameterSets = loan.parameterSets
        return true
    }

    /// Gives the decoder back to the pool, if the session holds one (flushed unless it last decoded an IDR
    /// picture read by the own reader: see `DecoderPool`).
    private func giveBackDecoder() {
        guard let decoder, let parameters = videoParameters else { return }
        // FFmpeg's path cannot tell an IDR picture from another keyframe: its decoders always go back flushed.
        DecoderPool.shared.giveBack(decoder, parameters: parameters, flush: media == nil || decoderNeedsFlush, parameterSets: decoderParameterSets)
        self.decoder = nil
        decoderParameterSets = nil
    }

    /// Readies the held decoder for the access unit read last: only an IDR picture may go to a decoder that
    /// still holds another stream's references.
    private func readyDecoder(_ decoder: UnsafeMutablePointer<AVCodecContext>) {
        let resets = media != nil && currentUnit?.resets == true
        if !decoderClean && !resets {
            avcodec_flush_buffers(decoder)
            decoderParameterSets = nil  // FFmpeg keeps them through a flush, but that is not promised
        }
        decoderClean = true
        if !resets { decoderNeedsFlush = true }
    }

    /// Sends the packet last read to the decoder. FFmpeg's reader: a keyframe, and the first packet a
    /// borrowed decoder gets, go with the SDP's parameter sets in front (the own reader's packet already
    /// holds what it needs: `loadCurrentUnit`).
    private func sendCurrentPacket(to decoder: UnsafeMutablePointer<AVCodecContext>) -> Int32 {
        guard let packet else { return -1 }
        let key = packet.pointee.flags & AV_PKT_FLAG_KEY != 0
        guard media == nil, key || !decoderHasParameters, let parameters = inBandParameters, !parameters.isEmpty, let data = packet.pointee.data else {
            return avcodec_send_packet(decoder, packet)
        }
        decoderHasParameters = true
        if joined == nil { joined = av_packet_alloc() }
        guard let joined else { return avcodec_send_packet(decoder, packet) }
        av_packet_unref(joined)
        let size = parameters.count + Int(packet.pointee.size)
        guard av_new_packet(joined, Int32(size)) >= 0, av_packet_copy_props(joined, packet) >= 0, let target = joined.pointee.data else {
            return avcodec_send_packet(decoder, packet)
        }
        parameters.copyBytes(to: target, count: parameters.count)
        memcpy(target + parameters.count, data, Int(packet.pointee.size))
        defer { av_packet_unref(joined) }
        return avcodec_send_packet(decoder, joined)
    }

    /// Connects and opens the stream. Returns a failure result, or nil when the video decoder is ready.
    func open(transport: String?) -> ProbeResult? {
        // Deep probes of H.264/H.265 over TCP read with their own session (see `RTPOverTCP`); whatever it
        // does not handle falls through to FFmpeg's.
        if decoderOnlyForKeyframes, transport != "udp", !target.secure, URLComponents(string: target.url)?.user == nil {
            switch RTPOverTCP.open(target: target, credentials: credentials, clock: clock) {
            case .ready(let opened): return adopt(opened)
            case .failed(let failure): return failure
            case .fallback: break
            }
        }
        // Our own TCP connect first: it gives the connect time and tells refused/unreachable apart from a
        // camera that accepts and then stays silent.
        phase = .connect
        do { _ = try TCPConnection(host: target.host, port: target.port, clock: clock) } catch {
            return connectFailure(error, host: target.host, port: target.port)
        }
        timings.connectMs = clock.elapsedMs
        phase = .handshake
        let order: [String] = switch transport {
        case "udp": ["udp"]
        case "tcp": ["tcp", "udp"]
        default: ["tcp", "udp"]
        }
        var lastFailure: ProbeResult?
        for (attempt, candidate) in order.enumerated() {
            let code = openInput(transport: candidate)
            if code >= 0 { transportUsed = candidate; lastFailure = nil; break }
            lastFailure = classifyOpen(code)
            // Fall back to UDP only when the camera refused the TCP transport (RTSP 461).
            if code == sp_averror(EPROTONOSUPPORT), attempt + 1 < order.count { continue }
            return lastFailure
        }
        if let lastFailure { return lastFailure }
        timings.firstByteMs = timings.firstByteMs ?? clock.elapsedMs
        guard let format else { return .failure(.pluginError, phase: .handshake, "FFmpeg returned no context.") }
        videoIndex = av_find_best_stream(format, AVMEDIA_TYPE_VIDEO, -1, -1, nil, 0)
        audioIndex = av_find_best_stream(format, AVMEDIA_TYPE_AUDIO, -1, -1, nil, 0)
        guard videoIndex >= 0, let stream = format.pointee.streams[Int(videoIndex)] else {
            if audioIndex >= 0 { return audioWithoutVideo() }
            return ProbeResult(reason: .noFrames, phase: .handshake, message: "The stream offers no video track.", timings: timings)
        }
        guard let codec = avcodec_find_decoder(stream.pointee.codecpar.pointee.codec_id) else {
            let name = String(cString: avcodec_get_name(stream.pointee.codecpar.pointee.codec_id))
            return ProbeResult(reason: .decodeError, phase: .handshake, message: "No decoder for the stream's codec \(name).", timings: timings)
        }
        self.codec = codec
        inBandParameters = DecoderPool.inBandParameters(of: stream.pointee.codecpar)
        // Borrowed once here so a decoder that cannot open is said at the handshake.
        guard openDecoder() else {
            return ProbeResult(reason: .decodeError, phase: .handshake, message: "Cannot open the \(codecName ?? "video") decoder.", timings: timings)
        }
        if decoderOnlyForKeyframes { giveBackDecoder() }
        packet = av_packet_alloc()
        frame = av_frame_alloc()
        phase = .firstByte
        return nil
    }

    /// Takes over a session that reached PLAY on its own: the decoder is opened once, as FFmpeg's path does.
    private func adopt(_ opened: RTPOverTCP) -> ProbeResult? {
        media = opened
        timings = opened.timings
        transportUsed = "tcp"
        guard let codec = avcodec_find_decoder(opened.codecID), let parameters = avcodec_parameters_alloc() else {
            return .failure(.pluginError, phase: .handshake, "FFmpeg has no decoder for the stream's codec.")
        }
        parameters.pointee.codec_type = AVMEDIA_TYPE_VIDEO
        parameters.pointee.codec_id = opened.codecID
        mediaParameters = parameters
        self.codec = codec
        announcedParameterSets = opened.parameterSets
        videoIndex = 0
        audioIndex = opened.hasAudio ? 1 : -1
        guard openDecoder() else {
            return ProbeResult(reason: .decodeError, phase: .handshake, message: "Cannot open the \(codecName ?? "video") decoder.", timings: timings)
        }
        giveBackDecoder()
        packet = av_packet_alloc()
        frame = av_frame_alloc()
        phase = .firstByte
        return nil
    }

    /// Reads the next access unit from the own reader (see `readVideoPacket`).
    private func readAccessUnit(_ media: RTPOverTCP) -> Packet {
        do {
            let unit = try media.nextAccessUnit()
            audioPackets = media.audioPackets
            currentUnit = unit
            packetsRead += 1
            bytesRead += unit.size
            if phase == .firstByte { phase = .firstFrame }
            return .video(key: unit.key, seconds: unit.seconds, size: unit.size)
        } catch {
            audioPackets = media.audioPackets
            let code: Int32 = switch error {
            case .closed: sp_averror_eof()
            case .timedOut: sp_averror(ETIMEDOUT)
            case .cancelled: sp_averror_exit()
            default: sp_averror(EIO)
            }
            return .failure(classifyRead(code))
        }
    }

    /// Copies the access unit read last into `packet` for the held decoder. A keyframe, and the first unit a
    /// borrowed decoder gets, must carry the stream's parameter sets: the SDP's, then the unit's own (later
    /// ones win), each identical NAL unit once. When the decoder was last sent exactly these (the pool tells,
    /// see `DecoderPool`), they are left out: FFmpeg would parse them again for nothing, and an H.264 PPS costs
    /// a 170 KB zeroed allocation and its tables each time. Otherwise they go in front, and the unit's own
    /// are not sent twice.
    private func loadCurrentUnit() -> Bool {
        guard let unit = currentUnit, unit.complete, let packet else { return false }
        var prefix: [[UInt8]] = []
        var omitted: [Range<Int>] = []
        if unit.key || !decoderHasParameters {
            omitted = unit.parameterSets
            let wanted = Self.lastOfEach(announcedParameterSets + omitted.map { Array(unit.data[$0]) })
            if wanted != decoderParameterSets { prefix = wanted }
            decoderParameterSets = wanted
            decoderHasParameters = true
        }
        let size = prefix.reduce(0) { $0 + $1.count } + unit.data.count - omitted.reduce(0) { $0 + $1.count }
        guard av_new_packet(packet, Int32(size)) >= 0, var target = packet.pointee.data else { return false }
        for nal in prefix {
            nal.withUnsafeBufferPointer { target.update(from: $0.baseAddress!, count: nal.count) }
            target += nal.count
        }
        unit.data.withUnsafeBufferPointer { bytes in
            var at = 0
            for range in omitted + [bytes.count..<bytes.count] {
                target.update(from: bytes.baseAddress! + at, count: range.lowerBound - at)
                target += range.lowerBound - at
                at = range.upperBound
            }
        }
        packet.pointee.flags = unit.key ? AV_PKT_FLAG_KEY : 0
        packet.pointee.pts = unit.ticks
        packet.pointee.dts = unit.ticks
        return true
    }

    /// The NAL units in order, each kept only where it last occurs.
    static func lastOfEach(_ units: [[UInt8]]) -> [[UInt8]] {
        var kept: [[UInt8]] = []
        for (index, unit) in units.enumerated() where !units[(index + 1)...].contains(unit) { kept.append(unit) }
        return kept
    }

    /// RTP packets missing from the video track, when the own reader read it (FFmpeg's path does not say).
    var packetsLost: Int? { media?.packetsLost }

    /// The camera announces audio but no video: when audio packets really flow, its video is gone
    /// (`no_video`, the encoder off or failed) rather than the camera being unreachable.
    private func audioWithoutVideo() -> ProbeResult {
        guard let format else { return .failure(.pluginError, phase: .handshake, "FFmpeg returned no context.") }
        phase = .firstFrame
        let packet = av_packet_alloc()
        defer { var p = packet; av_packet_free(&p) }
        let start = clock.elapsedMs
        while audioPackets < 10, clock.elapsedMs - start < 2000, clock.remainingMs > 200 {
            guard let packet, av_read_frame(format, packet) >= 0 else { break }
            if packet.pointee.stream_index == audioIndex { audioPackets += 1 }
            av_packet_unref(packet)
        }
        guard audioPackets > 0 else {
            return ProbeResult(reason: .noFrames, phase: .handshake, message: "The stream offers no video track, and its audio track sends nothing either.", timings: timings)
        }
        return ProbeResult(reason: .noVideo, phase: .firstFrame, message: String(
            format: "The stream announces only audio, and %d audio packets arrived in %.1f s: the camera's video is gone (video encoder off or failed).",
            audioPackets, (clock.elapsedMs - start) / 1000), timings: timings, media: MediaFacts(audio: true))
    }

    private func openInput(transport: String) -> Int32 {
        avformat_close_input(&format)
        format = avformat_alloc_context()
        guard let format else { return sp_averror(ENOMEM) }
        format.pointee.interrupt_callback = AVIOInterruptCB(
            callback: { opaque in
                // FFmpeg polls this about every 100 ms inside blocking network calls.
                Unmanaged<ProbeClock>.fromOpaque(opaque!).takeUnretainedValue().shouldStop ? 1 : 0
            },
            opaque: clockBox.toOpaque())
        var options: OpaquePointer?
        av_dict_set(&options, "rtsp_transport", transport, 0)
        // Audio is set up too (its packets are only counted): a camera whose video died while its audio
        // still flows is `no_video`, and the stream's profile records whether it has audio.
        av_dict_set(&options, "allowed_media_types", "video+audio", 0)
        // Socket timeout in µs; the interrupt callback enforces the overall deadline.
        av_dict_set(&options, "timeout", String(max(100_000, Int(clock.remainingMs * 1000))), 0)
        av_dict_set(&options, "user_agent", "StreamPulse/1.0", 0)
        defer { av_dict_free(&options) }
        let url = target.urlWithCredentials(credentials)
        let code = avformat_open_input(&self.format, url, nil, &options)
        return code
    }

    private func classifyOpen(_ code: Int32) -> ProbeResult {
        let result: (Reason, Phase, String)
        if clock.isCancelled {
            result = (.cancelled, .handshake, "The probe was cancelled.")
        } else if clock.expired {
            result = (.timeout, .handshake, "Connected, but the RTSP handshake did not finish within the deadline.")
        } else {
            switch code {
            case sp_averror_http_unauthorized():
                result = (.unauthorized, .authenticate, credentials == nil ? "The camera requires credentials (RTSP 401)." : "The camera refused the credentials (RTSP 401).")
            case sp_averror_http_forbidden(): result = (.forbidden, .handshake, "The camera forbids this stream (RTSP 403).")
            case sp_averror_http_not_found(): result = (.notFound, .handshake, "No such stream path on the camera (RTSP 404).")
            case sp_averror_http_server_error(): result = (.serverError, .handshake, "The camera reported a server error (RTSP 5xx).")
            case sp_averror_http_other_4xx(): result = (.protocolError, .handshake, "The camera refused the request (RTSP 4xx).")
            case sp_averror(EPROTONOSUPPORT): result = (.unsupportedTransport, .setup, "The camera refused every transport offered (RTSP 461).")
            case sp_averror(ECONNREFUSED): result = (.connectionRefused, .connect, "Connection refused by \(target.host):\(target.port).")
            case sp_averror(EMFILE), sp_averror(ENFILE), sp_averror(ENOBUFS):
                result = (.monitorOverloaded, .connect, "The monitor could not open a connection (\(ffmpegErrorText(code))); this says nothing about the camera.")
            case sp_averror_invaliddata(): result = (.protocolError, .handshake, "The server's answer is not valid RTSP.")
            case sp_averror_eof(): result = (.streamEnded, .handshake, "The server hung up during the RTSP handshake.")
            case sp_averror(ETIMEDOUT): result = (.timeout, .handshake, "The RTSP handshake timed out.")
            default: result = (.protocolError, .handshake, "RTSP handshake failed: \(ffmpegErrorText(code)).")
            }
        }
        return ProbeResult(reason: result.0, phase: result.1, message: result.2, timings: timings)
    }

    enum Packet { case video(key: Bool, seconds: Double?, size: Int), failure(ProbeResult) }

    /// Reads the next video packet (kept in the session until the next read) without decoding it.
    func readVideoPacket() -> Packet {
        if let media { return readAccessUnit(media) }
        guard let format, let packet else { return .failure(.failure(.pluginError, phase: phase, "Session not open.")) }
        while true {
            av_packet_unref(packet)
            let code = av_read_frame(format, packet)
            if code < 0 { return .failure(classifyRead(code)) }
            guard packet.pointee.stream_index == videoIndex else {
                if packet.pointee.stream_index == audioIndex { audioPackets += 1 }
                continue
            }
            packetsRead += 1
            bytesRead += Int(packet.pointee.size)
            if phase == .firstByte { phase = .firstFrame }
            var seconds: Double?
            if packet.pointee.pts != Int64.min, let stream = format.pointee.streams[Int(videoIndex)] {
                seconds = Double(packet.pointee.pts) * Double(stream.pointee.time_base.num) / Double(stream.pointee.time_base.den)
            }
            return .video(key: packet.pointee.flags & AV_PKT_FLAG_KEY != 0, seconds: seconds, size: Int(packet.pointee.size))
        }
    }

    /// Pictures the decoder produced but damaged: flagged (`AV_FRAME_FLAG_CORRUPT`, decode error flags) or
    /// decoded while FFmpeg logged errors (MJPEG over RTP it cannot decode: "error y=0 x=0"). Their pixels
    /// are filler, so they never reach a picture verdict.
    private(set) var corruptPictures = 0
    /// The decoder's error-level log messages (see `DecoderErrorCounter`).
    private var decoderErrors: DecoderErrorCounter?

    /// Own reader only: the next read that finds nothing waiting first sleeps up to `ms` (see
    /// `RTPOverTCP.restUntilMs`). False for FFmpeg's reader, which always waits for the next packet.
    @discardableResult
    func restWhenCaughtUp(forMs ms: Double) -> Bool {
        guard let media else { return false }
        media.restUntilMs = ms > 0 ? clock.elapsedMs + ms : nil
        return true
    }

    /// Decodes the packet last read; returns a picture when the decoder produced an intact one.
    func decodeCurrentPacket() -> UnsafePointer<AVFrame>? {
        guard openDecoder(), let decoder, let packet, let frame else { return nil }
        readyDecoder(decoder)
        if media != nil {
            av_packet_unref(packet)
            guard loadCurrentUnit() else { return nil }
        }
        let key = packet.pointee.flags & AV_PKT_FLAG_KEY != 0
        let decodeErrorsBefore = decodeErrors
        defer {
            // Parameter sets sent with a unit that failed may not have been taken: send them again next time.
            if decodeErrors != decodeErrorsBefore { decoderParameterSets = nil }
            if key && decoderOnlyForKeyframes { giveBackDecoder() }
        }
        let errorsBefore = decoderErrors?.count ?? 0
        if sendCurrentPacket(to: decoder) < 0 { decodeErrors += 1 }
        var received = avcodec_receive_frame(decoder, frame)
        if received == sp_averror_eagain(), key {
            // A decoder that reorders (B-frames) holds the keyframe back until later pictures arrive, and
            // those are not decoded here: drain it out now and reset for the next keyframe. Without this the
            // first picture came a whole GOP late (2.0-2.7 s instead of ffmpeg's 0.43 s).
            avcodec_send_packet(decoder, nil)
            received = avcodec_receive_frame(decoder, frame)
            avcodec_flush_buffers(decoder)
        }
        guard received >= 0 else {
            if received != sp_averror_eagain() && received != sp_averror_eof() { decodeErrors += 1 }
            return nil
        }
        let damaged = frame.pointee.flags & 1 /* AV_FRAME_FLAG_CORRUPT */ != 0 || frame.pointee.decode_error_flags != 0
        if damaged || (decoderErrors?.count ?? 0) != errorsBefore {
            corruptPictures += 1
            decodeErrors += 1
            av_frame_unref(frame)
            return nil
        }
        if timings.firstFrameMs == nil { timings.firstFrameMs = clock.elapsedMs }
        return UnsafePointer(frame)
    }

    /// After this many keyframes that failed or decoded damaged, and no intact one, the stream is judged
    /// undecodable at once (instead of at the deadline).
    static let corruptPicturesLimit = 5
    /// Pause after a read that had to wait, while the first keyframe is awaited (own reader only).
    static let keyframeWaitPauseMs = 40.0

    /// The first decodable picture, decoding only keyframes (the decoder drops what precedes the first one
    /// anyway). A stream whose packets never carry the key flag is decoded in full after 60 packets.
    func firstPicture() -> Next {
        var unflagged = 0
        var failedPictures = 0
        while true {
            // The own reader, caught up with the live stream while it waits for a keyframe: let a picture's
            // packets gather instead of waking up for each (at most one picture interval late).
            restWhenCaughtUp(forMs: min(Self.keyframeWaitPauseMs, clock.remainingMs - 400))
            switch readVideoPacket() {
            case .failure(let failure): return .failure(failure)
            case .video(let key, _, _):
                if !key { unflagged += 1 }
                // Pictures that are not keyframes are decoded after 60 of them: the own reader keeps their
                // bytes from a few before (until then it only counts them).
                if unflagged >= 50 { media?.keepsEveryPicture = true }
                guard key || unflagged > 60 else { continue }
                let errorsBefore = decodeErrors
                if let picture = decodeCurrentPacket() { return .frame(picture) }
                if decodeErrors > errorsBefore { failedPictures += 1 }
                if failedPictures >= Self.corruptPicturesLimit {
                    return .failure(ProbeResult(reason: .decodeError, phase: .firstFrame, message:
                        "\(failedPictures) keyframes failed to decode or decoded with errors (\(corruptPictures) damaged), none intact, in \(packetsRead) video packets: the camera's video cannot be decoded.",
                        timings: timings))
                }
            }
        }
    }

    enum Next { case frame(UnsafePointer<AVFrame>), failure(ProbeResult) }

    /// Reads until the decoder produces the next frame. `stopAt` ends a sampling window early.
    func nextFrame() -> Next {
        guard openDecoder(), let format, let decoder, let packet, let frame else { return .failure(.failure(.pluginError, phase: phase, "Session not open.")) }
        while true {
            let received = avcodec_receive_frame(decoder, frame)
            if received >= 0 {
                if timings.firstFrameMs == nil { timings.firstFrameMs = clock.elapsedMs }
                return .frame(UnsafePointer(frame))
            }
            if received != sp_averror_eagain() && received != sp_averror_eof() { decodeErrors += 1 }
            let code = av_read_frame(format, packet)
            if code < 0 { return .failure(classifyRead(code)) }
            defer { av_packet_unref(packet) }
            if packet.pointee.stream_index != videoIndex {
                if packet.pointee.stream_index == audioIndex { audioPackets += 1 }
                continue
            }
            packetsRead += 1
            bytesRead += Int(packet.pointee.size)
            if timings.firstByteMs == nil || phase == .firstByte {
                phase = .firstFrame
            }
            if sendCurrentPacket(to: decoder) < 0 { decodeErrors += 1 }
        }
    }

    private func classifyRead(_ code: Int32) -> ProbeResult {
        let (reason, text): (Reason, String)
        if clock.isCancelled {
            (reason, text) = (.cancelled, "The probe was cancelled.")
        } else if code == sp_averror_eof() {
            (reason, text) = (.streamEnded, "The camera ended the stream after PLAY (\(packetsRead) video packets received).")
        } else if packetsRead == 0, audioPackets > 0 {
            (reason, text) = (.noVideo, "PLAY was accepted and \(audioPackets) audio packets arrived, but no video: the camera's video is gone (video encoder off or failed).")
        } else if packetsRead == 0 {
            (reason, text) = (.noFrames, "PLAY was accepted but no video arrived within the deadline.")
        } else if decodeErrors > 0 {
            (reason, text) = (.decodeError, "\(packetsRead) video packets arrived but none decoded (\(decodeErrors) decoder errors).")
        } else if clock.expired || code == sp_averror(ETIMEDOUT) {
            (reason, text) = (.noFrames, "\(packetsRead) video packets arrived but no complete picture within the deadline.")
        } else {
            (reason, text) = (.protocolError, "Reading the stream failed: \(ffmpegErrorText(code)).")
        }
        return ProbeResult(reason: reason, phase: phase, message: text, timings: timings)
    }

    /// Seconds of a frame's timestamp, or nil when it has none.
    func seconds(of frame: UnsafePointer<AVFrame>) -> Double? {
        if let media {
            let ticks = frame.pointee.best_effort_timestamp
            return ticks == Int64.min ? nil : Double(ticks) / Double(media.clockRate)
        }
        guard let format, videoIndex >= 0, let stream = format.pointee.streams[Int(videoIndex)] else { return nil }
        let pts = frame.pointee.best_effort_timestamp
        guard pts != Int64.min else { return nil }  // AV_NOPTS_VALUE
        let base = stream.pointee.time_base
        return Double(pts) * Double(base.num) / Double(base.den)
    }
}

/// Deep probe: first decoded picture, then a short sampling window for fps, bitrate, frozen and black.
struct RTSPDeepProbe {
    let target: RTSPTarget
    let request: ProbeRequest
    let clock: ProbeClock
    /// Least time between two decoded samples; keeps intra-only streams (MJPEG over RTP) cheap.
    static let sampleSpacingMs = 250.0
    /// Longest sampling window when the stream's keyframes are far apart (long GOP).
    static let maxWindowMs = 4000.0
    /// Pause after catching up with the live stream, so packets are read in batches (at most; see
    /// `maxBytesPerPause`). 300 ms: three or four batches in a 1 s window.
    static let batchPauseMs = 300.0
    /// At most this much of the stream may gather in the socket during a pause: a 4K camera (~57 Mb/s) fills
    /// 1.4 MB in 200 ms, and a server whose send queue overflows drops RTP packets (FFmpeg: "RTP: missed
    /// 658 packets", fps read 8-15). The pause shrinks with the stream's measured rate.
    static let maxBytesPerPause = 128.0 * 1024

    /// First keyframe decoded, then a sampling window read at packet level: fps and bitrate from every
    /// packet's timestamp and size, pictures (frozen, black) from the keyframes in the window. Only
    /// keyframes are decoded, which keeps a deep probe at a few milliseconds of CPU; the window lasts
    /// `sample_seconds` (default 1 s) and stretches, up to 4 s, until a second keyframe has been seen.
    func run() -> ProbeResult {
        let session = RTSPSession(target: target, credentials: request.credentials, clock: clock)
        session.decoderOnlyForKeyframes = true
        if let failure = session.open(transport: request.options.transport) { return failure }
        let first: UnsafePointer<AVFrame>
        switch session.firstPicture() {
        case .frame(let frame): first = frame
        case .failure(let failure): return failure
        }
        let width = Int(first.pointee.width), height = Int(first.pointee.height)
        // The first picture is kept (referenced, not copied) for the thumbnail of a window that fails or
        // freezes; the window keeps its last intact picture.
        let firstPicture = PictureRef(first)
        var window = sample(session, first: first)
        let thumbnail: (UnsafePointer<AVFrame>?) -> Data? = { picture in
            guard self.request.options.thumbnail == true, let picture else { return nil }
            return JPEGEncoder.encodeOnce(picture, maxWidth: self.request.options.maxWidth ?? 320)
        }
        if let failure = window.failure {
            if failure.reason == .cancelled { return failure }
            // One picture, then the camera went away: it is down now, whatever the first picture showed.
            let reason: Reason = failure.reason == .decodeError ? .decodeError : .streamEnded
            return ProbeResult(reason: reason, phase: .sample, message: String(
                format: "The stream stopped %.1f s into the sampling window, after %d pictures and %d packets: %@",
                window.spanSeconds, window.samples.count, window.packets, failure.message), timings: session.timings,
                media: MediaFacts(codec: session.codecName, width: width, height: height), thumbnailJpeg: thumbnail(firstPicture?.picture))
        }
        // The host's picture checks (scene, obstruction, blur, frozen across probes) work on the window's last
        // intact picture, the one the black check judges too: the first picture after joining is the likeliest
        // to be a camera's stale or half-drawn one (the false-alarm bench saw pictures composed before all of
        // a pipeline's inputs had arrived). The thumbnail is that picture, so a reference's JPEG shows what its
        // grid measured.
        guard let analysed = window.last?.picture ?? firstPicture?.picture else {
            return .failure(.pluginError, phase: .sample, "The decoded picture could not be kept.")
        }
        let cpuBefore = threadCPUMicroseconds()
        window.grid = LumaGrid(frame: analysed)
        window.sharpness = Sharpness.measure(analysed)
        window.analysisUs = threadCPUMicroseconds() - cpuBefore
        var result = verdict(window, session: session, width: width, height: height)
        if result.reason == .frozen {
            // The evidence of a frozen window: its first and its last picture.
            result.thumbnailJpeg = thumbnail(firstPicture?.picture)
            result.lastPictureJpeg = window.last.flatMap { thumbnail($0.picture) }
        } else {
            result.thumbnailJpeg = thumbnail(analysed)
        }
        return result
    }

    /// What the sampling window saw.
    struct Window {
        var samples: [LumaSample]
        var grid: LumaGrid?
        var sharpness: Double?
        var analysisUs: Double?
        /// The last intact picture decoded after the first (nil when the window held only the first).
        var last: PictureRef?
        var packets = 0
        /// Timestamps of the first and last timed packets in the window, and how many had one.
        var firstSeconds: Double?, lastSeconds: Double?, timedPackets = 0
        var spanSeconds = 0.0
        var bytes = 0
        /// A read that failed mid-window (the window ends there; only a cancellation ends the probe).
        var failure: ProbeResult?

        /// The first picture's own timestamp, used only when the window holds a single timed packet (a
        /// camera slower than one picture per window): it is often missing or guessed (the first packet
        /// after joining), so two packets inside the window are preferred.
        var firstPictureSeconds: Double?
        /// Timestamps of the keyframes in the window (the first picture's included when known).
        var keyframeSeconds: [Double] = []

        /// Mean time between keyframes, when two were seen.
        var keyframeInterval: Double? {
            guard let a = keyframeSeconds.first, let b = keyframeSeconds.last, keyframeSeconds.count >= 2, b > a else { return nil }
            return (b - a) / Double(keyframeSeconds.count - 1)
        }

        /// From packet timestamps inside the window: two are enough, so a 1 fps camera (the window stretches
        /// until it has them) and slower ones get an fps. Falls back to packets per second of wall time.
        var fps: Double? {
            if timedPackets >= 2, let a = firstSeconds, let b = lastSeconds, b > a { return Double(timedPackets - 1) / (b - a) }
            if timedPackets == 1, let a = firstPictureSeconds, let b = lastSeconds, b > a { return 1 / (b - a) }
            if packets >= 2, spanSeconds > 0 { return Double(packets) / spanSeconds }
            return nil
        }
        var bitrate: Double? { spanSeconds > 0 ? Double(bytes) * 8 / spanSeconds : nil }

        /// The window with its span and byte count filled in.
        func finished(clock: ProbeClock, start: Double, bytesAtStart: Int, session: RTSPSession) -> Window {
            var window = self
            window.spanSeconds = (clock.elapsedMs - start) / 1000
            window.bytes = session.bytesRead - bytesAtStart
            return window
        }
    }

    /// Reads the window after the first picture: every packet counted, keyframes decoded at most every
    /// `sampleSpacingMs` for the picture checks.
    func sample(_ session: RTSPSession, first: UnsafePointer<AVFrame>) -> Window {
        let options = request.options
        var window = Window(samples: [LumaSample(frame: first)].compactMap { $0 })
        window.firstPictureSeconds = session.seconds(of: first)
        if let seconds = window.firstPictureSeconds { window.keyframeSeconds.append(seconds) }
        let start = clock.elapsedMs
        var lastSampleAt = start
        let bytesAtStart = session.bytesRead
        let maxPackets = max(2, options.sampleFrames ?? 250)
        let length = (options.sampleSeconds ?? 1.0) * 1000
        while window.packets < maxPackets, clock.remainingMs > 300 {
            let elapsed = clock.elapsedMs - start
            // The window ends after its length once it holds two pictures to compare and two packets for the
            // fps. A slow camera stretches it up to maxWindowMs for its fps; a long GOP (keyframes 4-10 s
            // apart: one picture so far) stretches it to the next keyframe, as far as the deadline allows,
            // so a frozen encoder is not called green for want of a second picture.
            let judged = window.samples.count >= 2 && window.packets >= 2
            if elapsed >= length && (judged || (window.samples.count >= 2 && elapsed >= Self.maxWindowMs)) { break }
            // Caught up with the live stream: let packets gather in the socket buffer instead of waking up for
            // each one. The pause waits for the stream's rate, measured from the window's first batch, and never
            // runs past the end of the window while it can still close on time.
            let windowBytes = session.bytesRead - bytesAtStart
            let pause = windowBytes == 0 ? 0 : min(Self.batchPauseMs, Self.maxBytesPerPause / (Double(windowBytes) / max(1, elapsed)),
                                                   clock.remainingMs - 400, elapsed < length ? length - elapsed : Self.batchPauseMs)
            // The own reader sleeps when its next read finds nothing waiting; FFmpeg's reader cannot say, so it
            // pauses after a read that had to wait.
            let rests = session.restWhenCaughtUp(forMs: pause)
            let readStart = clock.elapsedMs
            defer {
                if !rests, pause > 0, clock.elapsedMs - readStart > 2, !clock.isCancelled { usleep(UInt32(pause * 1000)) }
            }
            switch session.readVideoPacket() {
            case .failure(let failure):
                // A read cut short by the probe's own deadline only ends the window; anything else (the camera
                // hung up, reset or stalled with time left) is the stream dying while it was watched.
                if clock.expired || clock.remainingMs < 100 { return window.finished(clock: clock, start: start, bytesAtStart: bytesAtStart, session: session) }
                window.failure = failure
            case .video(let key, let seconds, _):
                window.packets += 1
                if let seconds {
                    if window.firstSeconds == nil { window.firstSeconds = seconds }
                    window.lastSeconds = seconds
                    window.timedPackets += 1
                    if key, seconds > (window.keyframeSeconds.last ?? -.infinity) { window.keyframeSeconds.append(seconds) }
                }
                let picture = key && clock.elapsedMs - lastSampleAt >= Self.sampleSpacingMs ? session.decodeCurrentPacket() : nil
                if let picture, let sample = LumaSample(frame: picture) {
                    window.samples.append(sample)
                    lastSampleAt = clock.elapsedMs
                    window.last = PictureRef(picture)
                }
            }
            if window.failure != nil { break }
        }
        return window.finished(clock: clock, start: start, bytesAtStart: bytesAtStart, session: session)
    }

    /// The deep verdict: black, frozen, too slow or too late — or pictures decoded — with the media facts.
    func verdict(_ window: Window, session: RTSPSession, width: Int, height: Int) -> ProbeResult {
        let options = request.options
        let fps = window.fps
        let samples = window.samples
        let verdict = PictureVerdict(samples: samples, blackThreshold: options.blackThreshold, frozenThreshold: options.frozenThreshold,
                                     ignore: options.ignore ?? [])
        var result = ProbeResult(
            reason: .ok, phase: .sample, message: "", timings: session.timings,
            media: MediaFacts(codec: session.codecName, width: width, height: height, fps: fps.map { ($0 * 100).rounded() / 100 }, bitrateBps: window.bitrate,
                              audio: session.audioIndex >= 0 && session.audioPackets > 0,
                              keyframeIntervalSeconds: window.keyframeInterval.map { ($0 * 100).rounded() / 100 }),
            image: ImageFacts(frozen: verdict.frozen, black: verdict.black, meanLuma: verdict.meanLuma, meanDifference: verdict.meanDifference,
                              framesSampled: samples.count, sharpness: window.sharpness, grid: window.grid,
                              onlyBandChanged: verdict.onlyBandChanged ? true : nil),
            thumbnailJpeg: nil)
        result.image?.analysisUs = window.analysisUs.map { $0.rounded() }
        result.image?.picturesFailed = session.decodeErrors
        result.media?.packetsLost = session.packetsLost
        let size = "\(session.codecName ?? "video") \(width)x\(height)" + (fps.map { String(format: " at %.1f fps", $0) } ?? "")
        if verdict.black {
            result.reason = .black
            result.message = String(format: "The picture is black (mean luma %.1f) — %@.", verdict.meanLuma, size)
        } else if verdict.frozen {
            result.reason = .frozen
            result.message = verdict.onlyBandChanged
                ? String(format: "The picture is frozen: over %.1f s only the on-screen clock changes (%d pictures identical apart from one band) — %@.", window.spanSeconds, samples.count, size)
                : String(format: "The picture is frozen: %d pictures over %.1f s are identical (mean difference %.2f) — %@.", samples.count, window.spanSeconds, verdict.meanDifference ?? 0, size)
        } else if let minFps = options.minFps, let fps, fps < minFps {
            result.reason = .lowFps
            result.message = String(format: "%.1f fps is below the stream's minimum of %.1f — %@.", fps, minFps, size)
        } else if let maxFirst = options.maxFirstFrameMs, let firstFrame = session.timings.firstFrameMs, firstFrame > maxFirst {
            result.reason = .slowFirstFrame
            result.message = String(format: "The first picture took %.0f ms (limit %.0f ms) — %@.", firstFrame, maxFirst, size)
        } else {
            result.message = "Pictures decoded: \(size) over \(session.transportUsed.uppercased())."
            if samples.count < 2 {
                // Said plainly: no second keyframe arrived before the deadline, so nothing was compared.
                result.message += String(format: " Only one picture arrived in the %.1f s window (keyframes further apart than the probe's time allows): frozen could not be checked.", window.spanSeconds)
            }
        }
        return result
    }
}

/// Live preview: decode and re-encode to JPEG at most `maxFps`, at most `maxWidth` wide.
struct RTSPPreview {
    let target: RTSPTarget
    let request: PreviewRequest
    let clock: ProbeClock
    let send: @Sendable (Data) -> Void

    func run() -> ProbeResult {
        let session = RTSPSession(target: target, credentials: request.credentials, clock: clock)
        if let failure = session.open(transport: nil) { return failure }
        let encoder = JPEGEncoder(maxWidth: request.maxWidth)
        let interval = 1000 / max(0.1, min(request.maxFps, 10))
        var lastSent = -Double.infinity
        var sent = 0
        var started: Double?
        while true {
            if let started, clock.elapsedMs - started >= request.seconds * 1000 { break }
            switch session.nextFrame() {
            case .frame(let frame):
                let now = clock.elapsedMs
                if started == nil { started = now }
                if now - lastSent >= interval, let jpeg = encoder.encode(frame) {
                    send(jpeg)
                    sent += 1
                    lastSent = now
                }
            case .failure(let failure):
                if sent > 0 && failure.reason != .cancelled {
                    return ProbeResult(reason: failure.reason, phase: .preview, message: "Preview ended after \(sent) frames: \(failure.message)", timings: session.timings)
                }
                return failure
            }
        }
        return ProbeResult(reason: .ok, phase: .preview, message: "Sent \(sent) preview frames.", timings: session.timings,
                           media: MediaFacts(codec: session.codecName))
    }
}

/// A counted reference to a decoded picture (no copy of its pixels), so the session's next decode does not
/// overwrite it; freed with the object.
final class PictureRef {
    private var frame: UnsafeMutablePointer<AVFrame>?

    init?(_ source: UnsafePointer<AVFrame>) {
        frame = av_frame_alloc()
        guard let frame, av_frame_ref(frame, source) >= 0 else { return nil }
    }

    deinit { av_frame_free(&frame) }

    var picture: UnsafePointer<AVFrame> { UnsafePointer(frame!) }
}
