import Foundation
import Logging
import PostgresNIO
import Testing
@testable import StreamPulseHost

/// The `AccountStorage` contract, run against the embedded database (`AccessTests`) and PostgreSQL
/// (`PostgresAccountsTests`): bcrypt at rest, digests only, expiry and idle timeout, a password change ending
/// sessions, tokens shown once and revocable, the last admin kept, weak passwords and look-alike names refused.
enum AccountStorageContract {
    /// - Parameter count: runs a `SELECT COUNT(*) …` on the storage's own tables and returns the number.
    static func run(_ accounts: Accounts, dataDirectory dir: String, count: (String) async throws -> Int) async throws {
        // First start without STREAMPULSE_ADMIN_PASSWORD: a random password in a 0600 file, change required.
        let generated = try #require(try await accounts.bootstrap(dataDirectory: dir, environment: [:]))
        #expect(generated.password.count == 20)
        var info = stat()
        stat(generated.file, &info)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(try String(contentsOfFile: generated.file, encoding: .utf8).contains(generated.password))
        #expect(try await accounts.bootstrap(dataDirectory: dir, environment: [:]) == nil, "only once")
        let admin = try #require(try await accounts.verify(name: "admin", password: generated.password))
        #expect(admin.mustChange)
        #expect(try await accounts.verify(name: "admin", password: "wrong-password") == nil)
        #expect(try await accounts.verify(name: "nobody", password: generated.password) == nil)
        #expect(try await count("SELECT COUNT(*) FROM users WHERE password_hash LIKE '$2%' AND password_hash NOT LIKE '%\(generated.password)%'") == 1,
                "a bcrypt hash at rest, not the password")

        // Sessions: only a digest is stored; expiry and idle timeout end them; a password change ends all.
        let now = Date()
        let session = try await accounts.createSession(userId: admin.id, now: now)
        #expect(try await count("SELECT COUNT(*) FROM sessions WHERE id_digest = '\(session.id)'") == 0)
        #expect(try await count("SELECT COUNT(*) FROM sessions WHERE id_digest = '\(Accounts.digest(session.id))'") == 1)
        await #expect(try accounts.session(session.id, now: now.addingTimeInterval(60))?.name == "admin")
        await #expect(try accounts.session(session.id, now: now.addingTimeInterval(700)) == nil, "idle longer than the idle timeout")
        await #expect(try accounts.session(session.id, now: now.addingTimeInterval(3700)) == nil, "past its lifetime")
        await #expect(try accounts.session("forged", now: now) == nil)
        // A sign-in sweeps sessions idle too long.
        _ = try await accounts.createSession(userId: admin.id, now: now.addingTimeInterval(1000))
        #expect(try await count("SELECT COUNT(*) FROM sessions WHERE id_digest = '\(Accounts.digest(session.id))'") == 0)
        let second = try await accounts.createSession(userId: admin.id, now: Date())
        try await accounts.setPassword(userId: admin.id, password: "a-brand-new-password", mustChange: false)
        await #expect(try accounts.session(second.id) == nil)
        await #expect(throws: Accounts.Failure.self) { try await accounts.setPassword(userId: 9_999, password: "another-good-one", mustChange: false) }

        // Tokens: shown once, stored as a digest, revocable; a user's tokens end with the user.
        let created = try await accounts.createToken(name: "prom", role: .viewer)
        await #expect(try accounts.token(created.token)?.role == .viewer)
        #expect(try await count("SELECT COUNT(*) FROM api_tokens WHERE digest = '\(created.token)'") == 0)
        try await accounts.revokeToken(id: created.info.id)
        await #expect(try accounts.token(created.token) == nil)
        await #expect(throws: Accounts.Failure.self) { try await accounts.revokeToken(id: created.info.id) }
        let olga = try await accounts.createUser(name: "Olga", role: .admin, password: "olgas-own-password", mustChange: false)
        #expect(olga.name == "olga")
        let hers = try await accounts.createToken(name: "olga's script", role: .admin, owner: olga.id)
        let tokenNames = try await accounts.tokens().map(\.name)
        #expect(hers.info.owner == "olga" && tokenNames == ["olga's script"])
        let herSession = try await accounts.createSession(userId: olga.id)
        try await accounts.setRole(userId: olga.id, role: .viewer)
        let roles = try await accounts.users().map { "\($0.name):\($0.role)" }
        #expect(roles == ["admin:admin", "olga:viewer"])
        try await accounts.deleteUser(id: olga.id)
        await #expect(try accounts.token(hers.token) == nil)
        await #expect(try accounts.session(herSession.id) == nil)
        #expect(try await accounts.userCount() == 1)

        // The last admin cannot be removed or demoted; weak passwords are refused.
        await #expect(throws: Accounts.Failure.lastAdmin) { try await accounts.setRole(userId: admin.id, role: .viewer) }
        await #expect(throws: Accounts.Failure.lastAdmin) { try await accounts.deleteUser(id: admin.id) }
        await #expect(throws: Accounts.Failure.self) { try await accounts.createUser(name: "x", role: .viewer, password: "short", mustChange: true) }
        await #expect(throws: Accounts.Failure.self) { try await accounts.createUser(name: "<b>", role: .viewer, password: "long-enough-pw", mustChange: true) }
        for weak in ["          ", "1234567890", "aaaaaaaaaaaa", "ababababab", "Password123", "qwertyuiop"] {
            await #expect(throws: Accounts.Failure.self, "\(weak)") { try await accounts.createUser(name: "w", role: .viewer, password: weak, mustChange: true) }
        }
        // One account per name whatever the case; look-alike names are refused.
        await #expect(throws: Accounts.Failure.self) { try await accounts.createUser(name: "ADMIN", role: .viewer, password: "long-enough-pw", mustChange: true) }
        await #expect(throws: Accounts.Failure.self) { try await accounts.createUser(name: "\u{430}dmin", role: .viewer, password: "long-enough-pw", mustChange: true) }
        #expect(try await accounts.verify(name: "ADMIN", password: "a-brand-new-password") != nil, "names are not case-sensitive")
        #expect(try await accounts.verify(name: "admin\u{0}x", password: "a-brand-new-password") == nil, "a NUL never matches")

        // Dashboard settings.
        #expect(try await accounts.setting("timezone_default") == nil)
        try await accounts.setSetting("timezone_default", "Europe/Oslo")
        try await accounts.setSetting("timezone_default", "Asia/Tokyo")
        #expect(try await accounts.setting("timezone_default") == "Asia/Tokyo")
    }
}

/// Accounts in PostgreSQL (issue #17): the same contract as the embedded database, and what sharing them is
/// for — a session started at one dashboard is valid at another, signed out at one it is gone at both.
@Suite(.serialized) struct PostgresAccountsTests {
    @Test func theAccountContract_holdsOnPostgreSQL_andTwoDashboardsShareSessions() async throws {
        let server = try await TestPostgres.start()
        defer { server.remove() }
        let client = server.client(), other = server.client()
        let runs = [Task { await client.run() }, Task { await other.run() }]
        defer { for run in runs { run.cancel() } }
        let logger = Logger(label: "accounts")
        try await PostgresHistory(client: client, logger: logger).migrate()
        let dir = TestEnvironment.temporaryDirectory("pg-accounts")
        let accounts = Accounts(storage: PostgresAccounts(client: client, logger: logger), sessionLifetime: 3600, idleTimeout: 600, bcryptCost: 4)
        try await AccountStorageContract.run(accounts, dataDirectory: dir) { sql in
            for try await value in try await client.query(PostgresQuery(unsafeSQL: sql.replacingOccurrences(of: "COUNT(*)", with: "COUNT(*)::bigint")))
                .decode(Int64.self) { return Int(value) }
            return -1
        }
        // A second dashboard on the same database (its own connections).
        let second = Accounts(storage: PostgresAccounts(client: other, logger: logger), sessionLifetime: 3600, idleTimeout: 600, bcryptCost: 4)
        let admin = try #require(try await second.verify(name: "admin", password: "a-brand-new-password"))
        let session = try await accounts.createSession(userId: admin.id)
        let seen = try await second.session(session.id)
        #expect(seen?.name == "admin" && seen?.csrf == session.csrf)
        try await second.endSession(session.id)
        #expect(try await accounts.session(session.id) == nil)
        await server.stop()
    }
}
