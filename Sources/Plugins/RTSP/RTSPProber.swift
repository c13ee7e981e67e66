import Foundation
import Logging
import ProberSupport
import StreamPulseCore

/// Probes RTSP cameras: a hand-written OPTIONS + DESCRIBE for quick checks, FFmpeg (libavformat +
/// libavcodec) for deep probes that decode pictures, and JPEG preview frames re-encoded with libavcodec.
struct RTSPProber: Prober {
    static let descriptor = PluginDescriptor(
        name: "rtsp", version: "1.0.0", schemes: ["rtsp", "rtsps"],
        capabilities: Capabilities(quickProbe: true, deepProbe: true, livePreview: true),
        summary: "RTSP cameras: decodes the first keyframe, samples fps, detects frozen and black pictures (FFmpeg)")

    /// Every blocking call (sockets, FFmpeg) runs here, never on Swift's cooperative pool.
    let pool = BlockingPool(name: "rtsp", threads: 8)
    let logger: PluginContextLogger

    init(context: PluginContext) {
        logger = PluginContextLogger(logger: context.logger)
        FFmpegLog.install(context.logger)
    }

    func probe(_ request: ProbeRequest) async throws -> ProbeResult {
        let clock = ProbeClock(timeoutMs: request.timeoutMs)
        guard let target = RTSPTarget(url: request.url) else {
            return .failure(.invalidRequest, phase: .request, "'\(URLRedaction.mask(request.url))' is not an rtsp:// URL with a host.")
        }
        return await pool.run(cancelling: clock) {
            let result = request.mode == .quick
                ? RTSPQuickProbe(target: target, credentials: request.credentials, clock: clock).run()
                : RTSPDeepProbe(target: target, request: request, clock: clock).run()
            return result.finished(mode: request.mode, clock: clock, credentials: request.credentials)
        }
    }

    func preview(_ request: PreviewRequest, send: @escaping @Sendable (Data) -> Void) async throws -> ProbeResult {
        let clock = ProbeClock(timeoutMs: request.timeoutMs + Int(request.seconds * 1000))
        guard let target = RTSPTarget(url: request.url) else {
            return .failure(.invalidRequest, phase: .request, "'\(URLRedaction.mask(request.url))' is not an rtsp:// URL with a host.")
        }
        return await pool.run(cancelling: clock) {
            RTSPPreview(target: target, request: request, clock: clock, send: send).run()
                .finished(mode: nil, clock: clock, credentials: request.credentials)
        }
    }
}

/// The logger handed to the prober, wrapped so it can be captured by pool jobs.
struct PluginContextLogger: Sendable {
    let logger: Logging.Logger
}

/// Host, port and path of an rtsp:// URL.
struct RTSPTarget: Sendable {
    var url: String
    var host: String
    var port: Int
    var secure: Bool

    init?(url: String) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              scheme == "rtsp" || scheme == "rtsps", let host = components.host, !host.isEmpty
        else { return nil }
        self.url = url
        self.host = host
        self.secure = scheme == "rtsps"
        self.port = components.port ?? (secure ? 322 : 554)
    }

    /// The URL with credentials inside, for FFmpeg only (it takes no separate credentials). Never logged.
    func urlWithCredentials(_ credentials: Credentials?) -> String {
        guard let credentials, let schemeEnd = URLRedaction.schemeSeparator(in: url) else { return url }
        let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
        let user = credentials.username.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
        let pass = credentials.password.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
        return String(url[..<schemeEnd.upperBound]) + "\(user):\(pass)@" + String(url[schemeEnd.upperBound...])
    }
}
