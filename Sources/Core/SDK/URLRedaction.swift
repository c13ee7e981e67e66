import Foundation

/// Helpers that keep camera credentials out of logs, messages and pages.
public enum URLRedaction {
    /// Splits `scheme://user:pass@host/...` into the URL without user information and the credentials.
    /// Returns the input unchanged and nil credentials when it has none.
    public static func splitCredentials(_ url: String) -> (url: String, credentials: Credentials?) {
        guard let schemeEnd = url.range(of: "://") else { return (url, nil) }
        let afterScheme = url[schemeEnd.upperBound...]
        let authorityEnd = afterScheme.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? afterScheme.endIndex
        let authority = afterScheme[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@") else { return (url, nil) }
        let userInfo = authority[..<at]
        let rest = String(url[..<schemeEnd.upperBound]) + String(afterScheme[authority.index(after: at)...])
        let parts = userInfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let user = String(parts[0]).removingPercentEncoding ?? String(parts[0])
        let pass = parts.count > 1 ? (String(parts[1]).removingPercentEncoding ?? String(parts[1])) : ""
        return (rest, Credentials(username: user, password: pass))
    }

    /// The URL with any user information replaced by `***`, safe to show or log.
    public static func mask(_ url: String) -> String {
        let (bare, credentials) = splitCredentials(url)
        guard credentials != nil, let schemeEnd = bare.range(of: "://") else { return bare }
        return String(bare[..<schemeEnd.upperBound]) + "***@" + String(bare[schemeEnd.upperBound...])
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
