import Foundation
import Logging
import StreamPulseCore

/// What the API shows for one stream. Credentials never appear: the URL is masked.
public struct StreamSnapshot: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    public var url: String
    public var `protocol`: String?
    public var group: String?
    public var tags: [String]
    public var enabled: Bool
    public var status: StreamStatus
    public var reason: Reason
    public var phase: Phase?
    public var message: String
    public var pending: Bool
    public var since: Date?
    public var lastCheck: Date?
    public var lastPicture: Date?
    public var consecutiveFailures: Int
    public var latencyMs: Double?
    public var codec: String?
    public var width: Int?
    public var height: Int?
    public var fps: Double?
    public var bitrateBps: Double?
    /// Share of green checks over 24 h / 7 d / 30 d, from the history database (filled in by the API).
    public var uptime: SQLiteStore.Uptime?
    /// The last checks, oldest first, one letter each: o ok, d degraded, p pending, x down, u unknown.
    public var recent: String?

    public init(id: String, name: String, url: String, protocol: String?, group: String?, tags: [String], enabled: Bool,
                status: StreamStatus, reason: Reason, phase: Phase?, message: String, pending: Bool, since: Date?, lastCheck: Date?,
                lastPicture: Date?, consecutiveFailures: Int, latencyMs: Double?, codec: String? = nil, width: Int? = nil,
                height: Int? = nil, fps: Double? = nil, bitrateBps: Double? = nil, uptime: SQLiteStore.Uptime? = nil,
                recent: String? = nil) {
        self.id = id
        self.name = name
        self.url = url
        self.protocol = `protocol`
        self.group = group
        self.tags = tags
        self.enabled = enabled
        self.status = status
        self.reason = reason
        self.phase = phase
        self.message = message
        self.pending = pending
        self.since = since
        self.lastCheck = lastCheck
        self.lastPicture = lastPicture
        self.consecutiveFailures = consecutiveFailures
        self.latencyMs = latencyMs
        self.codec = codec
        self.width = width
        self.height = height
        self.fps = fps
        self.bitrateBps = bitrateBps
        self.uptime = uptime
        self.recent = recent
    }
}

/// Engine figures for benchmarks and metrics.
public struct EngineStats: Sendable, Codable {
    public var streams: Int
    public var checks: Int
    public var inFlight: Int
    /// Schedule lag (start time minus due time) of recent checks, in milliseconds.
    public var lagP50Ms: Double
    public var lagP99Ms: Double
    public var lanes: [String: Int]

    public init(streams: Int, checks: Int, inFlight: Int, lagP50Ms: Double, lagP99Ms: Double, lanes: [String: Int]) {
        self.streams = streams
        self.checks = checks
        self.inFlight = inFlight
        self.lagP50Ms = lagP50Ms
        self.lagP99Ms = lagP99Ms
        self.lanes = lanes
    }
}

/// The heart of `serve`: decides what to probe when (Schedule), runs probes in per-plugin lanes within
/// per-host budgets, turns results into statuses (StatusTracker) and hands state changes to the sinks.
/// Applies config diffs without touching unchanged streams.
public actor Engine {

    private let plugins: PluginHost
    private let logger: Logger
    private var config: Config
    private var streams: [String: StreamConfig] = [:]
    private var states: [String: StreamState] = [:]
    private var schedule = Schedule()
    private var running: [String: Task<Void, Never>] = [:]
    private var lanes: [String: Lane] = [:]
    private let budgets: HostBudgets
    /// Deep probes (which decode pictures) running at once, all plugins together: bounds memory and CPU
    /// when a whole fleet is due for a deep probe at the same time (start-up, a network coming back).
    private let deepSlots: HostBudgets
    private let start = ContinuousClock.now
    private var rng = SystemRandomNumberGenerator()
    private var lags: [(id: String, seconds: Double)] = []
    private var lagIndex = 0
    private var lagCache: (at: ContinuousClock.Instant, p50: Double, p99: Double)?
    private var checks = 0
    /// The last 30 outcomes per stream (the dashboard's heartbeat bar).
    private var recent: [String: [UInt8]] = [:]
    /// Bumped whenever any stream's state or the stream list changes (API caches key on it).
    public private(set) var version = 0
    private let sinks: SinkChain
    private let clock: ClockOffset
    private var wake: CheckedContinuation<Void, Never>?
    /// Lanes' bounds; the maximum also caps threads a plugin's pool grows to.
    public var laneMinimum = 4
    public var laneMaximum = 512

    public init(config: Config, plugins: PluginHost, logger: Logger,
                startupSpread: Duration = .seconds(30), sinks: SinkChain = SinkChain(), clock: ClockOffset = ClockOffset()) {
        schedule.startupSpread = startupSpread
        self.config = config
        self.plugins = plugins
        self.logger = logger
        self.budgets = HostBudgets(perHost: config.settings.hostSessions)
        self.deepSlots = HostBudgets(perHost: config.settings.maxDeepProbes)
        self.sinks = sinks
        self.clock = clock
        let now = 0.0
        for stream in config.streams {
            streams[stream.id] = stream
            states[stream.id] = .initial
            if stream.enabled { schedule.add(stream.id, plan: Self.plan(for: stream, config: config, plugins: plugins), now: now) }
        }
        sinks.submit(.streams(config.streams.map { Self.describe($0, plugins: plugins) }, at: clock.now()))
    }

    /// The sinks' view of a configured stream (masked URL, no state).
    private static func describe(_ stream: StreamConfig, plugins: PluginHost) -> StreamSnapshot {
        StreamSnapshot(
            id: stream.id, name: stream.name, url: stream.maskedURL,
            protocol: plugins.plugin(for: stream.url, protocolName: stream.protocolName)?.name ?? stream.protocolName,
            group: stream.group, tags: stream.tags, enabled: stream.enabled, status: .unknown, reason: "not_checked", phase: nil,
            message: "", pending: false, since: nil, lastCheck: nil, lastPicture: nil, consecutiveFailures: 0, latencyMs: nil)
    }

    private var now: Double { start.duration(to: .now).seconds }

    private func plan(for stream: StreamConfig) -> Schedule.Plan {
        Self.plan(for: stream, config: config, plugins: plugins)
    }

    private static func plan(for stream: StreamConfig, config: Config, plugins: PluginHost) -> Schedule.Plan {
        let plugin = plugins.plugin(for: stream.url, protocolName: stream.protocolName)
        return Schedule.Plan(
            interval: stream.interval ?? config.settings.interval,
            deepInterval: stream.deepInterval ?? config.settings.deepInterval,
            backoffCap: config.settings.backoffCap,
            quickAvailable: plugin?.descriptor.capabilities.quickProbe ?? false)
    }

    // MARK: Running

    /// Runs until cancelled, then cancels probes in flight.
    public func run() async {
        while !Task.isCancelled {
            let t = now
            for due in schedule.due(at: t) { launch(due, at: t) }
            let next = schedule.earliestDue() ?? t + 1
            let pause = min(max(next - now, 0.001), 1.0)
            await sleep(seconds: pause)
        }
        for task in running.values { task.cancel() }
        for task in running.values { await task.value }
        running.removeAll()
    }

    /// Sleeps, but wakes early when the schedule changes (reload, plugin drop-in).
    private func sleep(seconds: Double) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            wake = continuation
            Task { [weak self] in
                try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
                await self?.wakeUp()
            }
        }
    }

    private func wakeUp() {
        wake?.resume()
        wake = nil
    }

    private func lane(for name: String) -> Lane {
        if let lane = lanes[name] { return lane }
        let lane = Lane(name: name, minimum: laneMinimum, maximum: laneMaximum)
        lanes[name] = lane
        return lane
    }

    private func launch(_ due: Schedule.Due, at t: Double) {
        guard let stream = streams[due.id] else { return }
        guard let plugin = plugins.plugin(for: stream.url, protocolName: stream.protocolName) else {
            let scheme = stream.protocolName ?? SchemeRouter.scheme(of: stream.url) ?? "?"
            finish(due, result: .failure(.noPlugin, phase: nil, "No loaded plugin handles '\(scheme)'; the stream waits for one."))
            return
        }
        let request = makeProbeRequest(for: stream, config: config, mode: due.mode)
        let lane = lane(for: plugin.name)
        let budgets = self.budgets
        let host = URLComponents(string: stream.url)?.host ?? stream.url
        let deepSlots = self.deepSlots
        // Failing streams are probed deep every time, but they mostly fail before decoding anything
        // (refused, timeout): only healthy streams' deep probes take a decode slot.
        let deep = due.mode == .deep && (states[due.id]?.consecutiveFailures ?? 0) == 0
        running[due.id] = Task {
            // Waiting for a decode slot, the camera host's budget or the lane counts as schedule lag:
            // the lag is measured when the probe really starts.
            if deep { await deepSlots.acquire("deep") }
            await budgets.acquire(host)
            await lane.acquire()
            await self.recordStart(due)
            let started = ContinuousClock.now
            let result = Task.isCancelled ? ProbeResult.failure(.cancelled, phase: nil, "Cancelled before it started.") : await plugin.probe(request)
            await lane.release(duration: started.duration(to: .now))
            await budgets.release(host)
            if deep { await deepSlots.release("deep") }
            await self.finish(due, result: result)
        }
    }

    private func finish(_ due: Schedule.Due, result: ProbeResult) {
        running[due.id] = nil
        guard let stream = streams[due.id], schedule.contains(due.id) else { return }
        let at = clock.now()
        checks += 1
        var result = result
        if result.mode == nil { result.mode = due.mode }
        let old = states[due.id] ?? .initial
        let new = StatusTracker.apply(result, to: old, retries: config.settings.retries, at: at)
        states[due.id] = new
        version &+= 1
        if result.reason != .cancelled {
            var ring = recent[due.id] ?? []
            if ring.count >= 30 { ring.removeFirst(ring.count - 29) }
            ring.append(Self.letter(new))
            recent[due.id] = ring
        }
        schedule.completed(due.id, success: result.reason == .ok, dueAt: due.dueAt, now: now, jitter: Double.random(in: 0..<1, using: &rng))
        if result.reason != .cancelled {
            sinks.submit(.result(ResultRecord(
                streamId: due.id, at: at, mode: result.mode ?? due.mode, status: new.status, pending: new.pending, reason: result.reason,
                phase: result.phase, message: result.message, timings: result.timings, media: result.media)))
        }
        if let change = StatusTracker.change(from: old, to: new, stream: due.id, at: at, thumbnail: result.thumbnailJpeg) {
            let label = new.pending ? "pending" : new.status.rawValue
            logger.notice("stream=\(stream.id) status=\(label) reason=\(new.reason) phase=\(new.phase?.rawValue ?? "-") \(new.message)")
            sinks.submit(.change(change))
        }
    }

    static func letter(_ state: StreamState) -> UInt8 {
        if state.pending { return UInt8(ascii: "p") }
        switch state.status {
        case .ok: return UInt8(ascii: "o")
        case .degraded: return UInt8(ascii: "d")
        case .down: return UInt8(ascii: "x")
        default: return UInt8(ascii: "u")
        }
    }

    private func recordStart(_ due: Schedule.Due) {
        recordLag(due.id, max(0, now - due.dueAt))
    }

    private func recordLag(_ id: String, _ seconds: Double) {
        if lags.count < 65_536 { lags.append((id, seconds)) } else { lags[lagIndex % 65_536] = (id, seconds) }
        lagIndex += 1
    }

    // MARK: Reload

    /// Applies a new config: added streams start, removed stop, changed restart, the rest keep their
    /// schedule, state and counters. Returns what changed.
    @discardableResult
    public func apply(_ new: Config) -> ConfigDiff {
        let diff = ConfigDiff(from: config, to: new)
        let t = now
        version &+= 1
        config = new
        Task { [budgets, deepSlots] in
            await budgets.setPerHost(new.settings.hostSessions)
            await deepSlots.setPerHost(new.settings.maxDeepProbes)
        }
        let byID = Dictionary(new.streams.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for id in diff.removed {
            running.removeValue(forKey: id)?.cancel()
            schedule.remove(id)
            streams[id] = nil
            states[id] = nil
            recent[id] = nil
            logger.info("stream=\(id) removed from the config; stopped (its history is kept, marked retired)")
        }
        for id in diff.added {
            guard let stream = byID[id] else { continue }
            streams[id] = stream
            states[id] = .initial
            if stream.enabled { schedule.add(id, plan: plan(for: stream), now: t) }
        }
        for id in diff.restarted {
            guard let stream = byID[id] else { continue }
            running.removeValue(forKey: id)?.cancel()
            schedule.remove(id)
            streams[id] = stream
            if stream.enabled { schedule.addNow(id, plan: plan(for: stream), now: t) } else { states[id] = .initial }
        }
        for id in diff.relabelled { streams[id] = byID[id] }
        if diff.scheduleSettingsChanged {
            for (id, stream) in streams { schedule.update(id, plan: plan(for: stream)) }
        }
        if !diff.isEmpty { sinks.submit(.streams(new.streams.map { Self.describe($0, plugins: plugins) }, at: clock.now())) }
        wakeUp()
        return diff
    }

    /// New plugins were loaded: streams waiting for one are checked now.
    public func pluginsChanged() {
        let t = now
        for (id, stream) in streams where stream.enabled && states[id]?.reason == .noPlugin {
            if plugins.plugin(for: stream.url, protocolName: stream.protocolName) != nil {
                running.removeValue(forKey: id)?.cancel()
                schedule.remove(id)
                schedule.addNow(id, plan: plan(for: stream), now: t)
            }
        }
        for (id, stream) in streams { schedule.update(id, plan: plan(for: stream)) }
        wakeUp()
    }

    // MARK: Reading

    public func snapshot() -> [StreamSnapshot] {
        config.streams.compactMap { snapshot(id: $0.id) }
    }

    public func snapshot(id: String) -> StreamSnapshot? {
        guard let stream = streams[id] else { return nil }
        let state = states[id] ?? .initial
        let plugin = plugins.plugin(for: stream.url, protocolName: stream.protocolName)?.name ?? stream.protocolName
        return StreamSnapshot(
            id: id, name: stream.name, url: stream.maskedURL, protocol: plugin, group: stream.group, tags: stream.tags,
            enabled: stream.enabled, status: stream.enabled ? state.status : .unknown, reason: stream.enabled ? state.reason : "disabled",
            phase: state.phase, message: stream.enabled ? state.message : "Disabled in the config.", pending: state.pending,
            since: state.since, lastCheck: state.lastCheck, lastPicture: state.lastPicture,
            consecutiveFailures: state.consecutiveFailures, latencyMs: state.latencyMs, codec: state.media?.codec, width: state.media?.width,
            height: state.media?.height, fps: state.media?.fps, bitrateBps: state.media?.bitrateBps,
            recent: recent[id].map { String(decoding: $0, as: UTF8.self) })
    }

    // MARK: Live preview

    /// Runs a live preview of a configured stream (never of an arbitrary URL) within the camera host's
    /// session budget, handing JPEG frames to `onFrame`. Nil when the stream is unknown.
    public func preview(id: String, seconds: Double, onFrame: @escaping @Sendable (Data) -> Void) async -> ProbeResult? {
        guard let stream = streams[id] else { return nil }
        guard let plugin = plugins.plugin(for: stream.url, protocolName: stream.protocolName) else {
            return .failure(.noPlugin, phase: .preview, "No loaded plugin handles this stream.")
        }
        let probe = makeProbeRequest(for: stream, config: config, mode: .deep)
        let request = PreviewRequest(streamId: id, url: stream.url, credentials: probe.credentials, seconds: seconds,
                                     timeoutMs: probe.timeoutMs)
        let host = URLComponents(string: stream.url)?.host ?? stream.url
        let budgets = self.budgets
        await budgets.acquire(host)
        let result = await plugin.preview(request, onFrame: onFrame)
        await budgets.release(host)
        return result
    }

    /// Engine figures; `include` narrows the lag percentiles to some streams (benchmarks).
    /// Without `include`, the percentiles are recomputed at most once a second (sorting the 65,536-entry
    /// window costs milliseconds, and dashboards and scrapers ask often).
    public func stats(include: (@Sendable (String) -> Bool)? = nil) async -> EngineStats {
        let percentiles: (p50: Double, p99: Double)
        if include == nil, let cached = lagCache, cached.at.duration(to: .now) < .seconds(1) {
            percentiles = (cached.p50, cached.p99)
        } else {
            let sorted = (include.map { keep in lags.filter { keep($0.id) } } ?? lags).map(\.seconds).sorted()
            func pct(_ q: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * q))] * 1000 }
            percentiles = (pct(0.5), pct(0.99))
            if include == nil { lagCache = (.now, percentiles.p50, percentiles.p99) }
        }
        var laneFigures: [String: Int] = [:]
        for (name, lane) in lanes { laneFigures[name] = await lane.inFlight }
        return EngineStats(streams: streams.count, checks: checks, inFlight: running.count, lagP50Ms: percentiles.p50, lagP99Ms: percentiles.p99, lanes: laneFigures)
    }

    /// Clears the lag window (benchmarks measure a steady state).
    public func resetStats() {
        lagCache = nil
        lags.removeAll()
        lagIndex = 0
        checks = 0
    }

    public var currentConfig: Config { config }
}

/// Builds the probe request for a stream from its config (credentials resolved, never in the URL).
public func makeProbeRequest(for stream: StreamConfig, config: Config, mode: ProbeMode) -> ProbeRequest {
    let credentials = stream.inlineCredentials ?? stream.credentialsName.flatMap { config.credentials[$0] }.map {
        Credentials(username: $0.username, password: $0.password)
    }
    let t = stream.thresholds
    return ProbeRequest(
        streamId: stream.id, url: stream.url, credentials: credentials, mode: mode,
        timeoutMs: Int(config.settings.timeout.milliseconds),
        options: ProbeOptions(
            transport: stream.transport, minFps: t.minFps, frozenThreshold: t.frozen, blackThreshold: t.black,
            maxFirstFrameMs: t.maxFirstFrame?.milliseconds, thumbnail: mode == .deep ? true : nil))
}

/// FNV-1a, stable across runs (Swift's Hasher is seeded per process).
public func stableHash(_ text: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return hash
}
