import Foundation
import StreamPulseCore

/// Honest uptime: the share of *time* a stream delivered pictures, from its state intervals — not the
/// share of checks (failing streams are checked less often under backoff, which made a camera down half
/// the day show ~90 %). Time the monitor was not running is unknown, not up; maintenance is left out.
/// Pure: tests run it on virtual time.
public struct Availability: Sendable, Equatable, Codable {
    /// Seconds ok (pictures), failing (down, degraded, pending), unknown (monitor not running, not checked),
    /// and in maintenance, within the window.
    public var up: Double = 0
    public var down: Double = 0
    public var unknown: Double = 0
    public var maintenance: Double = 0
    /// The longest continuous failing stretch the monitor saw, in seconds.
    public var longestOutage: Double = 0

    /// up / (up + down); nil when nothing was observed.
    public var ratio: Double? { up + down > 0 ? up / (up + down) : nil }

    /// One stream's state as of a time: `failing` for down, degraded and pending.
    public enum State: Sendable, Equatable { case up, failing, unknown }

    /// - Parameters:
    ///   - before: the stream's last change before the window, if any.
    ///   - changes: its changes inside the window, oldest first.
    ///   - runs: when the monitor was running (start, end), oldest first; each start resets the state to
    ///     unknown until the run's first change.
    ///   - excluded: maintenance intervals of this stream.
    public static func compute(from: Date, to: Date, before: (at: Date, state: State)?, changes: [(at: Date, state: State)],
                               runs: [(start: Date, end: Date)], excluded: [(start: Date, end: Date)]) -> Availability {
        var result = Availability()
        guard to > from else { return result }
        // Events: run starts (state → unknown) and changes; the state holds between events.
        enum Event { case runStart, change(State) }
        var events: [(Date, Int, Event)] = runs.map { ($0.start, 0, .runStart) }
        events += (before.map { [$0] } ?? []).map { ($0.at, 1, .change($0.state)) }
        events += changes.map { ($0.at, 1, .change($0.state)) }
        events.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        var state = State.unknown
        var cursor = from
        var index = 0
        var outage: Double = 0
        while index < events.count, events[index].0 <= from {
            if case .change(let s) = events[index].2 { state = s } else { state = .unknown }
            index += 1
        }
        func add(_ start: Date, _ end: Date, _ state: State) {
            guard end > start else { return }
            // Split the piece into observed (inside a run) and not; subtract maintenance.
            for (piece, observed) in split(start, end, by: runs) {
                for (part, inMaintenance) in split(piece.0, piece.1, by: excluded) {
                    let seconds = part.1.timeIntervalSince(part.0)
                    if inMaintenance { result.maintenance += seconds; outage = 0 }
                    else if !observed { result.unknown += seconds; outage = 0 }
                    else {
                        switch state {
                        case .up: result.up += seconds; outage = 0
                        case .failing:
                            result.down += seconds
                            outage += seconds
                            result.longestOutage = max(result.longestOutage, outage)
                        case .unknown: result.unknown += seconds; outage = 0
                        }
                    }
                }
            }
        }
        while index < events.count, events[index].0 < to {
            add(cursor, events[index].0, state)
            cursor = events[index].0
            if case .change(let s) = events[index].2 { state = s } else { state = .unknown }
            index += 1
        }
        add(cursor, to, state)
        return result
    }

    /// Cuts [start, end) into pieces inside and outside `intervals` (which may overlap).
    static func split(_ start: Date, _ end: Date, by intervals: [(start: Date, end: Date)]) -> [((Date, Date), Bool)] {
        let inside = intervals.filter { $0.end > start && $0.start < end }
            .map { (max($0.start, start), min($0.end, end)) }.sorted { $0.0 < $1.0 }
        var merged: [(Date, Date)] = []
        for piece in inside {
            if let last = merged.last, piece.0 <= last.1 { merged[merged.count - 1].1 = max(last.1, piece.1) } else { merged.append(piece) }
        }
        var pieces: [((Date, Date), Bool)] = []
        var cursor = start
        for piece in merged {
            if piece.0 > cursor { pieces.append(((cursor, piece.0), false)) }
            pieces.append(((piece.0, piece.1), true))
            cursor = piece.1
        }
        if cursor < end { pieces.append(((cursor, end), false)) }
        return pieces
    }

    /// The state a stored change means.
    public static func state(status: String, pending: Bool) -> State {
        if pending { return .failing }
        switch status {
        case "ok": return .up
        case "down", "degraded": return .failing
        default: return .unknown
        }
    }
}

extension MaintenanceWindow {
    /// The window's intervals that overlap [from, to).
    public func occurrences(from: Date, to: Date) -> [(start: Date, end: Date)] {
        switch schedule {
        case .once(let start, let end):
            return end > from && start < to ? [(start, end)] : []
        case .weekly(let days, let minuteOfDay, let duration):
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = timeZone
            let length = TimeInterval(duration.components.seconds)
            var result: [(start: Date, end: Date)] = []
            var day = calendar.startOfDay(for: from.addingTimeInterval(-length))
            while day < to {
                if days.contains(calendar.component(.weekday, from: day)) {
                    var parts = calendar.dateComponents([.year, .month, .day], from: day)
                    parts.hour = minuteOfDay / 60
                    parts.minute = minuteOfDay % 60
                    if let start = calendar.date(from: parts), start < to, start.addingTimeInterval(length) > from {
                        result.append((start, start.addingTimeInterval(length)))
                    }
                }
                guard let next = calendar.date(byAdding: .day, value: 1, to: day) else { break }
                day = next
            }
            return result
        }
    }
}
