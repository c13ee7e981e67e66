import Crypto
import Foundation
import StreamPulseCore

/// Basic and Digest (RFC 2617/7616, MD5) `Authorization` headers for RTSP and HTTP.
public struct AuthChallenge: Sendable, Equatable {
    public enum Scheme: String, Sendable { case basic, digest }
    public var scheme: Scheme
    public var parameters: [String: String]

    /// Picks the strongest challenge we support from `WWW-Authenticate` values (Digest over Basic).
    public static func best(from values: [String]) -> AuthChallenge? {
        let parsed = values.compactMap(parse)
        return parsed.first { $0.scheme == .digest } ?? parsed.first
    }

    /// Parses one `WWW-Authenticate` value.
    public static func parse(_ value: String) -> AuthChallenge? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        let schemeEnd = trimmed.firstIndex(of: " ") ?? trimmed.endIndex
        guard let scheme = Scheme(rawValue: trimmed[..<schemeEnd].lowercased()) else { return nil }
        var parameters: [String: String] = [:]
        var rest = trimmed[schemeEnd...]
        while true {
            rest = rest.drop { $0 == " " || $0 == "," }
            guard let equals = rest.firstIndex(of: "=") else { break }
            let key = rest[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            rest = rest[rest.index(after: equals)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaped = false
                while let c = rest.first {
                    rest = rest.dropFirst()
                    if escaped { value.append(c); escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { break } else { value.append(c) }
                }
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = rest[..<end].trimmingCharacters(in: .whitespaces)
                rest = rest[end...]
            }
            parameters[key] = value
        }
        return AuthChallenge(scheme: scheme, parameters: parameters)
    }

    /// The `Authorization` header value answering this challenge.
    public func authorization(method: String, uri: String, credentials: Credentials, nonceCount: Int = 1, cnonce: String? = nil) -> String {
        switch scheme {
        case .basic:
            return "Basic " + Data("\(credentials.username):\(credentials.password)".utf8).base64EncodedString()
        case .digest:
            let realm = parameters["realm"] ?? ""
            let nonce = parameters["nonce"] ?? ""
            let ha1 = md5Hex("\(credentials.username):\(realm):\(credentials.password)")
            let ha2 = md5Hex("\(method):\(uri)")
            var fields = [
                "username=\"\(credentials.username)\"", "realm=\"\(realm)\"", "nonce=\"\(nonce)\"", "uri=\"\(uri)\"",
            ]
            let qops = (parameters["qop"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if qops.contains("auth") {
                let nc = String(format: "%08x", nonceCount)
                let cnonce = cnonce ?? String(format: "%016llx", UInt64.random(in: 0...UInt64.max))
                let response = md5Hex("\(ha1):\(nonce):\(nc):\(cnonce):auth:\(ha2)")
                fields += ["qop=auth", "nc=\(nc)", "cnonce=\"\(cnonce)\"", "response=\"\(response)\""]
            } else {
                fields.append("response=\"\(md5Hex("\(ha1):\(nonce):\(ha2)"))\"")
            }
            if let opaque = parameters["opaque"] { fields.append("opaque=\"\(opaque)\"") }
            // No `algorithm` field: MD5 is the default, and strict parsers (live555, inside many cameras)
            // reject the whole header when a parameter other than qop/nc is unquoted. FFmpeg omits it too.
            return "Digest " + fields.joined(separator: ", ")
        }
    }
}

/// Lower-case hex MD5 of a UTF-8 string (swift-crypto's implementation; Digest auth needs nothing stronger).
public func md5Hex(_ text: String) -> String {
    Insecure.MD5.hash(data: Array(text.utf8)).map { String(format: "%02x", $0) }.joined()
}
