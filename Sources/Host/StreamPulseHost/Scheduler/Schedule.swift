import StreamPulseCore

/// When each stream is due, and in which mode. A pure state machine driven by a clock value in seconds
/// (virtual in tests, monotonic in the engine): `add`/`remove` streams, take what is `due(at:)`, report
/// `completed`. No I/O, no sleeping.
public struct Schedule: Sendable {
    public struct Plan: Sendable, Equatable {
        public var interval: Duration
        public var deepInterval: Duration
        public var backoffCap: Duration
        /// Whether the stream's plugin offers a quick probe; if not, every check is deep.
        public var quickAvailable: Bool

        public init(interval: Duration, deepInterval: Duration, backoffCap: Duration, quickAvailable: Bool) {
            self.interval = interval
            self.deepInterval = deepInterval
            self.backoffCap = backoffCap
            self.quickAvailable = quickAvailable
        }
    }

    /// A check to run now.
    public struct Due: Sendable, Equatable {
        public var id: String
        public var mode: ProbeMode
        /// When it was due; `now - dueAt` is the schedule lag.
        public var dueAt: Double
    }

    struct Entry: Sendable {
        var plan: Plan
        var nextDue: Double
        var lastDeep: Double?
        var failures = 0
        var inFlight = false
        var generation: Int
    }

    private var entries: [String: Entry] = [:]
    /// Min-heap of (due time, id, generation); stale items are skipped when popped.
    private var heap = Heap()
    private var generations = 0

    public init() {}

    public var count: Int { entries.count }
    public func contains(_ id: String) -> Bool { entries[id] != nil }
    public func failures(of id: String) -> Int? { entries[id]?.failures }
    public func nextDue(of id: String) -> Double? { entries[id].map(\.nextDue) }
    /// The earliest due time of any stream not in flight (drops stale heap entries on the way).
    public mutating func earliestDue() -> Double? {
        while let top = heap.peek() {
            if let entry = entries[top.id], entry.generation == top.generation, !entry.inFlight { return top.due }
            _ = heap.pop()
        }
        return nil
    }

    /// Where in its interval a stream starts, spread deterministically by id so 10,000 streams don't burst.
    public static func offset(for id: String, interval: Duration) -> Double {
        Double(stableHash(id) % 1_000_003) / 1_000_003 * interval.seconds
    }

    /// The first round after start (or after adding a stream) is spread over at most this long, so an
    /// operator sees every stream's status soon even with long intervals; later rounds follow the
    /// stream's phase across its whole interval.
    public var startupSpread: Duration = .seconds(30)

    /// Adds (or replaces) a stream; its first check comes at its spread offset from `now` (within `within`
    /// when given: streams an agent takes over from another are due sooner than a first round's).
    public mutating func add(_ id: String, plan: Plan, now: Double, within: Duration? = nil) {
        let window = min(plan.interval, startupSpread, within ?? startupSpread)
        schedule(id, Entry(plan: plan, nextDue: now + Self.offset(for: id, interval: window), generation: 0))
    }

    /// The first time after `time` that falls on the stream's phase within its interval.
    static func aligned(after time: Double, id: String, interval: Duration) -> Double {
        let period = max(interval.seconds, 0.001)
        let phase = offset(for: id, interval: interval)
        let k = ((time - phase) / period).rounded(.up)
        return phase + k * period
    }

    /// Adds (or replaces) a stream to be checked right away (a changed stream, a credentials change).
    public mutating func addNow(_ id: String, plan: Plan, now: Double) {
        schedule(id, Entry(plan: plan, nextDue: now, generation: 0))
    }

    /// Keeps the stream's timing but changes its plan (for instance its plugin gained a quick probe).
    public mutating func update(_ id: String, plan: Plan) {
        entries[id]?.plan = plan
    }

    /// The stream's last deep check was at `time` (a stream handed over with a verdict another monitor made
    /// from pictures): its next checks are quick until its deep interval from then.
    public mutating func deepDone(_ id: String, at time: Double) {
        entries[id]?.lastDeep = time
    }

    /// The stream's next check is deep, whenever its deep interval falls (a picture mismatch to confirm).
    public mutating func deepNext(_ id: String) {
        entries[id]?.lastDeep = nil
    }

    public mutating func remove(_ id: String) {
        entries[id] = nil
    }

    private mutating func schedule(_ id: String, _ entry: Entry) {
        var entry = entry
        generations += 1
        entry.generation = generations
        entries[id] = entry
        heap.push(.init(due: entry.nextDue, id: id, generation: entry.generation))
    }

    /// Takes every stream due at `now` (marking it in flight), earliest first, at most `limit`.
    public mutating func due(at now: Double, limit: Int = .max) -> [Due] {
        var result: [Due] = []
        while result.count < limit, let top = heap.peek(), top.due <= now {
            _ = heap.pop()
            guard var entry = entries[top.id], entry.generation == top.generation, !entry.inFlight else { continue }
            entry.inFlight = true
            let deepDue = entry.lastDeep.map { now - $0 >= entry.plan.deepInterval.seconds - 0.001 } ?? true
            // A failing stream is always checked deep: a quick OK must not hide a missing picture.
            let mode: ProbeMode = !entry.plan.quickAvailable || deepDue || entry.failures > 0 ? .deep : .quick
            if mode == .deep { entry.lastDeep = now }
            entries[top.id] = entry
            result.append(Due(id: top.id, mode: mode, dueAt: top.due))
        }
        return result
    }

    /// Records the end of a check and schedules the next one. `jitter` in [0, 1) (see `Backoff`).
    public mutating func completed(_ id: String, success: Bool, dueAt: Double, now: Double, jitter: Double) {
        guard var entry = entries[id], entry.inFlight else { return }
        entry.inFlight = false
        entry.failures = success ? 0 : entry.failures + 1
        if success {
            // Back on the stream's phase: exactly one interval later when on time (no drift), otherwise
            // the next slot of its phase at least half an interval away (first round, late checks).
            let onTime = dueAt + entry.plan.interval.seconds
            let phaseOK = abs(Self.aligned(after: dueAt - 0.0005, id: id, interval: entry.plan.interval) - dueAt) < 0.001
            entry.nextDue = phaseOK && onTime > now ? onTime
                : Self.aligned(after: max(now, dueAt + entry.plan.interval.seconds / 2), id: id, interval: entry.plan.interval)
        } else {
            let backoff = Backoff(base: entry.plan.interval, cap: entry.plan.backoffCap)
            entry.nextDue = now + backoff.delay(afterFailures: entry.failures, jitter: jitter).seconds
        }
        schedule(id, entry)
    }

    struct Heap: Sendable {
        struct Item: Sendable { var due: Double; var id: String; var generation: Int }
        private var items: [Item] = []
        func peek() -> Item? { items.first }
        mutating func push(_ item: Item) {
            items.append(item)
            var child = items.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard items[child].due < items[parent].due else { break }
                items.swapAt(child, parent)
                child = parent
            }
        }
        mutating func pop() -> Item? {
            guard !items.isEmpty else { return nil }
            items.swapAt(0, items.count - 1)
            let top = items.removeLast()
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < items.count, items[left].due < items[smallest].due { smallest = left }
                if right < items.count, items[right].due < items[smallest].due { smallest = right }
                if smallest == parent { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
            return top
        }
    }
}
