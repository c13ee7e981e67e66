/// Every key of `settings:` declared once: its name, type, default, lower bound, whether a reload applies
/// it live or it needs a restart, and its one-line doc. The loader's key lists, the reload's "needs
/// restart" report, `config/streampulse.schema.json` and the table in docs/configuration.md are derived
/// from or checked against this table (ConfigKeyTests).
public struct SettingKey: Sendable {
    /// When a changed value takes effect.
    public enum Applies: String, Sendable {
        /// On the reload that changes it.
        case live
        /// At the next start; until then the reload reports it under `needs_restart`.
        case restart
    }

    /// The kind of value, as the schema names it.
    public enum Kind: String, Sendable {
        case duration, integer, boolean, string, timezone, list
    }

    /// Dotted path under `settings:` (`web.max_previews`).
    public let name: String
    public let kind: Kind
    /// The default as written in YAML.
    public let defaultValue: String
    /// Smallest allowed value (integers).
    public let minimum: Int?
    public let applies: Applies
    public let doc: String
    /// A valid non-default value, written as YAML (tests load it to prove the loader reads the key).
    public let sample: String
    private let differs: @Sendable (Settings, Settings) -> Bool
    private let carry: @Sendable (inout Settings, Settings) -> Void

    init<T: Equatable>(_ name: String, _ path: WritableKeyPath<Settings, T> & Sendable, _ kind: Kind, _ defaultValue: String,
                       min minimum: Int? = nil, _ applies: Applies, sample: String, _ doc: String) {
        self.name = name
        self.kind = kind
        self.defaultValue = defaultValue
        self.minimum = minimum
        self.applies = applies
        self.doc = doc
        self.sample = sample
        differs = { $0[keyPath: path] != $1[keyPath: path] }
        carry = { $0[keyPath: path] = $1[keyPath: path] }
    }

    /// Whether two settings disagree on this key.
    public func differs(_ a: Settings, _ b: Settings) -> Bool { differs(a, b) }

    /// Sets this key of `settings` to its value in `source`.
    public func copy(into settings: inout Settings, from source: Settings) { carry(&settings, source) }
}

public enum SettingKeys {
    public static let all: [SettingKey] = [
        SettingKey("interval", \.interval, .duration, "30s", .live, sample: "45s", "how often each stream is checked"),
        SettingKey("deep_interval", \.deepInterval, .duration, "5m", .live, sample: "10m",
                   "a deep probe (pictures decoded, frozen/black checked) at least this often; quick probes in between"),
        SettingKey("timeout", \.timeout, .duration, "10s", .live, sample: "4s", "deadline for one probe"),
        SettingKey("retries", \.retries, .integer, "2", min: 0, .live, sample: "5",
                   "consecutive failures shown as yellow \"pending\" before a stream turns red"),
        SettingKey("backoff_cap", \.backoffCap, .duration, "5m", .live, sample: "15m",
                   "failing streams are re-checked after 1×, 2×, 4×… the interval (±10 % jitter), at most this far apart"),
        SettingKey("timezone", \.timezone, .timezone, "UTC", .live, sample: "Europe/Berlin",
                   "IANA name for display, exports and CSV files (timestamps are stored in UTC)"),
        SettingKey("ntp.servers", \.ntpServers, .list, "[]", .restart, sample: "[127.0.0.1:12300]",
                   "SNTP servers (`host` or `host:port`) to measure the clock offset against"),
        SettingKey("ntp.interval", \.ntpInterval, .duration, "5m", .restart, sample: "1m", "how often the clock offset is measured"),
        SettingKey("listen", \.listen, .string, "127.0.0.1:8080", .restart, sample: "127.0.0.1:9090", "web server and API (HOST:PORT)"),
        SettingKey("data_dir", \.dataDir, .string, "data", .restart, sample: "elsewhere", "database and generated files"),
        SettingKey("retention.raw_days", \.retentionRawDays, .integer, "30", min: 1, .live, sample: "7", "days of single checks kept"),
        SettingKey("retention.rollup_days", \.retentionRollupDays, .integer, "400", min: 1, .live, sample: "90",
                   "days of hourly rollups (uptime) kept"),
        SettingKey("host_sessions", \.hostSessions, .integer, "2", min: 1, .live, sample: "3",
                   "most simultaneous sessions the monitor opens to one camera/NVR host (previews count)"),
        SettingKey("max_deep_probes", \.maxDeepProbes, .integer, "64", min: 1, .live, sample: "16",
                   "deep probes (picture decoding) at once across the fleet; bounds memory and CPU at fleet scale"),
        SettingKey("secrets_file", \.secretsFile, .string, "secrets.yaml", .live, sample: "other-secrets.yaml",
                   "credentials file, relative to config.yaml; read on every reload"),
        SettingKey("web.secure_cookies", \.secureCookies, .boolean, "false", .live, sample: "true",
                   "mark the dashboard's session cookie `Secure` (set it when TLS terminates in front)"),
        SettingKey("web.max_previews", \.maxPreviews, .integer, "4", min: 1, .live, sample: "1",
                   "most live previews running at once, all viewers together (viewers of one stream share a session)"),
        SettingKey("web.preview_seconds", \.previewSeconds, .integer, "5", min: 1, .live, sample: "9",
                   "default length of a live preview (at most 30 s)"),
        SettingKey("web.trusted_proxies", \.trustedProxies, .list, "[]", .live, sample: "[127.0.0.1]",
                   "reverse proxies whose `X-Forwarded-For` names the client for sign-in throttling (none trusted by default)"),
        SettingKey("web.max_connections", \.maxConnections, .integer, "256", min: 8, .restart, sample: "64",
                   "open web connections at most; more wait in the listen queue, so file descriptors stay for probing"),
        SettingKey("web.max_connections_per_address", \.maxConnectionsPerAddress, .integer, "32", min: 1, .restart, sample: "8",
                   "open web connections from one client address at most (trusted proxies exempt): one slow client cannot take them all"),
        SettingKey("web.idle_timeout", \.idleTimeout, .duration, "30s", .restart, sample: "10s",
                   "a web connection that sends no complete request for this long is closed (slow or idle clients)"),
    ]

    /// The key names directly under `prefix` ("" for the top of `settings:`, "web" for `settings.web`).
    public static func children(of prefix: String) -> [String] {
        var names: [String] = []
        for key in all {
            let rest: Substring
            if prefix.isEmpty { rest = key.name[...] } else if key.name.hasPrefix(prefix + ".") { rest = key.name.dropFirst(prefix.count + 1) } else { continue }
            let first = String(rest.split(separator: ".").first ?? rest)
            if !names.contains(first) { names.append(first) }
        }
        return names
    }

    /// Restart-only keys whose value in the file now differs from the file the monitor started with.
    public static func needingRestart(atStart: Settings, now: Settings) -> [SettingKey] {
        all.filter { $0.applies == .restart && $0.differs(atStart, now) }
    }

    /// The settings to put in force after a reload: the file's, except restart-only keys, which keep the
    /// running values until the next start.
    public static func inForce(running: Settings, file: Settings) -> Settings {
        var next = file
        for key in all where key.applies == .restart { key.copy(into: &next, from: running) }
        return next
    }
}
