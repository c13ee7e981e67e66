import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// The request context of the web server: who is asking and from where.
public struct WebContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var identity: Identity?
    /// Set when the request came with a session cookie (logout ends it).
    public var sessionId: String?
    public let remoteAddress: String

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }
}

/// Failed-login throttling per user name and per client address (a pure sliding window, unit-tested).
public struct LoginThrottle: Sendable {
    public var perUser: Int
    public var perAddress: Int
    public var window: TimeInterval
    private var failures: [String: [Double]] = [:]

    public init(perUser: Int = 5, perAddress: Int = 20, window: TimeInterval = 300) {
        self.perUser = perUser
        self.perAddress = perAddress
        self.window = window
    }

    /// Seconds to wait before another attempt for this user from this address, or nil when allowed.
    public mutating func retryAfter(user: String, address: String, now: Double) -> Int? {
        let waits = [check("u:" + user.lowercased(), limit: perUser, now: now), check("a:" + address, limit: perAddress, now: now)]
        return waits.compactMap { $0 }.max()
    }

    private mutating func check(_ key: String, limit: Int, now: Double) -> Int? {
        let recent = (failures[key] ?? []).filter { $0 > now - window }
        failures[key] = recent.isEmpty ? nil : recent
        guard recent.count >= limit, let oldest = recent.first else { return nil }
        return max(1, Int((oldest + window - now).rounded(.up)))
    }

    public mutating func failed(user: String, address: String, now: Double) {
        failures["u:" + user.lowercased(), default: []].append(now)
        failures["a:" + address, default: []].append(now)
        if failures.count > 100_000 { failures.removeAll() }  // a flood of random names cannot grow memory without bound
    }

    public mutating func succeeded(user: String) {
        failures["u:" + user.lowercased()] = nil
    }
}

/// Who may call a route. Attached to the route's group where the route is declared (`RequireAccess`), so
/// access is decided on the route the router matched — never on a path string kept apart.
public enum Access: String, Sendable, CaseIterable {
    /// Anyone, signed in or not (the page shell, health, sign-in).
    case anyone
    /// Any signed-in account, even one that must change its password first (sign-out, password change).
    case account
    /// Signed-in viewers and admins (status, history, exports).
    case viewer
    /// Admins only (users, tokens, settings, live preview).
    case admin
}

/// Who may call what. Pure, so the table is unit-tested without a server.
public enum AccessPolicy {
    public enum Decision: Equatable, Sendable {
        case allow
        case unauthenticated
        case forbidden(String)
        case passwordChangeRequired
        case csrf
    }

    /// Paths with dot segments, empty segments or encoded slashes/dots are refused outright: a path is
    /// answered only in the one spelling the router matches.
    public static func isCanonical(_ path: String) -> Bool {
        guard path.hasPrefix("/"), !path.contains("//") else { return false }
        let lowered = path.lowercased()
        if lowered.contains("%2f") || lowered.contains("%2e") || lowered.contains("%5c") || path.contains("\\") { return false }
        return !path.split(separator: "/", omittingEmptySubsequences: false).contains { $0 == "." || $0 == ".." }
    }

    /// The decision for a request to a route that needs `access`.
    public static func decide(_ access: Access, method: HTTPRequest.Method, identity: Identity?, csrfHeader: String?) -> Decision {
        guard access != .anyone else { return .allow }
        guard let identity else { return .unauthenticated }
        let changes = !(method == .get || method == .head || method == .options)
        // Cookie sessions are ambient credentials: every state-changing request must echo the session's token.
        if changes, let expected = identity.csrf, !Accounts.same(csrfHeader ?? "", expected) { return .csrf }
        if identity.mustChangePassword && access != .account { return .passwordChangeRequired }
        if access == .admin && identity.role != .admin { return .forbidden("This needs the admin role.") }
        return .allow
    }
}

/// Refuses non-canonical paths, then resolves the session cookie or bearer token into `context.identity`.
/// It decides nothing else: each route group carries its own `RequireAccess`.
public struct IdentityMiddleware: RouterMiddleware {
    public typealias Context = WebContext
    let accounts: Accounts?

    public init(accounts: Accounts?) { self.accounts = accounts }

    public static let cookieName = "sp_session"

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard AccessPolicy.isCanonical(request.uri.path) else {
            return APIServer.json(["error": "Not a canonical path."], status: .forbidden)
        }
        var context = context
        if let accounts {
            if let auth = request.headers[.authorization], auth.lowercased().hasPrefix("bearer ") {
                context.identity = try? accounts.token(String(auth.dropFirst(7)).trimmingCharacters(in: .whitespaces))
                if context.identity == nil { return APIServer.json(["error": "invalid API token"], status: .unauthorized) }
            } else if let id = request.cookies[Self.cookieName]?.value, !id.isEmpty {
                context.identity = try? accounts.session(id)
                context.sessionId = context.identity == nil ? nil : id
            }
        }
        return try await next(request, context)
    }
}

/// The access rule of a route group (see `Access`).
public struct RequireAccess: RouterMiddleware {
    public typealias Context = WebContext
    public let access: Access
    let accountsAvailable: Bool

    public init(_ access: Access, accountsAvailable: Bool) {
        self.access = access
        self.accountsAvailable = accountsAvailable
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if access != .anyone && !accountsAvailable {
            return APIServer.json(["error": "accounts need the history database, which could not be opened"], status: .serviceUnavailable)
        }
        switch AccessPolicy.decide(access, method: request.method, identity: context.identity, csrfHeader: request.headers[.csrfToken]) {
        case .allow:
            return try await next(request, context)
        case .unauthenticated:
            return APIServer.json(["error": "sign in first (session cookie or Authorization: Bearer token)"], status: .unauthorized)
        case .forbidden(let why):
            return APIServer.json(["error": why] as [String: String], status: .forbidden)
        case .passwordChangeRequired:
            return APIServer.json(["error": "change your password first", "code": "password_change_required"], status: .forbidden)
        case .csrf:
            return APIServer.json(["error": "missing or wrong X-CSRF-Token header"], status: .forbidden)
        }
    }
}

extension RouterMethods where Context == WebContext {
    /// A group of routes that all need `access`.
    func group(_ access: Access, _ web: WebServices) -> RouterGroup<WebContext> {
        group().add(middleware: RequireAccess(access, accountsAvailable: web.accounts != nil))
    }
}

/// Headers on every answer: a CSP without inline script, no framing, no sniffing, no referrer.
public struct SecurityHeadersMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}
    static var policy: String {
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
            + "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    }
    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError {
            // Not found, too large, bad request…: answered here so they carry the headers too, as JSON.
            response = APIServer.json(["error": error.body ?? error.status.reasonPhrase], status: error.status)
        } catch let error as any HTTPResponseError {
            response = APIServer.json(["error": error.status.reasonPhrase], status: error.status)
        } catch {
            // Internals (database errors and the like) go to the log, not to the client.
            context.logger.error("\(request.method) \(request.uri.path) failed: \(error)")
            response = APIServer.json(["error": "internal error; see the server log"], status: .internalServerError)
        }
        response.headers[.contentSecurityPolicy] = Self.policy
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.referrerPolicy] = "no-referrer"
        return response
    }
}

extension HTTPField.Name {
    static let csrfToken = Self("X-CSRF-Token")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
}
