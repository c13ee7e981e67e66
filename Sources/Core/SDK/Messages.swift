import Foundation

// The messages of plugin protocol version 1. They cross the C boundary as JSON (snake_case keys, see
// `Wire`), so both sides may be built from different copies of this file: decoding ignores unknown keys
// and every field added after version 1.0 must be optional.

/// What a plugin is and what it can do; returned by the `describe` entry point.
public struct PluginDescriptor: Codable, Sendable, Equatable {
    /// Short unique name, lower case (`rtsp`, `mjpeg`, `snapshot`).
    public var name: String
    /// The plugin's own version (semantic versioning).
    public var version: String
    /// Major version of the plugin protocol the plugin speaks; filled in by the SDK.
    public var protocolVersion: Int
    /// URL schemes the plugin probes, lower case, without `://` (`rtsp`, `rtsps`).
    public var schemes: [String]
    /// Optional abilities.
    public var capabilities: Capabilities
    /// One line for `streampulse plugins` and the dashboard.
    public var summary: String

    public init(name: String, version: String, schemes: [String], capabilities: Capabilities, summary: String = "") {
        self.name = name
        self.version = version
        self.protocolVersion = Int(PluginProtocol.version)
        self.schemes = schemes.map { $0.lowercased() }
        self.capabilities = capabilities
        self.summary = summary
    }
}

/// Optional abilities of a plugin.
public struct Capabilities: Codable, Sendable, Equatable {
    /// Cheap reachability/auth/path check without decoding pictures.
    public var quickProbe: Bool
    /// Full check that decodes pictures.
    public var deepProbe: Bool
    /// A stream of JPEG frames for a few seconds.
    public var livePreview: Bool

    public init(quickProbe: Bool, deepProbe: Bool, livePreview: Bool) {
        self.quickProbe = quickProbe
        self.deepProbe = deepProbe
        self.livePreview = livePreview
    }
}

/// Camera credentials, passed beside the URL and never inside it.
public struct Credentials: Codable, Sendable, Equatable {
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }
}

/// How deep a probe looks.
public enum ProbeMode: String, Codable, Sendable {
    /// Reachability, authentication and path only (for RTSP: OPTIONS + DESCRIBE).
    case quick
    /// Decode pictures and check them.
    case deep
}

/// Per-stream knobs; every field is optional and a plugin uses its own default when absent.
public struct ProbeOptions: Codable, Sendable, Equatable {
    /// Transport preference where the protocol has one: `tcp`, `udp` or `auto`.
    public var transport: String?
    /// Frames to sample after the first decoded frame (fps, frozen and black checks).
    public var sampleFrames: Int?
    /// Longest sampling window in seconds.
    public var sampleSeconds: Double?
    /// Lowest acceptable frames per second; below it the result is `low_fps`.
    public var minFps: Double?
    /// Mean absolute luma difference (0–255) under which consecutive frames count as identical.
    public var frozenThreshold: Double?
    /// Mean luma (0–255) under which a picture counts as black.
    public var blackThreshold: Double?
    /// Longest acceptable time to the first decoded frame, in milliseconds; above it `slow_first_frame`.
    public var maxFirstFrameMs: Double?
    /// Largest frame or message the plugin accepts, in bytes.
    public var maxFrameBytes: Int?
    /// Ask for a small JPEG thumbnail of the first frame as evidence.
    public var thumbnail: Bool?
    /// Widest thumbnail or preview frame, in pixels.
    public var maxWidth: Int?
    /// Follow HTTP redirects to another host. Nil or false: only redirects to the stream's own host are
    /// followed (a camera must not send the monitor to fetch arbitrary addresses).
    public var redirectsToOtherHosts: Bool?
    /// Parts of the picture the frozen check ignores (a waving flag, a ticker), as fractions of the frame
    /// (protocol 1.1; older plugins ignore it).
    public var ignore: [PictureRegion]?

    public init(
        transport: String? = nil, sampleFrames: Int? = nil, sampleSeconds: Double? = nil, minFps: Double? = nil,
        frozenThreshold: Double? = nil, blackThreshold: Double? = nil, maxFirstFrameMs: Double? = nil,
        maxFrameBytes: Int? = nil, thumbnail: Bool? = nil, maxWidth: Int? = nil, redirectsToOtherHosts: Bool? = nil,
        ignore: [PictureRegion]?
    ) {
        self.init(transport: transport, sampleFrames: sampleFrames, sampleSeconds: sampleSeconds, minFps: minFps,
                  frozenThreshold: frozenThreshold, blackThreshold: blackThreshold, maxFirstFrameMs: maxFirstFrameMs,
                  maxFrameBytes: maxFrameBytes, thumbnail: thumbnail, maxWidth: maxWidth, redirectsToOtherHosts: redirectsToOtherHosts)
        self.ignore = ignore
    }

    /// The protocol 1.0 initializer (kept so plugins built against it link unchanged).
    public init(
        transport: String? = nil, sampleFrames: Int? = nil, sampleSeconds: Double? = nil, minFps: Double? = nil,
        frozenThreshold: Double? = nil, blackThreshold: Double? = nil, maxFirstFrameMs: Double? = nil,
        maxFrameBytes: Int? = nil, thumbnail: Bool? = nil, maxWidth: Int? = nil, redirectsToOtherHosts: Bool? = nil
    ) {
        self.transport = transport
        self.sampleFrames = sampleFrames
        self.sampleSeconds = sampleSeconds
        self.minFps = minFps
        self.frozenThreshold = frozenThreshold
        self.blackThreshold = blackThreshold
        self.maxFirstFrameMs = maxFirstFrameMs
        self.maxFrameBytes = maxFrameBytes
        self.thumbnail = thumbnail
        self.maxWidth = maxWidth
        self.redirectsToOtherHosts = redirectsToOtherHosts
    }
}

/// One probe of one stream.
public struct ProbeRequest: Codable, Sendable, Equatable {
    /// The stream's stable id from the configuration (or `check` for the command line).
    public var streamId: String
    /// The stream URL **without** user information; credentials travel in `credentials`.
    public var url: String
    public var credentials: Credentials?
    public var mode: ProbeMode
    /// The whole probe must finish within this many milliseconds of the request.
    public var timeoutMs: Int
    public var options: ProbeOptions

    public init(
        streamId: String, url: String, credentials: Credentials? = nil, mode: ProbeMode = .deep,
        timeoutMs: Int = 10_000, options: ProbeOptions = ProbeOptions()
    ) {
        self.streamId = streamId
        self.url = url
        self.credentials = credentials
        self.mode = mode
        self.timeoutMs = timeoutMs
        self.options = options
    }
}

/// A live preview: JPEG frames for a few seconds.
public struct PreviewRequest: Codable, Sendable, Equatable {
    public var streamId: String
    public var url: String
    public var credentials: Credentials?
    /// How long to send frames.
    public var seconds: Double
    /// Most frames per second to send.
    public var maxFps: Double
    /// Widest frame, in pixels (a plugin that passes frames through may ignore it).
    public var maxWidth: Int
    /// Time allowed to connect and deliver the first frame, in milliseconds.
    public var timeoutMs: Int

    public init(
        streamId: String, url: String, credentials: Credentials? = nil, seconds: Double = 5, maxFps: Double = 10,
        maxWidth: Int = 640, timeoutMs: Int = 10_000
    ) {
        self.streamId = streamId
        self.url = url
        self.credentials = credentials
        self.seconds = seconds
        self.maxFps = maxFps
        self.maxWidth = maxWidth
        self.timeoutMs = timeoutMs
    }
}

/// Milliseconds from the start of the probe to each milestone; nil when not reached.
public struct Timings: Codable, Sendable, Equatable {
    public var connectMs: Double?
    public var firstByteMs: Double?
    public var firstFrameMs: Double?
    public var totalMs: Double?

    public init(connectMs: Double? = nil, firstByteMs: Double? = nil, firstFrameMs: Double? = nil, totalMs: Double? = nil) {
        self.connectMs = connectMs
        self.firstByteMs = firstByteMs
        self.firstFrameMs = firstFrameMs
        self.totalMs = totalMs
    }
}

/// What the stream carries.
public struct MediaFacts: Codable, Sendable, Equatable {
    public var codec: String?
    public var width: Int?
    public var height: Int?
    public var fps: Double?
    public var bitrateBps: Double?
    /// An audio track is announced and its packets arrived (nil: the plugin does not look at audio).
    public var audio: Bool?
    /// Seconds between the keyframes seen in the sampling window (the GOP length), when two were seen.
    public var keyframeIntervalSeconds: Double?
    /// RTP packets of the video track missing from what the probe read (sequence-number gaps); nil when the
    /// plugin does not count them. Loss here means the stream could not be read whole (a saturated link, a
    /// server dropping what its send queue could not hold).
    public var packetsLost: Int?

    public init(codec: String? = nil, width: Int? = nil, height: Int? = nil, fps: Double? = nil, bitrateBps: Double? = nil,
                audio: Bool?, keyframeIntervalSeconds: Double? = nil) {
        self.init(codec: codec, width: width, height: height, fps: fps, bitrateBps: bitrateBps)
        self.audio = audio
        self.keyframeIntervalSeconds = keyframeIntervalSeconds
    }

    /// The protocol 1.0 initializer (kept so plugins built against it link unchanged).
    public init(codec: String? = nil, width: Int? = nil, height: Int? = nil, fps: Double? = nil, bitrateBps: Double? = nil) {
        self.codec = codec
        self.width = width
        self.height = height
        self.fps = fps
        self.bitrateBps = bitrateBps
    }
}

/// What the pictures look like.
public struct ImageFacts: Codable, Sendable, Equatable {
    /// Consecutive sampled frames were (near-)identical.
    public var frozen: Bool
    /// The picture is (near-)black.
    public var black: Bool
    /// Mean luma of the last sampled frame, 0–255.
    public var meanLuma: Double?
    /// Mean absolute luma difference between sampled frames, 0–255.
    public var meanDifference: Double?
    /// Frames looked at.
    public var framesSampled: Int
    /// Sharpness of the judged picture (the window's last intact one) at its own resolution: fine-detail
    /// contrast over coarse contrast (0–1, exposure-independent); a blurred lens lowers it (protocol 1.1).
    public var sharpness: Double?
    /// The judged picture (the window's last intact one, the one the black check reads), downscaled, for the
    /// host's scene, obstruction and across-probe frozen checks (protocol 1.1).
    public var grid: LumaGrid?
    /// The pictures were identical apart from one horizontal band (an on-screen clock), which the frozen
    /// check set aside.
    public var onlyBandChanged: Bool?
    /// CPU time the plugin spent on `grid` and `sharpness`, in microseconds (the cost of picture health).
    public var analysisUs: Double?
    /// Pictures the probe tried to decode that failed or came out damaged (never judged); nil when the plugin
    /// does not count them. A healthy stream reads 0; a few mean a damaged stream or a decoder that was not
    /// given the stream's parameter sets.
    public var picturesFailed: Int?

    public init(frozen: Bool, black: Bool, meanLuma: Double? = nil, meanDifference: Double? = nil, framesSampled: Int = 0,
                sharpness: Double?, grid: LumaGrid? = nil, onlyBandChanged: Bool? = nil) {
        self.init(frozen: frozen, black: black, meanLuma: meanLuma, meanDifference: meanDifference, framesSampled: framesSampled)
        self.sharpness = sharpness
        self.grid = grid
        self.onlyBandChanged = onlyBandChanged
    }

    /// The protocol 1.0 initializer (kept so plugins built against it link unchanged).
    public init(frozen: Bool, black: Bool, meanLuma: Double? = nil, meanDifference: Double? = nil, framesSampled: Int = 0) {
        self.frozen = frozen
        self.black = black
        self.meanLuma = meanLuma
        self.meanDifference = meanDifference
        self.framesSampled = framesSampled
    }
}

/// The answer to a probe or the end of a preview.
public struct ProbeResult: Codable, Sendable, Equatable {
    /// `ok`, or the class of the failure.
    public var reason: Reason
    /// Where it failed (or, for `ok`, the last phase reached); nil when not applicable.
    public var phase: Phase?
    /// One plain sentence for operators. Must not contain credentials.
    public var message: String
    /// The mode actually used.
    public var mode: ProbeMode?
    public var timings: Timings
    public var media: MediaFacts?
    public var image: ImageFacts?
    /// A small JPEG (base64 in JSON), when asked for: of the picture `image.grid` was taken from, or of the
    /// first picture when the window failed or froze.
    public var thumbnailJpeg: Data?
    /// With a `frozen` verdict and a thumbnail asked for: a small JPEG of the last picture of the sampling
    /// window, so the first and last pictures can be shown side by side as the evidence (optional, 1.x).
    public var lastPictureJpeg: Data?

    public init(
        reason: Reason, phase: Phase? = nil, message: String, mode: ProbeMode? = nil, timings: Timings = Timings(),
        media: MediaFacts? = nil, image: ImageFacts? = nil, thumbnailJpeg: Data? = nil
    ) {
        self.reason = reason
        self.phase = phase
        self.message = message
        self.mode = mode
        self.timings = timings
        self.media = media
        self.image = image
        self.thumbnailJpeg = thumbnailJpeg
    }

    /// A failure with no facts.
    public static func failure(_ reason: Reason, phase: Phase?, _ message: String) -> ProbeResult {
        ProbeResult(reason: reason, phase: phase, message: message)
    }
}

/// A picture downscaled to a small luma image (each value the mean of a cell, 0–255), row by row.
public struct LumaGrid: Codable, Sendable, Equatable {
    public var columns: Int
    public var rows: Int
    /// `columns × rows` bytes (base64 in JSON).
    public var values: Data

    public init(columns: Int, rows: Int, values: Data) {
        self.columns = columns
        self.rows = rows
        self.values = values
    }

    /// The standard size plugins send: 48 × 27 (16:9), about 1.3 KB.
    public static let standardColumns = 48, standardRows = 27
}

/// A rectangle of the picture in fractions of its width and height (0–1), origin top left.
public struct PictureRegion: Codable, Sendable, Equatable {
    public var x: Double
    public var y: Double
    public var width: Double
    public var height: Double

    public init(x: Double, y: Double, width: Double, height: Double) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }

    /// True when the point (fractions of the picture) lies inside.
    public func contains(x px: Double, y py: Double) -> Bool {
        px >= x && px < x + width && py >= y && py < y + height
    }
}
