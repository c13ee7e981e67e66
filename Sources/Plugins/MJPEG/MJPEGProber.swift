import Foundation
import ProberSupport
import StreamPulseCore

/// Probes MJPEG-over-HTTP cameras and JPEG snapshot URLs the way a browser reads them, and checks the
/// pictures. Every read is bounded (head size, frame size, deadline), so hostile cameras end with a class.
struct MJPEGProber: Prober {
    static let descriptor = PluginDescriptor(
        name: "mjpeg", version: "1.0.0", schemes: ["http"],
        capabilities: Capabilities(quickProbe: true, deepProbe: true, livePreview: true),
        summary: "MJPEG over HTTP and JPEG snapshots: parses multipart frames, checks JPEG markers, frozen and black pictures")

    static let defaultMaxFrameBytes = 8 * 1024 * 1024
    let pool = BlockingPool(name: "mjpeg", threads: 8)

    init(context: PluginContext) {
        // The decoder's error messages are counted (a JPEG that decodes only with errors is not a picture).
        FFmpegLog.install(context.logger)
    }

    func probe(_ request: ProbeRequest) async throws -> ProbeResult {
        let clock = ProbeClock(timeoutMs: request.timeoutMs)
        guard let target = HTTPStream.Target(url: request.url) else {
            return .failure(.invalidRequest, phase: .request, "'\(URLRedaction.mask(request.url))' is not an http:// URL with a host.")
        }
        return await pool.run(cancelling: clock) {
            MJPEGSession(target: target, credentials: request.credentials, clock: clock,
                         maxFrameBytes: request.options.maxFrameBytes ?? Self.defaultMaxFrameBytes,
                         otherHosts: request.options.redirectsToOtherHosts ?? false)
                .probe(request)
                .finished(mode: request.mode, clock: clock, credentials: request.credentials)
        }
    }

    func preview(_ request: PreviewRequest, send: @escaping @Sendable (Data) -> Void) async throws -> ProbeResult {
        let clock = ProbeClock(timeoutMs: request.timeoutMs + Int(request.seconds * 1000))
        guard let target = HTTPStream.Target(url: request.url) else {
            return .failure(.invalidRequest, phase: .request, "'\(URLRedaction.mask(request.url))' is not an http:// URL with a host.")
        }
        return await pool.run(cancelling: clock) {
            MJPEGSession(target: target, credentials: request.credentials, clock: clock, maxFrameBytes: Self.defaultMaxFrameBytes)
                .preview(request, send: send)
        }
    }
}

/// One HTTP session to an MJPEG camera.
struct MJPEGSession {
    let target: HTTPStream.Target
    let credentials: Credentials?
    let clock: ProbeClock
    let maxFrameBytes: Int
    /// Whether redirects may lead to another host (`redirects: any` on the stream).
    var otherHosts = false

    /// A complete JPEG frame and when it arrived.
    struct Frame { var bytes: [UInt8]; var info: JPEGInfo; var atMs: Double }

    enum Source {
        /// The stream, its reader, and parts already parsed but not yet handed out.
        case multipart(HTTPStream, MultipartReader, [MultipartReader.Part])
        case snapshot(HTTPStream)
    }

    /// Opens the stream and classifies the HTTP answer.
    func open() -> Result<(HTTPStream, Source), ProbeResult> {
        let stream: HTTPStream
        do {
            stream = try HTTPStream.open(target, credentials: credentials, clock: clock, otherHosts: otherHosts)
        } catch {
            return .failure(classify(error))
        }
        let head = stream.head
        let status = "HTTP \(head.status) \(head.reasonPhrase)"
        func fail(_ reason: Reason, _ phase: Phase, _ text: String) -> Result<(HTTPStream, Source), ProbeResult> {
            .failure(ProbeResult(reason: reason, phase: phase, message: text, timings: stream.timings))
        }
        switch head.status {
        case 200...299: break
        case 401: return fail(.unauthorized, .authenticate, credentials == nil ? "The camera requires credentials (\(status))." : "The camera refused the credentials (\(status)).")
        case 403: return fail(.forbidden, .handshake, "The camera forbids this stream (\(status)).")
        case 404: return fail(.notFound, .handshake, "No such stream path on the camera (\(status)).")
        case 300...399: return fail(.protocolError, .handshake, "Redirect without a usable Location (\(status)).")
        case 500...599: return fail(.serverError, .handshake, "The camera reported an error (\(status)).")
        default: return fail(.protocolError, .handshake, "Unexpected HTTP answer (\(status)).")
        }
        let contentType = head.header("content-type") ?? ""
        let mime = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        if mime.hasPrefix("multipart/") {
            guard let boundary = MultipartReader.boundary(fromContentType: contentType) else {
                return fail(.protocolError, .handshake, "The multipart stream names no boundary (Content-Type: \(contentType.prefix(100))).")
            }
            var reader = MultipartReader(boundary: boundary, maxPartBytes: maxFrameBytes)
            do {
                let parts = try reader.feed(stream.leftover)
                return .success((stream, .multipart(stream, reader, parts)))
            } catch {
                return .failure(multipartFailure(error, phase: .firstFrame))
            }
        }
        if mime == "image/jpeg" || mime == "image/jpg" || mime == "image/pjpeg" {
            return .success((stream, .snapshot(stream)))
        }
        return fail(.wrongContentType, .handshake, "The camera sent '\(mime.isEmpty ? "no content type" : String(mime.prefix(80)))', not an MJPEG stream or a JPEG image.")
    }

    func classify(_ error: HTTPStream.Failure) -> ProbeResult {
        switch error {
        case .connect(let failure):
            return connectFailure(failure, host: target.host, port: target.port)
        case .io(let failure, let phase): return ioFailure(failure, phase: phase, frames: 0)
        case .headTooLarge: return .failure(.protocolError, phase: .handshake, "The response headers exceed \(HTTPStream.maxHead / 1024) KiB; not a camera answer.")
        case .notHTTP: return .failure(.protocolError, phase: .handshake, "The server does not answer in HTTP.")
        case .tooManyRedirects: return .failure(.protocolError, phase: .handshake, "More than \(HTTPStream.maxRedirects) redirects.")
        case .badRedirect(let location): return .failure(.protocolError, phase: .handshake, "Redirect to an unusable location \(location).")
        case .redirectRefused(let location):
            return .failure(.protocolError, phase: .handshake,
                            "The camera redirected to another host (\(location)); not followed unless the stream sets `redirects: any`.")
        }
    }

    func ioFailure(_ failure: TCPConnection.Failure, phase: Phase, frames: Int) -> ProbeResult {
        switch failure {
        case .cancelled: return .failure(.cancelled, phase: phase, "The probe was cancelled.")
        case .timedOut:
            if phase == .handshake { return .failure(.timeout, phase: phase, "Connected, but no complete HTTP answer within the deadline.") }
            return .failure(frames == 0 ? .noFrames : .timeout, phase: phase,
                            frames == 0 ? "The camera answered, then sent no complete frame within the deadline." : "The stream stalled after \(frames) frames.")
        case .closed:
            return .failure(phase == .handshake ? .protocolError : .streamEnded, phase: phase, "The camera closed the connection\(frames > 0 ? " after \(frames) frames" : "").")
        case .io(let why):
            return .failure(.protocolError, phase: phase, "Reading from the camera failed: \(why).")
        default:
            return .failure(.protocolError, phase: phase, "Reading from the camera failed: \(failure).")
        }
    }

    /// Reads the next complete, valid frame, or a failure.
    func nextFrame(_ source: inout Source, framesSoFar: Int) -> Result<Frame, ProbeResult> {
        let phase: Phase = framesSoFar == 0 ? .firstFrame : .sample
        switch source {
        case .snapshot(var stream):
            if framesSoFar > 0 { return .failure(.failure(.streamEnded, phase: .sample, "A snapshot has one frame.")) }
            let declared = stream.head.header("content-length").flatMap { Int($0) }
            if let declared, declared > maxFrameBytes {
                return .failure(.failure(.frameTooLarge, phase: phase, "The image is \(declared) bytes, over the \(maxFrameBytes)-byte limit."))
            }
            var body = stream.leftover
            while declared.map({ body.count < $0 }) ?? true {
                do { body += try stream.read() } catch {
                    if error == .closed, declared == nil { break }
                    if error == .closed { return .failure(.failure(.truncatedFrame, phase: phase, "The image ended after \(body.count) of \(declared ?? 0) bytes.")) }
                    return .failure(ioFailure(error, phase: phase, frames: 0))
                }
                if body.count > maxFrameBytes { return .failure(.failure(.frameTooLarge, phase: phase, "The image exceeds the \(maxFrameBytes)-byte limit.")) }
            }
            stream.leftover = []
            source = .snapshot(stream)
            return check(Array(body.prefix(declared ?? body.count)), phase: phase)
        case .multipart(var stream, var reader, var queue):
            defer { source = .multipart(stream, reader, queue) }
            while queue.isEmpty {
                let input: [UInt8]
                do { input = try stream.read() } catch { return .failure(ioFailure(error, phase: phase, frames: framesSoFar)) }
                do { queue += try reader.feed(input) } catch { return .failure(multipartFailure(error, phase: phase)) }
            }
            return check(queue.removeFirst().body, phase: phase)
        }
    }

    func multipartFailure(_ error: MultipartReader.Failure, phase: Phase) -> ProbeResult {
        switch error {
        case .noBoundary(let seen): .failure(.protocolError, phase: phase, "No multipart boundary in \(seen) bytes: the stream is not valid MJPEG.")
        case .headersTooLarge: .failure(.protocolError, phase: phase, "A frame's part headers are too large.")
        case .partTooLarge(let size): .failure(.frameTooLarge, phase: phase, "A frame of \(size)+ bytes exceeds the \(maxFrameBytes)-byte limit.")
        case .badHeader: .failure(.protocolError, phase: phase, "A frame's part headers are malformed.")
        }
    }

    func check(_ bytes: [UInt8], phase: Phase) -> Result<Frame, ProbeResult> {
        do {
            let info = try JPEGInfo.inspect(bytes)
            return .success(Frame(bytes: bytes, info: info, atMs: clock.elapsedMs))
        } catch {
            switch error {
            case .noEndMarker: return .failure(.failure(.truncatedFrame, phase: phase, "A \(bytes.count)-byte frame has no JPEG end marker: it was cut off."))
            case .noStartMarker: return .failure(.failure(.corruptJpeg, phase: phase, "A \(bytes.count)-byte frame is not a JPEG (no start marker)."))
            case .badSegments(let why): return .failure(.failure(.corruptJpeg, phase: phase, "A frame is a damaged JPEG: \(why)."))
            }
        }
    }

    func probe(_ request: ProbeRequest) -> ProbeResult {
        switch open() {
        case .success(let (stream, opened)): return sample(request, source: opened, timings: stream.timings)
        case .failure(let failure): return failure
        }
    }

    private func sample(_ request: ProbeRequest, source opened: Source, timings start: Timings) -> ProbeResult {
        var source = opened
        var timings = start
        let first: Frame
        switch nextFrame(&source, framesSoFar: 0) {
        case .success(let frame): first = frame
        case .failure(var failure): failure.timings = timings; return failure
        }
        timings.firstFrameMs = first.atMs
        let options = request.options
        var isSnapshot = false
        if case .snapshot = source { isSnapshot = true }
        let window = request.mode == .deep && !isSnapshot ? collect(&source, after: first, options: options) : FrameWindow(first: first)
        if let ended = window.ended {
            var failure = ended
            failure.timings = timings
            if ![.cancelled, .truncatedFrame, .corruptJpeg, .frameTooLarge].contains(ended.reason) {
                // Pictures, then the camera hung up or stalled: it is down now, whatever the first frames showed.
                failure.reason = .streamEnded
                failure.phase = .sample
                failure.message = "The stream stopped during the sampling window after \(window.count) frames: \(ended.message)"
            }
            return failure
        }
        return verdict(window, request: request, timings: timings, isSnapshot: isSnapshot)
    }

    /// A deep probe's sampling window. Only three frames are kept (first, one from the middle, last), so a
    /// probe holds a few hundred KiB however many frames the window sees; the rest are counted and compared.
    struct FrameWindow {
        var first: Frame
        /// The first frame at or past the middle of the window (by time or by count); nil before it.
        var middle: Frame?
        var middleIndex = 0
        var last: Frame
        var count = 1
        var totalBytes: Int
        var allIdentical = true
        /// A read that failed mid-window.
        var ended: ProbeResult?

        init(first: Frame) {
            self.first = first
            last = first
            totalBytes = first.bytes.count
        }

        mutating func add(_ frame: Frame, pastMiddle: Bool) {
            if frame.bytes != last.bytes { allIdentical = false }
            totalBytes += frame.bytes.count
            if middle == nil, pastMiddle {
                middle = frame
                middleIndex = count
            }
            last = frame
            count += 1
        }
    }

    /// Longest sampling window for a slow camera.
    static let maxWindowMs = 4000.0

    /// Reads frames for `sample_seconds` (at most `sample_frames`) after `first`.
    private func collect(_ source: inout Source, after first: Frame, options: ProbeOptions) -> FrameWindow {
        var window = FrameWindow(first: first)
        let length = (options.sampleSeconds ?? 1.0) * 1000
        let maxFrames = max(2, options.sampleFrames ?? 30)
        // A slow camera (1 fps and below) stretches the window until it has three frames (two intervals
        // for the fps, first/middle/last to compare), up to maxWindowMs.
        func open(_ elapsed: Double) -> Bool { elapsed < length || (window.count < 3 && elapsed < Self.maxWindowMs) }
        while window.count < maxFrames, open(clock.elapsedMs - first.atMs), clock.remainingMs > 200 {
            switch nextFrame(&source, framesSoFar: window.count) {
            case .success(let frame):
                window.add(frame, pastMiddle: frame.atMs - first.atMs >= length / 2 || window.count >= maxFrames / 2)
            case .failure(let failure):
                // The probe's own deadline only ends the window; anything else is the camera dying mid-window.
                if !(clock.expired || clock.remainingMs < 100) || failure.reason != .timeout { window.ended = failure }
                return window
            }
        }
        return window
    }

    /// The verdict on a window: black, frozen, too slow or too late — or pictures decoded — with the facts.
    private func verdict(_ window: FrameWindow, request: ProbeRequest, timings: Timings, isSnapshot: Bool) -> ProbeResult {
        let options = request.options
        let decoder = JPEGDecoder()
        let first = window.first, lastFrame = window.last, count = window.count, allIdentical = window.allIdentical
        let ended = window.ended
        var media = MediaFacts(codec: "mjpeg", width: first.info.width, height: first.info.height)
        let span = (lastFrame.atMs - first.atMs) / 1000
        if count >= 2, span > 0 {
            media.fps = ((Double(count - 1) / span) * 100).rounded() / 100
            media.bitrateBps = Double(window.totalBytes - first.bytes.count) * 8 / span
        }
        var samples: [LumaSample] = []
        // The host's picture checks judge the window's last frame (the one the black check reads): the first
        // after connecting is the likeliest to be stale. Its grid and sharpness are measured once.
        var analysis: JPEGDecoder.Analysis?
        if request.mode == .deep {
            guard let a = count >= 2 ? decoder.sample(first.bytes) : decoder.analyse(first.bytes, full: true).map({ analysis = $0; return $0.sample }) else {
                return ProbeResult(reason: .corruptJpeg, phase: .firstFrame, message: "The first frame has JPEG markers but does not decode.", timings: timings, media: media)
            }
            samples.append(a)
            // First, middle and last: a looped or slowly changing picture is not mistaken for a frozen one.
            if let middle = window.middle, window.middleIndex < count - 1, let m = decoder.sample(middle.bytes) { samples.append(m) }
            if count >= 2, let b = decoder.analyse(lastFrame.bytes, full: true) { samples.append(b.sample); analysis = b }
        }
        let verdict = PictureVerdict(samples: samples, blackThreshold: options.blackThreshold, frozenThreshold: options.frozenThreshold,
                                     ignore: options.ignore ?? [])
        let frozen = count >= 2 && (allIdentical || verdict.frozen)
        let image = request.mode == .deep
            ? ImageFacts(frozen: frozen, black: verdict.black, meanLuma: verdict.meanLuma, meanDifference: verdict.meanDifference, framesSampled: count,
                         sharpness: analysis?.sharpness, grid: analysis?.grid,
                         onlyBandChanged: frozen && !allIdentical && verdict.onlyBandChanged ? true : nil)
            : nil
        var result = ProbeResult(reason: .ok, phase: request.mode == .deep ? .sample : .firstFrame, message: "", timings: timings, media: media, image: image,
                                 thumbnailJpeg: options.thumbnail == true ? Data((frozen || count < 2 ? first : lastFrame).bytes) : nil)
        result.image?.analysisUs = analysis?.analysisUs
        let size = "MJPEG \(first.info.width)x\(first.info.height)" + (media.fps.map { String(format: " at %.1f fps", $0) } ?? "")
        if request.mode == .deep && verdict.black {
            result.reason = .black
            result.message = String(format: "The picture is black (mean luma %.1f) — %@.", verdict.meanLuma, size)
        } else if frozen {
            result.reason = .frozen
            if options.thumbnail == true { result.lastPictureJpeg = Data(lastFrame.bytes) }
            result.message = image?.onlyBandChanged == true
                ? String(format: "The picture is frozen: over %.1f s only the on-screen clock changes (%d frames identical apart from one band) — %@.", span, count, size)
                : String(format: "The picture is frozen: %d frames over %.1f s are %@ — %@.", count, span, allIdentical ? "byte-identical" : "identical", size)
        } else if count < 2, request.mode == .deep, !isSnapshot, let ended {
            var failure = ended
            failure.timings = timings
            return failure
        } else if let minFps = options.minFps, let fps = media.fps, fps < minFps {
            result.reason = .lowFps
            result.message = String(format: "%.1f fps is below the stream's minimum of %.1f — %@.", fps, minFps, size)
        } else if let maxFirst = options.maxFirstFrameMs, first.atMs > maxFirst {
            result.reason = .slowFirstFrame
            result.message = String(format: "The first picture took %.0f ms (limit %.0f ms) — %@.", first.atMs, maxFirst, size)
        } else {
            result.message = isSnapshot ? "Snapshot decoded: JPEG \(first.info.width)x\(first.info.height)."
                : request.mode == .quick ? "First frame received: \(size) (quick probe: pictures not checked)." : "Pictures decoded: \(size)."
        }
        return result
    }

    /// Passes frames through unchanged at most `maxFps`, for `seconds`.
    func preview(_ request: PreviewRequest, send: @Sendable (Data) -> Void) -> ProbeResult {
        var source: Source
        switch open() {
        case .success(let (_, opened)): source = opened
        case .failure(let failure): return failure
        }
        let interval = 1000 / max(0.1, min(request.maxFps, 10))
        var sent = 0
        var count = 0
        var lastSent = -Double.infinity
        var started: Double?
        while started.map({ clock.elapsedMs - $0 < request.seconds * 1000 }) ?? true {
            switch nextFrame(&source, framesSoFar: count) {
            case .success(let frame):
                count += 1
                if started == nil { started = frame.atMs }
                if frame.atMs - lastSent >= interval {
                    send(Data(frame.bytes))
                    sent += 1
                    lastSent = frame.atMs
                }
                if case .snapshot = source { return ProbeResult(reason: .ok, phase: .preview, message: "Sent the snapshot.") }
            case .failure(let failure):
                if failure.reason == .cancelled || sent == 0 { return failure }
                return ProbeResult(reason: failure.reason, phase: .preview, message: "Preview ended after \(sent) frames: \(failure.message)")
            }
        }
        return ProbeResult(reason: .ok, phase: .preview, message: "Sent \(sent) preview frames.", media: MediaFacts(codec: "mjpeg"))
    }
}

/// Lets a finished failure travel through `Result` inside this plugin.
extension ProbeResult: Error {}
