import Foundation
import Logging

/// Starts and stops the configured sinks (from `SinkRegistry`) next to the built-in ones, and re-applies
/// `sinks:` on reload: unchanged sinks keep running, changed ones restart, removed ones flush and close.
///
/// Every runner is a child task of `run()` (which `SinkService` runs in the service group): no sink
/// outlives the manager, and shutdown waits for each to write what it holds.
public actor SinkManager {
    public nonisolated let chain: SinkChain
    private let logger: Logger
    private var configured: [String: (config: SinkConfig, runner: SinkRunner)] = [:]
    private var builtIn: [SinkRunner] = []
    private nonisolated let starts: AsyncStream<SinkRunner>
    private nonisolated let startRunner: AsyncStream<SinkRunner>.Continuation

    /// Where relative sink paths live, and the time zone of file names and timestamps.
    public var dataDirectory = "data"
    public var timeZone = TimeZone.gmt

    public init(chain: SinkChain, logger: Logger) {
        self.chain = chain
        self.logger = logger
        (starts, startRunner) = AsyncStream.makeStream(of: SinkRunner.self)
    }

    /// Runs the sinks' runners until `stopAll()` has flushed them.
    public nonisolated func run() async {
        await markRunning()
        await withDiscardingTaskGroup { group in
            for await runner in starts {
                group.addTask { await runner.run() }
            }
        }
    }

    /// Whether `run()` has started: before that (an assembled monitor that is not served), stopping a
    /// sink does not wait for a runner that has not run; `run()` later drains and closes it.
    private var running = false
    private func markRunning() { running = true }

    public func setLocation(dataDirectory: String, timeZone: TimeZone) {
        self.dataDirectory = dataDirectory
        self.timeZone = timeZone
    }

    /// Adds a sink that is not in config.yaml (the SQLite history, the live dashboard).
    public func addBuiltIn(_ sink: any Sink, capacity: Int = 100_000) {
        let runner = SinkRunner(sink: sink, capacity: capacity, logger: logger)
        chain.add(runner)
        builtIn.append(runner)
        startRunner.yield(runner)
    }

    /// Makes the running sinks match `configs`; sinks whose type uses the time zone restart when it changed.
    public func apply(_ configs: [SinkConfig], timeZone newZone: TimeZone? = nil) async {
        let zoneChanged = newZone.map { $0 != timeZone } ?? false
        if let newZone { timeZone = newZone }
        let wanted = Dictionary(configs.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for (name, entry) in configured
        where wanted[name] != entry.config || (zoneChanged && SinkRegistry.type(named: entry.config.type)?.usesTimeZone == true) {
            await stop(name)
        }
        for config in configs where configured[config.name] == nil {
            let sinkLogger = Logger(label: "streampulse.sink.\(config.name)")
            do {
                guard let type = SinkRegistry.type(named: config.type) else { throw SinkSetupError(message: "no sink type '\(config.type)'") }
                let context = SinkContext(dataDirectory: dataDirectory, timeZone: timeZone, logger: sinkLogger)
                let runner = SinkRunner(sink: try type.makeSink(config, context: context), capacity: config.bufferSize, logger: sinkLogger)
                chain.add(runner)
                configured[config.name] = (config, runner)
                startRunner.yield(runner)
                logger.info("sink \(config.name) (\(config.type)) started")
            } catch {
                logger.error("sink \(config.name) (\(config.type)) not started: \(error)")
            }
        }
    }

    private func stop(_ name: String) async {
        guard let entry = configured.removeValue(forKey: name) else { return }
        chain.remove(entry.runner)
        entry.runner.stop()
        if running { await entry.runner.waitUntilFinished() }
        logger.info("sink \(name) stopped")
    }

    /// Flushes and closes every sink, then ends `run()` (shutdown).
    public func stopAll() async {
        for name in configured.keys { await stop(name) }
        for runner in builtIn {
            runner.stop()
            if running { await runner.waitUntilFinished() }
        }
        builtIn.removeAll()
        startRunner.finish()
    }
}
