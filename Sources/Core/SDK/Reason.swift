/// A word from an open vocabulary (reasons, phases), carried as a bare JSON string.
public protocol OpenWord: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral
where RawValue == String, StringLiteralType == String {
    init(rawValue: String)
}

extension OpenWord {
    public init(stringLiteral value: String) { self.init(rawValue: value) }
    public init(from decoder: any Decoder) throws { self.init(rawValue: try decoder.singleValueContainer().decode(String.self)) }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
    public var description: String { rawValue }
}

/// The outcome class of a probe, in snake_case. `ok` means pictures arrived within the thresholds.
///
/// This is an open set: plugins may report classes the host does not know yet; the host then treats the
/// stream as down (it never calls a stream up without knowing a picture arrived).
public struct Reason: OpenWord {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// Pictures decoded within the stream's thresholds.
    public static let ok: Reason = "ok"
    // Unreachable or no pictures.
    public static let connectionRefused: Reason = "connection_refused"
    public static let timeout: Reason = "timeout"
    public static let noFrames: Reason = "no_frames"
    public static let streamEnded: Reason = "stream_ended"
    public static let protocolError: Reason = "protocol_error"
    public static let unsupportedTransport: Reason = "unsupported_transport"
    public static let decodeError: Reason = "decode_error"
    public static let serverError: Reason = "server_error"
    public static let wrongContentType: Reason = "wrong_content_type"
    public static let truncatedFrame: Reason = "truncated_frame"
    public static let corruptJpeg: Reason = "corrupt_jpeg"
    public static let frameTooLarge: Reason = "frame_too_large"
    public static let dnsFailure: Reason = "dns_failure"
    // Reachable but no usable picture, for a fixable reason.
    public static let unauthorized: Reason = "unauthorized"
    public static let forbidden: Reason = "forbidden"
    public static let notFound: Reason = "not_found"
    public static let frozen: Reason = "frozen"
    public static let black: Reason = "black"
    public static let lowFps: Reason = "low_fps"
    public static let slowFirstFrame: Reason = "slow_first_frame"
    public static let noVideo: Reason = "no_video"
    public static let sceneChanged: Reason = "scene_changed"
    public static let obstructed: Reason = "obstructed"
    public static let blurred: Reason = "blurred"
    public static let profileChanged: Reason = "profile_changed"
    public static let lowBitrate: Reason = "low_bitrate"
    // Not about the camera.
    public static let cancelled: Reason = "cancelled"
    public static let noPlugin: Reason = "no_plugin"
    public static let pluginError: Reason = "plugin_error"
    public static let unsupported: Reason = "unsupported"
    public static let invalidRequest: Reason = "invalid_request"
    /// Set by the host: the stream has not been checked since it was added.
    public static let notChecked: Reason = "not_checked"
    /// Set by the host: the stream is disabled in the config.
    public static let disabled: Reason = "disabled"
    /// The monitor itself had no resources for the check (file descriptors, threads): not a camera fault.
    public static let monitorOverloaded: Reason = "monitor_overloaded"
    /// Set by a dashboard that reads a site's results from PostgreSQL (`serve --no-probe`): no agent of the
    /// stream's site has reported for a lease period, so nobody knows how its cameras are.
    public static let siteUnreachable: Reason = "site_unreachable"
}

/// The step of a probe where something happened, in snake_case. Open set like `Reason`.
public struct Phase: OpenWord {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// Parsing the request before any network activity.
    public static let request: Phase = "request"
    /// Name resolution and TCP connect.
    public static let connect: Phase = "connect"
    /// Protocol handshake (RTSP OPTIONS/DESCRIBE, HTTP request and response headers).
    public static let handshake: Phase = "handshake"
    /// Authentication challenge/response.
    public static let authenticate: Phase = "authenticate"
    /// RTSP SETUP/PLAY.
    public static let setup: Phase = "setup"
    /// Waiting for the first media byte.
    public static let firstByte: Phase = "first_byte"
    /// Waiting for the first complete, decodable frame.
    public static let firstFrame: Phase = "first_frame"
    /// Sampling frames after the first one (fps, frozen, black).
    public static let sample: Phase = "sample"
    /// Sending preview frames.
    public static let preview: Phase = "preview"
    /// Inside the plugin, outside any network phase.
    public static let plugin: Phase = "plugin"
}
