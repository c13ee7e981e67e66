import StreamPulseCore

/// The colour an operator sees for a stream.
public enum StreamStatus: String, Codable, Sendable, CaseIterable {
    /// Pictures decoded within the stream's thresholds.
    case ok
    /// Reachable but no usable picture for a fixable reason, or failing but not yet past the retries threshold.
    case degraded
    /// Unreachable or no pictures.
    case down
    /// Not checked yet, disabled, or no plugin for its scheme.
    case unknown

    /// Exit code of `streampulse check` for this status.
    public var exitCode: Int32 {
        switch self {
        case .ok: 0
        case .degraded: 1
        case .down: 2
        case .unknown: 3
        }
    }
}

/// Pure mapping from a probe's reason to the status it stands for (before retries are applied).
public enum StatusModel {
    /// Reasons meaning "the camera answers, but fix something to get a usable picture".
    public static let degradedReasons: Set<Reason> = [
        .unauthorized, .forbidden, .notFound, .frozen, .black, .lowFps, .slowFirstFrame,
    ]
    /// Reasons that say nothing about the camera.
    public static let unknownReasons: Set<Reason> = [.noPlugin, .cancelled, .unsupported, .invalidRequest]

    /// The status a single result stands for. Unknown reasons count as down: a stream is never called up
    /// without knowing a picture arrived.
    public static func status(for reason: Reason) -> StreamStatus {
        if reason == .ok { return .ok }
        if degradedReasons.contains(reason) { return .degraded }
        if unknownReasons.contains(reason) { return .unknown }
        return .down
    }
}
