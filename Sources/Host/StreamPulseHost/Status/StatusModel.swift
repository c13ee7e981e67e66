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

/// Pure mapping from a probe's reason to the status it stands for (before retries are applied), derived
/// from Core's reason table (`Reason.table`).
public enum StatusModel {
    /// The status a single result stands for. Reasons the table does not know count as down: a stream is
    /// never called up without knowing a picture arrived.
    public static func status(for reason: Reason) -> StreamStatus {
        switch reason.info?.reasonClass ?? .down {
        case .ok: .ok
        case .degraded: .degraded
        case .down: .down
        case .unknown: .unknown
        }
    }
}
