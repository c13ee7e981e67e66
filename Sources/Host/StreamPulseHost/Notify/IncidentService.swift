import Foundation
import Logging
import StreamPulseCore
import Synchronization

/// Runs the `IncidentMachine` on the sink chain: state changes and the stream list in, a tick every
/// second; stores incidents in SQLite and sends their notices through the `Notifier`. The evidence picture
/// is read from the history (the failing picture when there is one, else the last good one with its time).
///
/// Deliveries run inside `write`, so a channel that keeps failing delays this sink's next tick by its
/// retries (at most ~20 s); the other sinks and the engine never wait for it.
public final class IncidentService: Sink {
    public let name = "incidents"
    public var tick: Duration? { .seconds(1) }
    /// Incidents are built from state changes and the stream list; results never reach this sink.
    public var wantsResults: Bool { false }
    /// The machine is ticked at most once a second, however many batches arrive.
    private let lastTick = Mutex(Date.distantPast)

    private let machine: Mutex<IncidentMachine>
    /// Where incidents and silences are kept (the embedded database, or PostgreSQL for dashboards).
    public let storage: (any IncidentStorage)?
    /// Where evidence pictures come from (the local history, or PostgreSQL for a dashboard).
    private let pictures: (any EvidenceReading)?
    /// With several dashboards: only the elected one opens incidents and notifies.
    private let election: NotifierElection?
    private let wasLeading = Mutex(false)
    public let notifier: Notifier
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let timeZone: Mutex<TimeZone>
    private let restored = Mutex(false)

    /// - Parameters:
    ///   - store: the local history (evidence pictures), and where incidents are kept, unless `storage` and
    ///     `pictures` say otherwise.
    ///   - election: set for dashboards sharing PostgreSQL: this one acts only while elected.
    public init(config: Config, store: SQLiteStore?, storage: (any IncidentStorage)? = nil, pictures: (any EvidenceReading)? = nil,
                election: NotifierElection? = nil, logger: Logger,
                now: @escaping @Sendable () -> Date = { Date() }, retryDelays: [Duration] = [.seconds(1), .seconds(4), .seconds(15)]) {
        machine = Mutex(IncidentMachine(notify: config.notify, maintenance: config.maintenance))
        notifier = Notifier(channels: config.notify.channels, logger: logger, retryDelays: retryDelays)
        self.pictures = pictures ?? store
        self.storage = storage ?? store
        self.election = election
        self.logger = logger
        self.now = now
        timeZone = Mutex(TimeZone(identifier: config.settings.timezone) ?? .gmt)
    }

    /// A reload: new rules, channels and maintenance windows; open incidents stay.
    public func apply(_ config: Config) async {
        machine.withLock { $0.update(config: config.notify, maintenance: config.maintenance) }
        timeZone.withLock { $0 = TimeZone(identifier: config.settings.timezone) ?? .gmt }
        await notifier.update(config.notify.channels)
    }

    public func write(_ batch: [SinkEvent]) async throws {
        if election == nil { try await restoreOnce() }
        let date = now()
        machine.withLock { machine in
            for event in batch {
                switch event {
                case .streams(let streams, _):
                    machine.setStreams(streams.map { WatchedStream(id: $0.id, name: $0.name, host: Self.host(of: $0.url), group: $0.group,
                                                                   tags: $0.tags, enabled: $0.enabled, site: $0.site) })
                case .change(let change):
                    machine.stateChanged(change.streamId, change.to, at: change.at)
                case .result, .baseline:
                    break
                }
            }
        }
        let due = lastTick.withLock { last -> Bool in
            guard date.timeIntervalSince(last) >= 1 else { return false }
            last = date
            return true
        }
        guard due else { return }
        if let election {
            // Not elected: the states are followed (ready to take over), nothing is opened or told.
            guard election.isLeading else {
                wasLeading.withLock { $0 = false }
                // Silences made at any dashboard show here too (the maintenance flag in the stream list).
                if let silences = try? await storage?.silences(now: date) { machine.withLock { $0.silences = silences } }
                return
            }
            // Just elected: start from what the previous notifier stored.
            if wasLeading.withLock({ was in defer { was = true }; return !was }) { restored.withLock { $0 = false } }
            try await restoreOnce()
            try await adoptOtherDashboards(at: date)
        }
        let actions = machine.withLock { $0.tick(now: date) }
        try await perform(actions, at: date)
    }

    /// Acknowledgements and silences made at the other dashboards (stored by them), taken by the notifier.
    private func adoptOtherDashboards(at date: Date) async throws {
        guard let storage else { return }
        let open = try await storage.incidents(open: true, stream: nil, from: nil, to: nil, limit: 1000)
        let silences = try await storage.silences(now: date)
        let actions = machine.withLock { machine -> [IncidentAction] in
            machine.silences = silences
            var actions: [IncidentAction] = []
            for stored in open.map(\.incident) {
                guard let by = stored.acknowledgedBy, machine.incidents[stored.id]?.acknowledgedBy == nil else { continue }
                actions += machine.acknowledge(stored.id, by: by, comment: stored.acknowledgeComment ?? "", at: stored.acknowledgedAt ?? date)
            }
            return actions
        }
        try await perform(actions, at: date)
    }

    public func close() async {
        await notifier.shutdown()
    }

    /// A shutdown does not wait for retries: a delivery still failing is given up (and logged as such).
    public func willStop() { notifier.stopRetrying() }

    /// Open incidents, as the machine holds them.
    public var openIncidents: [Incident] { machine.withLock { $0.openIncidents } }

    /// Whether a stream is in a maintenance window or silenced now.
    public func inMaintenance(_ id: String) -> Bool {
        let date = now()
        return machine.withLock { $0.inMaintenance(id, at: date) }
    }

    /// The streams in maintenance or silenced now (for the stream list's `maintenance` flag).
    public func streamsInMaintenance() -> Set<String> {
        let date = now()
        return machine.withLock { $0.streamsInMaintenance(at: date) }
    }

    /// Each stream's maintenance-window intervals overlapping [from, to) (left out of its uptime).
    public func maintenanceIntervals(from: Date, to: Date) -> [String: [(start: Date, end: Date)]] {
        machine.withLock { $0.maintenanceIntervals(from: from, to: to) }
    }

    /// Acknowledges an open incident; false when there is none with that id.
    public func acknowledge(_ id: Int64, by user: String, comment: String) async throws -> Bool {
        if let election, !election.isLeading, let storage {
            // Another dashboard notifies: the acknowledgement is stored for it to adopt at its next tick.
            guard var incident = try await storage.incidents(open: true, stream: nil, from: nil, to: nil, limit: 1000)
                .first(where: { $0.incident.id == id })?.incident else { return false }
            guard incident.acknowledgedBy == nil else { return true }
            incident.acknowledgedBy = user
            incident.acknowledgedAt = now()
            incident.acknowledgeComment = comment
            try await storage.save(incident, evidence: nil)
            return true
        }
        let actions = machine.withLock { $0.acknowledge(id, by: user, comment: comment, at: now()) }
        try await perform(actions, at: now())
        return !actions.isEmpty
    }

    /// Silences matching streams until `until` (ad hoc maintenance); stored, so a restart keeps it.
    public func silence(_ match: StreamMatch, until: Date, comment: String, by user: String) async throws -> Silence {
        try await restoreOnce()
        // With several dashboards, numbered after every stored one too.
        let stored = election == nil ? [] : (try await storage?.silences(now: now()) ?? [])
        let silence = machine.withLock { machine in
            let last = max(machine.silences.map(\.id).max() ?? 0, stored.map(\.id).max() ?? 0)
            let silence = Silence(id: last + 1, match: match, until: until, comment: comment, by: user)
            machine.addSilence(silence)
            return silence
        }
        try await storage?.save(silence)
        return silence
    }

    public var silences: [Silence] {
        let date = now()
        return machine.withLock { $0.silences.filter { $0.until > date } }
    }

    public func removeSilence(_ id: Int64) async throws {
        machine.withLock { $0.removeSilence(id: id) }
        try await storage?.deleteSilence(id)
    }

    /// Sends a test notice to one channel (the dashboard's and `notify test`'s "send test notification").
    public func sendTest(channel: String) async -> Notifier.Outcome {
        let date = now()
        let incident = Incident(id: 0, scope: .stream, key: "test", title: "StreamPulse can reach this channel", streams: [], failing: [],
                                started: date, status: .down, reason: "test", phase: nil, message: "This is a test notification.")
        let notice = IncidentNotice(kind: .test, incident: incident, channels: [channel])
        let text = NoticeText(notice, names: [:], timeZone: timeZone.withLock { $0 }, now: date, evidence: nil)
        return await notifier.send(notice, text: text).first ?? Notifier.Outcome(channel: channel, delivered: false, retries: 0, error: "not sent")
    }

    private func restoreOnce() async throws {
        guard restored.withLock({ done in defer { done = true }; return !done }) else { return }
        guard let storage else { return }
        let open = try await storage.incidents(open: true, stream: nil, from: nil, to: nil, limit: 1000).map(\.incident)
        let last = try await storage.lastIncidentID()
        let silences = try await storage.silences(now: now())
        machine.withLock { machine in
            machine.forgetIncidents()
            machine.bumpIDs(after: last)
            for incident in open { machine.restore(incident) }
            for silence in silences where !machine.silences.contains(where: { $0.id == silence.id }) { machine.addSilence(silence) }
        }
    }

    private func perform(_ actions: [IncidentAction], at date: Date) async throws {
        for action in actions {
            switch action {
            case .save(let incident):
                try await save(incident)
            case .notify(let notice):
                let evidence = try await evidencePicture(notice.incident)
                let companion = try await companionPicture(notice.incident, evidence: evidence)
                let names = machine.withLock { machine in notice.incident.streams.reduce(into: [String: String]()) { $0[$1] = machine.name(of: $1) } }
                let text = NoticeText(notice, names: names, timeZone: timeZone.withLock { $0 }, now: date, evidence: evidence?.jpeg, companion: companion)
                let outcomes = await notifier.send(notice, text: text)
                var updates: [IncidentAction] = []
                for outcome in outcomes {
                    updates += machine.withLock { machine in
                        machine.recordDelivery(notice.incident.id, channel: outcome.channel) { state in
                            state.retries += outcome.retries
                            state.lastAt = date
                            if outcome.delivered { state.sent += 1; state.state = "sent"; state.lastError = nil } else {
                                state.failed += 1
                                state.state = "failed"
                                state.lastError = outcome.error
                            }
                        }
                    }
                }
                for case .save(let incident) in updates { try await save(incident) }
            }
        }
    }

    private func save(_ incident: Incident) async throws {
        guard let storage else { return }
        // The evidence is taken once, when the incident is first stored.
        let isNew = incident.updates.count == 1
        let evidence = isNew ? try await evidencePicture(incident) : nil
        try await storage.save(incident, evidence: evidence.map { ($0.jpeg, $0.at) })
    }

    /// The picture to show beside the evidence: the reference view when the view no longer matches it
    /// (scene changed, obstructed, blurred), the last picture of the window when it is frozen.
    private func companionPicture(_ incident: Incident, evidence: (jpeg: Data, at: Date, last: Data?)?) async throws -> CompanionPicture? {
        guard let store = pictures, let first = incident.streams.first, evidence != nil else { return nil }
        switch incident.reason {
        case .sceneChanged, .obstructed, .blurred:
            guard let reference = try await store.referencePicture(of: first) else { return nil }
            return CompanionPicture(name: "reference.jpg", caption: "the picture now (evidence.jpg) beside the reference view (reference.jpg)",
                                    jpeg: reference.jpeg)
        case .frozen:
            guard let last = evidence?.last else { return nil }
            return CompanionPicture(name: "last.jpg", caption: "the first (evidence.jpg) and the last (last.jpg) picture of the frozen window",
                                    jpeg: last)
        default:
            return nil
        }
    }

    private func evidencePicture(_ incident: Incident) async throws -> (jpeg: Data, at: Date, last: Data?)? {
        guard let store = pictures, let first = incident.streams.first else { return nil }
        if let failing = try await store.evidence(stream: first, good: false, since: incident.started) { return failing }
        return try await store.evidence(stream: first, good: true, since: nil)
    }

    /// The camera host of a (masked) stream URL: what lies between `://` (after any user info) and the port or path.
    static func host(of url: String) -> String {
        var rest = Substring(url)
        if let scheme = rest.range(of: "://") { rest = rest[scheme.upperBound...] }
        if let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) { rest = rest[..<slash] }
        if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") { return String(rest[...close]).lowercased() }
        if let colon = rest.lastIndex(of: ":") { rest = rest[..<colon] }
        return rest.lowercased()
    }
}
