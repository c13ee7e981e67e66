import ArgumentParser
import Foundation
import Logging
import StreamPulseCore
import StreamPulseHost
import Hummingbird
import ServiceLifecycle

@main
struct StreamPulse: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "streampulse",
        abstract: "Proves which IP camera streams really deliver pictures.",
        subcommands: [Serve.self, Check.self, Validate.self, Plugins.self, Export.self, TokenCommand.self, NotifyCommand.self, BenchProbe.self, BenchReload.self, BenchEngine.self, BenchSQLite.self, BenchMetrics.self])

    /// Usage errors exit with 3 (the `check` contract: 0 ok, 1 degraded, 2 down, 3 usage/config/unknown).
    static func main() async {
        // A parent may hand us ignored or blocked signals (both survive exec); a monitor must stop on
        // SIGTERM and reload on SIGHUP, so start from the defaults.
        var signals = sigset_t()
        sigemptyset(&signals)
        for number in [SIGTERM, SIGINT, SIGHUP] {
            signal(number, SIG_DFL)
            sigaddset(&signals, number)
        }
        sigprocmask(SIG_UNBLOCK, &signals, nil)
        do {
            var command = try parseAsRoot()
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(3)
            }
            exit(withError: error)
        }
    }
}

/// Options shared by every command that loads plugins.
struct PluginOptions: ParsableArguments {
    @Option(name: .long, help: "Folder holding plugin .so files.")
    var pluginsDir: String = "plugins.d"

    @Flag(name: .long, help: "Log debug details to standard error.")
    var verbose = false
}

func makeLogger(_ label: String, level: Logger.Level) -> Logger {
    var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = level
    return logger
}

struct Plugins: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List loaded plugins and refused plugin files.")
    @OptionGroup var options: PluginOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        let host = PluginHost(directory: options.pluginsDir, logger: makeLogger("plugins", level: options.verbose ? .debug : .critical))
        host.scan()
        if json {
            struct Listing: Encodable {
                struct Loaded: Encodable { var file: String; var descriptor: PluginDescriptor }
                struct Refused: Encodable { var file: String; var reason: String; var refusedBeforeLoading: Bool }
                var directory: String
                var loaded: [Loaded]
                var refused: [Refused]
            }
            let listing = Listing(
                directory: host.directory,
                loaded: host.plugins.map { .init(file: $0.path, descriptor: $0.descriptor) },
                refused: host.refused.map { .init(file: $0.path, reason: $0.message, refusedBeforeLoading: $0.beforeLoading) })
            print(String(decoding: try Wire.encode(listing), as: UTF8.self))
            return
        }
        print("Plugins in \(host.directory):")
        if host.plugins.isEmpty { print("  (none loaded)") }
        for plugin in host.plugins {
            let d = plugin.descriptor
            let caps = [d.capabilities.quickProbe ? "quick" : nil, d.capabilities.deepProbe ? "deep" : nil, d.capabilities.livePreview ? "preview" : nil]
                .compactMap { $0 }.joined(separator: ",")
            print("  \(d.name) \(d.version)  protocol \(d.protocolVersion)  schemes: \(d.schemes.joined(separator: ", "))  [\(caps)]  \(plugin.path)")
        }
        for refused in host.refused { print("  refused: \(refused.message)") }
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Probe one stream once. Exit 0 = ok, 1 = degraded, 2 = down, 3 = usage/config error or unknown.")

    @Argument(help: "Stream URL (credentials are better passed with --user and --password-file).") var url: String
    @Option(name: .long, help: "User name for the camera.") var user: String?
    @Option(name: .long, help: "File whose first line is the camera password.") var passwordFile: String?
    @Flag(name: .long, help: "Print one JSON object.") var json = false
    @Flag(name: .long, help: "Decode pictures (default).") var deep = false
    @Flag(name: .long, help: "Reachability, authentication and path only.") var quick = false
    @Option(name: .long, help: "Deadline for the whole probe, in seconds.") var timeout: Double = 10
    @Option(name: .long, help: "Use this plugin instead of the one for the URL's scheme.") var `protocol`: String?
    @Option(name: .long, help: "Write the probe's JPEG thumbnail to this file.") var thumbnail: String?
    @Option(name: .long, help: "HTTP redirects to follow: same_host (default) or any.") var redirects: String = "same_host"
    @OptionGroup var options: PluginOptions

    func validate() throws {
        if deep && quick { throw ValidationError("--deep and --quick exclude each other.") }
        if !timeout.isFinite || timeout <= 0 || timeout > 3600 { throw ValidationError("--timeout must be between 0 and 3600 seconds.") }
        if passwordFile != nil && user == nil { throw ValidationError("--password-file needs --user.") }
        if !["same_host", "any"].contains(redirects) { throw ValidationError("--redirects must be same_host or any.") }
    }

    func run() async throws {
        let logger = makeLogger("check", level: options.verbose ? .debug : .error)
        var (bareURL, inline) = URLRedaction.splitCredentials(url)
        var credentials = inline
        if let user {
            var password = ""
            if let passwordFile {
                // Read as a stream, not by size: a pipe or FIFO (`--password-file <(pass show cam)`) works too.
                guard let handle = FileHandle(forReadingAtPath: passwordFile), let data = try? handle.read(upToCount: 65_536) ?? Data() else {
                    fail("Cannot read the password file \(passwordFile).")
                }
                try? handle.close()
                let line = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).first ?? ""
                password = String(line.hasSuffix("\r") ? line.dropLast() : line)
            }
            credentials = Credentials(username: user, password: password)
        }
        // Said whatever the log level: the password is now in the shell's history.
        if inline != nil { FileHandle.standardError.write(Data("warning: credentials inside the URL end up in shell history and process lists; use --user and --password-file.\n".utf8)) }
        let scrubber = SecretScrubber()
        scrubber.replace(with: [credentials?.password].compactMap { $0 })
        let host = PluginHost(directory: options.pluginsDir, logger: logger, scrubber: scrubber)
        host.scan()
        bareURL = bareURL.trimmingCharacters(in: .whitespaces)
        let result: ProbeResult
        var pluginName: String?
        if SchemeRouter.scheme(of: bareURL) == nil {
            fail("'\(URLRedaction.mask(url))' is not a URL (expected scheme://host/path).")
        }
        if let plugin = host.plugin(for: bareURL, protocolName: self.protocol) {
            pluginName = plugin.name
            let request = ProbeRequest(
                streamId: "check", url: bareURL, credentials: credentials, mode: quick ? .quick : .deep,
                timeoutMs: Int(timeout * 1000), options: ProbeOptions(thumbnail: thumbnail != nil, redirectsToOtherHosts: redirects == "any"))
            result = await plugin.probe(request)
        } else {
            let scheme = self.protocol ?? SchemeRouter.scheme(of: bareURL) ?? "?"
            result = .failure(.noPlugin, phase: nil, "No loaded plugin handles '\(scheme)' (plugins folder: \(options.pluginsDir)).")
        }
        let status = StatusModel.status(for: result.reason)
        if let thumbnail, let jpeg = result.thumbnailJpeg { try jpeg.write(to: URL(fileURLWithPath: thumbnail)) }
        let report = CheckReport(url: URLRedaction.mask(bareURL), plugin: pluginName, status: status, result: result, scrubber: scrubber)
        if json {
            print(String(decoding: try Wire.encode(report), as: UTF8.self))
        } else {
            print(report.text)
        }
        throw ExitCode(status.exitCode)
    }
}

/// The `check` answer: flat fields for scripts, no credentials anywhere.
struct CheckReport: Encodable {
    var url: String
    var plugin: String?
    var status: StreamStatus
    var reason: Reason
    var phase: Phase?
    var message: String
    var mode: ProbeMode?
    var codec: String?
    var width: Int?
    var height: Int?
    var fps: Double?
    var bitrateBps: Double?
    var packetsLost: Int?
    var timings: Timings
    var image: ImageFacts?
    var thumbnailBytes: Int?

    init(url: String, plugin: String?, status: StreamStatus, result: ProbeResult, scrubber: SecretScrubber) {
        self.url = url
        self.plugin = plugin
        self.status = status
        reason = result.reason
        phase = result.phase
        message = scrubber.scrub(result.message)
        mode = result.mode
        codec = result.media?.codec
        width = result.media?.width
        height = result.media?.height
        fps = result.media?.fps
        bitrateBps = result.media?.bitrateBps
        packetsLost = result.media?.packetsLost
        timings = result.timings
        image = result.image
        thumbnailBytes = result.thumbnailJpeg?.count
    }

    var text: String {
        var line = "\(status.rawValue.uppercased())  \(url)  reason=\(reason)"
        if let phase { line += " phase=\(phase)" }
        line += "\n  \(message)"
        if let codec { line += "\n  \(codec) \(width ?? 0)x\(height ?? 0)" + (fps.map { String(format: " %.1f fps", $0) } ?? "") }
        let t = timings
        let parts = [("connect", t.connectMs), ("first byte", t.firstByteMs), ("first frame", t.firstFrameMs), ("total", t.totalMs)]
            .compactMap { name, value in value.map { String(format: "%@ %.0f ms", name, $0) } }
        if !parts.isEmpty { line += "\n  " + parts.joined(separator: ", ") }
        return line
    }
}

struct Validate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check a config file; print every problem as file:line:column. Exit 0 when valid, 1 when not.")
    @Argument(help: "The config.yaml to check.") var file: String
    @OptionGroup var options: PluginOptions

    func run() async throws {
        let host = PluginHost(directory: options.pluginsDir, logger: makeLogger("plugins", level: .critical))
        host.scan()
        let schemes = Set(host.router.claims.map(\.scheme))
        let result = ConfigLoader(knownSchemes: schemes).load(path: file)
        for problem in result.problems { print(problem.description) }
        if result.errors.isEmpty {
            print("\(file): valid (\(result.config?.streams.count ?? 0) streams, \(result.problems.count) warnings)")
        } else {
            print("\(file): \(result.errors.count) error(s)")
            throw ExitCode(1)
        }
    }
}

/// `streampulse notify test NAME`: sends a test notification through a channel of the config, as the
/// dashboard's "send test notification" does, and says whether it arrived (never the channel's secrets).
struct NotifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notify", abstract: "Notification channels.", subcommands: [Test.self])

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a test notification through channel NAME. Exit 0 when it was delivered, 1 when not.")
        @Argument(help: "A channel name from notify.channels.") var name: String
        @Option(name: .long, help: "The config file.") var config: String = "config/config.yaml"

        func run() async throws {
            let loaded = ConfigLoader().load(path: config)
            guard let cfg = loaded.config else {
                for problem in loaded.errors { FileHandle.standardError.write(Data("\(problem.description)\n".utf8)) }
                fail("the config has errors; see `streampulse validate \(config)`")
            }
            guard cfg.notify.channels.contains(where: { $0.name == name }) else {
                fail("no channel named '\(name)' in \(config) (channels: \(cfg.notify.channels.map(\.name).joined(separator: ", ")))")
            }
            let service = IncidentService(config: cfg, store: nil, logger: makeLogger("notify", level: .warning), retryDelays: [])
            let outcome = await service.sendTest(channel: name)
            await service.close()
            if outcome.delivered {
                print("\(name): delivered")
            } else {
                print("\(name): not delivered: \(outcome.error ?? "unknown error")")
                throw ExitCode(1)
            }
        }
    }
}

/// glibc's mallopt (declared in <malloc.h>, which the Glibc module does not export).
@_silgen_name("mallopt") func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the monitor: probe every stream, hot-reload the config, answer the API.")
    @Option(name: .long, help: "The config file.") var config: String = "config/config.yaml"
    @Option(name: .long, help: "Data folder (overrides settings.data_dir).") var dataDir: String?
    @Option(name: .long, help: "HOST:PORT for the web server (overrides settings.listen).") var listen: String?
    @Option(name: .long, help: "Probe only the streams of this site (their `site:`, or their group's).") var site: String?
    @Option(name: .long, help: ArgumentHelp("Share the site with other agents through leases in PostgreSQL and write results there: postgres://USER@HOST:PORT/DATABASE (password from PGPASSWORD; ?sslmode=require|verify-full&sslrootcert=FILE). Needs --site.", valueName: "URL"))
    var postgres: String?
    @Option(name: .long, help: "This agent's name in the leases (default: HOSTNAME-PID).") var agent: String?
    @Option(name: .long, help: "How long a lease holds without renewal, in seconds (others take a stopped agent's streams within two).")
    var leaseSeconds: Double = 30
    @Flag(name: .long, help: "Probe nothing: serve the dashboard and API from what the site agents write to --postgres (several may run behind a load balancer). --lease-seconds must match the agents': a site none of whose agents reported for one is shown unreachable.")
    var noProbe = false
    @OptionGroup var options: PluginOptions

    func validate() throws {
        if let site, site.isEmpty || site.utf8.count > 64 || !site.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) {
            throw ValidationError("--site '\(site.prefix(80))' is not a site name: use letters, digits, '.', '_' and '-', at most 64")
        }
        if noProbe {
            if agent != nil { throw ValidationError("--agent names an agent sharing a site; a --no-probe dashboard is none") }
        } else if postgres != nil, site == nil {
            throw ValidationError("--postgres shares a site between agents: give the site with --site NAME (or serve only the dashboard with --no-probe)")
        }
        if site == nil, agent != nil { throw ValidationError("--agent names an agent sharing a site: it needs --site NAME (and PostgreSQL: --postgres URL or storage.postgres)") }
        guard leaseSeconds.isFinite, (1...3600).contains(leaseSeconds) else {
            throw ValidationError("--lease-seconds must be between 1 and 3600")
        }
        if let postgres {
            do { _ = try PostgresTarget(url: postgres) } catch { throw ValidationError("\(error)") }
        }
        if let agent, agent.isEmpty || agent.utf8.count > 128 { throw ValidationError("--agent must be 1 to 128 characters") }
    }

    /// HOSTNAME-PID: unique per running process, read without a DNS lookup.
    static func defaultAgentName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        let host = gethostname(&buffer, buffer.count) == 0 ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "agent"
        return "\(host)-\(getpid())"
    }

    func run() async throws {
        let logger = makeLogger("streampulse", level: options.verbose ? .debug : .info)
        // Hundreds of probe threads would each get a glibc malloc arena (up to 8 per core) that keeps its
        // peak: two arenas and a periodic trim keep RSS near what is in use (see docs/operations.md).
        let environment = ProcessInfo.processInfo.environment
        if environment["MALLOC_ARENA_MAX"] == nil { _ = glibcMallopt(-8 /* M_ARENA_MAX */, 2) }
        // Decoders allocate and free picture buffers of hundreds of KiB per probe. glibc's default raises its
        // mmap threshold after the first such free, after which those buffers come from the heap and their
        // pages stay resident: a fixed threshold keeps every buffer above 128 KiB in its own mapping,
        // returned to the kernel when freed (a first round of 10,000 deep probes peaked far higher without).
        if environment["MALLOC_MMAP_THRESHOLD_"] == nil { _ = glibcMallopt(-3 /* M_MMAP_THRESHOLD */, 128 * 1024) }
        let monitor: Monitor
        do {
            let target = try postgres.map { try PostgresTarget(url: $0, environment: environment) }
            let lease = Duration.milliseconds(Int64(leaseSeconds * 1000))
            let dashboardOptions = noProbe ? Monitor.DashboardOptions(target: target, leasePeriod: lease) : nil
            // With --site, an agent when PostgreSQL is given here or in the config (storage.postgres).
            let agentOptions = noProbe || site == nil ? nil : Monitor.AgentOptions(target: target, name: agent ?? Self.defaultAgentName(), leasePeriod: lease)
            monitor = try await Monitor.assemble(configPath: config, pluginsDirectory: options.pluginsDir, dataDirectory: dataDir,
                                                 listen: listen, site: site, agent: agentOptions, dashboard: dashboardOptions,
                                                 verbose: options.verbose, logger: logger)
        } catch let refusal as Monitor.Refusal {
            logger.critical("\(refusal.message)")
            throw ExitCode(refusal.exitCode)
        }
        try await monitor.run()
        logger.notice("Stopped.")
    }
}

/// `streampulse token create|list|revoke`: API tokens for scripts and Prometheus, managed offline.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Manage API tokens (bearer tokens for scripts and /metrics).",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a token and print it once (only its digest is stored).")
        @Option(help: "A name to recognise the token by.") var name: String
        @Option(help: "viewer (read-only) or admin.") var role: String = "viewer"
        @Option(help: "The data folder holding streampulse.db.") var dataDir: String = "data"
        @Option(help: ArgumentHelp("Accounts in PostgreSQL (a site deployment's dashboards): postgres://USER@HOST:PORT/DATABASE.", valueName: "URL"))
        var postgres: String?
        func run() async throws {
            guard let role = Role(rawValue: role) else { fail("--role must be viewer or admin") }
            let created = try await TokenCommand.withAccounts(dataDir: dataDir, postgres: postgres) { try await $0.createToken(name: name, role: role) }
            print(created.token)
            FileHandle.standardError.write(Data("Token '\(name)' (\(role.rawValue)) created; it is shown only now. Use: Authorization: Bearer <token>\n".utf8))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their values).")
        @Option var dataDir: String = "data"
        @Option(help: ArgumentHelp("Accounts in PostgreSQL: postgres://USER@HOST:PORT/DATABASE.", valueName: "URL")) var postgres: String?
        func run() async throws {
            for token in try await TokenCommand.withAccounts(dataDir: dataDir, postgres: postgres, { try await $0.tokens() }) {
                print("\(token.id)\t\(token.name)\t\(token.role.rawValue)\tcreated \(token.createdAt)\tlast used \(token.lastUsed.map { "\($0)" } ?? "never")")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token by id.")
        @Argument var id: Int64
        @Option var dataDir: String = "data"
        @Option(help: ArgumentHelp("Accounts in PostgreSQL: postgres://USER@HOST:PORT/DATABASE.", valueName: "URL")) var postgres: String?
        func run() async throws { try await TokenCommand.withAccounts(dataDir: dataDir, postgres: postgres) { try await $0.revokeToken(id: id) } }
    }

    static func openAccounts(_ dataDir: String) throws -> Accounts {
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        return Accounts(store: try SQLiteStore(path: (dataDir as NSString).appendingPathComponent("streampulse.db")))
    }
}

extension TokenCommand {
    /// Runs `body` on the accounts in `dataDir`'s database, or in PostgreSQL when `postgres` names one (its
    /// tables made first; the password from PGPASSWORD).
    static func withAccounts<T: Sendable>(dataDir: String, postgres: String?, _ body: @Sendable (Accounts) async throws -> T) async throws -> T {
        guard let postgres else { return try await body(try openAccounts(dataDir)) }
        let target: PostgresTarget
        do { target = try PostgresTarget(url: postgres) } catch { fail("--postgres: \(error)") }
        do {
            return try await PostgresAccounts.with(target, logger: makeLogger("streampulse", level: .warning), body)
        } catch let error as PostgresAccounts.Unprepared { fail("\(error)") }
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("streampulse: \(message)\n".utf8))
    exit(3)
}

/// Runs many probes of one URL in this process and reports CPU and wall time per probe (benchmarks).
struct BenchProbe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-probe", abstract: "Benchmark: probe one URL COUNT times, CONCURRENCY at once; print CPU and wall time per probe.")
    @Argument var url: String
    @Option var count = 20
    @Option var concurrency = 1
    @Flag var quick = false
    @Option var timeout: Double = 10
    @Option(help: "Probes run first and left out of the figures.") var warmup = 2
    @Option(help: "Deep probe sampling window in seconds (plugin default when absent).") var sampleSeconds: Double?
    @Flag(help: "Ask for the JPEG thumbnail, as the monitor does on every deep probe.") var thumbnail = false
    @OptionGroup var options: PluginOptions

    func run() async throws {
        let host = PluginHost(directory: options.pluginsDir, logger: makeLogger("bench", level: .error))
        host.scan()
        guard let plugin = host.plugin(for: url) else { fail("No plugin handles \(url).") }
        var probe = ProbeRequest(streamId: "bench", url: url, mode: quick ? .quick : .deep, timeoutMs: Int(timeout * 1000),
                                   options: ProbeOptions(sampleSeconds: sampleSeconds))
        if thumbnail { probe.options.thumbnail = true }
        let request = probe
        for _ in 0..<warmup { _ = await plugin.probe(request) }
        let cpuStart = cpuSeconds()
        let wallStart = ContinuousClock.now
        // Each probe's CPU is the process's CPU over its run: meaningful with --concurrency 1, where the
        // median (cpu_ms_p50) shrugs off the machine's occasional noise that the mean (cpu_ms_per_probe) keeps.
        let results = await withTaskGroup(of: (ProbeResult, Double, Double).self) { group in
            var collected: [(ProbeResult, Double, Double)] = []
            var started = 0
            func launch() {
                started += 1
                group.addTask {
                    let t = ContinuousClock.now
                    let c = cpuSeconds()
                    let r = await plugin.probe(request)
                    return (r, t.duration(to: .now).milliseconds, (cpuSeconds() - c) * 1000)
                }
            }
            for _ in 0..<min(concurrency, count) { launch() }
            for await item in group {
                collected.append(item)
                if started < count { launch() }
            }
            return collected
        }
        let wall = wallStart.duration(to: .now).milliseconds / 1000
        let cpu = cpuSeconds() - cpuStart
        let walls = results.map(\.1).sorted()
        var reasons: [String: Int] = [:]
        for (r, _, _) in results { reasons[r.reason.rawValue, default: 0] += 1 }
        func pct(_ q: Double) -> Double { walls[min(walls.count - 1, Int(Double(walls.count - 1) * q))] }
        // The median fps the probes measured: at 4K it shows whether packets were lost (25 expected).
        let rates = results.compactMap { $0.0.media?.fps }.sorted()
        let fps = rates.isEmpty ? "none" : String(format: "%.2f", rates[rates.count / 2])
        let cpus = results.map(\.2).sorted()
        // RTP packets the probes found missing (sequence gaps), when the plugin counts them.
        let losses = results.compactMap { $0.0.media?.packetsLost }
        let lost = losses.isEmpty ? "none" : String(losses.reduce(0, +))
        let cpuMedian = concurrency == 1 ? String(format: "%.2f", cpus[cpus.count / 2]) : "n/a"
        print(String(format: "probes=%d concurrency=%d mode=%@ probes_per_s=%.1f cpu_ms_per_probe=%.2f cpu_ms_p50=%@ wall_ms_p50=%.1f wall_ms_p99=%.1f peak_rss_mb=%.1f fps_p50=%@ packets_lost=%@ reasons=%@",
                     results.count, concurrency, quick ? "quick" : "deep", Double(results.count) / wall, cpu * 1000 / Double(results.count),
                     cpuMedian, pct(0.5), pct(0.99), peakRSSMegabytes(), fps, lost,
                     reasons.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: ",")))
    }
}

/// User + system CPU seconds of this process.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

/// Peak resident set size of this process, in MB.
func peakRSSMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}
