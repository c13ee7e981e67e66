import StreamPulseCore

/// Colours and reasons as the status model defines them, for the dashboard's info modal.
public struct Legend: Encodable, Sendable {
    public struct Entry: Encodable, Sendable {
        public var key: String
        public var status: String
        public var meaning: String
    }
    public var statuses: [Entry]
    public var reasons: [Entry]

    /// What each known reason means to an operator.
    public static let meanings: [Reason: String] = [
        .ok: "Pictures decoded within the stream's thresholds.",
        .connectionRefused: "Nothing listens on the camera's port (off, wrong port, or service crashed).",
        .timeout: "No answer in time; the phase says where it stalled.",
        .noFrames: "The camera answered but no picture arrived (RTCP only, silent socket, stalled encoder).",
        .streamEnded: "The camera closed the stream before a picture was complete.",
        .protocolError: "The answer was not valid RTSP/HTTP for a video stream.",
        .unsupportedTransport: "The camera refused every transport offered (TCP and UDP).",
        .decodeError: "Data arrived but no picture could be decoded.",
        .serverError: "The camera answered with a server error (5xx).",
        .wrongContentType: "The URL answers, but not with a video or JPEG stream.",
        .truncatedFrame: "A JPEG frame was cut short.",
        .corruptJpeg: "A frame was not a valid JPEG picture.",
        .frameTooLarge: "A frame exceeded the size limit (a hostile or broken camera).",
        .dnsFailure: "The camera's host name does not resolve.",
        .unauthorized: "Wrong or missing user name/password for the camera.",
        .forbidden: "The camera refuses this user.",
        .notFound: "The stream path does not exist on the camera.",
        .frozen: "Pictures arrive but do not change (frozen encoder or image).",
        .black: "Pictures arrive but are black (covered lens, night without IR, dead sensor).",
        .lowFps: "Pictures arrive slower than the stream's minimum fps.",
        .slowFirstFrame: "The first picture took longer than the stream's threshold.",
        .cancelled: "The check was stopped (reload or shutdown).",
        .noPlugin: "No loaded plugin handles this URL's scheme.",
        .pluginError: "The plugin failed or answered garbage; the host recorded it.",
        .unsupported: "The plugin does not support this request.",
        .invalidRequest: "The probe request could not be built.",
    ]

    public static var current: Legend {
        let statusMeanings: [(String, String, String)] = [
            ("ok", "ok", "Green: pictures decoded within the thresholds."),
            ("degraded", "degraded", "Yellow: the camera answers but the picture is unusable for a fixable reason (password, path, frozen, black, slow)."),
            ("pending", "pending", "Amber outline: failing, but not yet past the configured retries."),
            ("down", "down", "Red: unreachable or no pictures after the retries."),
            ("unknown", "unknown", "Grey: not checked yet, disabled, or no plugin for its scheme."),
        ]
        return Legend(
            statuses: statusMeanings.map { Entry(key: $0.0, status: $0.1, meaning: $0.2) },
            reasons: meanings.sorted { $0.key.rawValue < $1.key.rawValue }.map { reason, meaning in
                let status = reason == "disabled" ? "unknown" : StatusModel.status(for: reason).rawValue
                return Entry(key: reason.rawValue, status: status, meaning: meaning)
            })
    }
}
