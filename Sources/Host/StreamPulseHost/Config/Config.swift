import Foundation
import StreamPulseCore

/// The monitor's configuration as loaded from config.yaml (immutable; a reload builds a new one).
public struct Config: Sendable, Equatable {
    public var settings: Settings
    public var credentials: [String: CredentialRef]
    public var streams: [StreamConfig]
    /// Sinks beyond the built-in SQLite history.
    public var sinks: [SinkConfig] = []
    /// Incidents' notification channels and rules.
    public var notify = NotifyConfig()
    /// Planned maintenance windows.
    public var maintenance: [MaintenanceWindow] = []
    /// Defaults for the streams of each group (`groups: {NAME: {site: …}}`); already applied to `streams`.
    public var groups: [String: GroupDefaults] = [:]
    /// `storage: {postgres: …}`: the PostgreSQL of a site deployment (`--postgres URL` wins); nil: none.
    public var postgres: PostgresTarget?

    /// This config as an agent of one site runs it: only the streams of `site` (`serve --site NAME`).
    public func restricted(toSite site: String) -> Config {
        var config = self
        config.streams = streams.filter { $0.site == site }
        return config
    }

    /// The sites the streams name, sorted.
    public var sites: [String] { Set(streams.compactMap(\.site)).sorted() }

    public init(settings: Settings = Settings(), credentials: [String: CredentialRef] = [:], streams: [StreamConfig] = [], sinks: [SinkConfig] = []) {
        self.settings = settings
        self.credentials = credentials
        self.streams = streams
        self.sinks = sinks
    }
}

/// What the streams of one group have unless they say otherwise.
public struct GroupDefaults: Sendable, Equatable {
    /// The site of the group's streams.
    public var site: String?

    public init(site: String? = nil) { self.site = site }
}

/// Global settings; every field has a default.
public struct Settings: Sendable, Equatable {
    public var interval: Duration = .seconds(30)
    public var deepInterval: Duration = .seconds(300)
    public var timeout: Duration = .seconds(10)
    public var retries: Int = 2
    public var backoffCap: Duration = .seconds(300)
    public var timezone: String = "UTC"
    public var ntpServers: [String] = []
    public var ntpInterval: Duration = .seconds(300)
    public var listen: String = "127.0.0.1:8080"
    public var dataDir: String = "data"
    public var retentionRawDays: Int = 30
    public var retentionRollupDays: Int = 400
    public var hostSessions: Int = 2
    /// Deep probes (picture decoding) at once across the fleet; bounds memory at fleet scale.
    public var maxDeepProbes: Int = 64
    public var secretsFile: String = "secrets.yaml"
    /// Dashboard: `Secure` session cookies (TLS in front), concurrent preview cap, preview length.
    public var secureCookies = false
    public var maxPreviews = 4
    public var previewSeconds = 5.0
    /// Reverse proxies whose `X-Forwarded-For` names the client (sign-in throttling); none by default.
    public var trustedProxies: [String] = []
    /// Open web connections at most; more wait in the listen queue (file descriptors stay for probing).
    public var maxConnections = 256
    /// Open web connections from one client address at most (trusted proxies are exempt).
    public var maxConnectionsPerAddress = 32
    /// A web connection that sends no complete request for this long is closed (slow or idle clients).
    public var idleTimeout: Duration = .seconds(30)
    public init() {}
}

/// Named camera credentials. Values are resolved (environment, secrets file) at load time.
public struct CredentialRef: Sendable, Equatable {
    public var username: String
    public var password: String
}

/// Per-stream thresholds; nil means the plugin default.
public struct Thresholds: Sendable, Equatable {
    public var minFps: Double?
    public var frozen: Double?
    public var black: Double?
    public var maxFirstFrame: Duration?
}

/// One monitored stream.
public struct StreamConfig: Sendable, Equatable {
    /// Stable id; history follows it.
    public var id: String
    public var name: String
    /// URL without user information (any `user:pass@` is moved to `inlineCredentials`).
    public var url: String
    public var protocolName: String?
    public var interval: Duration?
    public var deepInterval: Duration?
    public var group: String?
    /// Where the camera is (a shop, a depot, a campus): written on the stream or taken from its group's
    /// default. `serve --site NAME` probes only the streams of that site.
    public var site: String?
    public var tags: [String] = []
    public var credentialsName: String?
    /// Credentials that were written inside the URL (warned about, masked everywhere).
    public var inlineCredentials: Credentials?
    public var thresholds = Thresholds()
    public var enabled = true
    public var transport: String?
    /// `any` lets HTTP redirects lead to another host; by default only the stream's own host is followed.
    public var redirects: String?
    /// The profile pinned as code (`expect:`); fields left out are learned.
    public var expect: StreamProfile?
    /// Picture-health checks against the profile and the reference view (`picture_checks: false` turns
    /// them off for a stream whose view legitimately changes, such as a PTZ tour).
    public var pictureChecks = true
    /// Thresholds of the picture-health checks (`thresholds: {scene, blur, obstruction, low_bitrate}`).
    public var pictureThresholds = PictureThresholds()
    /// Parts of the picture the frozen and scene checks ignore (`ignore: [{x, y, width, height}]`, fractions).
    public var ignore: [PictureRegion] = []

    /// The URL as shown to people: `scheme://***@host/…` when the config put credentials inside it.
    public var maskedURL: String {
        guard inlineCredentials != nil, let schemeEnd = URLRedaction.schemeSeparator(in: url) else { return url }
        return String(url[..<schemeEnd.upperBound]) + "***@" + String(url[schemeEnd.upperBound...])
    }
}

extension Duration {
    /// Seconds as a Double.
    public var seconds: Double { milliseconds / 1000 }
}

