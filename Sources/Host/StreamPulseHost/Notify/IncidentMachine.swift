import Foundation
import StreamPulseCore

/// A first-class record of one outage: opened when a stream (or several on one camera host, or nearly
/// the whole fleet) has been failing for the grace time, updated as members fail and recover, resolved
/// when every member is back. Notifications, the incident view and the availability report read it.
public struct Incident: Sendable, Codable, Equatable {
    public enum Scope: String, Sendable, Codable {
        /// One stream.
        case stream
        /// Several streams of one camera host or NVR.
        case host
        /// Nearly every stream at once: the monitor itself seems to have lost its network.
        case monitor
        /// Every stream of a site none of whose agents reports any more (a dashboard over PostgreSQL).
        case site
    }

    public struct Update: Sendable, Codable, Equatable {
        public var at: Date
        public var text: String
    }

    public var id: Int64
    public var scope: Scope
    /// The stream id, the host, "monitor", or the site.
    public var key: String
    public var title: String
    /// Every stream that took part, and those failing now.
    public var streams: [String]
    public var failing: [String]
    public var started: Date
    public var status: StreamStatus
    public var reason: Reason
    public var phase: Phase?
    public var message: String
    public var acknowledgedBy: String?
    public var acknowledgedAt: Date?
    public var acknowledgeComment: String?
    public var resolved: Date?
    public var updates: [Update] = []
    /// Per channel: how delivery went ("Slack: failed, 3 retries").
    public var deliveries: [String: DeliveryState] = [:]

    public var isOpen: Bool { resolved == nil }

    /// "35 min", "2 h 5 min", "40 s".
    public static func describe(_ seconds: TimeInterval) -> String {
        let total = Int(seconds.rounded())
        if total < 60 { return "\(total) s" }
        let minutes = total / 60
        if minutes < 60 { return "\(minutes) min" }
        return minutes % 60 == 0 ? "\(minutes / 60) h" : "\(minutes / 60) h \(minutes % 60) min"
    }
}

/// How a channel's deliveries for one incident went.
public struct DeliveryState: Sendable, Codable, Equatable {
    public var sent: Int = 0
    public var failed: Int = 0
    public var retries: Int = 0
    public var lastError: String?
    public var lastAt: Date?
    /// "sent", "failed" or "retrying".
    public var state: String = "pending"
}

/// What the machine asks its runner to do.
public enum IncidentAction: Sendable, Equatable {
    /// Store this incident (new or changed).
    case save(Incident)
    /// Tell `channels` about the incident.
    case notify(IncidentNotice)
}

/// One notice to send: the incident as it is, why, and to which channels.
public struct IncidentNotice: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable { case opened, reminder, resolved, test }
    public var kind: Kind
    public var incident: Incident
    public var channels: [String]
}

/// The stream facts incidents and rules match on.
public struct WatchedStream: Sendable, Equatable {
    public var id: String
    public var name: String
    public var host: String
    public var group: String?
    public var tags: [String]
    public var enabled: Bool = true
    public var site: String? = nil
}

/// An ad hoc silence from the dashboard or API: like maintenance, until `until`.
public struct Silence: Sendable, Codable, Equatable {
    public var id: Int64
    public var match: StreamMatch
    public var until: Date
    public var comment: String
    public var by: String
}

/// Incidents as a pure state machine: events in (stream list, state changes, ticks of its clock,
/// acknowledgements), actions out (store, notify). No clock, no I/O: tests drive it on virtual time.
public struct IncidentMachine: Sendable {
    public var rules: [NotifyRule]
    public var openAfter: Duration
    public var maintenance: [MaintenanceWindow]
    public var silences: [Silence] = []
    /// Share of enabled streams failing at once that is taken as the monitor's own network loss, when at
    /// least `monitorMinimum` streams are watched and the failures span at least half of the camera hosts
    /// (all streams of one NVR failing is that NVR's incident, however large its share of the fleet).
    public var monitorShare = 0.9
    public var monitorMinimum = 5

    private(set) var streams: [String: WatchedStream] = [:]
    private(set) var states: [String: StreamState] = [:]
    /// When each failing stream started failing (its first non-ok result after an ok).
    private(set) var failingSince: [String: Date] = [:]
    public private(set) var incidents: [Int64: Incident] = [:]
    /// Stream id → the open incident it belongs to.
    private var memberOf: [String: Int64] = [:]
    /// Incident id → rule index → when that rule last notified.
    private var notified: [Int64: [Int: Date]] = [:]
    private var nextID: Int64
    /// Incidents updated outside a tick (a reason change), stored at the next tick.
    private var changed: Set<Int64> = []

    public init(notify: NotifyConfig, maintenance: [MaintenanceWindow], nextID: Int64 = 1) {
        self.rules = notify.rules
        self.openAfter = notify.openAfter
        self.maintenance = maintenance
        self.nextID = nextID
    }

    public var openIncidents: [Incident] { incidents.values.filter(\.isOpen).sorted { $0.id < $1.id } }

    /// A stream's display name, if it is in the config.
    public func name(of id: String) -> String? { streams[id]?.name }

    /// Ids continue after the highest one stored.
    public mutating func bumpIDs(after last: Int64) { nextID = max(nextID, last + 1) }

    /// Drops every incident held (a dashboard just elected notifier restores them from storage next).
    public mutating func forgetIncidents() {
        incidents = [:]
        memberOf = [:]
        notified = [:]
        changed = []
    }

    /// Takes back an open incident read from the database after a restart.
    public mutating func restore(_ incident: Incident) {
        incidents[incident.id] = incident
        for id in incident.failing { memberOf[id] = incident.id }
        nextID = max(nextID, incident.id + 1)
        // Notified already when it was stored: no second "opened" after a restart.
        notified[incident.id] = Dictionary(uniqueKeysWithValues: rules.indices.map { ($0, incident.started) })
    }

    /// The config's streams; streams that left it leave their incidents.
    public mutating func setStreams(_ list: [WatchedStream]) {
        streams = Dictionary(list.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for id in states.keys where streams[id] == nil {
            states[id] = nil
            failingSince[id] = nil
        }
    }

    public mutating func update(config notify: NotifyConfig, maintenance: [MaintenanceWindow]) {
        rules = notify.rules
        openAfter = notify.openAfter
        self.maintenance = maintenance
    }

    /// A stream's new state.
    public mutating func stateChanged(_ id: String, _ state: StreamState, at: Date) {
        // A member of an open incident failing for another reason: the incident says so.
        if let incidentID = memberOf[id], var incident = incidents[incidentID], incident.isOpen, isFailing(state),
           let old = states[id], old.reason != state.reason || old.status != state.status {
            incident.updates.append(.init(at: at, text: "\(streams[id]?.name ?? id): \(old.reason.rawValue) → \(state.reason.rawValue)"))
            if incident.scope == .stream {
                incident.status = state.status
                incident.reason = state.reason
                incident.phase = state.phase
                incident.message = state.message
            }
            incidents[incidentID] = incident
            changed.insert(incidentID)
        }
        states[id] = state
        if isFailing(state) {
            if failingSince[id] == nil { failingSince[id] = state.since ?? at }
        } else if state.status == .ok {
            failingSince[id] = nil
        }
    }

    /// Whether the stream is inside a maintenance window or silence at `date`.
    public func inMaintenance(_ id: String, at date: Date) -> Bool {
        guard let stream = streams[id] else { return false }
        return maintenance.contains { $0.isActive(at: date) && $0.match.matches(id: id, group: stream.group, tags: stream.tags) }
            || silences.contains { date < $0.until && $0.match.matches(id: id, group: stream.group, tags: stream.tags) }
    }

    /// Every stream inside a maintenance window or silence at `date`; each window is evaluated once.
    public func streamsInMaintenance(at date: Date) -> Set<String> {
        let matches = maintenance.filter { $0.isActive(at: date) }.map(\.match) + silences.filter { date < $0.until }.map(\.match)
        guard !matches.isEmpty else { return [] }
        return Set(streams.values.filter { stream in matches.contains { $0.matches(id: stream.id, group: stream.group, tags: stream.tags) } }.map(\.id))
    }

    /// Each stream's maintenance-window intervals overlapping [from, to); silences are not history.
    public func maintenanceIntervals(from: Date, to: Date) -> [String: [(start: Date, end: Date)]] {
        var result: [String: [(start: Date, end: Date)]] = [:]
        for window in maintenance {
            let occurrences = window.occurrences(from: from, to: to)
            guard !occurrences.isEmpty else { continue }
            for stream in streams.values where window.match.matches(id: stream.id, group: stream.group, tags: stream.tags) {
                result[stream.id, default: []] += occurrences
            }
        }
        return result
    }

    public mutating func addSilence(_ silence: Silence) { silences.append(silence) }
    public mutating func removeSilence(id: Int64) { silences.removeAll { $0.id == id } }

    /// Acknowledges an open incident (no more reminders).
    public mutating func acknowledge(_ id: Int64, by user: String, comment: String, at: Date) -> [IncidentAction] {
        guard var incident = incidents[id], incident.isOpen else { return [] }
        incident.acknowledgedBy = user
        incident.acknowledgedAt = at
        incident.acknowledgeComment = comment
        incident.updates.append(.init(at: at, text: "Acknowledged by \(user)\(comment.isEmpty ? "" : ": \(comment)")"))
        incidents[id] = incident
        return [.save(incident)]
    }

    /// Records how a delivery went on its incident.
    public mutating func recordDelivery(_ id: Int64, channel: String, _ change: (inout DeliveryState) -> Void) -> [IncidentAction] {
        guard var incident = incidents[id] else { return [] }
        change(&incident.deliveries[channel, default: DeliveryState()])
        incidents[id] = incident
        return [.save(incident)]
    }

    func isFailing(_ state: StreamState) -> Bool { state.status == .down || state.status == .degraded }

    /// Opens, grows, resolves and notifies as of `now`.
    public mutating func tick(now: Date) -> [IncidentAction] {
        var actions: [IncidentAction] = changed.sorted().compactMap { incidents[$0].map { .save($0) } }
        changed = []
        let grace = TimeInterval(openAfter.components.seconds) + TimeInterval(openAfter.components.attoseconds) / 1e18
        actions += unreachableSites(now: now, grace: grace)
        // Only failing streams are looked at (a tick costs nothing when the fleet is fine); the whole
        // fleet only when the monitor-wide share must be judged.
        let inWindow = streamsInMaintenance(at: now)
        let failing = failingSince.keys.compactMap { streams[$0] }
            .filter { $0.enabled && !inWindow.contains($0.id) && (states[$0.id].map(isFailing) ?? false) }
        let ready = failing.filter { stream in
            guard memberOf[stream.id] == nil, states[stream.id]?.pending == false, let since = failingSince[stream.id] else { return false }
            return now.timeIntervalSince(since) >= grace
        }.sorted { $0.id < $1.id }

        if !ready.isEmpty {
            let watched = streams.values.filter { $0.enabled && !inWindow.contains($0.id) }
            let hosts = Set(watched.map(\.host)), failingHosts = Set(failing.map(\.host))
            let monitorWide = watched.count >= monitorMinimum && Double(failing.count) >= monitorShare * Double(watched.count)
                && failingHosts.count >= 2 && Double(failingHosts.count) >= 0.5 * Double(hosts.count)
            if monitorWide {
                let members = failing.map(\.id).sorted()
                actions += join(members, key: "monitor", scope: .monitor, now: now,
                                title: "The monitor seems to have lost its network: \(members.count) of \(watched.count) streams fail at once")
            } else {
                var byHost: [String: [WatchedStream]] = [:]
                for stream in ready { byHost[stream.host, default: []].append(stream) }
                for (host, streamsHere) in byHost.sorted(by: { $0.key < $1.key }) {
                    let failingHere = failing.filter { $0.host == host && memberOf[$0.id] == nil }
                    let hostOpen = incidents.values.contains { $0.isOpen && $0.scope == .host && $0.key == host }
                    if hostOpen || failingHere.count >= 2 {
                        let members = failingHere.map(\.id).sorted()
                        let total = streams.values.filter { $0.host == host }.count
                        actions += join(members, key: host, scope: .host, now: now,
                                        title: "Camera host \(host): \(members.count) of \(total) streams fail")
                    } else {
                        for stream in streamsHere {
                            actions += join([stream.id], key: stream.id, scope: .stream, now: now, title: "\(stream.name): \(describe(stream.id))")
                        }
                    }
                }
            }
        }
        actions += recoverAndResolve(now: now)
        actions += notifications(now: now)
        return actions
    }

    /// One incident per site whose streams are `site_unreachable` (its agents stopped reporting) for the
    /// grace time: the site's link or agents are down, not its cameras. A stream already in another incident
    /// stays there.
    private mutating func unreachableSites(now: Date, grace: TimeInterval) -> [IncidentAction] {
        var bySite: [String: [String]] = [:]
        for (id, state) in states where state.reason == .siteUnreachable {
            guard let stream = streams[id], stream.enabled, let site = stream.site else { continue }
            if let incident = memberOf[id], incidents[incident]?.scope != .site || incidents[incident]?.key != site { continue }
            bySite[site, default: []].append(id)
        }
        var actions: [IncidentAction] = []
        for (site, members) in bySite.sorted(by: { $0.key < $1.key }) {
            let since = members.compactMap { states[$0]?.since }.min() ?? now
            let open = incidents.values.contains { $0.isOpen && $0.scope == .site && $0.key == site }
            guard open || now.timeIntervalSince(since) >= grace else { continue }
            let total = streams.values.filter { $0.site == site && $0.enabled }.count
            actions += join(members.sorted(), key: site, scope: .site, now: now,
                            title: "Site \(site) unreachable: none of its agents reports; \(members.count) of \(total) streams not known")
        }
        return actions
    }

    private func describe(_ id: String) -> String {
        guard let state = states[id] else { return "failing" }
        return state.status == .down ? "no pictures (\(state.reason.rawValue))" : "\(state.status.rawValue) (\(state.reason.rawValue))"
    }

    /// Adds streams to the open incident of `key`, or opens one.
    private mutating func join(_ members: [String], key: String, scope: Incident.Scope, now: Date, title: String) -> [IncidentAction] {
        if var open = incidents.values.first(where: { $0.isOpen && $0.key == key && $0.scope == scope }) {
            let new = members.filter { !open.failing.contains($0) }
            guard !new.isEmpty else { return [] }
            for id in new {
                memberOf[id] = open.id
                if !open.streams.contains(id) { open.streams.append(id) }
                open.failing.append(id)
            }
            open.title = title
            open.updates.append(.init(at: now, text: "Also failing: \(new.joined(separator: ", "))"))
            incidents[open.id] = open
            return [.save(open)]
        }
        let first = members.compactMap { id in states[id].map { (id, $0) } }
            .min { (failingSince[$0.0] ?? now) < (failingSince[$1.0] ?? now) }
        let state = first?.1 ?? .initial
        let started = scope == .site ? members.compactMap { states[$0]?.since }.min() ?? now : members.compactMap { failingSince[$0] }.min() ?? now
        let incident = Incident(
            id: nextID, scope: scope, key: key, title: title, streams: members, failing: members, started: started,
            // A site out of reach is an outage to be told like a dead camera (its streams are grey: not known).
            status: scope == .site || members.contains { states[$0]?.status == .down } ? .down : .degraded, reason: state.reason, phase: state.phase,
            message: state.message, updates: [.init(at: now, text: "Opened: \(title)")])
        nextID += 1
        incidents[incident.id] = incident
        for id in members { memberOf[id] = incident.id }
        return [.save(incident)]
    }

    private mutating func recoverAndResolve(now: Date) -> [IncidentAction] {
        var actions: [IncidentAction] = []
        for var incident in openIncidents {
            let recovered = incident.failing.filter { id in
                if !streams.isEmpty, streams[id] == nil { return true }  // left the config
                // Not checked since a restart: still failing as far as anyone knows.
                guard let state = states[id] else { return false }
                // A site's stream is back once its agents report it again, whatever its verdict.
                if incident.scope == .site { return state.reason != .siteUnreachable }
                return state.status == .ok
            }
            guard !recovered.isEmpty else { continue }
            incident.failing.removeAll { recovered.contains($0) }
            for id in recovered { memberOf[id] = nil }
            if incident.failing.isEmpty {
                incident.resolved = now
                incident.updates.append(.init(at: now, text: "Resolved after \(Incident.describe(now.timeIntervalSince(incident.started)))"))
            } else {
                incident.updates.append(.init(at: now, text: "Recovered: \(recovered.joined(separator: ", "))"))
            }
            incidents[incident.id] = incident
            actions.append(.save(incident))
            if !incident.isOpen {
                // A recovery notice to each rule that told about the outage.
                let told = (notified[incident.id] ?? [:]).keys.sorted().filter { rules.indices.contains($0) && rules[$0].resolved }
                let channels = told.flatMap { rules[$0].channels }
                if !channels.isEmpty { actions.append(.notify(IncidentNotice(kind: .resolved, incident: incident, channels: unique(channels)))) }
                notified[incident.id] = nil
            }
        }
        return actions
    }

    private mutating func notifications(now: Date) -> [IncidentAction] {
        var actions: [IncidentAction] = []
        for incident in openIncidents {
            var opened: [String] = [], reminders: [String] = []
            for (index, rule) in rules.enumerated() where matches(rule, incident) {
                let grace = TimeInterval(rule.grace.components.seconds)
                if let last = notified[incident.id]?[index] {
                    guard let every = rule.repeatEvery, incident.acknowledgedAt == nil,
                          now.timeIntervalSince(last) >= TimeInterval(every.components.seconds) else { continue }
                    notified[incident.id, default: [:]][index] = now
                    reminders += rule.channels
                } else if now.timeIntervalSince(incident.started) >= grace {
                    notified[incident.id, default: [:]][index] = now
                    opened += rule.channels
                }
            }
            if !opened.isEmpty { actions.append(.notify(IncidentNotice(kind: .opened, incident: incident, channels: unique(opened)))) }
            if !reminders.isEmpty { actions.append(.notify(IncidentNotice(kind: .reminder, incident: incident, channels: unique(reminders)))) }
        }
        return actions
    }

    /// Whether a rule covers the incident: any member matches its streams/groups/tags, and the incident's
    /// status and reason are among the rule's.
    func matches(_ rule: NotifyRule, _ incident: Incident) -> Bool {
        guard rule.statuses.contains(incident.status) else { return false }
        if !rule.reasons.isEmpty, !rule.reasons.contains(incident.reason.rawValue) { return false }
        let match = StreamMatch(streams: rule.streams, groups: rule.groups, tags: rule.tags)
        return incident.streams.contains { id in
            guard let stream = streams[id] else { return match.isEverything }
            return match.matches(id: id, group: stream.group, tags: stream.tags)
        }
    }

    private func unique(_ names: [String]) -> [String] {
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }
}
