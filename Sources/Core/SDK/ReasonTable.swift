/// The colour class a reason stands for, before the host applies retries (`down` reasons are shown as
/// yellow "pending" until a stream has failed more than `retries` times in a row).
public enum ReasonClass: String, Sendable, Codable, CaseIterable {
    /// Pictures arrived within the thresholds.
    case ok
    /// The camera answers, but someone must fix something to get a usable picture.
    case degraded
    /// Unreachable or no pictures.
    case down
    /// Says nothing about the camera (not checked, disabled, no plugin, the monitor's own trouble).
    case unknown
}

/// One known reason: its colour class, what it means to an operator, and whether a result with it
/// updates the stream's media facts (resolution, fps, codec of the pictures that did arrive).
public struct ReasonInfo: Sendable, Equatable {
    /// The reason.
    public let reason: Reason
    /// Its colour class.
    public let reasonClass: ReasonClass
    /// One sentence for the legend and the docs.
    public let meaning: String
    /// True when pictures were decoded (so their media facts are kept).
    public let keepsMedia: Bool

    /// Declares a reason.
    public init(_ reason: Reason, _ reasonClass: ReasonClass, keepsMedia: Bool = false, _ meaning: String) {
        self.reason = reason
        self.reasonClass = reasonClass
        self.meaning = meaning
        self.keepsMedia = keepsMedia
    }
}

extension Reason {
    /// Every reason the bundled plugins and the host report, declared once. The host's status model, the
    /// dashboard's legend (`/api/legend`) and docs/status-model.md are derived from or checked against it.
    /// A reason not listed here (from a newer plugin) is treated as `down`.
    public static let table: [ReasonInfo] = [
        ReasonInfo(.ok, .ok, keepsMedia: true, "Pictures decoded within the stream's thresholds."),
        ReasonInfo(.connectionRefused, .down, "Nothing listens on the camera's port (off, wrong port, or service crashed)."),
        ReasonInfo(.timeout, .down, "No answer in time; the phase says where it stalled."),
        ReasonInfo(.noFrames, .down, "The camera answered but no picture arrived (RTCP only, silent socket, stalled encoder)."),
        ReasonInfo(.streamEnded, .down, "The camera closed the stream before a picture was complete."),
        ReasonInfo(.protocolError, .down, "The answer was not valid RTSP/HTTP for a video stream."),
        ReasonInfo(.unsupportedTransport, .down, "The camera refused every transport offered (TCP and UDP)."),
        ReasonInfo(.decodeError, .down, "Data arrived but no picture could be decoded."),
        ReasonInfo(.serverError, .down, "The camera answered with a server error (5xx)."),
        ReasonInfo(.wrongContentType, .down, "The URL answers, but not with a video or JPEG stream."),
        ReasonInfo(.truncatedFrame, .down, "A JPEG frame was cut short."),
        ReasonInfo(.corruptJpeg, .down, "A frame was not a valid JPEG picture."),
        ReasonInfo(.frameTooLarge, .down, "A frame exceeded the size limit (a hostile or broken camera)."),
        ReasonInfo(.dnsFailure, .down, "The camera's host name does not resolve."),
        ReasonInfo(.pluginError, .down, "The plugin failed or answered garbage; the host recorded it."),
        ReasonInfo(.noVideo, .down, "Audio still flows but the video is gone (video encoder off or failed)."),
        ReasonInfo(.unauthorized, .degraded, "Wrong or missing user name/password for the camera."),
        ReasonInfo(.forbidden, .degraded, "The camera refuses this user."),
        ReasonInfo(.notFound, .degraded, "The stream path does not exist on the camera."),
        ReasonInfo(.frozen, .degraded, keepsMedia: true, "Pictures arrive but do not change (frozen encoder or image)."),
        ReasonInfo(.black, .degraded, keepsMedia: true, "Pictures arrive but are black (covered lens, night without IR, dead sensor)."),
        ReasonInfo(.lowFps, .degraded, keepsMedia: true, "Pictures arrive slower than the stream's minimum fps, or far slower than its profile."),
        ReasonInfo(.slowFirstFrame, .degraded, keepsMedia: true, "The first picture took longer than the stream's threshold."),
        ReasonInfo(.sceneChanged, .degraded, keepsMedia: true, "The view no longer matches the reference picture (camera moved, zoomed or blocked)."),
        ReasonInfo(.obstructed, .degraded, keepsMedia: true, "A large uniform area covers most of the view (paint, tape, a bag)."),
        ReasonInfo(.blurred, .degraded, keepsMedia: true, "The picture is far less sharp than the reference (dirty, fogged or out-of-focus lens)."),
        ReasonInfo(.profileChanged, .degraded, keepsMedia: true, "Codec, resolution or audio differ from the stream's profile (camera reset to defaults?)."),
        ReasonInfo(.lowBitrate, .degraded, keepsMedia: true, "The bitrate collapsed far below the stream's profile."),
        ReasonInfo(.cancelled, .unknown, "The check was stopped (reload or shutdown)."),
        ReasonInfo(.noPlugin, .unknown, "No loaded plugin handles this URL's scheme."),
        ReasonInfo(.unsupported, .unknown, "The plugin does not support this request."),
        ReasonInfo(.invalidRequest, .unknown, "The probe request could not be built."),
        ReasonInfo(.notChecked, .unknown, "Not checked yet since the stream was added."),
        ReasonInfo(.disabled, .unknown, "Disabled in the config (`enabled: false`)."),
        ReasonInfo(.monitorOverloaded, .unknown,
                   "The monitor itself ran out of resources (file descriptors) for this check; this says nothing about the camera."),
        ReasonInfo(.siteUnreachable, .unknown,
                   "No agent of the stream's site has reported for a lease period (site link or agents down); the cameras' state is not known."),
    ]

    private static let byReason: [Reason: ReasonInfo] = Dictionary(table.map { ($0.reason, $0) }, uniquingKeysWith: { a, _ in a })

    /// This reason's declaration, or nil for a reason the table does not know.
    public var info: ReasonInfo? { Reason.byReason[self] }
}
