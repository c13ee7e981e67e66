/// Schedule lag (start time minus due time) of the most recent probes, for benchmarks and `/api/engine`.
/// A fixed ring of 65,536 entries; percentiles are computed on demand.
public struct LagWindow: Sendable {
    private var lags: [(id: String, seconds: Double)] = []
    private var next = 0
    private let capacity = 65_536

    public init() {}

    public mutating func record(_ id: String, seconds: Double) {
        if lags.count < capacity { lags.append((id, seconds)) } else { lags[next % capacity] = (id, seconds) }
        next += 1
    }

    /// p50 and p99 in milliseconds over the window, optionally of some streams only.
    public func percentiles(include: ((String) -> Bool)? = nil) -> (p50: Double, p99: Double) {
        let sorted = (include.map { keep in lags.filter { keep($0.id) } } ?? lags).map(\.seconds).sorted()
        func pct(_ q: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * q))] * 1000 }
        return (pct(0.5), pct(0.99))
    }

    public mutating func reset() {
        lags.removeAll()
        next = 0
    }
}
