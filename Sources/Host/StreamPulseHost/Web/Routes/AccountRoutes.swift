import Foundation
import Hummingbird
import NIOCore

/// Signing in and out, one's own password (any account), users and API tokens (admin).
enum AccountRoutes {
    struct LoginBody: Decodable { var name: String; var password: String }
    struct PasswordBody: Decodable { var current: String; var new: String }
    struct NewUserBody: Decodable { var name: String; var role: Role; var password: String }
    struct UserPatch: Decodable { var role: Role?; var password: String? }
    struct NewTokenBody: Decodable { var name: String; var role: Role? }
    struct Created: Encodable { var token: String; var info: Accounts.Token }

    struct SessionInfo: Encodable {
        var authenticated: Bool
        var user: String?
        var role: Role?
        var mustChangePassword: Bool?
        var csrf: String?
        var timezoneDefault: String
    }

    static func cookie(_ value: String, maxAge: Int, secure: Bool) -> String {
        "\(IdentityMiddleware.cookieName)=\(value); Path=/; Max-Age=\(maxAge); HttpOnly; SameSite=Strict" + (secure ? "; Secure" : "")
    }

    static func add(to router: some RouterMethods<WebContext>, _ web: WebServices) {
        addSessions(to: router, web)
        addUsers(to: router.group(.admin, web), web)
        addTokens(to: router.group(.admin, web), web)
    }

    static func addSessions(to router: some RouterMethods<WebContext>, _ web: WebServices) {
        let open = router.group(.anyone, web)
        open.get("/api/session") { _, context -> Response in
            let zone = await web.dashboardTimeZone()
            guard let identity = context.identity else { return APIServer.json(SessionInfo(authenticated: false, timezoneDefault: zone)) }
            return APIServer.json(SessionInfo(authenticated: true, user: identity.name, role: identity.role,
                                              mustChangePassword: identity.mustChangePassword, csrf: identity.csrf, timezoneDefault: zone))
        }
        open.post("/api/login") { request, context -> Response in
            guard let accounts = web.accounts else { return APIServer.json(["error": "no accounts database"], status: .serviceUnavailable) }
            let body: LoginBody
            do { body = try await RequestSupport.decode(LoginBody.self, request) } catch { return try RequestSupport.failure(error) }
            return try await login(body, accounts: accounts, context: context, web)
        }

        let account = router.group(.account, web)
        account.post("/api/logout") { _, context -> Response in
            if let id = context.sessionId { try? await web.accounts?.endSession(id) }
            var response = APIServer.json(["status": "signed out"])
            response.headers[.setCookie] = cookie("", maxAge: 0, secure: web.settings.current.secureCookies)
            return response
        }
        account.post("/api/me/password") { request, context -> Response in
            guard let accounts = web.accounts, let identity = context.identity, let userId = identity.userId else {
                return APIServer.json(["error": "API tokens have no password"], status: .badRequest)
            }
            do {
                let body = try await RequestSupport.decode(PasswordBody.self, request)
                // Guessing the current password through a stolen session is throttled like sign-in.
                let now = Date().timeIntervalSince1970, name = identity.name.lowercased(), address = context.clientAddress
                if let wait = web.throttle.state.withLock({ $0.retryAfter(user: name, address: address, now: now) }) {
                    return tooMany("too many wrong passwords; try again in \(wait) s", retryAfter: wait)
                }
                guard let slot = web.throttle.verifySlot() else { return tooMany("busy; try again in a second", retryAfter: 1) }
                let verified = try await accounts.verify(name: identity.name, password: body.current)
                slot.release()
                guard verified != nil else {
                    web.throttle.state.withLock { $0.failed(user: name, address: address, now: now) }
                    return APIServer.json(["error": "the current password is wrong"], status: .forbidden)
                }
                web.throttle.state.withLock { $0.succeeded(user: name, address: address) }
                guard body.new != body.current else { return APIServer.json(["error": "choose a different password"], status: .badRequest) }
                try await accounts.setPassword(userId: userId, password: body.new, mustChange: false)
                let session = try await accounts.createSession(userId: userId)
                web.logger.info("user '\(identity.name)' changed their password")
                // The one-time password of the first start is useless now: its file goes.
                let bootstrap = Accounts.bootstrapFile(in: web.settings.current.dataDir)
                if identity.mustChangePassword, FileManager.default.fileExists(atPath: bootstrap) {
                    try? FileManager.default.removeItem(atPath: bootstrap)
                    web.logger.notice("removed \(bootstrap): the one-time password was changed (it also appears once in this service's earlier log lines; rotate those logs if they are kept)")
                }
                var response = await APIServer.json(SessionInfo(authenticated: true, user: identity.name, role: identity.role, mustChangePassword: false,
                                                          csrf: session.csrf, timezoneDefault: web.dashboardTimeZone()))
                response.headers[.setCookie] = cookie(session.id, maxAge: Int(accounts.sessionLifetime), secure: web.settings.current.secureCookies)
                return response
            } catch { return try RequestSupport.failure(error) }
        }
    }

    /// Sign-in: the throttle, then the shape of the name, then a bounded queue for bcrypt, then the check.
    static func login(_ body: LoginBody, accounts: Accounts, context: WebContext, _ web: WebServices) async throws -> Response {
        let now = Date().timeIntervalSince1970
        let address = context.clientAddress
        let canonical = Accounts.canonicalName(body.name)
        let shown = RequestSupport.loggable(body.name)
        if let wait = web.throttle.state.withLock({ $0.retryAfter(user: canonical, address: address, now: now) }) {
            web.logger.warning("login throttled for user '\(shown)' from \(address): retry in \(wait) s")
            return tooMany("too many failed sign-ins from here; try again in \(wait) s", retryAfter: wait)
        }
        guard let canonical else {
            web.throttle.state.withLock { $0.failed(user: nil, address: address, now: now) }
            web.logger.warning("sign-in with an impossible user name '\(shown)' from \(address)")
            return APIServer.json(["error": "wrong user name or password"], status: .unauthorized)
        }
        // bcrypt costs ~0.1 s a try by design: a flood of tries is shed with 429 instead of queueing the owner.
        guard let slot = web.throttle.verifySlot() else {
            return tooMany("sign-in is busy; try again in a second", retryAfter: 1)
        }
        defer { slot.release() }
        guard let user = try await accounts.verify(name: canonical, password: body.password) else {
            web.throttle.state.withLock { $0.failed(user: canonical, address: address, now: now) }
            web.logger.warning("failed sign-in for user '\(shown)' from \(address)")
            return APIServer.json(["error": "wrong user name or password"], status: .unauthorized)
        }
        web.throttle.state.withLock { $0.succeeded(user: canonical, address: address) }
        let session = try await accounts.createSession(userId: user.id)
        web.logger.info("user '\(user.name)' signed in from \(address)")
        var response = await APIServer.json(SessionInfo(authenticated: true, user: user.name, role: user.role, mustChangePassword: user.mustChange,
                                                  csrf: session.csrf, timezoneDefault: web.dashboardTimeZone()))
        response.headers[.setCookie] = cookie(session.id, maxAge: Int(accounts.sessionLifetime), secure: web.settings.current.secureCookies)
        return response
    }

    static func tooMany(_ message: String, retryAfter: Int) -> Response {
        var response = APIServer.json(["error": message], status: .tooManyRequests)
        response.headers[.retryAfter] = "\(retryAfter)"
        return response
    }

    static func addUsers(to admin: some RouterMethods<WebContext>, _ web: WebServices) {
        admin.get("/api/users") { _, _ -> Response in
            await APIServer.json(try web.accounts?.users() ?? [])
        }
        admin.post("/api/users") { request, context -> Response in
            guard let accounts = web.accounts else { return APIServer.json(["error": "no accounts database"], status: .serviceUnavailable) }
            do {
                let body = try await RequestSupport.decode(NewUserBody.self, request)
                // An admin sets a first password; the new user is asked to choose their own at first sign-in.
                let user = try await accounts.createUser(name: body.name, role: body.role, password: body.password, mustChange: true)
                web.logger.notice("user '\(user.name)' (\(user.role.rawValue)) created by '\(context.identity?.name ?? "?")'")
                return APIServer.json(user, status: .created)
            } catch { return try RequestSupport.failure(error) }
        }
        admin.patch("/api/users/{id}") { request, context -> Response in
            guard let accounts = web.accounts, let id = Int64(try context.parameters.require("id")) else {
                return APIServer.json(["error": "bad id"], status: .badRequest)
            }
            do {
                let body = try await RequestSupport.decode(UserPatch.self, request)
                if let role = body.role { try await accounts.setRole(userId: id, role: role) }
                if let password = body.password { try await accounts.setPassword(userId: id, password: password, mustChange: true) }
                return APIServer.json(["status": "updated"])
            } catch { return try RequestSupport.failure(error) }
        }
        admin.delete("/api/users/{id}") { _, context -> Response in
            guard let accounts = web.accounts, let id = Int64(try context.parameters.require("id")) else {
                return APIServer.json(["error": "bad id"], status: .badRequest)
            }
            guard id != context.identity?.userId else { return APIServer.json(["error": "you cannot delete yourself"], status: .badRequest) }
            do {
                try await accounts.deleteUser(id: id)
                return APIServer.json(["status": "deleted"])
            } catch { return try RequestSupport.failure(error) }
        }
    }

    static func addTokens(to admin: some RouterMethods<WebContext>, _ web: WebServices) {
        admin.get("/api/tokens") { _, _ -> Response in
            await APIServer.json(try web.accounts?.tokens() ?? [])
        }
        admin.post("/api/tokens") { request, context -> Response in
            guard let accounts = web.accounts else { return APIServer.json(["error": "no accounts database"], status: .serviceUnavailable) }
            do {
                let body = try await RequestSupport.decode(NewTokenBody.self, request)
                let created = try await accounts.createToken(name: body.name, role: body.role ?? .viewer, owner: context.identity?.userId)
                web.logger.notice("API token '\(RequestSupport.loggable(body.name))' (\(created.info.role.rawValue)) created by '\(context.identity?.name ?? "?")'")
                return APIServer.json(Created(token: created.token, info: created.info), status: .created)
            } catch { return try RequestSupport.failure(error) }
        }
        admin.delete("/api/tokens/{id}") { _, context -> Response in
            guard let accounts = web.accounts, let id = Int64(try context.parameters.require("id")) else {
                return APIServer.json(["error": "bad id"], status: .badRequest)
            }
            do {
                try await accounts.revokeToken(id: id)
                return APIServer.json(["status": "revoked"])
            } catch { return try RequestSupport.failure(error) }
        }
    }
}
