import Foundation
import Yams

/// Which streams a maintenance window, silence or rule covers: any listed stream id, group or tag
/// (empty lists: every stream).
public struct StreamMatch: Sendable, Equatable, Codable {
    public var streams: [String] = []
    public var groups: [String] = []
    public var tags: [String] = []

    public init(streams: [String] = [], groups: [String] = [], tags: [String] = []) {
        self.streams = streams
        self.groups = groups
        self.tags = tags
    }

    public var isEverything: Bool { streams.isEmpty && groups.isEmpty && tags.isEmpty }

    public func matches(id: String, group: String?, tags streamTags: [String]) -> Bool {
        if isEverything { return true }
        return streams.contains(id) || (group.map { groups.contains($0) } ?? false) || streamTags.contains { tags.contains($0) }
    }
}

/// `maintenance:` — planned time when a stream's failures are expected: probing goes on, the stream shows
/// "maintenance", nothing is notified and the time does not count against uptime.
///
/// ```yaml
/// maintenance:
///   - name: nightly NVR reboot
///     match: { groups: [lobby] }          # streams, groups, tags
///     weekly: { days: [mon, tue, wed, thu, fri], at: "03:00", duration: 30m }
///     timezone: Europe/Berlin             # default: settings.timezone
///   - name: re-cabling
///     match: { streams: [gate] }
///     from: "2026-12-05 08:00"            # one-off, local time in `timezone` (or ISO 8601 with an offset)
///     to: "2026-12-05 12:00"
/// ```
public struct MaintenanceWindow: Sendable, Equatable {
    public enum Schedule: Sendable, Equatable {
        case once(from: Date, to: Date)
        /// Weekdays (1 = Sunday … 7 = Saturday, as `Calendar`), start minute of the day, length.
        case weekly(days: Set<Int>, minuteOfDay: Int, duration: Duration)
    }

    public var name: String
    public var match: StreamMatch
    public var schedule: Schedule
    public var timeZone: TimeZone

    /// Whether `date` falls inside the window.
    public func isActive(at date: Date) -> Bool {
        switch schedule {
        case .once(let from, let to):
            return date >= from && date < to
        case .weekly(let days, let minuteOfDay, let duration):
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = timeZone
            let length = Double(duration.components.seconds)
            // A window that started on one of the last days may still be running (e.g. 23:30 for 2 h).
            let lookBack = Int((length / 86_400).rounded(.up))
            for back in 0...lookBack {
                guard let day = calendar.date(byAdding: .day, value: -back, to: date) else { continue }
                guard days.contains(calendar.component(.weekday, from: day)) else { continue }
                var parts = calendar.dateComponents([.year, .month, .day], from: day)
                parts.hour = minuteOfDay / 60
                parts.minute = minuteOfDay % 60
                guard let start = calendar.date(from: parts) else { continue }
                if date >= start && date < start.addingTimeInterval(length) { return true }
            }
            return false
        }
    }
}

extension ConfigParser {
    static let maintenanceKeys = ["name", "match", "weekly", "from", "to", "timezone"]
    static let weekdays = ["sun": 1, "mon": 2, "tue": 3, "wed": 4, "thu": 5, "fri": 6, "sat": 7]

    mutating func parseMaintenance(_ node: Node, defaultTimeZone: String) -> [MaintenanceWindow] {
        guard let list = node.sequence else { problem(node, "maintenance must be a list of windows"); return [] }
        var windows: [MaintenanceWindow] = []
        for item in list {
            guard let map = item.mapping else { problem(item, "each maintenance window must be a mapping"); continue }
            var name = "maintenance"
            var match = StreamMatch()
            var zone = TimeZone(identifier: defaultTimeZone) ?? .gmt
            var weekly: Node?, from: Node?, to: Node?
            for (key, value) in map {
                switch key.string ?? "" {
                case "name": name = string(value) ?? name
                case "match": match = parseMatch(value)
                case "weekly": weekly = value
                case "from": from = value
                case "to": to = value
                case "timezone":
                    if let id = string(value) {
                        if let found = TimeZone(identifier: id) { zone = found } else { problem(value, "unknown IANA timezone '\(id)'") }
                    }
                default: unknownKey(key, key.string ?? "", Self.maintenanceKeys)
                }
            }
            let schedule: MaintenanceWindow.Schedule?
            if let weekly {
                if from != nil || to != nil { problem(item, "maintenance '\(name)': use weekly or from/to, not both") }
                schedule = parseWeekly(weekly, name: name)
            } else if let from, let to {
                if let start = localDate(from, zone), let end = localDate(to, zone) {
                    if end <= start { problem(to, "maintenance '\(name)': to must be after from"); schedule = nil } else { schedule = .once(from: start, to: end) }
                } else {
                    schedule = nil
                }
            } else {
                problem(item, "maintenance '\(name)' needs weekly: {days, at, duration} or from and to")
                schedule = nil
            }
            if let schedule { windows.append(MaintenanceWindow(name: name, match: match, schedule: schedule, timeZone: zone)) }
        }
        return windows
    }

    mutating func parseMatch(_ node: Node) -> StreamMatch {
        var match = StreamMatch()
        guard let map = node.mapping else { problem(node, "match must be a mapping with streams, groups or tags"); return match }
        for (key, value) in map {
            switch key.string ?? "" {
            case "streams": match.streams = stringList(value)
            case "groups": match.groups = stringList(value)
            case "tags": match.tags = stringList(value)
            default: unknownKey(key, key.string ?? "", ["streams", "groups", "tags"])
            }
        }
        return match
    }

    private mutating func parseWeekly(_ node: Node, name: String) -> MaintenanceWindow.Schedule? {
        guard let map = node.mapping else { problem(node, "weekly must be a mapping with days, at and duration"); return nil }
        var days = Set<Int>(), minute: Int?, length: Duration?
        for (key, value) in map {
            switch key.string ?? "" {
            case "days":
                for day in stringList(value) {
                    if let number = Self.weekdays[String(day.lowercased().prefix(3))] { days.insert(number) }
                    else { problem(value, "unknown day '\(day)'; use mon, tue, wed, thu, fri, sat, sun") }
                }
            case "at":
                let parts = (string(value) ?? "").split(separator: ":").compactMap { Int($0) }
                if parts.count == 2, (0..<24).contains(parts[0]), (0..<60).contains(parts[1]) { minute = parts[0] * 60 + parts[1] }
                else { problem(value, "at must be HH:MM (24 h)") }
            case "duration": length = duration(value)
            default: unknownKey(key, key.string ?? "", ["days", "at", "duration"])
            }
        }
        if days.isEmpty { days = Set(1...7) }
        guard let minute, let length else { problem(node, "maintenance '\(name)': weekly needs at and duration"); return nil }
        return .weekly(days: days, minuteOfDay: minute, duration: length)
    }

    /// "2026-12-05 08:00" (local in `zone`), "2026-12-05T08:00", or ISO 8601 with an offset.
    private mutating func localDate(_ node: Node, _ zone: TimeZone) -> Date? {
        guard let text = string(node) else { return nil }
        if let date = ISO8601DateFormatter().date(from: text) { return date }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = zone
        for format in ["yyyy-MM-dd HH:mm", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd'T'HH:mm:ss"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: text) { return date }
        }
        problem(node, "'\(text)' is not a time; use \"YYYY-MM-DD HH:MM\" (in the window's timezone) or ISO 8601")
        return nil
    }
}
