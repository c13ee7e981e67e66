import Foundation

/// One plugin's share of the engine: an adaptive limit on probes in flight, so a slow RTSP fleet never
/// holds back MJPEG checks, and the number in flight follows demand (arrival rate × observed probe
/// duration, Little's law) between `minimum` and `maximum` instead of a fixed worker count.
public actor Lane {
    public let name: String
    public let minimum: Int
    public let maximum: Int
    private(set) public var limit: Int
    private(set) public var inFlight = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    /// Exponentially weighted mean probe duration in seconds, and arrivals per second.
    private var meanDuration = 1.0
    private var arrivals = 0
    private var windowStart = ContinuousClock.now
    private var rate = 0.0

    public init(name: String, minimum: Int = 4, maximum: Int = 512) {
        self.name = name
        self.minimum = max(1, minimum)
        self.maximum = max(self.minimum, maximum)
        self.limit = self.minimum
    }

    /// Waits for a slot.
    public func acquire() async {
        arrivals += 1
        retune()
        if inFlight < limit {
            inFlight += 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    /// Frees a slot and feeds the probe's duration into the limit.
    public func release(duration: Duration) {
        meanDuration = 0.9 * meanDuration + 0.1 * duration.seconds
        inFlight -= 1
        retune()
        while inFlight < limit, !waiters.isEmpty {
            inFlight += 1
            waiters.removeFirst().resume()
        }
    }

    /// Demand = arrivals per second × mean duration, with 50 % headroom.
    private func retune() {
        let elapsed = windowStart.duration(to: .now).seconds
        if elapsed >= 1 {
            rate = 0.5 * rate + 0.5 * Double(arrivals) / elapsed
            arrivals = 0
            windowStart = .now
        }
        let demand = Int((rate * meanDuration * 1.5).rounded(.up)) + 1
        limit = min(maximum, max(minimum, demand, waiters.isEmpty ? 0 : min(maximum, inFlight + 1)))
    }

    public var waiting: Int { waiters.count }
}

/// At most N simultaneous sessions per camera or NVR host, so the monitor never uses up the camera's
/// client slots — the very failure it exists to detect. Live previews count against it too.
public actor HostBudgets {
    public var perHost: Int
    private var used: [String: Int] = [:]
    private var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    public init(perHost: Int) { self.perHost = max(1, perHost) }

    public func setPerHost(_ value: Int) {
        perHost = max(1, value)
        for host in waiters.keys { wake(host) }
    }

    public func acquire(_ host: String) async {
        if used[host, default: 0] < perHost {
            used[host, default: 0] += 1
            return
        }
        await withCheckedContinuation { waiters[host, default: []].append($0) }
    }

    public func release(_ host: String) {
        used[host, default: 1] -= 1
        if used[host] == 0 { used[host] = nil }
        wake(host)
    }

    private func wake(_ host: String) {
        while used[host, default: 0] < perHost, var queue = waiters[host], !queue.isEmpty {
            used[host, default: 0] += 1
            queue.removeFirst().resume()
            waiters[host] = queue.isEmpty ? nil : queue
        }
    }

    public func inUse(_ host: String) -> Int { used[host, default: 0] }
}
