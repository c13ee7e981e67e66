import Foundation

/// Helpers that keep camera credentials out of logs, messages and pages.
public enum URLRedaction {
    /// Splits `scheme://user:pass@host/...` into the URL without user information and the credentials.
    /// Returns the input unchanged and nil credentials when it has none.
    ///
    /// Passwords often hold characters a URL reserves (`#`, `?`, `/`, `@`), written unescaped: the user
    /// information ends at the first `@` that is followed by a host (name, IPv4 or `[IPv6]`, optional
    /// `:port`, then `/`, `?`, `#` or the end), provided the user name before the first `:` has no `/`,
    /// `?` or `#` (so an `@` in a path is not mistaken for one). `scheme://a:1/b@host/` is read as
    /// credentials `a` / `1/b`: when the two readings are alike, the one that masks is chosen.
    public static func splitCredentials(_ url: String) -> (url: String, credentials: Credentials?) {
        // Most URLs carry no user information at all: one byte scan answers them.
        guard url.utf8.contains(UInt8(ascii: "@")), let schemeEnd = schemeSeparator(in: url) else { return (url, nil) }
        let afterScheme = url[schemeEnd.upperBound...]
        var search = afterScheme.startIndex
        while let at = afterScheme[search...].firstIndex(of: "@") {
            search = afterScheme.index(after: at)
            let userInfo = afterScheme[..<at]
            let user = userInfo.prefix { $0 != ":" }
            guard !user.contains(where: { "/?#".contains($0) }) else { return (url, nil) }
            guard startsWithHost(afterScheme[search...]) else { continue }
            let password = userInfo.dropFirst(user.count + 1)
            let decode = { (part: Substring) in String(part).removingPercentEncoding ?? String(part) }
            let rest = String(url[..<schemeEnd.upperBound]) + String(afterScheme[search...])
            return (rest, Credentials(username: decode(user), password: user.count < userInfo.count ? decode(password) : ""))
        }
        return (url, nil)
    }

    /// Where the first `://` of `url` is (a byte scan: Foundation's `range(of:)` costs microseconds a call,
    /// which adds up over a 10,000-stream config).
    public static func schemeSeparator(in url: String) -> Range<String.Index>? {
        let utf8 = url.utf8
        var index = utf8.startIndex
        while index != utf8.endIndex {
            if utf8[index] == UInt8(ascii: ":") {
                let slash1 = utf8.index(after: index)
                if slash1 != utf8.endIndex, utf8[slash1] == UInt8(ascii: "/") {
                    let slash2 = utf8.index(after: slash1)
                    if slash2 != utf8.endIndex, utf8[slash2] == UInt8(ascii: "/") { return index..<utf8.index(after: slash2) }
                }
            }
            index = utf8.index(after: index)
        }
        return nil
    }

    /// Whether `text` begins with `host[:port]` followed by `/`, `?`, `#` or its end.
    static func startsWithHost(_ text: Substring) -> Bool {
        var rest = text
        if rest.first == "[" {
            guard let close = rest.firstIndex(of: "]"), rest.index(after: rest.startIndex) < close else { return false }
            guard rest[rest.index(after: rest.startIndex)..<close].allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return false }
            rest = rest[rest.index(after: close)...]
        } else {
            let host = rest.prefix { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }
            guard !host.isEmpty else { return false }
            rest = rest.dropFirst(host.count)
        }
        if rest.first == ":" {
            let port = rest.dropFirst().prefix { $0.isASCII && $0.isNumber }
            guard !port.isEmpty else { return false }
            rest = rest.dropFirst(1 + port.count)
        }
        return rest.isEmpty || "/?#".contains(rest.first!)
    }

    /// The URL with any user information replaced by `***`, safe to show or log.
    /// A URL too broken to split (no host after the `@`) is masked from the scheme to its last `@`.
    public static func mask(_ url: String) -> String {
        let (bare, credentials) = splitCredentials(url)
        guard let schemeEnd = schemeSeparator(in: bare) else { return bare }
        if credentials != nil { return String(bare[..<schemeEnd.upperBound]) + "***@" + String(bare[schemeEnd.upperBound...]) }
        guard let at = bare[schemeEnd.upperBound...].lastIndex(of: "@") else { return bare }
        return String(bare[..<schemeEnd.upperBound]) + "***" + String(bare[at...])
    }

    /// Replaces every occurrence of the secret (and of its percent-encoded form) in `text` with `***`.
    public static func scrub(_ text: String, secrets: [String]) -> String {
        var out = text
        for secret in secrets where !secret.isEmpty {
            out = out.replacingOccurrences(of: secret, with: "***")
            if let encoded = secret.addingPercentEncoding(withAllowedCharacters: .alphanumerics), encoded != secret {
                out = out.replacingOccurrences(of: encoded, with: "***")
            }
        }
        // Any user information left in a URL inside the text.
        return maskEmbeddedURLs(out)
    }

    private static func maskEmbeddedURLs(_ text: String) -> String {
        guard text.contains("://"), text.contains("@") else { return text }
        return text.split(separator: " ", omittingEmptySubsequences: false)
            .map { $0.contains("://") && $0.contains("@") ? mask(String($0)) : String($0) }
            .joined(separator: " ")
    }
}
