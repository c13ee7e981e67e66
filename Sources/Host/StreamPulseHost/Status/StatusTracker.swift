import Foundation
import StreamPulseCore

/// What an operator sees for one stream, with the evidence behind it.
public struct StreamState: Sendable, Equatable, Codable {
    public var status: StreamStatus
    /// Why (the last deep verdict, or the failure); `ok` when fine.
    public var reason: Reason
    public var phase: Phase?
    public var message: String
    /// Failing, but not yet past the retries threshold (shown yellow).
    public var pending: Bool
    /// Since when this status and reason hold.
    public var since: Date?
    public var lastCheck: Date?
    public var consecutiveFailures: Int
    /// Media facts of the last deep probe that decoded pictures.
    public var media: MediaFacts?
    public var lastPicture: Date?
    /// Duration of the last probe, in milliseconds.
    public var latencyMs: Double?

    public static let initial = StreamState(status: .unknown, reason: "not_checked", phase: nil, message: "Not checked yet.",
                                            pending: false, since: nil, lastCheck: nil, consecutiveFailures: 0)
}

/// A change of a stream's status or reason, for logs, alerts and history.
public struct StateChange: Sendable, Equatable {
    public var streamId: String
    public var from: StreamState
    public var to: StreamState
    public var at: Date
    public var thumbnailJpeg: Data?
    /// With a frozen verdict: the last picture of the window (the thumbnail is the first).
    public var lastPictureJpeg: Data? = nil
}

/// Turns probe results into statuses operators trust. Pure.
///
/// - A deep `ok` is green. A quick `ok` only confirms reachability: it keeps the last deep verdict.
/// - Degraded reasons (unauthorized, forbidden, not_found, frozen, black, low_fps, slow_first_frame) are
///   yellow at once: the camera answers, and someone must fix something.
/// - Down reasons (refused, timeout, no_frames, stream_ended, protocol errors, unknown reasons) are yellow
///   "pending" until more than `retries` consecutive failures, then red.
/// - no_plugin, cancelled and other non-camera reasons are grey.
public enum StatusTracker {
    public static func apply(_ result: ProbeResult, to state: StreamState, retries: Int, at now: Date) -> StreamState {
        var next = state
        next.lastCheck = now
        if let total = result.timings.totalMs { next.latencyMs = total }
        let verdict = StatusModel.status(for: result.reason)
        if result.reason == .cancelled { return state }
        switch verdict {
        case .ok:
            next.consecutiveFailures = 0
            next.pending = false
            if result.mode == .quick {
                // Reachable; the picture verdict stays the last deep one (unknown until a deep probe).
                if state.status == .down || (state.pending && state.status == .degraded) {
                    // A quick OK after failures does not prove pictures: stay as is until the next deep probe.
                    next.pending = state.pending
                    next.consecutiveFailures = state.consecutiveFailures
                }
                return next
            }
            next.status = .ok
            next.reason = .ok
            next.phase = result.phase
            next.message = result.message
            if let media = result.media { next.media = media }
            next.lastPicture = now
        case .degraded:
            next.consecutiveFailures += 1
            next.pending = false
            next.status = .degraded
            next.reason = result.reason
            next.phase = result.phase
            next.message = result.message
            if result.reason.info?.keepsMedia == true, let media = result.media { next.media = media }
        case .down:
            next.consecutiveFailures += 1
            next.reason = result.reason
            next.phase = result.phase
            next.message = result.message
            if next.consecutiveFailures > retries {
                next.status = .down
                next.pending = false
            } else {
                next.status = .degraded
                next.pending = true
            }
        case .unknown:
            next.status = .unknown
            next.pending = false
            next.reason = result.reason
            next.phase = result.phase
            next.message = result.message
        }
        if next.status != state.status || next.reason != state.reason || next.pending != state.pending {
            next.since = now
        }
        return next
    }

    /// The change between two states worth an event (status, reason or pending changed).
    public static func change(from old: StreamState, to new: StreamState, stream: String, at now: Date, thumbnail: Data?,
                              lastPicture: Data? = nil) -> StateChange? {
        guard old.status != new.status || old.reason != new.reason || old.pending != new.pending else { return nil }
        return StateChange(streamId: stream, from: old, to: new, at: now, thumbnailJpeg: thumbnail, lastPictureJpeg: lastPicture)
    }
}
