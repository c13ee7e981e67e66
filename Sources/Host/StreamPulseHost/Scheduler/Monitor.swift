import Foundation
import Logging
import StreamPulseCore

/// Builds the probe request for a stream from its config (credentials resolved, never in the URL).
public func makeProbeRequest(for stream: StreamConfig, config: Config, mode: ProbeMode) -> ProbeRequest {
    let credentials = stream.inlineCredentials ?? stream.credentialsName.flatMap { config.credentials[$0] }.map {
        Credentials(username: $0.username, password: $0.password)
    }
    let t = stream.thresholds
    return ProbeRequest(
        streamId: stream.id, url: stream.url, credentials: credentials, mode: mode,
        timeoutMs: Int(config.settings.timeout.milliseconds),
        options: ProbeOptions(
            transport: stream.transport, minFps: t.minFps, frozenThreshold: t.frozen, blackThreshold: t.black,
            maxFirstFrameMs: t.maxFirstFrame?.milliseconds))
}

/// The simplest complete monitor loop: every enabled stream is probed every `interval` (deep every
/// `deep_interval`, quick in between when the plugin can), start times spread by stream id, and every change of
/// status is logged. The engine issue replaces this with lanes, budgets and backoff.
public struct Monitor: Sendable {
    public let config: Config
    public let plugins: PluginHost
    public let logger: Logger

    public init(config: Config, plugins: PluginHost, logger: Logger) {
        self.config = config
        self.plugins = plugins
        self.logger = logger
    }

    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            for stream in config.streams where stream.enabled {
                group.addTask { await self.watch(stream) }
            }
        }
    }

    private func watch(_ stream: StreamConfig) async {
        let interval = stream.interval ?? config.settings.interval
        let deepEvery = max(1, Int((stream.deepInterval ?? config.settings.deepInterval).seconds / max(interval.seconds, 0.001)))
        // Deterministic spread: the same stream always starts at the same offset within its interval.
        let offset = Double(stableHash(stream.id) % 10_000) / 10_000 * interval.seconds
        try? await Task.sleep(for: .milliseconds(Int(offset * 1000)))
        var last: StreamStatus = .unknown
        var round = 0
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let result: ProbeResult
            if let plugin = plugins.plugin(for: stream.url, protocolName: stream.protocolName) {
                let quick = round % deepEvery != 0 && plugin.descriptor.capabilities.quickProbe
                result = await plugin.probe(makeProbeRequest(for: stream, config: config, mode: quick ? .quick : .deep))
            } else {
                result = .failure(.noPlugin, phase: nil, "No loaded plugin handles \(SchemeRouter.scheme(of: stream.url) ?? "this")://")
            }
            round += 1
            // A quick probe proves reachability, not pictures: its success keeps the last deep verdict.
            let status = result.mode == .quick && result.reason == .ok && last != .unknown ? last : StatusModel.status(for: result.reason)
            let line: Logger.Message = "stream=\(stream.id) status=\(status.rawValue) reason=\(result.reason) phase=\(result.phase?.rawValue ?? "-") \(result.message)"
            if status != last { logger.notice(line) } else { logger.debug(line) }
            last = status
            let elapsed = started.duration(to: .now)
            try? await Task.sleep(for: max(.milliseconds(100), interval - elapsed))
        }
    }
}

/// FNV-1a, stable across runs (Swift's Hasher is seeded per process).
public func stableHash(_ text: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return hash
}
