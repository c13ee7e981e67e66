/// Error-based backoff: consecutive failures stretch the next check exponentially, with jitter, up to a cap.
/// Pure: the jitter comes in as a number in [0, 1).
public struct Backoff: Sendable, Equatable {
    /// The normal interval, used while the stream succeeds.
    public var base: Duration
    /// The longest delay between checks of a failing stream.
    public var cap: Duration
    /// Fraction of the delay added or removed at random (0.1 = ±10 %).
    public var jitterFraction: Double

    public init(base: Duration, cap: Duration, jitterFraction: Double = 0.1) {
        self.base = base
        self.cap = max(cap, base)
        self.jitterFraction = jitterFraction
    }

    /// Delay before the next check after `failures` consecutive failures (0 = success: the base interval).
    /// `jitter` in [0, 1) maps to [-jitterFraction, +jitterFraction].
    public func delay(afterFailures failures: Int, jitter: Double) -> Duration {
        guard failures > 0 else { return base }
        // The first failure is retried at the base interval; then 2×, 4×, … up to the cap.
        let factor = Double(1 << min(failures - 1, 20))
        let raw = min(base.seconds * factor, cap.seconds)
        let jittered = raw * (1 + jitterFraction * (2 * jitter - 1))
        return .milliseconds(Int64((min(jittered, cap.seconds) * 1000).rounded()))
    }
}
