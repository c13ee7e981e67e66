import Foundation
import GRDB
import StreamPulseCore

/// The availability report for a period: per stream and per group, availability (time-based), incidents,
/// total downtime, mean time to recovery and the longest outage.
public struct AvailabilityReport: Sendable, Codable, Equatable {
    public struct Row: Sendable, Codable, Equatable {
        /// The stream id, or the group name (`"(no group)"` for streams without one).
        public var key: String
        public var name: String
        public var group: String?
        public var availability: Double?
        public var upSeconds: Double
        public var downSeconds: Double
        public var unknownSeconds: Double
        public var maintenanceSeconds: Double
        public var incidents: Int
        /// Mean duration of the incidents resolved within the period.
        public var mttrSeconds: Double?
        public var longestOutageSeconds: Double
    }

    public var from: Date
    public var to: Date
    public var streams: [Row]
    public var groups: [Row]

    /// RFC 4180 CSV: one line per stream, then one per group (`kind` says which).
    public func csv() -> String {
        func number(_ value: Double?) -> String { value.map { String(format: "%.4f", $0) } ?? "" }
        func seconds(_ value: Double) -> String { String(Int(value.rounded())) }
        func quote(_ text: String) -> String {
            var safe = text
            if let first = safe.first, "=+-@".contains(first) { safe = "'" + safe }
            return safe.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
                ? "\"" + safe.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : safe
        }
        var lines = ["kind,key,name,group,availability,up_s,down_s,unknown_s,maintenance_s,incidents,mttr_s,longest_outage_s"]
        for (kind, rows) in [("stream", streams), ("group", groups)] {
            for r in rows {
                lines.append([kind, quote(r.key), quote(r.name), quote(r.group ?? ""), number(r.availability), seconds(r.upSeconds),
                              seconds(r.downSeconds), seconds(r.unknownSeconds), seconds(r.maintenanceSeconds), String(r.incidents),
                              r.mttrSeconds.map(seconds) ?? "", seconds(r.longestOutageSeconds)].joined(separator: ","))
            }
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }
}

extension SQLiteStore {
    /// The report for [from, to) over `streams` (id, name, group), maintenance left out.
    public func report(from: Date, to: Date, now: Date = Date(), streams: [(id: String, name: String, group: String?)],
                       excluded: (String) -> [(start: Date, end: Date)] = { _ in [] }) async throws -> AvailabilityReport {
        try await Self.report(from: from, to: to, now: now, streams: streams, history: self, incidents: self, excluded: excluded)
    }

    /// The report from any history and incident storage (a dashboard's: PostgreSQL).
    public static func report(from: Date, to: Date, now: Date, streams: [(id: String, name: String, group: String?)],
                              history source: any AvailabilityReading, incidents storage: any IncidentStorage,
                              excluded: (String) -> [(start: Date, end: Date)]) async throws -> AvailabilityReport {
        let end = min(to, now)
        let ids = Set(streams.map(\.id))
        let data = try await source.availabilityHistory(from: from, to: end, now: now)
        let incidents = try await storage.incidents(open: nil, stream: nil, from: from, to: end, limit: 1000).map(\.incident)
        var perStream: [String: [Incident]] = [:]
        for incident in incidents { for id in incident.streams where ids.contains(id) { perStream[id, default: []].append(incident) } }
        func mttr(_ list: [Incident]) -> Double? {
            let durations = list.compactMap { i in i.resolved.map { $0.timeIntervalSince(i.started) } }
            return durations.isEmpty ? nil : durations.reduce(0, +) / Double(durations.count)
        }
        var rows: [AvailabilityReport.Row] = []
        for stream in streams {
            let before = data.before[stream.id].map { (at: $0.0, state: $0.1) }
            let a = Availability.compute(from: from, to: end, before: before, changes: data.changes[stream.id] ?? [], runs: data.runs(of: stream.id),
                                         excluded: excluded(stream.id))
            let mine = perStream[stream.id] ?? []
            rows.append(.init(key: stream.id, name: stream.name, group: stream.group, availability: a.ratio, upSeconds: a.up,
                              downSeconds: a.down, unknownSeconds: a.unknown, maintenanceSeconds: a.maintenance, incidents: mine.count,
                              mttrSeconds: mttr(mine), longestOutageSeconds: a.longestOutage))
        }
        var groups: [AvailabilityReport.Row] = []
        for (group, members) in Dictionary(grouping: rows, by: { $0.group ?? "(no group)" }).sorted(by: { $0.key < $1.key }) {
            let up = members.reduce(0) { $0 + $1.upSeconds }, down = members.reduce(0) { $0 + $1.downSeconds }
            let memberIDs = Set(members.map(\.key))
            let theirs = incidents.filter { $0.streams.contains { memberIDs.contains($0) } }
            groups.append(.init(key: group, name: group, group: group, availability: up + down > 0 ? up / (up + down) : nil, upSeconds: up,
                                downSeconds: down, unknownSeconds: members.reduce(0) { $0 + $1.unknownSeconds },
                                maintenanceSeconds: members.reduce(0) { $0 + $1.maintenanceSeconds }, incidents: theirs.count,
                                mttrSeconds: mttr(theirs), longestOutageSeconds: members.map(\.longestOutageSeconds).max() ?? 0))
        }
        return AvailabilityReport(from: from, to: end, streams: rows, groups: groups)
    }
}
