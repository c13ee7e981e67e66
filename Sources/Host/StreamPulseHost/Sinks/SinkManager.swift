import Foundation
import Logging

/// Starts and stops the configured sinks (webhook, MQTT) next to the built-in ones, and re-applies
/// `sinks:` on reload: unchanged sinks keep running, changed ones restart, removed ones flush and close.
public actor SinkManager {
    public let chain: SinkChain
    private let logger: Logger
    private var configured: [String: (config: SinkConfig, runner: SinkRunner, task: Task<Void, Never>)] = [:]
    private var builtIn: [(runner: SinkRunner, task: Task<Void, Never>)] = []

    /// Where relative csv sink folders live, and the time zone of their file names and timestamps.
    public var dataDirectory = "data"
    public var timeZone = TimeZone.gmt

    public init(chain: SinkChain, logger: Logger) {
        self.chain = chain
        self.logger = logger
    }

    public func setLocation(dataDirectory: String, timeZone: TimeZone) {
        self.dataDirectory = dataDirectory
        self.timeZone = timeZone
    }

    /// Adds a sink that is not in config.yaml (the SQLite history).
    public func addBuiltIn(_ sink: any Sink, capacity: Int = 100_000) {
        let runner = SinkRunner(sink: sink, capacity: capacity, logger: logger)
        chain.add(runner)
        builtIn.append((runner, Task { await runner.run() }))
    }

    /// Makes the running sinks match `configs`; CSV sinks restart when the time zone changed.
    public func apply(_ configs: [SinkConfig], timeZone newZone: TimeZone? = nil) async {
        let zoneChanged = newZone.map { $0 != timeZone } ?? false
        if let newZone { timeZone = newZone }
        let wanted = Dictionary(configs.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for (name, entry) in configured where wanted[name] != entry.config || (zoneChanged && entry.config.kind == .csv) {
            await stop(name)
        }
        for config in configs where configured[config.name] == nil {
            do {
                let sink: any Sink = switch config.kind {
                case .webhook: try WebhookSink(config: config, logger: logger)
                case .mqtt: MQTTSink(config: config, logger: logger)
                case .csv: try CSVFileSink(name: config.name, timeZone: timeZone, directory: config.directory.hasPrefix("/")
                    ? config.directory : (dataDirectory as NSString).appendingPathComponent(config.directory))
                }
                let runner = SinkRunner(sink: sink, capacity: config.bufferSize, logger: logger)
                chain.add(runner)
                configured[config.name] = (config, runner, Task { await runner.run() })
                logger.info("sink \(config.name) (\(config.kind.rawValue)) started")
            } catch {
                logger.error("sink \(config.name) (\(config.kind.rawValue)) not started: \(error)")
            }
        }
    }

    private func stop(_ name: String) async {
        guard let entry = configured.removeValue(forKey: name) else { return }
        chain.remove(entry.runner)
        entry.runner.stop()
        await entry.task.value
        logger.info("sink \(name) stopped")
    }

    /// Flushes and closes every sink (shutdown).
    public func stopAll() async {
        for name in configured.keys { await stop(name) }
        for entry in builtIn {
            entry.runner.stop()
            await entry.task.value
        }
        builtIn.removeAll()
    }
}
