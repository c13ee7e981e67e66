/// What a reload changes, stream by stream. Pure: compares two configs.
public struct ConfigDiff: Sendable, Equatable {
    /// New ids: start them.
    public var added: [String] = []
    /// Ids gone from the file: stop them (their history is kept, marked retired).
    public var removed: [String] = []
    /// Ids whose probing settings changed (URL, protocol, intervals, thresholds, transport, enabled) or whose
    /// credentials' secrets changed: restart them with the new settings.
    public var restarted: [String] = []
    /// Ids whose only change is cosmetic (name, group, tags): update in place, keep schedule and state.
    public var relabelled: [String] = []
    /// Settings that change how every stream is scheduled (default intervals, timeout, retries, backoff).
    public var scheduleSettingsChanged = false

    public var isEmpty: Bool { added.isEmpty && removed.isEmpty && restarted.isEmpty && relabelled.isEmpty && !scheduleSettingsChanged }

    public init(from old: Config, to new: Config) {
        let s0 = old.settings, s1 = new.settings
        scheduleSettingsChanged = s0.interval != s1.interval || s0.deepInterval != s1.deepInterval || s0.timeout != s1.timeout
            || s0.retries != s1.retries || s0.backoffCap != s1.backoffCap
        // Credentials whose resolved secrets changed: streams using them restart even if written the same.
        let changedCredentials = Set(old.credentials.keys).union(new.credentials.keys).filter { old.credentials[$0] != new.credentials[$0] }
        func compare(_ before: StreamConfig, _ stream: StreamConfig) {
            if before == stream, stream.credentialsName.map({ !changedCredentials.contains($0) }) ?? true { return }
            if Self.probing(before, old) != Self.probing(stream, new) {
                restarted.append(stream.id)
            } else if before != stream {
                relabelled.append(stream.id)
            }
        }
        // The usual edit keeps every stream where it was: compare in place, no index of 10,000 copies.
        if old.streams.count == new.streams.count, zip(old.streams, new.streams).allSatisfy({ $0.id == $1.id }) {
            for (before, stream) in zip(old.streams, new.streams) { compare(before, stream) }
            return
        }
        let oldStreams = Dictionary(old.streams.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let newIDs = Set(new.streams.map(\.id))
        for stream in new.streams {
            guard let before = oldStreams[stream.id] else { added.append(stream.id); continue }
            compare(before, stream)
        }
        removed = old.streams.map(\.id).filter { !newIDs.contains($0) }
    }

    /// Everything that changes how a stream is probed, with its credentials resolved.
    private struct Probing: Equatable {
        var url: String
        var protocolName: String?
        var interval: Duration?
        var deepInterval: Duration?
        var thresholds: Thresholds
        var enabled: Bool
        var transport: String?
        var redirects: String?
        var username: String?
        var password: String?
    }

    private static func probing(_ stream: StreamConfig, _ config: Config) -> Probing {
        let credentials = stream.credentialsName.flatMap { config.credentials[$0] }
        return Probing(
            url: stream.url, protocolName: stream.protocolName, interval: stream.interval, deepInterval: stream.deepInterval,
            thresholds: stream.thresholds, enabled: stream.enabled, transport: stream.transport, redirects: stream.redirects,
            username: stream.inlineCredentials?.username ?? credentials?.username,
            password: stream.inlineCredentials?.password ?? credentials?.password)
    }
}
