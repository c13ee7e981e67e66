import StreamPulseCore

/// Messages never quote a piece of the URL (the caller appends the masked URL): a mistyped URL may hold a
/// password where a port or host was expected.
///
/// The checks a stream URL must pass to be configured, without Foundation's URL parser (a reload of 10,000
/// streams checks 10,000 URLs): `scheme://host[:port][/path…]`, the host a name, an IPv4 address or a bracketed
/// IPv6 literal, the port 1–65535, and no raw space or control character anywhere.
enum StreamURL {
    enum Verdict: Equatable {
        /// Well formed; the scheme in lower case.
        case valid(scheme: String)
        /// What is wrong, as a phrase for "stream 'x': malformed URL 'url' (…)".
        case invalid(String)
    }

    static func check(_ url: String) -> Verdict {
        guard let scheme = SchemeRouter.scheme(of: url), let separator = URLRedaction.schemeSeparator(in: url) else {
            return .invalid("expected scheme://host[:port]/path")
        }
        if url.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
            return .invalid("a raw space or control character (write a space as %20)")
        }
        let rest = url[separator.upperBound...]
        // The authority ends at the first '/', '?' or '#' (found on bytes: all three are ASCII).
        let end = rest.utf8.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? rest.endIndex
        let authority = rest[..<end]
        var host = Substring(authority), port: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.utf8.firstIndex(of: UInt8(ascii: "]")) else { return .invalid("an IPv6 address without its closing ']'") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return .invalid("expected [IPv6]:port after the address") }
                port = after.dropFirst()
            }
            guard host.contains(":") else { return .invalid("the part in brackets is not an IPv6 address") }
        } else if let colon = authority.utf8.lastIndex(of: UInt8(ascii: ":")) {
            host = authority[..<colon]
            port = authority[authority.index(after: colon)...]
        }
        guard !host.isEmpty else { return .invalid("expected scheme://host[:port]/path") }
        if let port {
            guard let number = Int(port), (1...65535).contains(number) else {
                // The text is not echoed: with a mistyped password it may be part of the password.
                return .invalid(port.isEmpty ? "an empty port after ':'" : "a port that is not a number from 1 to 65535")
            }
        }
        return .valid(scheme: scheme)
    }
}

/// What a stream id may contain: it becomes an MQTT topic level, a URL path segment and a CSV field, so
/// topic wildcards (`#`, `+`), separators (`/`, `?`, `%`) and whitespace or control characters are refused.
enum StreamID {
    /// The first character that an id may not contain, described ("a space", "'/'"), or nil.
    static func forbiddenCharacter(in id: String) -> String? {
        // The common case, plain ASCII letters, digits and - _ . : , answered on bytes.
        if id.utf8.allSatisfy({ ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7A || ($0 >= 0x30 && $0 <= 0x3A) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E }) {
            return nil
        }
        for scalar in id.unicodeScalars {
            switch scalar {
            case "/", "#", "+", "?", "%", "\\", "\"": return "'\(scalar)'"
            case " ": return "a space"
            case "\t": return "a tab"
            default:
                if scalar.properties.isWhitespace || scalar.value < 0x20 || scalar.value == 0x7F { return "a whitespace or control character" }
            }
        }
        return nil
    }

    /// The id with control characters shown as `?`, so a message never carries them to a terminal.
    static func printable(_ id: String) -> String {
        String(String.UnicodeScalarView(id.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 }))
    }
}
