/// Every sink type `sinks:` in config.yaml may name. Adding a sink is a folder under `Sinks/` plus one
/// line here; nothing else switches on the type.
public enum SinkRegistry {
    public static let types: [SinkType] = [
        .webhook,
        .mqtt,
        .csv,
        .jsonl,
    ]

    public static func type(named name: String) -> SinkType? { types.first { $0.name == name } }
}
