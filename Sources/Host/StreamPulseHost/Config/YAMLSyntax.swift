import Yams

/// Where and why a YAML file failed to parse, in words an operator can act on: Yams' own messages say
/// "found character that cannot start any token" for a tab and point duplicate keys at their mapping.
enum YAMLSyntax {
    struct Diagnosis: Equatable {
        var line: Int
        var column: Int
        var message: String
    }

    static func diagnose(_ error: YamlError, in text: String) -> Diagnosis {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
            if let tab = firstIndentingTab(in: text, near: mark.line) {
                return Diagnosis(line: tab.line, column: tab.column,
                                 message: "a tab in the indentation; YAML indents with spaces only (YAML syntax: \(what))")
            }
            return Diagnosis(line: mark.line, column: mark.column, message: "YAML syntax: \(what)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            let key = duplicates.first ?? ""
            let first = context.mark
            if let second = repeatedKey(key, in: text, after: first) {
                return Diagnosis(line: second.line, column: second.column,
                                 message: "duplicate key '\(key)' (first at line \(first.line)); each key may appear once in a mapping")
            }
            return Diagnosis(line: first.line, column: first.column,
                             message: "duplicate key '\(key)' in this mapping; each key may appear once")
        default:
            return Diagnosis(line: 1, column: 1, message: "YAML syntax: \(error)")
        }
    }

    /// The first tab in a line's leading whitespace, preferring the line the parser stopped at.
    static func firstIndentingTab(in text: String, near line: Int) -> (line: Int, column: Int)? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        func tab(at index: Int) -> Int? {
            guard lines.indices.contains(index) else { return nil }
            for (column, character) in lines[index].enumerated() {
                if character == "\t" { return column + 1 }
                if character != " " && character != "-" { return nil }
            }
            return nil
        }
        if let column = tab(at: line - 1) { return (line, column) }
        for index in lines.indices { if let column = tab(at: index) { return (index + 1, column) } }
        return nil
    }

    /// The second occurrence of `key` in the block mapping whose first occurrence is at `first`: later lines
    /// at the same column, until a line starts left of it (the mapping ended).
    static func repeatedKey(_ key: String, in text: String, after first: Mark) -> (line: Int, column: Int)? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let column = first.column - 1
        guard first.line >= 1 else { return nil }
        for index in first.line..<lines.count {
            let line = Array(lines[index])
            guard let start = line.firstIndex(where: { $0 != " " }), line[start] != "#" else { continue }
            if start < column { return nil }
            guard start == column else { continue }
            let rest = String(line[start...])
            for form in [key, "\"\(key)\"", "'\(key)'"] where rest.hasPrefix(form + ":") {
                return (index + 1, column + 1)
            }
        }
        return nil
    }
}
