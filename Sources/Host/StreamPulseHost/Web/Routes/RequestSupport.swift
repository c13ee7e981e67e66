import Foundation
import Hummingbird
import StreamPulseCore

/// Reading requests the same way on every route: JSON bodies, numbers from the query, error answers.
enum RequestSupport {
    /// The largest JSON body any route accepts.
    static let maxBody = 64 * 1024

    /// Decodes a JSON body (JSON only: an HTML form on another site cannot send this content type without a
    /// CORS preflight). A body over 64 KiB is 413; a malformed one is 400 naming the field, not the decoder.
    static func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        guard request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true else {
            throw HTTPError(.unsupportedMediaType, message: "send application/json")
        }
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: maxBody) } catch {
            throw HTTPError(.contentTooLarge, message: "the body is larger than \(maxBody / 1024) KiB")
        }
        do { return try Wire.decode(T.self, from: Data(buffer: body)) } catch let error as DecodingError {
            throw HTTPError(.badRequest, message: "bad JSON body: \(describe(error))")
        } catch {
            throw HTTPError(.badRequest, message: "bad JSON body")
        }
    }

    /// What was wrong with a body, in the API's own words (field names in snake_case as sent).
    static func describe(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String {
            path.isEmpty ? "the body" : "'" + path.map { $0.intValue.map(String.init) ?? snake($0.stringValue) }.joined(separator: ".") + "'"
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing field \(field(context.codingPath + [key]))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context): return "\(field(context.codingPath)) has the wrong type"
        case .dataCorrupted(let context): return context.codingPath.isEmpty ? "not valid JSON" : "\(field(context.codingPath)) is not valid"
        @unknown default: return "not valid"
        }
    }

    private static func snake(_ key: String) -> String {
        key.unicodeScalars.reduce(into: "") { text, c in
            if CharacterSet.uppercaseLetters.contains(c) { text += "_" + String(c).lowercased() } else { text.unicodeScalars.append(c) }
        }
    }

    /// A whole number from the query, within `range`; nil when absent; 400 naming the parameter otherwise.
    static func int(_ request: Request, _ name: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = request.uri.queryParameters[name[...]] else { return nil }
        guard let value = Int(String(text)), range.contains(value) else {
            throw HTTPError(.badRequest, message: "parameter '\(name)' must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// A finite number from the query, within `range`; nil when absent; 400 naming the parameter otherwise.
    static func double(_ request: Request, _ name: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let text = request.uri.queryParameters[name[...]] else { return nil }
        guard let value = Double(String(text)), value.isFinite, range.contains(value) else {
            throw HTTPError(.badRequest, message: "parameter '\(name)' must be a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// A time from the query: Unix seconds or ISO 8601; 400 naming the parameter when it is neither.
    static func time(_ request: Request, _ name: String) throws -> Date? {
        guard let text = request.uri.queryParameters[name[...]].map(String.init) else { return nil }
        if let seconds = Double(text), seconds.isFinite, abs(seconds) < 1e11 { return Date(timeIntervalSince1970: seconds) }
        if let date = ISO8601DateFormatter().date(from: text) { return date }
        throw HTTPError(.badRequest, message: "parameter '\(name)' must be Unix seconds or an ISO 8601 time")
    }

    /// The answer to an error a route caught: a refusal the user can act on, or (rethrown) an internal
    /// error that the security-headers middleware logs and answers as 500 without details.
    static func failure(_ error: any Error) throws -> Response {
        if let failure = error as? Accounts.Failure { return APIServer.json(["error": failure.description], status: .badRequest) }
        if let http = error as? HTTPError { return APIServer.json(["error": http.body ?? "\(http.status)"], status: http.status) }
        throw error
    }

    /// A user-supplied name as it may appear in a log line: one line, at most 64 characters, control and
    /// format characters shown as `\u{…}` escapes (so a NUL or a newline can neither hide nor forge a line).
    static func loggable(_ text: String) -> String {
        var head = ""
        head.unicodeScalars.append(contentsOf: text.unicodeScalars.prefix(64))
        return SecretScrubber.escapingControls(head, backslashes: true)
    }
}
