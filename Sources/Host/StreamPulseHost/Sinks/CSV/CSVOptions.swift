import Foundation

/// `type: csv` — one CSV file per day (`<dir>/streampulse-YYYY-MM-DD.csv`) in `settings.timezone`.
///
/// ```yaml
/// - type: csv
///   dir: csv     # relative paths are inside the data folder
/// ```
public struct CSVOptions: SinkOptions, Equatable {
    public var directory = "csv"

    public init() {}

    init(from entry: inout SinkEntry) {
        directory = entry.string("dir") ?? directory
    }
}

extension SinkType {
    public static let csv = SinkType(name: "csv", keys: ["dir"], usesTimeZone: true, parse: CSVOptions.init(from:)) { name, options, context in
        try CSVFileSink(name: name, timeZone: context.timeZone, directory: context.path(options.directory))
    }
}
