import Foundation
import Logging
import Yams

/// One entry of `sinks:` in config.yaml: the keys every sink has, plus the options its type parsed.
public struct SinkConfig: Sendable, Equatable {
    /// The sink type's name (`webhook`, `mqtt`, `csv`, …), a key of `SinkRegistry`.
    public var type: String
    /// Unique among the sinks; defaults to the type.
    public var name: String
    /// Events the sink's runner buffers while the sink is slow or failing (`buffer:`).
    public var bufferSize: Int
    /// The type's own settings.
    public var options: any SinkOptions

    public init(type: String, name: String? = nil, bufferSize: Int = 10_000, options: any SinkOptions) {
        self.type = type
        self.name = name ?? type
        self.bufferSize = bufferSize
        self.options = options
    }

    public static func == (a: SinkConfig, b: SinkConfig) -> Bool {
        a.type == b.type && a.name == b.name && a.bufferSize == b.bufferSize && a.options.isEqual(to: b.options)
    }
}

/// A sink type's own settings, parsed from its entry. A reload restarts the sink when they differ.
public protocol SinkOptions: Sendable {
    func isEqual(to other: any SinkOptions) -> Bool
}

extension SinkOptions where Self: Equatable {
    public func isEqual(to other: any SinkOptions) -> Bool { (other as? Self) == self }
}

/// What a sink needs from the monitor to start.
public struct SinkContext: Sendable {
    /// The data folder (relative file paths of a sink live in it).
    public var dataDirectory: String
    /// `settings.timezone`, for file names and timestamps.
    public var timeZone: TimeZone
    /// A logger labelled for this sink (`streampulse.sink.<name>`).
    public var logger: Logger

    public init(dataDirectory: String, timeZone: TimeZone, logger: Logger) {
        self.dataDirectory = dataDirectory
        self.timeZone = timeZone
        self.logger = logger
    }

    /// A path from the config: absolute as given, relative inside the data folder.
    public func path(_ configured: String) -> String {
        configured.hasPrefix("/") ? configured : (dataDirectory as NSString).appendingPathComponent(configured)
    }
}

/// One entry under `sinks:` as its sink type reads it: typed values by key, each problem reported at the
/// line of its key. Keys the type never asks for are reported as unknown (with a suggestion).
public struct SinkEntry: ValueReading {
    /// The entry's `name:` (or its type).
    public let name: String
    let file: String
    let node: Node
    let values: [String: Node]
    let credentialsTable: [String: CredentialRef]
    var problems: [ConfigProblem] = []
    private(set) var asked: Set<String> = []

    init(name: String, file: String, node: Node, values: [String: Node], credentials: [String: CredentialRef]) {
        self.name = name
        self.file = file
        self.node = node
        self.values = values
        self.credentialsTable = credentials
    }

    mutating func problem(_ node: Node?, _ message: String, _ severity: ConfigProblem.Severity) {
        let mark = (node ?? self.node).mark
        problems.append(ConfigProblem(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1, severity: severity, message: message))
    }

    /// Reports a problem at `key`'s value (or at the entry when the key is absent).
    public mutating func problem(_ message: String, at key: String? = nil, severity: ConfigProblem.Severity = .error) {
        problem(key.flatMap { values[$0] }, message, severity)
    }

    /// Whether the entry sets `key`.
    public mutating func has(_ key: String) -> Bool {
        asked.insert(key)
        return values[key] != nil
    }

    private mutating func value(_ key: String) -> Node? {
        asked.insert(key)
        return values[key]
    }

    public mutating func string(_ key: String) -> String? { value(key).flatMap { string($0) } }
    public mutating func strings(_ key: String) -> [String]? { value(key).map { stringList($0) } }
    public mutating func int(_ key: String, min: Int, max: Int = .max) -> Int? {
        value(key).flatMap { int($0, min: min) }.flatMap { number in
            guard number <= max else { problem("must be at most \(max)", at: key); return nil }
            return number
        }
    }
    public mutating func duration(_ key: String) -> Duration? { value(key).flatMap { duration($0) } }
    public mutating func bool(_ key: String) -> Bool? { value(key).flatMap { bool($0) } }

    /// A name from `credentials:`, resolved (its secrets included); unknown names are a problem.
    public mutating func credentials(_ key: String) -> CredentialRef? {
        guard let name = string(key) else { return nil }
        guard let found = credentialsTable[name] else {
            problem("unknown credentials '\(name)'", at: key)
            return nil
        }
        return found
    }
}
