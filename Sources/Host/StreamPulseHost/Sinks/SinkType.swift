import Foundation

/// A kind of sink, as the registry knows it: its `type:` name, the keys its entry may have, how to read
/// them into options, and how to start a sink from them. Each sink folder declares one
/// (`extension SinkType { static let webhook = … }`) and `SinkRegistry.types` lists it.
public struct SinkType: Sendable {
    /// The `type:` value in config.yaml.
    public let name: String
    /// The keys of its entry besides `type`, `name` and `buffer` (for "did you mean" and the docs).
    public let keys: [String]
    /// Whether a change of `settings.timezone` restarts the sink (it names files or writes local times).
    public let usesTimeZone: Bool
    let parse: @Sendable (inout SinkEntry) -> any SinkOptions
    let start: @Sendable (_ name: String, _ options: any SinkOptions, _ context: SinkContext) throws -> any Sink

    public init<Options: SinkOptions & Equatable>(
        name: String, keys: [String], usesTimeZone: Bool = false,
        parse: @escaping @Sendable (inout SinkEntry) -> Options,
        start: @escaping @Sendable (_ name: String, _ options: Options, _ context: SinkContext) throws -> any Sink
    ) {
        self.name = name
        self.keys = keys
        self.usesTimeZone = usesTimeZone
        self.parse = { entry in parse(&entry) }
        let typeName = name
        self.start = { name, options, context in
            guard let options = options as? Options else {
                throw SinkSetupError(message: "sink '\(name)': its options are not those of a \(typeName) sink")
            }
            return try start(name, options, context)
        }
    }

    /// Starts a sink from its config entry.
    public func makeSink(_ config: SinkConfig, context: SinkContext) throws -> any Sink {
        try start(config.name, config.options, context)
    }
}

/// Why a sink could not start (a bad certificate file, a folder that cannot be created).
public struct SinkSetupError: Error, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
