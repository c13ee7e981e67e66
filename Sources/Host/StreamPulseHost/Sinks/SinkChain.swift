import Synchronization

/// Fans events out to every sink's runner (the shape of swift-log's MultiplexLogHandler).
public final class SinkChain: Sendable {
    private let runners: Mutex<[SinkRunner]>

    public init(_ runners: [SinkRunner] = []) { self.runners = Mutex(runners) }

    public func add(_ runner: SinkRunner) { runners.withLock { $0.append(runner) } }

    /// The runners in the chain, in order.
    public var members: [SinkRunner] { runners.withLock { $0 } }

    public func remove(_ runner: SinkRunner) { runners.withLock { $0.removeAll { $0 === runner } } }

    public func submit(_ event: SinkEvent) {
        for runner in runners.withLock({ $0 }) { runner.submit(event) }
    }

    public var stats: [SinkStats] { runners.withLock { $0 }.map(\.stats) }
    public var all: [SinkRunner] { runners.withLock { $0 } }
}
