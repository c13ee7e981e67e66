import Foundation
import StreamPulseCore

/// Identifies one probe of one stream. The generation grows whenever the stream is (re)started by a
/// reload, so a completion that arrives for an older generation — a probe cancelled by an edit, or of a
/// stream since removed — is recognised as stale and changes nothing.
public struct ProbeTicket: Hashable, Sendable, CustomStringConvertible {
    public var streamID: String
    public var generation: Int

    public init(streamID: String, generation: Int) {
        self.streamID = streamID
        self.generation = generation
    }

    public var description: String { "\(streamID)#\(generation)" }
}

/// What the engine needs to know about the plugin that would probe a stream.
public struct PluginFacts: Sendable, Equatable {
    public var name: String
    public var quickProbe: Bool

    public init(name: String, quickProbe: Bool) {
        self.name = name
        self.quickProbe = quickProbe
    }
}

/// The engine's whole state as one pure value: which streams exist, their statuses, when each is due and
/// which probe of each is in flight. Events go in (`tick`, `probeFinished`, `apply`, `pluginsChanged`),
/// actions come out; the caller (`Engine`, the runner) performs them. No I/O, no clock of its own: time
/// comes in as seconds on a monotonic scale (virtual in tests) plus a wall-clock `Date` for records.
///
/// Invariant: at most one probe per stream is in flight. A stream restarted while its probe runs waits
/// until that probe has ended (its completion, stale by then, is dropped) before its new generation is
/// scheduled — even when the plugin ignores cancellation.
public struct EngineMachine: Sendable {
    /// Something for the runner to do.
    public enum Action: Sendable {
        /// Start a probe. `deep` says whether it takes a decode slot; `host` is the camera host's budget key.
        case start(ProbeTicket, ProbeRequest, plugin: String, host: String, dueAt: Double, decodeSlot: Bool)
        /// Cancel the probe with this ticket (its completion will still arrive, and be dropped as stale).
        case cancel(ProbeTicket)
        /// Hand an event to the sink chain.
        case emit(SinkEvent)
    }

    public private(set) var config: Config
    private var streams: [String: StreamConfig] = [:]
    private var states: [String: StreamState] = [:]
    private var schedule = Schedule()
    private var generations: [String: Int] = [:]
    private var inFlight: [String: (ticket: ProbeTicket, mode: ProbeMode, dueAt: Double)] = [:]
    /// Streams whose new generation starts once the probe of the old one has ended.
    private var startWhenDrained: [String: Bool] = [:]
    private let lookup: @Sendable (StreamConfig) -> PluginFacts?
    /// Each stream's `describe`, kept between events: the fleet picture asks for all of them every rebuild.
    /// Refreshed when a stream is added, restarted or relabelled, and for all when plugins change.
    private var described: [String: StreamSnapshot] = [:]
    /// Checks completed (current tickets only).
    public private(set) var checks = 0
    /// Picture health against each stream's profile and reference view.
    public var pictures = PictureJudge()
    /// Bumped whenever any stream's state or the stream list changes (API caches key on it).
    public private(set) var version = 0
    /// A dashboard over PostgreSQL (`serve --no-probe`): nothing is probed here; states come from the agents'
    /// results (`mirror`) and from which sites still report (`siteUnreachable`).
    public var observing = false

    /// - Parameters:
    ///   - lookup: the plugin that handles a stream, if one is loaded (asked again on every event, so a
    ///     plugin dropped in later is seen).
    ///   - startupSpread: the first round is spread over at most this long.
    public init(config: Config, startupSpread: Duration = .seconds(30), now: Double,
                lookup: @escaping @Sendable (StreamConfig) -> PluginFacts?) {
        self.config = config
        self.lookup = lookup
        schedule.startupSpread = startupSpread
        pictures.timeZone = TimeZone(identifier: config.settings.timezone) ?? pictures.timeZone
        for stream in config.streams where streams[stream.id] == nil {
            streams[stream.id] = stream
            states[stream.id] = .initial
            generations[stream.id] = 1
            if stream.enabled { schedule.add(stream.id, plan: plan(for: stream), now: now) }
        }
        refreshDescriptions(Array(streams.keys))
    }

    // MARK: Reading

    public var streamCount: Int { streams.count }
    public var inFlightCount: Int { inFlight.count }
    public func state(of id: String) -> StreamState? { states[id] }
    public func stream(_ id: String) -> StreamConfig? { streams[id] }
    /// The ticket of the probe in flight for a stream, if any.
    public func ticket(of id: String) -> ProbeTicket? { inFlight[id]?.ticket }
    /// The earliest time something is due (nil when nothing is scheduled).
    public mutating func earliestDue() -> Double? { schedule.earliestDue() }
    public func plugin(for stream: StreamConfig) -> PluginFacts? { lookup(stream) }

    /// The sinks' view of a configured stream (masked URL, no state).
    public func describe(_ stream: StreamConfig) -> StreamSnapshot {
        var snapshot = StreamSnapshot(
            id: stream.id, name: stream.name, url: stream.maskedURL, protocol: lookup(stream)?.name ?? stream.protocolName,
            group: stream.group, tags: stream.tags, enabled: stream.enabled, status: .unknown, reason: .notChecked, phase: nil,
            message: "", pending: false, since: nil, lastCheck: nil, lastPicture: nil, consecutiveFailures: 0, latencyMs: nil)
        snapshot.site = stream.site
        return snapshot
    }

    /// What the API shows for one stream (without the heartbeat and uptime, which others keep).
    public func snapshot(id: String) -> StreamSnapshot? {
        guard let stream = streams[id] else { return nil }
        let state = states[id] ?? .initial
        var s = described[id] ?? describe(stream)
        s.status = stream.enabled ? state.status : .unknown
        s.reason = stream.enabled ? state.reason : .disabled
        s.phase = state.phase
        s.message = stream.enabled ? state.message : "Disabled in the config."
        s.pending = state.pending
        s.since = state.since
        s.lastCheck = state.lastCheck
        s.lastPicture = state.lastPicture
        s.consecutiveFailures = state.consecutiveFailures
        s.latencyMs = state.latencyMs
        s.codec = state.media?.codec
        s.width = state.media?.width
        s.height = state.media?.height
        s.fps = state.media?.fps
        s.bitrateBps = state.media?.bitrateBps
        return s
    }

    // MARK: Events

    /// Time passed: starts every stream that is due. A stream without a loaded plugin completes at once
    /// with `no_plugin`.
    public mutating func tick(now: Double, at date: Date) -> [Action] {
        var actions: [Action] = []
        let due = schedule.due(at: now)
        if observing { return [] }  // taken off the schedule for good: only agents probe
        for due in due {
            guard let stream = streams[due.id], let generation = generations[due.id] else { continue }
            let ticket = ProbeTicket(streamID: due.id, generation: generation)
            inFlight[due.id] = (ticket, due.mode, due.dueAt)
            guard let plugin = lookup(stream) else {
                let scheme = stream.protocolName ?? SchemeRouter.scheme(of: stream.url) ?? "?"
                let result = ProbeResult.failure(.noPlugin, phase: nil, "No loaded plugin handles '\(scheme)'; the stream waits for one.")
                actions += probeFinished(ticket, result: result, now: now, at: date, jitter: 0.5)
                continue
            }
            // Failing streams are probed deep every time, but they mostly fail before decoding anything
            // (refused, timeout): only healthy streams' deep probes take a decode slot.
            let decodeSlot = due.mode == .deep && (states[due.id]?.consecutiveFailures ?? 0) == 0
            actions.append(.start(
                ticket, makeProbeRequest(for: stream, config: config, mode: due.mode), plugin: plugin.name,
                host: URLComponents(string: stream.url)?.host ?? stream.url, dueAt: due.dueAt, decodeSlot: decodeSlot))
        }
        return actions
    }

    /// A probe ended. A stale ticket (an older generation, or a stream since removed) changes nothing,
    /// except that a restart waiting for it may now begin.
    public mutating func probeFinished(_ ticket: ProbeTicket, result: ProbeResult, now: Double, at date: Date, jitter: Double) -> [Action] {
        let id = ticket.streamID
        guard let running = inFlight[id], running.ticket == ticket else { return [] }
        inFlight[id] = nil
        guard generations[id] == ticket.generation, streams[id] != nil else {
            // The old generation's probe has ended: the new one may start now.
            if startWhenDrained.removeValue(forKey: id) != nil, let stream = streams[id], stream.enabled {
                schedule.addNow(id, plan: plan(for: stream), now: now)
            }
            return []
        }
        checks += 1
        version &+= 1
        var result = result
        if result.mode == nil { result.mode = running.mode }
        // Picture health: the deep result judged against the stream's profile and reference view.
        var baseline: BaselineRecord?
        if let stream = streams[id] { (result, baseline) = pictures.judge(id, result, stream: stream, at: date) }
        let old = states[id] ?? .initial
        let new = StatusTracker.apply(result, to: old, retries: config.settings.retries, at: date)
        states[id] = new
        schedule.completed(id, success: result.reason == .ok, dueAt: running.dueAt, now: now, jitter: jitter)
        // A picture that did not match the reference is confirmed or cleared by the next check, not minutes later.
        if result.mode == .deep, pictures.awaitsConfirmation(id) { schedule.deepNext(id) }
        var actions: [Action] = []
        if let baseline { actions.append(.emit(.baseline(baseline))) }
        if result.reason != .cancelled {
            actions.append(.emit(.result(ResultRecord(
                streamId: id, at: date, mode: result.mode ?? running.mode, status: new.status, pending: new.pending, reason: result.reason,
                phase: result.phase, message: result.message, timings: result.timings, media: result.media))))
        }
        if let change = StatusTracker.change(from: old, to: new, stream: id, at: date, thumbnail: result.thumbnailJpeg,
                                                  lastPicture: result.lastPictureJpeg) {
            actions.append(.emit(.change(change)))
        }
        return actions
    }

    /// A deep check of the stream now (an admin's "use the current picture as the reference"); a probe in
    /// flight already serves.
    public mutating func checkNow(_ id: String, now: Double) {
        guard let stream = streams[id], stream.enabled, inFlight[id] == nil else { return }
        schedule.addNow(id, plan: plan(for: stream), now: now)
    }

    /// A new config: added streams start, removed stop, changed restart (after their running probe has
    /// ended), the rest keep their schedule, state and counters. Returns what changed and what to do.
    /// `firstWithin` bounds when added streams are first checked (default: the startup spread), except those in
    /// `spreadOverStartup` (streams nobody has checked yet: no history gap to bound), spread over the startup spread.
    public mutating func apply(_ new: Config, now: Double, at date: Date, firstWithin: Duration? = nil,
                               spreadOverStartup: Set<String> = []) -> (ConfigDiff, [Action]) {
        let diff = ConfigDiff(from: config, to: new)
        config = new
        version &+= 1
        // Times in picture messages ("since 03:12") are in the configured zone.
        pictures.timeZone = TimeZone(identifier: new.settings.timezone) ?? pictures.timeZone
        var actions: [Action] = []
        // Only the streams the diff names are looked up (not an index of every stream).
        let named = Set(diff.added + diff.restarted + diff.relabelled)
        var byID: [String: StreamConfig] = [:]
        if !named.isEmpty { for stream in new.streams where named.contains(stream.id) { byID[stream.id] = stream } }
        for id in diff.removed {
            actions += retire(id)
            streams[id] = nil
            states[id] = nil
            pictures.forget(id)
        }
        for id in diff.added {
            guard let stream = byID[id] else { continue }
            streams[id] = stream
            states[id] = .initial
            generations[id, default: 0] += 1
            startWhenDrained[id] = nil
            guard stream.enabled else { continue }
            // Re-added while the probe of its removed self still runs: it starts when that one ends.
            if inFlight[id] != nil { startWhenDrained[id] = true } else { schedule.add(id, plan: plan(for: stream), now: now, within: spreadOverStartup.contains(id) ? nil : firstWithin) }
        }
        for id in diff.restarted {
            guard let stream = byID[id] else { continue }
            actions += restart(id, stream, now: now)
        }
        for id in diff.relabelled { streams[id] = byID[id] }
        if diff.scheduleSettingsChanged {
            for (id, stream) in streams { schedule.update(id, plan: plan(for: stream)) }
        }
        for id in diff.removed { described[id] = nil }
        refreshDescriptions(diff.added + diff.restarted + diff.relabelled)
        if !diff.isEmpty { actions.append(.emit(.streams(new.streams.map { described[$0.id] ?? describe($0) }, at: date))) }
        return (diff, actions)
    }

    /// States another agent of the site reached for streams this one has just taken over (issue #17): a stream
    /// not checked here yet starts from that state instead of "not checked", and a green one is next checked
    /// quick (reachability), deep at its deep interval — as if this monitor had made the last deep check
    /// itself. Only green, settled states are taken: a failing stream is verified again from the start.
    /// Returns the streams that took their state.
    public mutating func handOver(_ handed: [String: StreamState], now: Double) -> [String] {
        var taken: [String] = []
        for (id, state) in handed where streams[id] != nil && states[id]?.lastCheck == nil && state.status == .ok && !state.pending {
            states[id] = state
            schedule.deepDone(id, at: now)
            taken.append(id)
        }
        return taken
    }

    /// Results another process probed (an agent, read from PostgreSQL by a dashboard that does not probe):
    /// each stream takes the agent's verdict as it is (status, pending, reason — the agent applied the
    /// retries), and the results and the changes they make are emitted like this machine's own. A result
    /// older than the stream's last check is only passed on (history), not applied.
    public mutating func mirror(_ records: [ResultRecord]) -> [Action] {
        var actions: [Action] = []
        for record in records {
            guard streams[record.streamId] != nil else { continue }
            actions.append(.emit(.result(record)))
            let id = record.streamId, old = states[id] ?? .initial
            if let last = old.lastCheck, record.at < last { continue }
            var new = old
            new.lastCheck = record.at
            if let total = record.timings.totalMs { new.latencyMs = total }
            // A quick ok keeps the last deep verdict (as the agent did); its status and pending are the agent's.
            let keepsVerdict = record.reason == .ok && record.mode == .quick && old.reason != .siteUnreachable
            if !keepsVerdict {
                new.reason = record.reason
                new.phase = record.phase
                new.message = record.message
            }
            new.status = record.status
            new.pending = record.pending
            new.consecutiveFailures = record.status == .ok ? 0 : (record.reason == .ok ? old.consecutiveFailures : old.consecutiveFailures + 1)
            if record.status == .ok, record.mode == .deep {
                new.lastPicture = record.at
                if let media = record.media { new.media = media }
            }
            if new.status != old.status || new.reason != old.reason || new.pending != old.pending { new.since = record.at }
            states[id] = new
            checks += 1
            version &+= 1
            if let change = StatusTracker.change(from: old, to: new, stream: id, at: record.at, thumbnail: nil) {
                actions.append(.emit(.change(change)))
            }
        }
        return actions
    }

    /// The latest states the agents wrote (a dashboard over PostgreSQL starting up): each stream not checked
    /// yet takes its own, and the change from "not checked" is emitted.
    public mutating func seed(_ given: [String: StreamState], at date: Date) -> [Action] {
        var actions: [Action] = []
        for (id, state) in given where streams[id] != nil && states[id]?.lastCheck == nil {
            let old = states[id] ?? .initial
            states[id] = state
            version &+= 1
            if let change = StatusTracker.change(from: old, to: state, stream: id, at: state.since ?? date, thumbnail: nil) {
                actions.append(.emit(.change(change)))
            }
        }
        return actions
    }

    /// The streams of a site none of whose agents has reported for a lease period are shown grey with
    /// `site_unreachable` (not as hundreds of dead cameras); they take their agents' verdicts again with
    /// the next result. `message` says since when and why.
    public mutating func siteUnreachable(_ site: String, message: String, at date: Date) -> [Action] {
        var actions: [Action] = []
        for (id, stream) in streams where stream.site == site && stream.enabled {
            let old = states[id] ?? .initial
            guard old.reason != .siteUnreachable else { continue }
            var new = old
            new.status = .unknown
            new.pending = false
            new.reason = .siteUnreachable
            new.phase = nil
            new.message = message
            new.since = date
            states[id] = new
            version &+= 1
            if let change = StatusTracker.change(from: old, to: new, stream: id, at: date, thumbnail: nil) { actions.append(.emit(.change(change))) }
        }
        return actions
    }

    /// Plugins were loaded: streams waiting for one are checked now; every plan follows the plugins' abilities.
    public mutating func pluginsChanged(now: Double) -> [Action] {
        var actions: [Action] = []
        for (id, stream) in streams where stream.enabled && states[id]?.reason == .noPlugin && lookup(stream) != nil {
            actions += restart(id, stream, now: now)
        }
        for (id, stream) in streams { schedule.update(id, plan: plan(for: stream)) }
        refreshDescriptions(Array(streams.keys))  // a stream's protocol may now name the new plugin
        return actions
    }

    /// Every configured stream's description (the sinks' `.streams` event), in config order.
    public func descriptions() -> [StreamSnapshot] { config.streams.map { described[$0.id] ?? describe($0) } }

    /// Recomputes the kept descriptions of `ids`.
    private mutating func refreshDescriptions(_ ids: [String]) {
        for id in ids { if let stream = streams[id] { described[id] = describe(stream) } }
    }

    // MARK: Helpers

    /// Stops a stream's schedule and cancels its probe; the ticket stays in flight until its completion.
    private mutating func retire(_ id: String) -> [Action] {
        schedule.remove(id)
        startWhenDrained[id] = nil
        generations[id, default: 0] += 1
        return inFlight[id].map { [.cancel($0.ticket)] } ?? []
    }

    private mutating func restart(_ id: String, _ stream: StreamConfig, now: Double) -> [Action] {
        let actions = retire(id)
        streams[id] = stream
        guard stream.enabled else {
            states[id] = .initial
            return actions
        }
        if inFlight[id] != nil { startWhenDrained[id] = true } else { schedule.addNow(id, plan: plan(for: stream), now: now) }
        return actions
    }

    private func plan(for stream: StreamConfig) -> Schedule.Plan {
        Schedule.Plan(
            interval: stream.interval ?? config.settings.interval,
            deepInterval: stream.deepInterval ?? config.settings.deepInterval,
            backoffCap: config.settings.backoffCap,
            quickAvailable: lookup(stream)?.quickProbe ?? false)
    }
}
