import ArgumentParser
import Foundation
import Logging
import StreamPulseCore
import StreamPulseHost

/// Benchmark: time from `mv` of a large config with one changed stream to the change being active.
struct BenchReload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-reload", abstract: "Benchmark: reload time of an N-stream config with one changed stream (mv over the file).")
    @Option var streams = 10_000
    @Option var rounds = 5
    @OptionGroup var options: PluginOptions

    func run() async throws {
        let logger = makeLogger("bench", level: .error)
        let dir = NSTemporaryDirectory() + "streampulse-bench-reload-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/config.yaml"
        func yaml(changed: Int?) -> String {
            var text = "settings:\n  interval: 1h\n  timeout: 1s\nstreams:\n"
            text.reserveCapacity(streams * 80)
            for i in 0..<streams {
                let path = i == changed ? "changed" : "s"
                text += "  - id: cam\(i)\n    name: Camera \(i)\n    url: http://127.0.0.1:9/\(path)/\(i)\n"
            }
            return text
        }
        try yaml(changed: nil).write(toFile: path, atomically: false, encoding: .utf8)
        let plugins = PluginHost(directory: options.pluginsDir, logger: logger)
        plugins.scan()
        guard let config = ConfigLoader().load(path: path).config else { fail("bench config invalid") }
        let engine = Engine(config: config, plugins: plugins, logger: logger, startupSpread: .seconds(3600))
        let service = ConfigService(path: path, initial: config, initialProblems: [], engine: engine, plugins: plugins,
                                    scrubber: SecretScrubber(), logger: logger)
        let engineTask = Task { await engine.run() }
        let watchTask = Task { await service.watch(secretsPath: nil) }
        try await Task.sleep(for: .milliseconds(500))
        var times: [Double] = []
        var restarted: [Int] = []
        for round in 0..<rounds {
            try yaml(changed: round % 2 == 0 ? 4242 % streams : nil).write(toFile: dir + "/.config.yaml.tmp", atomically: false, encoding: .utf8)
            // Done when the reload has been applied to the engine and reported (status.lastReload is set last).
            let before = await service.status.lastReload
            let start = ContinuousClock.now
            rename(dir + "/.config.yaml.tmp", path)
            while await service.status.lastReload == before, start.duration(to: .now) < .seconds(10) {
                try await Task.sleep(for: .milliseconds(2))
            }
            times.append(start.duration(to: .now).milliseconds)
            restarted.append(await service.lastDiff?.restarted.count ?? -1)
        }
        engineTask.cancel()
        watchTask.cancel()
        let sorted = times.sorted()
        print(String(format: "streams=%d rounds=%d reload_ms_median=%.0f reload_ms_max=%.0f (includes the 150 ms debounce) restarted_per_reload=%@",
                     streams, rounds, sorted[sorted.count / 2], sorted.last ?? 0, restarted.map(String.init).joined(separator: ",")))
    }
}

/// Benchmark: N healthy and N black-hole streams; schedule lag of the healthy half.
struct BenchEngine: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-engine", abstract: "Benchmark: schedule lag of healthy streams while black-hole cameras time out.")
    @Option(help: "Healthy MJPEG stream URL prefix; /cam/N is appended.") var healthy: String
    @Option(help: "Black-hole RTSP URL prefix; /N is appended.") var blackhole: String
    @Option var streams = 200
    @Option var seconds = 60.0
    @Option var interval = "10s"
    @Option var timeout = "5s"
    @OptionGroup var options: PluginOptions

    func run() async throws {
        let logger = makeLogger("bench", level: .error)
        let plugins = PluginHost(directory: options.pluginsDir, logger: logger)
        plugins.scan()
        var text = "settings:\n  interval: \(interval)\n  deep_interval: 1m\n  timeout: \(timeout)\n  host_sessions: 100000\nstreams:\n"
        for i in 0..<streams / 2 {
            text += "  - { id: ok\(i), url: \"\(healthy)/cam/\(i)\" }\n  - { id: hole\(i), url: \"\(blackhole)/\(i)\" }\n"
        }
        let result = ConfigLoader().load(yaml: text, file: "bench.yaml", baseDirectory: "/")
        guard let config = result.config else { fail("\(result.problems)") }
        let engine = Engine(config: config, plugins: plugins, logger: logger)
        let task = Task { await engine.run() }
        let cpu0 = cpuSeconds()
        try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
        let healthyStats = await engine.stats { $0.hasPrefix("ok") }
        let holeStats = await engine.stats { $0.hasPrefix("hole") }
        let snapshot = await engine.snapshot()
        let cpu = (cpuSeconds() - cpu0) / seconds * 100
        task.cancel()
        await task.value
        let okCount = snapshot.filter { $0.id.hasPrefix("ok") && $0.status == .ok }.count
        let holeTimeouts = snapshot.filter { $0.id.hasPrefix("hole") && $0.reason == .timeout }.count
        print(String(format: "streams=%d (healthy %d, black holes %d) run_s=%.0f checks=%d cpu_pct=%.1f", streams, streams / 2, streams / 2, seconds, healthyStats.checks, cpu))
        print(String(format: "healthy: lag_p50_ms=%.1f lag_p99_ms=%.1f status_ok=%d/%d", healthyStats.lagP50Ms, healthyStats.lagP99Ms, okCount, streams / 2))
        print(String(format: "black holes: lag_p50_ms=%.1f lag_p99_ms=%.1f reason_timeout=%d/%d", holeStats.lagP50Ms, holeStats.lagP99Ms, holeTimeouts, streams / 2))
    }
}

/// Benchmark: SQLite rows per second for batched result writes.
struct BenchSQLite: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-sqlite", abstract: "Benchmark: batched SQLite result writes per second.")
    @Option var rows = 200_000
    @Option var batch = 2_000
    @Option var streams = 10_000

    func run() async throws {
        let path = NSTemporaryDirectory() + "streampulse-bench-\(getpid()).db"
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let store = try SQLiteStore(path: path)
        let base = Date()
        var written = 0
        let start = ContinuousClock.now
        while written < rows {
            let events: [SinkEvent] = (0..<min(batch, rows - written)).map { i in
                let n = written + i
                return .result(ResultRecord(
                    streamId: "cam\(n % streams)", at: base.addingTimeInterval(Double(n) * 0.006), mode: .quick, status: n % 10 == 0 ? .down : .ok,
                    pending: false, reason: n % 10 == 0 ? .timeout : .ok, phase: .handshake, message: "DESCRIBE answered with a video track.",
                    timings: Timings(connectMs: 0.4, firstByteMs: 0.9, totalMs: 1.2), media: MediaFacts(codec: "h264")))
            }
            try await store.write(events)
            written += events.count
        }
        let seconds = start.duration(to: .now).seconds
        let uptimeStart = ContinuousClock.now
        let uptimes = try await store.uptimes(now: base.addingTimeInterval(Double(rows) * 0.006))
        print(String(format: "rows=%d batch=%d rows_per_s=%.0f uptime_query_ms=%.1f (streams=%d)", rows, batch, Double(rows) / seconds,
                     uptimeStart.duration(to: .now).milliseconds, uptimes.count))
    }
}

/// Streams stored checks as CSV to standard output (the same export as GET /api/export.csv).
struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write stored checks as CSV to standard output.")
    @Option(help: "Data folder holding streampulse.db.") var dataDir = "data"
    @Option(help: "Comma-separated stream ids (default: all).") var streams: String?
    @Option(help: "From (ISO 8601 or Unix seconds).") var from: String?
    @Option(help: "To (ISO 8601 or Unix seconds).") var to: String?
    @Option(help: "IANA time zone for the timestamps.") var timezone = "UTC"
    @Flag(help: "Print rows written and peak memory to standard error.") var report = false

    func run() async throws {
        guard let zone = TimeZone(identifier: timezone) else { throw ValidationError("unknown time zone \(timezone)") }
        let store = try SQLiteStore(path: (dataDir as NSString).appendingPathComponent("streampulse.db"))
        func time(_ text: String?) -> Date? {
            guard let text else { return nil }
            return Double(text).map { Date(timeIntervalSince1970: $0) } ?? ISO8601DateFormatter().date(from: text)
        }
        let out = FileHandle.standardOutput
        let rows = try await CSVExport.export(store: store, streams: streams?.split(separator: ",").map(String.init), from: time(from), to: time(to), timeZone: zone) {
            out.write(Data($0.utf8))
        }
        if report { FileHandle.standardError.write(Data(String(format: "rows=%d peak_rss_mb=%.1f\n", rows, peakRSSMegabytes()).utf8)) }
    }
}

/// Benchmark: /metrics render time for N streams.
struct BenchMetrics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-metrics", abstract: "Benchmark: /metrics render time for N streams.")
    @Option var streams = 10_000
    @Option var rounds = 5

    func run() async throws {
        let exporter = MetricsExporter()
        let snapshot = (0..<streams).map { i in
            StreamSnapshot(id: "cam\(i)", name: "Camera \(i)", url: "", protocol: i % 2 == 0 ? "rtsp" : "mjpeg", group: nil, tags: [], enabled: true,
                           status: i % 10 == 0 ? .down : .ok, reason: .ok, phase: nil, message: "", pending: false, since: Date(), lastCheck: Date(),
                           lastPicture: Date(), consecutiveFailures: 0, latencyMs: 850, codec: "h264", width: 640, height: 480, fps: 25,
                           uptime: SQLiteStore.Uptime(day: 0.99, week: 0.98, month: 0.97))
        }
        let stats = EngineStats(streams: streams, checks: 123_456, inFlight: 10, lagP50Ms: 1, lagP99Ms: 5, lanes: ["rtsp": 6, "mjpeg": 4])
        var times: [Double] = []
        var bytes = 0
        for _ in 0..<rounds {
            let start = ContinuousClock.now
            bytes = await exporter.render(snapshot: snapshot, stats: stats, sinks: []).count
            times.append(start.duration(to: .now).milliseconds)
        }
        print(String(format: "streams=%d first_render_ms=%.0f steady_render_ms=%.0f body_kb=%d", streams, times[0], times.dropFirst().sorted().first ?? times[0], bytes / 1024))
    }
}
