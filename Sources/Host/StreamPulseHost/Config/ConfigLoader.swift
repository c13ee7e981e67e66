import Foundation
import StreamPulseCore
import Yams

/// A problem found in a configuration file, with its position.
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }
    public var file: String
    public var line: Int
    public var column: Int
    public var severity: Severity
    public var message: String

    public var description: String { "\(file):\(line):\(column): \(severity.rawValue): \(message)" }
}

/// The outcome of loading: a config when there are no errors, and every problem found.
public struct ConfigLoadResult: Sendable {
    public var config: Config?
    public var problems: [ConfigProblem]
    public var errors: [ConfigProblem] { problems.filter { $0.severity == .error } }
}

/// Reads config.yaml (and the secrets it references) into a `Config`, collecting every problem.
public struct ConfigLoader {
    public var environment: [String: String]
    /// Schemes some loaded plugin handles; a stream with another scheme gets a warning. nil skips the check.
    public var knownSchemes: Set<String>?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, knownSchemes: Set<String>? = nil) {
        self.environment = environment
        self.knownSchemes = knownSchemes
    }

    public func load(path: String) -> ConfigLoadResult {
        guard let data = FileManager.default.contents(atPath: path) else {
            return ConfigLoadResult(config: nil, problems: [ConfigProblem(file: path, line: 1, column: 1, severity: .error, message: "cannot read the file")])
        }
        let secretsDir = (path as NSString).deletingLastPathComponent
        return load(yaml: String(decoding: data, as: UTF8.self), file: path, baseDirectory: secretsDir)
    }

    public func load(yaml: String, file: String, baseDirectory: String) -> ConfigLoadResult {
        var parser = ConfigParser(file: file, environment: environment, knownSchemes: knownSchemes, baseDirectory: baseDirectory)
        let config = parser.parse(yaml)
        let hasErrors = parser.problems.contains { $0.severity == .error }
        return ConfigLoadResult(config: hasErrors ? nil : config, problems: parser.problems)
    }
}

struct ConfigParser: ValueReading {
    let file: String
    let environment: [String: String]
    let knownSchemes: Set<String>?
    let baseDirectory: String
    var problems: [ConfigProblem] = []
    /// Credentials entries that had a problem of their own (already reported).
    var brokenCredentials: Set<String> = []

    init(file: String, environment: [String: String], knownSchemes: Set<String>?, baseDirectory: String) {
        self.file = file
        self.environment = environment
        self.knownSchemes = knownSchemes
        self.baseDirectory = baseDirectory
    }

    mutating func problem(_ node: Node?, _ message: String, _ severity: ConfigProblem.Severity = .error) {
        let mark = node?.mark
        problems.append(ConfigProblem(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1, severity: severity, message: message))
    }

    mutating func parse(_ yaml: String) -> Config {
        var config = Config()
        let root: Node?
        do {
            // The basic resolver: every value is read as text and converted here, so no scalar runs through
            // Yams' tag regexes (they dominated reloading a 10,000-stream file).
            root = try Yams.compose(yaml: yaml, .basic)
        } catch let error as YamlError {
            let diagnosis = YAMLSyntax.diagnose(error, in: yaml)
            problems.append(ConfigProblem(file: file, line: diagnosis.line, column: diagnosis.column, severity: .error, message: diagnosis.message))
            return config
        } catch {
            problem(nil, "YAML syntax: \(error)")
            return config
        }
        guard let root else { return config }
        guard let top = root.mapping else { problem(root, "the file must be a mapping with settings, credentials, streams"); return config }
        // Sections are read in dependency order whatever their order in the file: settings name the
        // secrets file credentials come from, and streams and sinks refer to credentials.
        let keys = ["settings", "credentials", "groups", "streams", "sinks", "notify", "maintenance", "storage"]
        var sections: [String: Node] = [:]
        for (key, value) in top {
            guard let name = key.string else { problem(key, "keys must be text"); continue }
            guard keys.contains(name) else { unknownKey(key, name, keys); continue }
            sections[name] = value
        }
        if let node = sections["settings"] { config.settings = parseSettings(node) }
        if let node = sections["credentials"] { config.credentials = parseCredentials(node, secretsFile: config.settings.secretsFile) }
        if let node = sections["groups"] { config.groups = parseGroups(node) }
        if let node = sections["streams"] { config.streams = parseStreams(node, credentials: config.credentials, groups: config.groups) }
        if let node = sections["sinks"] { config.sinks = parseSinks(node, credentials: config.credentials) }
        if let node = sections["notify"] { config.notify = parseNotify(node, credentials: config.credentials) }
        if let node = sections["maintenance"] { config.maintenance = parseMaintenance(node, defaultTimeZone: config.settings.timezone) }
        if let node = sections["storage"] { config.postgres = parseStorage(node, credentials: config.credentials) }
        return config
    }

    /// Each entry's common keys (`type`, `name`, `buffer`) are read here; the rest by its sink type.
    mutating func parseSinks(_ node: Node, credentials: [String: CredentialRef]) -> [SinkConfig] {
        guard let list = node.sequence else { problem(node, "sinks must be a list"); return [] }
        let typeNames = SinkRegistry.types.map(\.name).joined(separator: ", ")
        var result: [SinkConfig] = []
        var names = Set<String>()
        for item in list {
            guard let map = item.mapping else { problem(item, "each sink must be a mapping with a type"); continue }
            guard let typeNode = map["type"], let typeName = typeNode.string else { problem(item, "sink without a type (\(typeNames))"); continue }
            guard let type = SinkRegistry.type(named: typeName) else {
                problem(typeNode, "unknown sink type '\(typeName)'; expected \(typeNames)")
                continue
            }
            var name = typeName, buffer = 10_000
            var values: [String: Node] = [:]
            for (key, value) in map {
                switch key.string ?? "" {
                case "type": break
                case "name": name = string(value) ?? name
                case "buffer": buffer = int(value, min: 1) ?? buffer
                case let other: values[other] = value
                }
            }
            var entry = SinkEntry(name: name, file: file, node: item, values: values, credentials: credentials)
            let options = type.parse(&entry)
            problems += entry.problems
            for (key, _) in map where values[key.string ?? ""] != nil && !entry.asked.contains(key.string ?? "") {
                unknownKey(key, key.string ?? "", ["type", "name", "buffer"] + type.keys)
            }
            if !names.insert(name).inserted { problem(item, "two sinks are named '\(name)'; give each a distinct name") }
            result.append(SinkConfig(type: type.name, name: name, bufferSize: buffer, options: options))
        }
        return result
    }

    mutating func unknownKey(_ key: Node, _ name: String, _ allowed: [String]) {
        let suggestion = allowed.min { editDistance($0, name) < editDistance($1, name) }
        if let suggestion, editDistance(suggestion, name) <= max(2, name.count / 3) {
            problem(key, "unknown key '\(name)'; did you mean '\(suggestion)'?")
        } else {
            problem(key, "unknown key '\(name)'; expected one of \(allowed.joined(separator: ", "))")
        }
    }

    mutating func parseSettings(_ node: Node) -> Settings {
        var settings = Settings()
        guard let map = node.mapping else { problem(node, "settings must be a mapping"); return settings }
        let keys = SettingKeys.children(of: "")
        for (key, value) in map {
            guard let name = key.string else { continue }
            switch name {
            case "interval": settings.interval = duration(value) ?? settings.interval
            case "deep_interval": settings.deepInterval = duration(value) ?? settings.deepInterval
            case "timeout": settings.timeout = duration(value) ?? settings.timeout
            case "retries": settings.retries = int(value, min: 0) ?? settings.retries
            case "backoff_cap": settings.backoffCap = duration(value) ?? settings.backoffCap
            case "timezone":
                if let zone = string(value) {
                    if TimeZone(identifier: zone) == nil { problem(value, "unknown IANA timezone '\(zone)'") } else { settings.timezone = zone }
                }
            case "ntp":
                guard let ntp = value.mapping else { problem(value, "ntp must be a mapping with servers and interval"); continue }
                for (k, v) in ntp {
                    switch k.string ?? "" {
                    case "servers": settings.ntpServers = stringList(v)
                    case "interval": settings.ntpInterval = duration(v) ?? settings.ntpInterval
                    default: unknownKey(k, k.string ?? "", SettingKeys.children(of: "ntp"))
                    }
                }
            case "listen": settings.listen = string(value) ?? settings.listen
            case "data_dir": settings.dataDir = string(value) ?? settings.dataDir
            case "retention":
                guard let retention = value.mapping else { problem(value, "retention must be a mapping with raw_days and rollup_days"); continue }
                for (k, v) in retention {
                    switch k.string ?? "" {
                    case "raw_days": settings.retentionRawDays = int(v, min: 1) ?? settings.retentionRawDays
                    case "rollup_days": settings.retentionRollupDays = int(v, min: 1) ?? settings.retentionRollupDays
                    default: unknownKey(k, k.string ?? "", SettingKeys.children(of: "retention"))
                    }
                }
            case "host_sessions": settings.hostSessions = int(value, min: 1) ?? settings.hostSessions
            case "max_deep_probes": settings.maxDeepProbes = int(value, min: 1) ?? settings.maxDeepProbes
            case "secrets_file": settings.secretsFile = string(value) ?? settings.secretsFile
            case "web":
                guard let web = value.mapping else { problem(value, "web must be a mapping (\(SettingKeys.children(of: "web").joined(separator: ", ")))"); continue }
                for (k, v) in web {
                    switch k.string ?? "" {
                    case "secure_cookies":
                        if let flag = v.bool { settings.secureCookies = flag } else { problem(v, "secure_cookies must be true or false") }
                    case "max_previews": settings.maxPreviews = int(v, min: 1) ?? settings.maxPreviews
                    case "preview_seconds": settings.previewSeconds = Double(int(v, min: 1) ?? Int(settings.previewSeconds))
                    case "trusted_proxies": settings.trustedProxies = stringList(v)
                    case "max_connections": settings.maxConnections = int(v, min: 8) ?? settings.maxConnections
                    case "max_connections_per_address": settings.maxConnectionsPerAddress = int(v, min: 1) ?? settings.maxConnectionsPerAddress
                    case "idle_timeout": settings.idleTimeout = duration(v) ?? settings.idleTimeout
                    default: unknownKey(k, k.string ?? "", SettingKeys.children(of: "web"))
                    }
                }
            default: unknownKey(key, name, keys)
            }
        }
        return settings
    }

    mutating func parseCredentials(_ node: Node, secretsFile: String) -> [String: CredentialRef] {
        var result: [String: CredentialRef] = [:]
        guard let map = node.mapping else { problem(node, "credentials must be a mapping of names to username/password"); return result }
        var secrets: Secrets?
        for (key, value) in map {
            guard let name = key.string else { continue }
            // An entry with a problem is reported once, here; streams naming it are not blamed again.
            brokenCredentials.insert(name)
            guard let entry = value.mapping else { problem(value, "credentials '\(name)' must be a mapping with username and password"); continue }
            var username: String?
            var password: String?
            for (k, v) in entry {
                switch k.string ?? "" {
                case "username": username = expand(v)
                case "password":
                    if let raw = v.string, !raw.contains("${") {
                        problem(v, "credentials '\(name)': a password written in config.yaml ends up in git; use ${ENV_VAR} or the secrets file", .warning)
                    }
                    password = expand(v)
                default: unknownKey(k, k.string ?? "", Self.credentialKeys)
                }
            }
            if username == nil || password == nil {
                if secrets == nil { secrets = loadSecrets(secretsFile, at: value) }
                let secret = secrets?.entries[name]
                username = username ?? secret?.user
                password = password ?? secret?.pass
            }
            guard let username, let password else {
                let missing = [username == nil ? "username" : nil, password == nil ? "password" : nil].compactMap { $0 }.joined(separator: " and ")
                let whereFrom = secrets?.absence.map { "not in config.yaml or the environment, and \($0)" }
                    ?? "not in config.yaml, the environment or \(secretsFile)"
                problem(value, "credentials '\(name)': missing \(missing) (\(whereFrom))")
                continue
            }
            brokenCredentials.remove(name)
            result[name] = CredentialRef(username: username, password: password)
        }
        return result
    }

    static let credentialKeys = ["username", "password"]

    /// The secrets file's entries, or why there are none (`absence`, for the "missing password" message).
    struct Secrets {
        var entries: [String: (user: String?, pass: String?)] = [:]
        var absence: String?
    }

    /// Reads the secrets file; its own problems (unknown keys, not a mapping) are reported at its own lines.
    mutating func loadSecrets(_ secretsFile: String, at node: Node) -> Secrets {
        let path = secretsFile.hasPrefix("/") ? secretsFile : (baseDirectory as NSString).appendingPathComponent(secretsFile)
        guard FileManager.default.fileExists(atPath: path) else { return Secrets(absence: "the secrets file \(path) does not exist") }
        guard let data = FileManager.default.contents(atPath: path) else { return Secrets(absence: "the secrets file \(path) cannot be read") }
        var info = stat()
        if stat(path, &info) == 0, info.st_mode & 0o077 != 0 {
            problem(node, "secrets file \(path) is readable by other users; run chmod 600 on it", .warning)
        }
        let root: Node?
        do { root = try Yams.compose(yaml: String(decoding: data, as: UTF8.self), .basic) } catch let error as YamlError {
            let diagnosis = YAMLSyntax.diagnose(error, in: String(decoding: data, as: UTF8.self))
            problems.append(ConfigProblem(file: path, line: diagnosis.line, column: diagnosis.column, severity: .error, message: diagnosis.message))
            return Secrets(absence: "the secrets file \(path) has a syntax error")
        } catch { root = nil }
        guard let map = root?.mapping else {
            problem(node, "secrets file \(path) is not a YAML mapping of credential names")
            return Secrets(absence: "the secrets file \(path) is not a mapping of credential names")
        }
        var result = Secrets()
        for (key, value) in map {
            guard let name = key.string else { continue }
            guard let entry = value.mapping else {
                secretsProblem(path, value, "'\(name)' must be a mapping with username and/or password")
                continue
            }
            for (k, _) in entry where !Self.credentialKeys.contains(k.string ?? "") {
                let suggestion = Self.credentialKeys.min { editDistance($0, k.string ?? "") < editDistance($1, k.string ?? "") } ?? "password"
                secretsProblem(path, k, "'\(name)': unknown key '\(k.string ?? "")'; did you mean '\(suggestion)'?")
            }
            result.entries[name] = (entry["username"]?.string, entry["password"]?.string)
        }
        return result
    }

    /// A problem inside the secrets file, named by that file's path and line (never its values).
    mutating func secretsProblem(_ path: String, _ node: Node, _ message: String) {
        problems.append(ConfigProblem(file: path, line: node.mark?.line ?? 1, column: node.mark?.column ?? 1, severity: .error, message: message))
    }

    static let streamKeys = ["id", "name", "url", "protocol", "interval", "deep_interval", "group", "site", "tags", "credentials",
                             "thresholds", "enabled", "transport", "redirects", "expect", "picture_checks", "ignore"]

    mutating func parseStreams(_ node: Node, credentials: [String: CredentialRef], groups: [String: GroupDefaults] = [:]) -> [StreamConfig] {
        var streams: [StreamConfig] = []
        guard let list = node.sequence else { problem(node, "streams must be a list"); return streams }
        var seen: [String: Node] = [:]
        for item in list {
            guard let map = item.mapping else { problem(item, "each stream must be a mapping with at least id and url"); continue }
            var (stream, nodes) = parseStream(map, credentials: credentials)
            // A site written on the stream wins over its group's.
            if stream.site == nil, let group = stream.group { stream.site = groups[group]?.site }
            if checkStream(&stream, item: item, nodes: nodes, seen: &seen) { streams.append(stream) }
        }
        return streams
    }

    static let groupKeys = ["site"]
    static let storageKeys = ["postgres"]
    static let postgresKeys = ["host", "port", "database", "credentials", "tls"]
    static let postgresTLSKeys = ["mode", "ca"]

    /// `storage: {postgres: {host, port, database, credentials, tls: {mode, ca}}}`: the PostgreSQL a site's agents
    /// and dashboards share (`--postgres URL` on the command line wins). The user and password come from a
    /// `credentials:` entry, so the password stays in the secrets file.
    mutating func parseStorage(_ node: Node, credentials: [String: CredentialRef]) -> PostgresTarget? {
        guard let map = node.mapping else { problem(node, "storage must be a mapping, such as storage: {postgres: {host: db, database: streampulse, credentials: db}}"); return nil }
        var target: PostgresTarget?
        for (key, value) in map {
            switch key.string ?? "" {
            case "postgres":
                guard let fields = value.mapping else { problem(value, "storage.postgres must be a mapping of host, port, database, credentials, tls"); continue }
                var host: String?, port = 5432, database: String?, credential: CredentialRef?, mode = "disable", ca: String?
                var complete = true
                for (field, fieldValue) in fields {
                    switch field.string ?? "" {
                    case "host": host = string(fieldValue)
                    case "port":
                        guard let number = int(fieldValue, min: 1), number <= 65535 else { complete = false; continue }
                        port = number
                    case "database": database = string(fieldValue)
                    case "credentials":
                        guard let name = string(fieldValue) else { complete = false; continue }
                        guard let found = credentials[name] else {
                            problem(fieldValue, "storage.postgres: no credentials named '\(name)' (declare it under credentials:)")
                            complete = false
                            continue
                        }
                        credential = found
                    case "tls":
                        guard let tls = fieldValue.mapping else { problem(fieldValue, "storage.postgres.tls must be a mapping such as {mode: verify-full, ca: /etc/ssl/db-ca.pem}"); continue }
                        for (tlsKey, tlsValue) in tls {
                            switch tlsKey.string ?? "" {
                            case "mode":
                                let text = string(tlsValue) ?? ""
                                guard ["disable", "require", "verify-full"].contains(text) else {
                                    problem(tlsValue, "storage.postgres.tls.mode must be disable, require or verify-full")
                                    complete = false
                                    continue
                                }
                                mode = text
                            case "ca": ca = string(tlsValue)
                            case let other: unknownKey(tlsKey, other, Self.postgresTLSKeys)
                            }
                        }
                    case let other: unknownKey(field, other, Self.postgresKeys)
                    }
                }
                guard let host, !host.isEmpty else { problem(value, "storage.postgres needs host"); continue }
                guard let credential else {
                    if complete { problem(value, "storage.postgres needs credentials (the name of a credentials: entry with username and password)") }
                    continue
                }
                guard complete else { continue }
                target = PostgresTarget(host: host, port: port, user: credential.username, database: database ?? credential.username,
                                        password: credential.password, sslMode: mode, rootCertificate: ca)
            case let other: unknownKey(key, other, Self.storageKeys)
            }
        }
        return target
    }

    /// `groups: {NAME: {site: SITE}}`: defaults for the streams whose `group:` is NAME.
    mutating func parseGroups(_ node: Node) -> [String: GroupDefaults] {
        guard let map = node.mapping else { problem(node, "groups must be a mapping of group name to its defaults, such as groups: {depot-north: {site: north}}"); return [:] }
        var result: [String: GroupDefaults] = [:]
        for (key, value) in map {
            guard let name = key.string, !name.isEmpty else { problem(key, "group names must be text"); continue }
            guard let entries = value.mapping else { problem(value, "group '\(name)': its defaults must be a mapping, such as {site: north}"); continue }
            var defaults = GroupDefaults()
            for (field, fieldValue) in entries {
                switch field.string ?? "" {
                case "site": defaults.site = site(fieldValue)
                case let other: unknownKey(field, other, Self.groupKeys)
                }
            }
            result[name] = defaults
        }
        return result
    }

    /// A site name: letters, digits, `.`, `_` and `-`, at most 64 (it names a place in URLs, logs and
    /// command lines).
    mutating func site(_ node: Node) -> String? {
        guard let text = string(node) else { return nil }
        let allowed = text.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F || c == 0x2D
        }
        guard !text.isEmpty, text.utf8.count <= 64, allowed else {
            problem(node, "site '\(text.prefix(80))' is not a site name: use letters, digits, '.', '_' and '-', at most 64")
            return nil
        }
        return text
    }

    /// One stream's keys as written (checked by `checkStream`), and the nodes of its id and URL for messages.
    mutating func parseStream(_ map: Node.Mapping, credentials: [String: CredentialRef]) -> (StreamConfig, (id: Node?, url: Node?)) {
        var stream = StreamConfig(id: "", name: "", url: "")
        var urlNode: Node?, idNode: Node?
        for (key, value) in map {
            guard let name = key.string else { continue }
            switch name {
            case "id": stream.id = string(value) ?? ""; idNode = value
            case "name": stream.name = string(value) ?? ""
            case "url": stream.url = string(value) ?? ""; urlNode = value
            case "protocol": stream.protocolName = string(value)?.lowercased()
            case "interval": stream.interval = duration(value)
            case "deep_interval": stream.deepInterval = duration(value)
            case "group": stream.group = string(value)
            case "site": stream.site = site(value)
            case "tags":
                if let single = value.scalar?.string {
                    problem(value, "tags must be a list: tags: [\(single)]")
                } else {
                    stream.tags = stringList(value)
                }
            case "credentials":
                stream.credentialsName = string(value)
                if let ref = stream.credentialsName, credentials[ref] == nil, !brokenCredentials.contains(ref) {
                    problem(value, "unknown credentials '\(ref)'\(suggest(ref, Array(credentials.keys) + brokenCredentials))")
                }
            case "thresholds": (stream.thresholds, stream.pictureThresholds) = parseThresholds(value)
            case "expect": stream.expect = parseExpect(value)
            case "picture_checks": stream.pictureChecks = bool(value) ?? true
            case "ignore": stream.ignore = parseRegions(value)
            case "enabled": stream.enabled = bool(value) ?? true
            case "transport":
                if let t = string(value)?.lowercased() {
                    if ["tcp", "udp", "auto"].contains(t) { stream.transport = t } else { problem(value, "transport must be tcp, udp or auto") }
                }
            case "redirects":
                if let r = string(value)?.lowercased() {
                    if ["same_host", "any"].contains(r) { stream.redirects = r } else { problem(value, "redirects must be same_host or any") }
                }
            default: unknownKey(key, name, Self.streamKeys)
            }
        }
        return (stream, (idNode, urlNode))
    }

    /// Whether a parsed stream is kept: it needs a unique id and a well-formed URL; credentials written inside
    /// the URL move out of it (with a warning).
    mutating func checkStream(_ stream: inout StreamConfig, item: Node, nodes: (id: Node?, url: Node?), seen: inout [String: Node]) -> Bool {
        let urlNode = nodes.url
        if stream.id.isEmpty { problem(item, "stream without an id (history follows the id, so it is required)"); return false }
        if let bad = StreamID.forbiddenCharacter(in: stream.id) {
            problem(nodes.id ?? item, "stream id '\(StreamID.printable(stream.id))' contains \(bad); ids become MQTT topics, URLs and file names, so use letters, digits, '-', '_', '.' or ':'")
            return false
        }
        if let first = seen[stream.id] {
            problem(nodes.id ?? item, "duplicate stream id '\(stream.id)' (first at line \(first.mark?.line ?? 0))")
            return false
        }
        seen[stream.id] = nodes.id ?? item
        if stream.name.isEmpty { stream.name = stream.id }
        if stream.url.isEmpty { problem(item, "stream '\(stream.id)' has no url"); return false }
        let split = URLRedaction.splitCredentials(stream.url)
        if let inline = split.credentials {
            stream.url = split.url
            stream.inlineCredentials = inline
            problem(urlNode, "stream '\(stream.id)': credentials inside the URL end up in git; use a credentials entry (they are masked everywhere)", .warning)
        }
        switch StreamURL.check(stream.url) {
        case .valid(let scheme):
            if let known = knownSchemes, stream.protocolName == nil, !known.contains(scheme) {
                problem(urlNode, "stream '\(stream.id)': no loaded plugin handles '\(scheme)://'; it waits until one is installed", .warning)
            }
            return true
        case .invalid(let why):
            problem(urlNode, "stream '\(stream.id)': malformed URL '\(URLRedaction.mask(stream.url))' (\(why))")
            return false
        }
    }

    static let thresholdKeys = ["min_fps", "frozen", "black", "max_first_frame", "scene", "blur", "obstruction", "low_bitrate"]

    mutating func parseThresholds(_ node: Node) -> (Thresholds, PictureThresholds) {
        var t = Thresholds()
        var p = PictureThresholds()
        guard let map = node.mapping else { problem(node, "thresholds must be a mapping"); return (t, p) }
        for (key, value) in map {
            switch key.string ?? "" {
            case "min_fps": t.minFps = number("min_fps", value, in: Self.fpsRange, "frames per second")
            case "frozen": t.frozen = number("frozen", value, in: Self.lumaRange, "a mean luma difference")
            case "black": t.black = number("black", value, in: Self.lumaRange, "a mean luma")
            case "max_first_frame": t.maxFirstFrame = duration(value)
            case "scene": p.scene = number("scene", value, in: -1...1, "an edge correlation with the reference") ?? p.scene
            case "blur": p.blur = number("blur", value, in: 0...1, "a share of the reference's sharpness") ?? p.blur
            case "obstruction": p.obstruction = number("obstruction", value, in: 0...1, "a share of the view") ?? p.obstruction
            case "low_bitrate": p.lowBitrate = number("low_bitrate", value, in: 0...1, "a share of the profile's bitrate") ?? p.lowBitrate
            default: unknownKey(key, key.string ?? "", Self.thresholdKeys)
            }
        }
        return (t, p)
    }

    static let expectKeys = ["codec", "width", "height", "fps", "audio"]

    /// `expect: {codec: h264, width: 1920, height: 1080, fps: 25, audio: false}`.
    mutating func parseExpect(_ node: Node) -> StreamProfile? {
        guard let map = node.mapping else { problem(node, "expect must be a mapping, e.g. expect: {codec: h264, width: 1920, height: 1080, fps: 25}"); return nil }
        var profile = StreamProfile()
        for (key, value) in map {
            switch key.string ?? "" {
            case "codec": profile.codec = string(value)?.lowercased()
            case "width": profile.width = int(value, min: 1)
            case "height": profile.height = int(value, min: 1)
            case "fps": profile.fps = number("fps", value, in: Self.fpsRange, "frames per second")
            case "audio": profile.audio = bool(value)
            default: unknownKey(key, key.string ?? "", Self.expectKeys)
            }
        }
        return profile
    }

    /// `ignore: [{x: 0, y: 0, width: 0.3, height: 0.08}]`: fractions of the picture, origin top left.
    mutating func parseRegions(_ node: Node) -> [PictureRegion] {
        guard let list = node.sequence else { problem(node, "ignore must be a list of {x, y, width, height} (fractions of the picture)"); return [] }
        var regions: [PictureRegion] = []
        for item in list {
            guard let map = item.mapping else { problem(item, "each ignore region is a mapping {x, y, width, height}"); continue }
            var values: [String: Double] = [:]
            for (key, value) in map {
                let name = key.string ?? ""
                guard ["x", "y", "width", "height"].contains(name) else { unknownKey(key, name, ["x", "y", "width", "height"]); continue }
                values[name] = number(name, value, in: 0...1, "a fraction of the picture")
            }
            guard let x = values["x"], let y = values["y"], let w = values["width"], let h = values["height"], w > 0, h > 0 else {
                problem(item, "an ignore region needs x, y, width and height (fractions of the picture, width and height above 0)")
                continue
            }
            regions.append(PictureRegion(x: x, y: y, width: w, height: h))
        }
        return regions
    }

    static let lumaRange = 0.0...255.0
    /// Cameras deliver at most a few hundred pictures a second; 240 covers every camera we know of.
    static let fpsRange = 0.0...240.0

    /// A finite number inside `range`, or a problem that gives the range and what the number means.
    mutating func number(_ key: String, _ node: Node, in range: ClosedRange<Double>, _ meaning: String) -> Double? {
        guard let value = double(node) else { return nil }
        guard value.isFinite, range.contains(value) else {
            problem(node, "\(key): \(node.string ?? "") is out of range (\(meaning) from \(Self.format(range.lowerBound)) to \(Self.format(range.upperBound)))")
            return nil
        }
        return value
    }

    static func format(_ value: Double) -> String { value == value.rounded() ? String(Int(value)) : String(value) }

    mutating func expand(_ node: Node) -> String? {
        guard let text = string(node) else { return nil }
        var result = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            result += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else { result += rest[start.lowerBound...]; rest = ""; break }
            let name = String(rest[start.upperBound..<end])
            if let value = environment[name] { result += value } else { problem(node, "environment variable \(name) is not set", .error); return nil }
            rest = rest[rest.index(after: end)...]
        }
        return result + rest
    }

    func suggest(_ name: String, _ options: [String]) -> String {
        guard let best = options.min(by: { editDistance($0, name) < editDistance($1, name) }), editDistance(best, name) <= 2 else { return "" }
        return "; did you mean '\(best)'?"
    }
}

/// Parses `500ms`, `30s`, `5m`, `1h`, `1.5s` or a bare number of seconds.
public func parseDuration(_ text: String) -> Duration? {
    let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
    // Longer than ten years is a typo, and would overflow the millisecond count.
    let longest = 10 * 365 * 86_400.0
    for (suffix, scale) in units where trimmed.hasSuffix(suffix) {
        let number = trimmed.dropLast(suffix.count)
        if let value = Double(number), value.isFinite, value >= 0 {
            return value * scale <= longest ? .milliseconds(Int64((value * scale * 1000).rounded())) : nil
        }
        if suffix == "s" || suffix == "ms" { continue }
        return nil
    }
    if let value = Double(trimmed), value.isFinite, value >= 0, value <= longest { return .milliseconds(Int64((value * 1000).rounded())) }
    return nil
}

/// Levenshtein distance, for "did you mean" suggestions.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}

/// Scalar conversions shared by the loader and sink types (`SinkEntry`): each reports a problem at the
/// node when the value does not fit.
protocol ValueReading {
    mutating func problem(_ node: Node?, _ message: String, _ severity: ConfigProblem.Severity)
}

extension ValueReading {
    mutating func string(_ node: Node) -> String? {
        guard let scalar = node.scalar else { problem(node, "expected text", .error); return nil }
        return scalar.string
    }

    mutating func stringList(_ node: Node) -> [String] {
        if let scalar = node.scalar { return [scalar.string] }
        guard let list = node.sequence else { problem(node, "expected a list of text", .error); return [] }
        return list.compactMap { string($0) }
    }

    mutating func int(_ node: Node, min: Int) -> Int? {
        guard let text = node.scalar?.string, let value = Int(text) else { problem(node, "expected a whole number", .error); return nil }
        guard value >= min else { problem(node, "must be at least \(min)", .error); return nil }
        return value
    }

    mutating func double(_ node: Node) -> Double? {
        guard let text = node.scalar?.string, let value = Double(text) else { problem(node, "expected a number", .error); return nil }
        return value
    }

    mutating func bool(_ node: Node) -> Bool? {
        switch node.scalar?.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: problem(node, "expected true or false", .error); return nil
        }
    }

    mutating func duration(_ node: Node) -> Duration? {
        guard let text = node.scalar?.string else { problem(node, "expected a duration such as 30s, 5m, 1h or 500ms", .error); return nil }
        guard let value = parseDuration(text), value > .zero else {
            problem(node, "bad duration '\(text)'; use a number with ms, s, m or h (30s, 5m, 1h, 500ms)", .error)
            return nil
        }
        return value
    }
}
