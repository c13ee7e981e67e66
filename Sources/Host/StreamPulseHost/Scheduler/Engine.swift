import DequeModule
import Foundation
import Logging
import StreamPulseCore
import Synchronization

/// What the API shows for one stream. Credentials never appear: the URL is masked.
public struct StreamSnapshot: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    public var url: String
    public var `protocol`: String?
    public var group: String?
    /// The stream's site (`site:`, or its group's), if any.
    public var site: String?
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
    /// Share of time with pictures over 24 h / 7 d / 30 d (`Availability`: time the monitor was not running
    /// and maintenance left out), from the history database (filled in by the API).
    public var uptime: SQLiteStore.Uptime?
    /// The last checks, oldest first, one letter each: o ok, d degraded, p pending, x down, u unknown.
    public var recent: String?
    /// True while a maintenance window or silence covers the stream: probing goes on, nothing is notified
    /// and the time does not count against uptime (filled in by the API; absent otherwise).
    public var maintenance: Bool?

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

/// The runner of `serve`'s engine: owns the one task group in which probes run, feeds events (time,
/// completions, reloads) into `EngineMachine` and performs the actions it returns — probes in per-plugin
/// lanes within per-host budgets and decode slots, cancellations, events for the sinks. It also keeps the
/// figures around the machine (heartbeats, schedule lag).
public actor Engine {

    private let plugins: PluginHost
    private let logger: Logger
    private var machine: EngineMachine
    /// Probes to start, queued by any event; started by `run()`, which owns the task group.
    private var starts: [Start] = []
    /// Cancellation triggers of the probes in flight.
    private var cancels: [ProbeTicket: Signal] = [:]
    private var lanes: [String: Lane] = [:]
    private let budgets: HostBudgets
    /// Deep probes (which decode pictures) running at once, all plugins together: bounds memory and CPU
    /// when a whole fleet is due for a deep probe at the same time (start-up, a network coming back).
    /// A deep probe without a slot waits in `deepQueue` as a plain value, not as a suspended task: the
    /// first round of 10,000 streams would otherwise hold thousands of tasks (about 2 KB each) at once.
    private var deepLimit: Int
    private var deepRunning = 0
    private var deepQueue = Deque<Start>()
    private typealias Start = (ProbeTicket, ProbeRequest, plugin: String, host: String, dueAt: Double, decodeSlot: Bool)
    private let start = ContinuousClock.now
    private var rng = SystemRandomNumberGenerator()
    private var lags = LagWindow()
    private var lagCache: (at: ContinuousClock.Instant, p50: Double, p99: Double)?
    private var heartbeats = Heartbeats()
    private let sinks: SinkChain
    private let clock: ClockOffset
    private let wake = Signal()
    /// Counts applied reloads that changed anything; readers of the stream list compare it without
    /// waiting on the engine, so a reload is visible in every listing at once.
    public nonisolated let configGeneration = Atomic<Int>(0)
    private nonisolated let appliedObservers = Mutex<[@Sendable () -> Void]>([])

    /// Calls `observer` (synchronously, so it must only signal) after each reload that changed the streams,
    /// once `configGeneration` has moved on. The shared fleet picture uses it to rebuild at once.
    public nonisolated func onConfigApplied(_ observer: @escaping @Sendable () -> Void) {
        appliedObservers.withLock { $0.append(observer) }
    }
    /// Lanes' bounds; the maximum also caps threads a plugin's pool grows to.
    public var laneMinimum = 4
    public var laneMaximum = 512

    public init(config: Config, plugins: PluginHost, logger: Logger,
                startupSpread: Duration = .seconds(30), sinks: SinkChain = SinkChain(), clock: ClockOffset = ClockOffset(),
                observing: Bool = false) {
        self.plugins = plugins
        self.logger = logger
        self.budgets = HostBudgets(perHost: config.settings.hostSessions)
        self.deepLimit = max(1, config.settings.maxDeepProbes)
        self.sinks = sinks
        self.clock = clock
        machine = EngineMachine(config: config, startupSpread: startupSpread, now: 0) { stream in
            plugins.plugin(for: stream.url, protocolName: stream.protocolName).map {
                PluginFacts(name: $0.name, quickProbe: $0.descriptor.capabilities.quickProbe)
            }
        }
        machine.observing = observing
        sinks.submit(.streams(machine.descriptions(), at: clock.now()))
    }

    private var now: Double { start.duration(to: .now).seconds }

    /// Bumped whenever any stream's state or the stream list changes (API caches key on it).
    public var version: Int { machine.version }
    public var currentConfig: Config { machine.config }

    // MARK: Running

    /// Runs until cancelled, then cancels the probes in flight and waits for them.
    public func run() async {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                perform(machine.tick(now: now, at: clock.now()))
                let batch = starts
                starts.removeAll()
                for start in batch {
                    // Its cancellation trigger exists from now on, so an edit cancels it while it waits.
                    cancels[start.0] = Signal()
                    if start.decodeSlot { deepQueue.append(start) } else { launch(start, in: &group) }
                }
                while deepRunning < deepLimit, let start = deepQueue.popFirst() {
                    deepRunning += 1
                    launch(start, in: &group)
                }
                let next = machine.earliestDue() ?? now + 1
                await wake.wait(timeout: .milliseconds(Int(min(max(next - now, 0.001), 1.0) * 1000)))
            }
            for signal in cancels.values { signal.fire() }
        }
        cancels.removeAll()
    }

    /// Starts the task of one probe: it waits for the camera host's budget and the plugin's lane (waiting
    /// for either, or for a decode slot before, counts as schedule lag: the lag is measured when the probe
    /// really starts), probes, and reports back.
    private func launch(_ start: Start, in group: inout DiscardingTaskGroup) {
        let (ticket, request, pluginName, host, dueAt, decodeSlot) = start
        guard let plugin = plugins.plugin(named: pluginName), let cancel = cancels[ticket] else {
            if decodeSlot { deepRunning -= 1 }
            finished(ticket, result: .failure(.noPlugin, phase: nil, "The plugin '\(pluginName)' is not loaded."))
            return
        }
        let lane = lane(for: pluginName)
        group.addTask { [budgets] in
            await budgets.acquire(host)
            await lane.acquire()
            await self.recordStart(ticket, dueAt: dueAt)
            let started = ContinuousClock.now
            let result = await Self.probe(plugin, request, cancel: cancel)
            await lane.release(duration: started.duration(to: .now))
            await budgets.release(host)
            await self.finished(ticket, result: result, freesDecodeSlot: decodeSlot)
        }
    }

    /// Runs one probe until it ends or its ticket is cancelled (then the plugin sees a cancelled task).
    private static func probe(_ plugin: LoadedPlugin, _ request: ProbeRequest, cancel: Signal) async -> ProbeResult {
        // Cancelled while it waited for a slot: the camera is not called at all.
        if Task.isCancelled || cancel.isFired { return .failure(.cancelled, phase: nil, "Cancelled before it started.") }
        return await withTaskGroup(of: ProbeResult?.self) { group in
            group.addTask { await plugin.probe(request) }
            group.addTask {
                await cancel.wait()
                return nil
            }
            var outcome: ProbeResult?
            while let next = await group.next() {
                if let next {
                    outcome = next
                    break
                }
                group.cancelAll()  // cancelled: the probe child ends with a `cancelled` result
            }
            group.cancelAll()
            return outcome ?? .failure(.cancelled, phase: nil, "Cancelled.")
        }
    }

    private func finished(_ ticket: ProbeTicket, result: ProbeResult, freesDecodeSlot: Bool = false) {
        cancels[ticket] = nil
        if freesDecodeSlot {
            deepRunning -= 1
            if !deepQueue.isEmpty { wake.fire() }
        }
        let counted = machine.checks
        perform(machine.probeFinished(ticket, result: result, now: now, at: clock.now(), jitter: Double.random(in: 0..<1, using: &rng)))
        // A stale ticket changed nothing; a current one is one more heartbeat (cancellations are not checks).
        if machine.checks != counted, result.reason != .cancelled, let state = machine.state(of: ticket.streamID) {
            heartbeats.record(ticket.streamID, state)
        }
    }

    /// Performs the machine's actions: probes are queued for `run()`, the rest happens here.
    private func perform(_ actions: [EngineMachine.Action]) {
        for action in actions {
            switch action {
            case let .start(ticket, request, plugin, host, dueAt, decodeSlot):
                starts.append((ticket, request, plugin, host, dueAt, decodeSlot))
            case let .cancel(ticket):
                cancels[ticket]?.fire()
            case let .emit(event):
                if case let .change(change) = event {
                    let new = change.to
                    let label = new.pending ? "pending" : new.status.rawValue
                    logger.notice("stream=\(change.streamId) status=\(label) reason=\(new.reason) phase=\(new.phase?.rawValue ?? "-") \(new.message)")
                }
                sinks.submit(event)
            }
        }
        if !starts.isEmpty { wake.fire() }
    }

    private func lane(for name: String) -> Lane {
        if let lane = lanes[name] { return lane }
        let lane = Lane(name: name, minimum: laneMinimum, maximum: laneMaximum)
        lanes[name] = lane
        return lane
    }

    private func recordStart(_ ticket: ProbeTicket, dueAt: Double) {
        lags.record(ticket.streamID, seconds: max(0, now - dueAt))
    }

    // MARK: Reload

    /// Applies a new config: added streams start, removed stop, changed restart (once their running probe
    /// has ended), the rest keep their schedule, state and counters. Returns what changed.
    @discardableResult
    /// - Parameters:
    ///   - quiet: no line per removed stream (an agent's leases moving hundreds of streams at once).
    ///   - firstWithin: added streams are first checked within this (default: the startup spread).
    ///   - handOver: green states of added streams reached by another agent (see `EngineMachine.handOver`),
    ///     taken before any of them can start a probe.
    ///   - spreadOverStartup: added streams nobody has checked yet: first checked over the startup spread.
    public func apply(_ new: Config, quiet: Bool = false, firstWithin: Duration? = nil, handOver: [String: StreamState] = [:],
                      spreadOverStartup: Set<String> = []) async -> ConfigDiff {
        let (diff, actions) = machine.apply(new, now: now, at: clock.now(), firstWithin: firstWithin, spreadOverStartup: spreadOverStartup)
        if !handOver.isEmpty { _ = machine.handOver(handOver, now: now) }
        await budgets.setPerHost(new.settings.hostSessions)
        deepLimit = max(1, new.settings.maxDeepProbes)
        for id in diff.removed {
            heartbeats.forget(id)
            if quiet { continue }
            logger.info("stream=\(id) removed from the config; stopped (its history is kept, marked retired)")
        }
        for id in diff.restarted { heartbeats.forget(id) }
        perform(actions)
        if !diff.isEmpty {
            configGeneration.add(1, ordering: .releasing)
            for observer in appliedObservers.withLock({ $0 }) { observer() }
        }
        wake.fire()
        return diff
    }

    /// New plugins were loaded: streams waiting for one are checked now.
    // MARK: Picture health

    /// Baselines stored by an earlier run (profiles, reference views).
    public func restoreBaselines(_ baselines: [String: PictureBaseline]) {
        machine.pictures.restore(baselines)
    }

    /// The stream's picture baseline, or nil (unknown stream, nothing learned yet).
    public func pictureBaseline(of id: String) -> PictureBaseline? {
        guard machine.stream(id) != nil else { return nil }
        return machine.pictures.baseline(of: id)
    }

    /// Accepts the stream's current profile (its last good deep probe's) as the new normal; false when
    /// the stream is unknown or no good deep probe has been seen since the start.
    public func acceptProfile(of id: String, by user: String) -> Bool {
        guard machine.stream(id) != nil, let record = machine.pictures.acceptProfile(id, by: user, at: clock.now()) else { return false }
        sinks.submit(.baseline(record))
        machine.checkNow(id, now: now)
        wake.fire()
        return true
    }

    /// The stream's next decoded picture becomes its reference view; a deep check starts now.
    public func setReference(of id: String, by user: String) -> Bool {
        guard machine.stream(id) != nil else { return false }
        machine.pictures.adoptReference(id, by: user)
        machine.checkNow(id, now: now)
        wake.fire()
        return true
    }

    // MARK: Observing (a dashboard over PostgreSQL)

    /// Results the site agents probed, read from PostgreSQL (`PostgresFeed`): see `EngineMachine.mirror`.
    public func mirror(_ records: [ResultRecord]) {
        guard !records.isEmpty else { return }
        perform(machine.mirror(records))
        for record in records where record.reason != .cancelled {
            if let state = machine.state(of: record.streamId), state.lastCheck == record.at { heartbeats.record(record.streamId, state) }
        }
    }

    /// The agents' latest states, taken by streams not checked yet (see `EngineMachine.seed`).
    public func seed(_ states: [String: StreamState]) {
        perform(machine.seed(states, at: clock.now()))
    }

    /// No agent of `site` has reported for a lease period: see `EngineMachine.siteUnreachable`.
    public func siteUnreachable(_ site: String, message: String) {
        perform(machine.siteUnreachable(site, message: message, at: clock.now()))
    }

    public func pluginsChanged() {
        perform(machine.pluginsChanged(now: now))
        wake.fire()
    }

    // MARK: Reading

    public func snapshot() -> [StreamSnapshot] {
        machine.config.streams.compactMap { snapshot(id: $0.id) }
    }

    public func snapshot(id: String) -> StreamSnapshot? {
        guard var snapshot = machine.snapshot(id: id) else { return nil }
        snapshot.recent = heartbeats.recent(id)
        return snapshot
    }

    // MARK: Live preview

    /// What a live preview of a configured stream needs: its plugin, the request (with the stream's
    /// credentials and deadline) and the camera host whose session budget it runs in. Nil when the stream is
    /// unknown; previews of arbitrary URLs are never possible. `PreviewHub` runs the session.
    public func previewPlan(id: String, seconds: Double) -> PreviewPlan? {
        guard let stream = machine.stream(id) else { return nil }
        let probe = makeProbeRequest(for: stream, config: machine.config, mode: .deep)
        let request = PreviewRequest(streamId: id, url: stream.url, credentials: probe.credentials, seconds: seconds,
                                     timeoutMs: probe.timeoutMs)
        return PreviewPlan(plugin: plugins.plugin(for: stream.url, protocolName: stream.protocolName), request: request,
                           host: URLComponents(string: stream.url)?.host ?? stream.url, budgets: budgets)
    }

    /// Engine figures; `include` narrows the lag percentiles to some streams (benchmarks).
    /// Without `include`, the percentiles are recomputed at most once a second (sorting the 65,536-entry
    /// window costs milliseconds, and dashboards and scrapers ask often).
    public func stats(include: (@Sendable (String) -> Bool)? = nil) async -> EngineStats {
        let percentiles: (p50: Double, p99: Double)
        if include == nil, let cached = lagCache, cached.at.duration(to: .now) < .seconds(1) {
            percentiles = (cached.p50, cached.p99)
        } else {
            percentiles = lags.percentiles(include: include)
            if include == nil { lagCache = (.now, percentiles.p50, percentiles.p99) }
        }
        var laneFigures: [String: Int] = [:]
        for (name, lane) in lanes { laneFigures[name] = await lane.inFlight }
        return EngineStats(streams: machine.streamCount, checks: machine.checks - checksAtReset, inFlight: machine.inFlightCount,
                           lagP50Ms: percentiles.p50, lagP99Ms: percentiles.p99, lanes: laneFigures)
    }

    private var checksAtReset = 0

    /// The limits in force: sessions per camera host and decode slots (`host_sessions`, `max_deep_probes`).
    public func limits() async -> (hostSessions: Int, deepProbes: Int) {
        (await budgets.perHost, deepLimit)
    }

    /// Clears the lag window and the check counter (benchmarks measure a steady state).
    public func resetStats() {
        lagCache = nil
        lags.reset()
        checksAtReset = machine.checks
    }
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
            maxFirstFrameMs: t.maxFirstFrame?.milliseconds, thumbnail: mode == .deep ? true : nil,
            redirectsToOtherHosts: stream.redirects == "any" ? true : nil, ignore: stream.ignore.isEmpty ? nil : stream.ignore))
}

/// FNV-1a, stable across runs (Swift's Hasher is seeded per process).
public func stableHash(_ text: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return hash
}
