import Foundation

/// The reference texts derived from `SettingKeys.all`: the `settings` part of the JSON schema and the
/// settings table of docs/configuration.md (ConfigKeyTests checks both files against these).
extension SettingKeys {
    /// The JSON schema of `settings:` (an object; nested keys become nested objects).
    public static func schema() -> [String: Any] {
        func node(_ prefix: String) -> [String: Any] {
            var properties: [String: Any] = [:]
            for child in children(of: prefix) {
                let name = prefix.isEmpty ? child : prefix + "." + child
                if let key = all.first(where: { $0.name == name }) {
                    properties[child] = schema(of: key)
                } else {
                    properties[child] = node(name)
                }
            }
            return ["type": "object", "additionalProperties": false, "properties": properties]
        }
        return node("")
    }

    static func schema(of key: SettingKey) -> [String: Any] {
        var entry: [String: Any]
        switch key.kind {
        case .duration: entry = ["$ref": "#/$defs/duration"]
        case .integer: entry = ["type": "integer"]
        case .boolean: entry = ["type": "boolean"]
        case .string, .timezone: entry = ["type": "string"]
        case .list: entry = ["type": "array", "items": ["type": "string"]]
        }
        if let minimum = key.minimum { entry["minimum"] = minimum }
        entry["description"] = "\(key.doc) (default \(key.defaultValue); \(key.applies == .live ? "applied on reload" : "needs a restart"))."
        return entry
    }

    /// The settings table of docs/configuration.md.
    public static func markdownTable() -> String {
        var lines = ["| key | default | on reload | meaning |", "|---|---|---|---|"]
        for key in all {
            lines.append("| `\(key.name)` | `\(key.defaultValue)` | \(key.applies == .live ? "applied" : "needs restart") | \(key.doc) |")
        }
        return lines.joined(separator: "\n")
    }
}
