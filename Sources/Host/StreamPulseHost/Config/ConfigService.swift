import Foundation
import Logging
import StreamPulseCore

/// What the API and dashboard show about the configuration.
public struct ConfigStatus: Sendable, Codable, Equatable {
    /// Content hash of the active config (and its secrets).
    public var revision: String?
    /// Git commit of the file's work tree, with "+changes" when the file differs from it.
    public var gitCommit: String?
    public var lastReload: Date?
    public var lastAttempt: Date?
    /// Problems of the last attempt; non-empty means the last good config is still active.
    public var errors: [String]
    public var warnings: [String]
    public var streams: Int
    /// What the last applied reload changed.
    public var lastChange: String?
    /// Settings changed in the file that take effect only at the next start, as "key: running → in file".
    public var needsRestart: [String] = []
}

/// Keeps the active config: reloads on file events (debounced), SIGHUP or request; an invalid edit never
/// stops monitoring — the last good config stays active and the errors are kept in `status`.
public actor ConfigService {
    public let path: String
    /// The site this monitor serves (`serve --site`): every loaded config is restricted to its streams.
    public let site: String?
    private let engine: Engine
    private let plugins: PluginHost
    private let scrubber: SecretScrubber
    private let logger: Logger
    private let environment: [String: String]
    /// Re-applied on every successful reload.
    public var sinks: SinkManager?
    /// The settings in force; replaced on every applied reload (restart-only keys keep their running value).
    public nonisolated let settings: LiveSettings
    /// The file's settings when the monitor started (before command-line overrides): restart-only keys are
    /// compared with these.
    private let fileSettingsAtStart: Settings
    /// `storage.postgres` as the monitor started with it (a change needs a restart).
    private let postgresAtStart: PostgresTarget?

    public func setSinks(_ manager: SinkManager) { sinks = manager }
    /// Given the new notify rules, channels and maintenance windows on every successful reload.
    public var incidents: IncidentService?
    public func setIncidents(_ service: IncidentService) { incidents = service }
    private var activeHash: String?
    public private(set) var status = ConfigStatus(errors: [], warnings: [], streams: 0)
    /// Reloads applied since start, and the last diff applied (for tests and the API).
    public private(set) var appliedReloads = 0
    /// Batches of file events the watcher has handled (each one reloaded or found nothing to do).
    public private(set) var handledBatches = 0
    private var watching = false
    private var watchWaiters: [CheckedContinuation<Void, Never>] = []

    /// Returns once `watch` has its inotify watches in place (edits made after this are seen).
    public func untilWatching() async {
        if watching { return }
        await withCheckedContinuation { watchWaiters.append($0) }
    }

    private func setWatching(_ on: Bool) {
        watching = on
        guard on else { return }
        let waiters = watchWaiters
        watchWaiters = []
        for waiter in waiters { waiter.resume() }
    }
    public private(set) var lastDiff: ConfigDiff?
    /// The last good config (restricted to `site`), before the lease filter.
    private var siteConfig: Config
    /// An agent sharing its site through leases (issue #17) gives the engine only the streams it holds;
    /// nil: every stream of the config (or of the site).
    public private(set) var leased: Set<String>?

    /// The ids of the site's streams in the last good config (what the agent registers for leases).
    public var siteStreamIDs: [String] { siteConfig.streams.map(\.id) }

    /// Gives the engine only these of the site's streams (an agent's leases), or all (nil). Streams gained
    /// start as new ones, first checked within `firstWithin` (spread: a takeover of thousands is no burst), from
    /// the green states another agent reached (`handOver`); streams nobody has checked yet (`unchecked`) are
    /// spread over the startup spread instead, like a monitor's first round; streams lost stop.
    @discardableResult
    public func setLeased(_ ids: Set<String>?, firstWithin: Duration? = nil, handOver: [String: StreamState] = [:],
                          unchecked: Set<String> = []) async -> ConfigDiff? {
        guard ids != leased else { return nil }
        leased = ids
        return await engine.apply(leaseFiltered(siteConfig), quiet: true, firstWithin: firstWithin, handOver: handOver,
                                  spreadOverStartup: unchecked)
    }

    private func leaseFiltered(_ config: Config) -> Config {
        guard let leased else { return config }
        var filtered = config
        filtered.streams = config.streams.filter { leased.contains($0.id) }
        return filtered
    }
    /// Quiet time after the last event before acting, while a file may still be being written.
    public var debounce: Duration = .milliseconds(150)
    /// Quiet time after an event that says a file is complete (closed after writing, or renamed into place).
    public var settle: Duration = .milliseconds(50)

    /// - Parameters:
    ///   - initial: the config in force (with any command-line overrides applied).
    ///   - fileSettings: the settings as the file had them at start, before overrides (default: `initial`'s).
    ///   - settings: the live settings to keep current (default: new ones from `initial`).
    public init(path: String, initial: Config, fileSettings: Settings? = nil, settings: LiveSettings? = nil,
                initialProblems: [ConfigProblem], engine: Engine, plugins: PluginHost, scrubber: SecretScrubber, logger: Logger,
                environment: [String: String] = ProcessInfo.processInfo.environment, site: String? = nil, leased: Set<String>? = nil) {
        self.path = path
        self.site = site
        self.settings = settings ?? LiveSettings(initial.settings)
        self.fileSettingsAtStart = fileSettings ?? initial.settings
        self.postgresAtStart = initial.postgres
        self.engine = engine
        self.plugins = plugins
        self.scrubber = scrubber
        self.logger = logger
        self.environment = environment
        self.siteConfig = initial
        self.leased = leased
        self.activeHash = Self.contentHash(
            text: FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? "", config: initial)
        status = ConfigStatus(
            revision: activeHash, gitCommit: nil, lastReload: Date(), lastAttempt: Date(), errors: [],
            warnings: initialProblems.filter { $0.severity == .warning }.map(\.description), streams: initial.streams.count)
    }

    private var directory: String { (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent }

    /// Re-reads the file. Returns the diff applied, or nil when nothing changed or the file is invalid.
    @discardableResult
    public func reload(reason: String) async -> ConfigDiff? {
        let started = ContinuousClock.now
        status.lastAttempt = Date()
        let loader = ConfigLoader(environment: environment, knownSchemes: Set(plugins.router.claims.map(\.scheme)))
        guard FileManager.default.fileExists(atPath: path) else {
            // git checkout and friends delete then recreate: the create event brings us back.
            logger.debug("config \(path) is missing for now (\(reason)); keeping the active config")
            return nil
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            status.errors = ["\(path): cannot read the file; the last good config stays active"]
            logger.error("config reload (\(reason)) rejected: cannot read \(path); the last good config stays active")
            return nil
        }
        let text = String(decoding: data, as: UTF8.self)
        // A save caught between truncating the file and writing it reads as an empty file, which would
        // parse as "no streams" and stop monitoring the whole fleet: an empty file is never applied.
        if text.allSatisfy(\.isWhitespace) {
            status.errors = ["\(path) is empty (a save in progress?); the last good config stays active. To remove every stream, write `streams: []`."]
            logger.warning("config reload (\(reason)) skipped: \(path) is empty; the last good config stays active")
            return nil
        }
        let result = loader.load(yaml: text, file: path, baseDirectory: (path as NSString).deletingLastPathComponent)
        guard let config = result.config.map({ loaded in site.map { loaded.restricted(toSite: $0) } ?? loaded }) else {
            status.errors = result.errors.map(\.description)
            for problem in result.errors { logger.error("config reload (\(reason)) rejected, last good config stays active: \(problem.description)") }
            return nil
        }
        status.errors = []
        status.warnings = result.problems.filter { $0.severity == .warning }.map(\.description)
        let hash = Self.contentHash(text: text, config: config)
        guard hash != activeHash else {
            logger.debug("config unchanged (\(reason)); nothing to do")
            return nil
        }
        scrubber.replace(with: config.credentials.values.map(\.password) + config.streams.compactMap { $0.inlineCredentials?.password }
                         + config.notify.channels.flatMap(\.secrets) + [config.postgres?.password].compactMap { $0 })
        appliedReloads += 1  // counted before the engine shows it: whoever sees the new streams sees the count
        siteConfig = config
        let diff = await engine.apply(leaseFiltered(config))
        let running = settings.current
        let inForce = SettingKeys.inForce(running: running, file: config.settings)
        settings.replace(with: inForce)
        await sinks?.apply(config.sinks, timeZone: TimeZone(identifier: inForce.timezone) ?? .gmt)
        await incidents?.apply(config)
        let waiting = SettingKeys.needingRestart(atStart: fileSettingsAtStart, now: config.settings)
        status.needsRestart = waiting.map { "\($0.name) (needs restart)" }
        if config.postgres != postgresAtStart {
            status.needsRestart.append("storage.postgres (needs restart)")
            logger.warning("config: storage.postgres changed in the file; it takes effect at the next start")
        }
        for key in waiting { logger.warning("config: settings.\(key.name) changed in the file; it takes effect at the next start") }
        activeHash = hash
        lastDiff = diff
        let changedSettings = SettingKeys.all.filter { $0.applies == .live && $0.differs(running, inForce) }.map(\.name)
        let summary = "added \(diff.added.count), removed \(diff.removed.count), restarted \(diff.restarted.count), relabelled \(diff.relabelled.count)"
            + (changedSettings.isEmpty ? "" : "; settings applied: " + changedSettings.joined(separator: ", "))
        status.revision = hash
        status.lastReload = Date()
        status.streams = config.streams.count
        status.lastChange = summary
        logger.notice("config reloaded (\(reason)) in \(Int(started.duration(to: .now).milliseconds)) ms: \(summary)")
        await refreshGitCommit()
        return diff
    }

    /// `git` runs on a thread of its own: waiting for a child process never holds a cooperative thread.
    private static let gitThread = BlockingPool(name: "git", threads: 1, maxThreads: 1)

    /// Reads the work tree's commit for `status` (off the cooperative pool).
    public func refreshGitCommit() async {
        let path = self.path
        status.gitCommit = await Self.gitThread.run { Self.gitCommit(for: path) }
    }

    /// Watches the config directory, the secrets file's directory and the plugins folder until cancelled.
    public func watch(secretsPath: String?) async {
        var directories = [directory, plugins.directory]
        if let secretsPath { directories.append((secretsPath as NSString).deletingLastPathComponent) }
        let watcher: DirectoryWatcher
        do { watcher = try DirectoryWatcher(directories: directories.filter { FileManager.default.fileExists(atPath: $0) }) } catch {
            logger.error("Hot reload is off: \(error)")
            return
        }
        defer { watcher.stop(); setWatching(false) }
        setWatching(true)
        await refreshGitCommit()  // after the watch is in place: no edit made meanwhile is missed
        let configName = (path as NSString).lastPathComponent
        let secretsName = secretsPath.map { ($0 as NSString).lastPathComponent }
        let pluginsDir = (plugins.directory as NSString).standardizingPath
        for await batch in watcher.batches(quiet: debounce, settle: settle) {
            if Task.isCancelled { break }
            var configTouched = false, pluginsTouched = false
            for event in batch {
                if event.overflow { configTouched = true; pluginsTouched = true; continue }
                if (event.directory as NSString).standardizingPath == pluginsDir, event.name.hasSuffix(".so"), !event.name.hasPrefix(".") {
                    pluginsTouched = true
                }
                if event.name == configName || event.name == secretsName || event.name == "..data" { configTouched = true }
            }
            if pluginsTouched {
                // A new plugin file is checked and loaded; streams waiting for its scheme start.
                if !plugins.scan().isEmpty { await engine.pluginsChanged() }
            }
            if configTouched { await reload(reason: "file change") }
            handledBatches += 1
        }
    }

    /// Hash of the file and the secrets it resolved to: `touch` and no-op saves change nothing.
    static func contentHash(text: String, config: Config) -> String {
        var text = text
        for (name, credential) in config.credentials.sorted(by: { $0.key < $1.key }) {
            text += "\n\(name)\u{0}\(credential.username)\u{0}\(credential.password)"
        }
        return String(stableHash(text), radix: 16)
    }

    /// The work tree's commit, when the config lives in a git work tree.
    static func gitCommit(for path: String) -> String? {
        let directory = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        func git(_ arguments: [String]) -> (Int32, String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
            process.arguments = ["-C", directory] + arguments
            // Output to a file, not a pipe: with Foundation's Process a child spawned at the same moment
            // elsewhere in the process can inherit a pipe's write end, and reading to end-of-file would then
            // wait for that child to exit.
            let file = NSTemporaryDirectory() + "streampulse-git-\(UUID().uuidString)"
            guard FileManager.default.createFile(atPath: file, contents: nil),
                  let out = FileHandle(forWritingAtPath: file) else { return (-1, "") }
            defer {
                try? out.close()
                try? FileManager.default.removeItem(atPath: file)
            }
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            do { try process.run() } catch { return (-1, "") }
            process.waitUntilExit()
            let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            return (process.terminationStatus, text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let (status, commit) = git(["rev-parse", "--short", "HEAD"])
        guard status == 0, !commit.isEmpty else { return nil }
        let (clean, _) = git(["diff", "--quiet", "HEAD", "--", (path as NSString).lastPathComponent])
        return clean == 0 ? commit : commit + "+changes"
    }
}

