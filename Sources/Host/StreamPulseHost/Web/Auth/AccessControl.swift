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
    /// The peer of the connection.
    public let remoteAddress: String
    /// The client as far as it can be trusted: the peer, or — when the peer is one of
    /// `settings.web.trusted_proxies` — the address that proxy reported in `X-Forwarded-For`.
    public var clientAddress: String

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
        clientAddress = remoteAddress
    }
}

/// Failed sign-ins slow the one who fails, not the account's owner (a pure state machine, unit-tested).
///
/// Failures are counted per (account, client address) and per client address. Each key gets a few free
/// failures, then every further failure doubles the wait before the next attempt from there (1 s, 2 s,
/// 4 s … up to `maxDelay`). The owner signing in from another address is never held back by a guesser's
/// failures; a success from an address clears that address's count for the account. Counts are forgotten
/// after `window` without failures.
public struct LoginThrottle: Sendable {
    public var freePerUser: Int
    public var freePerAddress: Int
    public var maxDelay: Double
    public var window: Double
    private struct Entry: Sendable { var failures: Int; var last: Double; var blockedUntil: Double }
    private var entries: [String: Entry] = [:]

    public init(freePerUser: Int = 3, freePerAddress: Int = 20, maxDelay: Double = 900, window: Double = 3600) {
        self.freePerUser = freePerUser
        self.freePerAddress = freePerAddress
        self.maxDelay = maxDelay
        self.window = window
    }

    static func userKey(_ user: String, _ address: String) -> String { "u:\(user)|\(address)" }

    /// Seconds to wait before another attempt for this account from this address, or nil when allowed.
    /// `user` is the canonical account name (or nil for a name that can be no account).
    public mutating func retryAfter(user: String?, address: String, now: Double) -> Int? {
        let keys = [user.map { Self.userKey($0, address) }, "a:" + address].compactMap { $0 }
        let waits = keys.compactMap { key -> Double? in
            guard let entry = entries[key] else { return nil }
            if now - entry.last > window { entries[key] = nil; return nil }
            return entry.blockedUntil > now ? entry.blockedUntil - now : nil
        }
        return waits.max().map { max(1, Int($0.rounded(.up))) }
    }

    public mutating func failed(user: String?, address: String, now: Double) {
        if let user { bump(Self.userKey(user, address), free: freePerUser, now: now) }
        bump("a:" + address, free: freePerAddress, now: now)
        if entries.count > 100_000 { entries = entries.filter { now - $0.value.last <= window } }  // bounded memory
    }

    private mutating func bump(_ key: String, free: Int, now: Double) {
        var entry = entries[key].flatMap { now - $0.last > window ? nil : $0 } ?? Entry(failures: 0, last: now, blockedUntil: 0)
        entry.failures += 1
        entry.last = now
        if entry.failures > free {
            entry.blockedUntil = now + min(maxDelay, pow(2, Double(min(entry.failures - free - 1, 30))))
        }
        entries[key] = entry
    }

    public mutating func succeeded(user: String, address: String) {
        entries[Self.userKey(user, address)] = nil
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
    let settings: LiveSettings

    public init(accounts: Accounts?, settings: LiveSettings) {
        self.accounts = accounts
        self.settings = settings
    }

    /// The client behind trusted proxies: the right-most `X-Forwarded-For` entry that is not itself a
    /// trusted proxy. Only a peer listed in `trusted` is believed; nothing is trusted by default.
    public static func clientAddress(peer: String, forwardedFor: String?, trusted: [String]) -> String {
        guard trusted.contains(peer), let forwardedFor else { return peer }
        let hops = forwardedFor.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return hops.last { !trusted.contains($0) } ?? peer
    }

    public static let cookieName = "sp_session"

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard AccessPolicy.isCanonical(request.uri.path) else {
            return APIServer.json(["error": "Not a canonical path."], status: .forbidden)
        }
        var context = context
        context.clientAddress = Self.clientAddress(peer: context.remoteAddress, forwardedFor: request.headers[.xForwardedFor],
                                                   trusted: settings.current.trustedProxies)
        if let accounts {
            if let auth = request.headers[.authorization], auth.lowercased().hasPrefix("bearer ") {
                context.identity = try? await accounts.token(String(auth.dropFirst(7)).trimmingCharacters(in: .whitespaces))
                if context.identity == nil { return APIServer.json(["error": "invalid API token"], status: .unauthorized) }
            } else if let id = request.cookies[Self.cookieName]?.value, !id.isEmpty {
                context.identity = try? await accounts.session(id)
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
    static let xForwardedFor = Self("X-Forwarded-For")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
}
