import Foundation
import GRDB
import HTTPTypes
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// Dashboard security without a browser: the pure access table and login throttle, and accounts in a
/// real SQLite file (bcrypt, digests at rest, expiry, the first-start password file).
@Suite struct AccessTests {
    let admin = Identity(userId: 1, name: "admin", role: .admin, csrf: "tok", mustChangePassword: false)
    let viewer = Identity(userId: 2, name: "olga", role: .viewer, csrf: "tok2", mustChangePassword: false)
    let token = Identity(userId: nil, name: "token:prom", role: .viewer, csrf: nil, mustChangePassword: false)

    @Test func openRoutes_needNoSession_everythingElseDoes() {
        #expect(AccessPolicy.decide(.anyone, method: .get, identity: nil, csrfHeader: nil) == .allow)
        #expect(AccessPolicy.decide(.anyone, method: .post, identity: nil, csrfHeader: nil) == .allow)
        for access in [Access.account, .viewer, .admin] {
            #expect(AccessPolicy.decide(access, method: .get, identity: nil, csrfHeader: nil) == .unauthenticated, "\(access)")
        }
    }

    @Test func nonCanonicalPaths_areRecognised() {
        for sneaky in ["/api/session/../streams", "/assets/../api/users", "/assets/..%2fapi/users", "//api/users", "/assets/%2e%2e/api/users", "/./api/users"] {
            #expect(!AccessPolicy.isCanonical(sneaky), "\(sneaky)")
        }
        for fine in ["/", "/api/streams", "/api/streams/cam-1/preview", "/api/streams/cam-1/preview/"] {
            #expect(AccessPolicy.isCanonical(fine), "\(fine)")
        }
    }

    @Test func stateChanges_withACookieSession_needTheCSRFToken() {
        #expect(AccessPolicy.decide(.account, method: .post, identity: admin, csrfHeader: nil) == .csrf)
        #expect(AccessPolicy.decide(.account, method: .post, identity: admin, csrfHeader: "wrong") == .csrf)
        #expect(AccessPolicy.decide(.admin, method: .delete, identity: admin, csrfHeader: "tok") == .allow)
        #expect(AccessPolicy.decide(.admin, method: .put, identity: admin, csrfHeader: "tok2") == .csrf, "another session's token")
        // Bearer tokens are not ambient credentials: no CSRF token needed.
        #expect(AccessPolicy.decide(.account, method: .post, identity: token, csrfHeader: nil) == .allow)
        #expect(AccessPolicy.decide(.viewer, method: .get, identity: admin, csrfHeader: nil) == .allow)
    }

    @Test func viewers_areRefusedAdminRoutes() {
        for method in [HTTPRequest.Method.get, .post, .put, .delete] {
            #expect(AccessPolicy.decide(.admin, method: method, identity: viewer, csrfHeader: "tok2") == .forbidden("This needs the admin role."))
            #expect(AccessPolicy.decide(.admin, method: method, identity: admin, csrfHeader: "tok") == .allow)
        }
        #expect(AccessPolicy.decide(.admin, method: .get, identity: token, csrfHeader: nil) == .forbidden("This needs the admin role."))
        #expect(AccessPolicy.decide(.viewer, method: .get, identity: viewer, csrfHeader: nil) == .allow)
    }

    @Test func aPasswordChange_isRequiredBeforeAnythingElse() {
        var fresh = admin
        fresh.mustChangePassword = true
        #expect(AccessPolicy.decide(.viewer, method: .get, identity: fresh, csrfHeader: nil) == .passwordChangeRequired)
        #expect(AccessPolicy.decide(.admin, method: .get, identity: fresh, csrfHeader: nil) == .passwordChangeRequired)
        #expect(AccessPolicy.decide(.account, method: .post, identity: fresh, csrfHeader: "tok") == .allow)
        #expect(AccessPolicy.decide(.account, method: .post, identity: fresh, csrfHeader: nil) == .csrf)
    }

    @Test func loginThrottle_slowsTheGuesser_exponentially_andNeverTheOwnerElsewhere() {
        var t = LoginThrottle(freePerUser: 3, freePerAddress: 5, maxDelay: 60, window: 600)
        for i in 0..<3 {
            #expect(t.retryAfter(user: "admin", address: "evil", now: Double(i)) == nil)
            t.failed(user: "admin", address: "evil", now: Double(i))
        }
        #expect(t.retryAfter(user: "admin", address: "evil", now: 3) == nil, "three free failures")
        t.failed(user: "admin", address: "evil", now: 3)
        #expect(t.retryAfter(user: "admin", address: "evil", now: 3) == 1, "then 1 s")
        t.failed(user: "admin", address: "evil", now: 4)
        #expect(t.retryAfter(user: "admin", address: "evil", now: 4) == 2, "then 2 s, 4 s …")
        for second in 5...20 { t.failed(user: "admin", address: "evil", now: Double(second)) }
        #expect(t.retryAfter(user: "admin", address: "evil", now: 20) == 60, "capped at maxDelay")
        // The owner from another address is never held back by the guesser.
        #expect(t.retryAfter(user: "admin", address: "office", now: 21) == nil)
        // The guesser's address is slowed for every account once it passes its own free failures.
        #expect(t.retryAfter(user: "olga", address: "evil", now: 21) != nil)
        #expect(t.retryAfter(user: "olga", address: "elsewhere", now: 21) == nil)
        // A name that can be no account still counts against the address.
        var u = LoginThrottle(freePerUser: 3, freePerAddress: 2, maxDelay: 60, window: 600)
        for i in 0..<3 { u.failed(user: nil, address: "scanner", now: Double(i)) }
        #expect(u.retryAfter(user: nil, address: "scanner", now: 2.5) != nil)
        // Success clears the account's count for that address; old failures are forgotten after the window.
        var v = LoginThrottle(freePerUser: 1, freePerAddress: 100, maxDelay: 60, window: 600)
        v.failed(user: "admin", address: "a", now: 0)
        v.failed(user: "admin", address: "a", now: 0)
        #expect(v.retryAfter(user: "admin", address: "a", now: 0.5) == 1)
        v.succeeded(user: "admin", address: "a")
        #expect(v.retryAfter(user: "admin", address: "a", now: 0.5) == nil)
        v.failed(user: "admin", address: "b", now: 0)
        v.failed(user: "admin", address: "b", now: 0)
        #expect(v.retryAfter(user: "admin", address: "b", now: 700) == nil)
    }

    @Test func userNames_haveOneCanonicalSpelling_andLookAlikesAreNoAccount() {
        #expect(Accounts.canonicalName("Admin") == "admin")
        #expect(Accounts.canonicalName("olga.k@site-1") == "olga.k@site-1")
        for impostor in ["admin\u{0}x", "admin\u{0}", "\u{430}dmin", "\u{FF41}\u{FF44}\u{FF4D}\u{FF49}\u{FF4E}", "ad min", "admin\n", "",
                         String(repeating: "a", count: 65), "admin\u{200B}"] {
            #expect(Accounts.canonicalName(impostor) == nil, "\(impostor.unicodeScalars.map { String($0.value, radix: 16) })")
        }
    }

    @Test func proxies_areBelievedOnlyWhenTrusted() {
        #expect(IdentityMiddleware.clientAddress(peer: "10.9.9.9", forwardedFor: "1.2.3.4", trusted: []) == "10.9.9.9")
        #expect(IdentityMiddleware.clientAddress(peer: "127.0.0.1", forwardedFor: "1.2.3.4", trusted: ["127.0.0.1"]) == "1.2.3.4")
        // A client cannot pick its own address by sending a header: only the right-most untrusted hop counts.
        #expect(IdentityMiddleware.clientAddress(peer: "127.0.0.1", forwardedFor: "6.6.6.6, 1.2.3.4", trusted: ["127.0.0.1"]) == "1.2.3.4")
        #expect(IdentityMiddleware.clientAddress(peer: "127.0.0.1", forwardedFor: "1.2.3.4, 127.0.0.2", trusted: ["127.0.0.1", "127.0.0.2"]) == "1.2.3.4")
        #expect(IdentityMiddleware.clientAddress(peer: "127.0.0.1", forwardedFor: nil, trusted: ["127.0.0.1"]) == "127.0.0.1")
    }

    @Test func accounts_bcrypt_digestsAtRest_expiry_andTheFirstStartFile() async throws {
        let dir = TestEnvironment.temporaryDirectory("accounts")
        let store = try SQLiteStore(path: dir + "/streampulse.db")
        try await AccountStorageContract.run(Accounts(storage: store, sessionLifetime: 3600, idleTimeout: 600, bcryptCost: 4), dataDirectory: dir) { sql in
            try await store.pool.read { try Int.fetchOne($0, sql: sql) ?? -1 }
        }
    }

    @Test func bootstrap_takesThePasswordFromTheEnvironment_withoutForcingAChange() async throws {
        let dir = TestEnvironment.temporaryDirectory("accounts-env")
        let accounts = Accounts(store: try SQLiteStore(path: dir + "/streampulse.db"), bcryptCost: 4)
        #expect(try await accounts.bootstrap(dataDirectory: dir, environment: ["STREAMPULSE_ADMIN_PASSWORD": "from-the-environment"]) == nil)
        #expect(!FileManager.default.fileExists(atPath: dir + "/admin-password.txt"))
        let admin = try #require(try await accounts.verify(name: "admin", password: "from-the-environment"))
        #expect(!admin.mustChange)
    }

    /// The first start with STREAMPULSE_ADMIN_PASSWORD says it created the user (it said "users exist", issue
    /// #13); later starts say the variable is no longer used. The password itself is never logged.
    @Test func theFirstStartLog_saysWhatHappened() async throws {
        let dir = TestEnvironment.temporaryDirectory("accounts-log")
        let store = try SQLiteStore(path: dir + "/streampulse.db")
        let environment = ["STREAMPULSE_ADMIN_PASSWORD": "first-start-secret"]
        let first = CapturedLogs()
        _ = await Monitor.openAccounts(store, dataDirectory: dir, environment: environment, bcryptCost: 4, logger: first.logger())
        #expect(first.all.contains { $0.contains("Created dashboard user 'admin' with the password from STREAMPULSE_ADMIN_PASSWORD") }, "\(first.all)")
        #expect(!first.all.contains { $0.contains("users exist") })
        let second = CapturedLogs()
        _ = await Monitor.openAccounts(store, dataDirectory: dir, environment: environment, bcryptCost: 4, logger: second.logger())
        #expect(second.all.contains { $0.contains("Dashboard users exist") }, "\(second.all)")
        #expect(!(first.all + second.all).contains { $0.contains("first-start-secret") })
    }
}
