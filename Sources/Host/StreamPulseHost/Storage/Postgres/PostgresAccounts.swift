import Foundation
import Logging
import PostgresNIO

/// Dashboard accounts, sessions, API tokens and settings in PostgreSQL (`AccountStorage`; tables from the
/// migration `accounts-as-sqlite-v4`, run by `PostgresHistory.migrate`). Every dashboard of a site deployment
/// uses the same rows, so a session started at one is valid at all of them.
public struct PostgresAccounts: AccountStorage {
    public let client: PostgresClient
    public let logger: Logger
    /// Serialises changes that must leave an admin (two admins demoting each other at once).
    static let adminsLock: Int64 = 1_717_171_719

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// PostgreSQL could not be reached or prepared (its tables made) within 15 s.
    public struct Unprepared: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs `body` on the accounts in `target` (for one command: its own client, its tables made first).
    public static func with<T: Sendable>(_ target: PostgresTarget, logger: Logger, _ body: @Sendable (Accounts) async throws -> T) async throws -> T {
        let client = PostgresClient(configuration: try target.clientConfiguration(holdLocksAtMost: .seconds(30)), backgroundLogger: logger)
        let running = Task { await client.run() }
        defer { running.cancel() }
        do {
            try await withDeadline(.seconds(15), "the command") { try await PostgresHistory(client: client, logger: logger).migrate() }
        } catch {
            throw Unprepared(description: "PostgreSQL at \(target): \(error)")
        }
        return try await body(Accounts(storage: PostgresAccounts(client: client, logger: logger)))
    }

    private typealias UserRow = (Int64, String, String, Bool, Double)
    private static let userColumns = "id, name, role, must_change, created_at"
    private static func user(_ r: UserRow) -> Accounts.User {
        Accounts.User(id: r.0, name: r.1, role: Role(rawValue: r.2) ?? .viewer, mustChange: r.3, createdAt: Date(timeIntervalSince1970: r.4))
    }

    public func userCount() async throws -> Int {
        for try await count in try await client.query("SELECT count(*)::bigint FROM users", logger: logger).decode(Int64.self) { return Int(count) }
        return 0
    }

    public func users() async throws -> [Accounts.User] {
        var out: [Accounts.User] = []
        for try await row in try await client.query("SELECT id, name, role, must_change, created_at FROM users ORDER BY name", logger: logger)
            .decode(UserRow.self) { out.append(Self.user(row)) }
        return out
    }

    public func insertUser(name: String, role: Role, passwordHash: String, mustChange: Bool, at: Date) async throws -> Accounts.User {
        let rows = try await client.query("""
            INSERT INTO users (name, role, password_hash, must_change, created_at)
            VALUES (\(name), \(role.rawValue), \(passwordHash), \(mustChange), \(at.timeIntervalSince1970))
            ON CONFLICT (name) DO NOTHING RETURNING id
            """, logger: logger)
        for try await id in rows.decode(Int64.self) {
            return Accounts.User(id: id, name: name, role: role, mustChange: mustChange, createdAt: at)
        }
        throw Accounts.Failure.duplicate("A user named '\(name)' exists.")
    }

    public func credentials(name: String) async throws -> (user: Accounts.User, passwordHash: String)? {
        let rows = try await client.query("SELECT id, name, role, must_change, created_at, password_hash FROM users WHERE name = \(name)",
                                          logger: logger)
        for try await (id, name, role, mustChange, created, hash) in rows.decode((Int64, String, String, Bool, Double, String).self) {
            return (Self.user((id, name, role, mustChange, created)), hash)
        }
        return nil
    }

    public func updatePassword(userId: Int64, passwordHash: String, mustChange: Bool) async throws {
        let logger = self.logger
        try await transaction { connection in
            guard try await Self.changed(connection, "UPDATE users SET password_hash = \(passwordHash), must_change = \(mustChange) WHERE id = \(userId) RETURNING id", logger)
            else { throw Accounts.Failure.notFound("No such user.") }
            try await connection.query("DELETE FROM sessions WHERE user_id = \(userId)", logger: logger)
        }
    }

    public func setRole(userId: Int64, role: Role) async throws {
        let logger = self.logger
        try await transaction { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.adminsLock))", logger: logger)
            if role != .admin { try await Self.keepAnAdmin(connection, leaving: userId, logger) }
            guard try await Self.changed(connection, "UPDATE users SET role = \(role.rawValue) WHERE id = \(userId) RETURNING id", logger)
            else { throw Accounts.Failure.notFound("No such user.") }
        }
    }

    public func deleteUser(id: Int64) async throws {
        let logger = self.logger
        try await transaction { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.adminsLock))", logger: logger)
            try await Self.keepAnAdmin(connection, leaving: id, logger)
            try await connection.query("DELETE FROM sessions WHERE user_id = \(id)", logger: logger)
            try await connection.query("DELETE FROM api_tokens WHERE created_by = \(id)", logger: logger)
            guard try await Self.changed(connection, "DELETE FROM users WHERE id = \(id) RETURNING id", logger)
            else { throw Accounts.Failure.notFound("No such user.") }
        }
    }

    /// A transaction whose refusals (`Accounts.Failure`) reach the caller as they are (postgres-nio wraps what
    /// the closure throws in a `PostgresTransactionError`).
    private func transaction(_ body: (PostgresConnection) async throws -> Void) async throws {
        do {
            try await client.withTransaction(logger: logger) { connection in try await body(connection) }
        } catch let error as PostgresTransactionError {
            if let refusal = error.closureError as? Accounts.Failure { throw refusal }
            throw error
        }
    }

    /// Whether the statement (ending in `RETURNING`) touched a row.
    private static func changed(_ connection: PostgresConnection, _ query: PostgresQuery, _ logger: Logger) async throws -> Bool {
        var any = false
        for try await _ in try await connection.query(query, logger: logger) { any = true }
        return any
    }

    private static func keepAnAdmin(_ connection: PostgresConnection, leaving id: Int64, _ logger: Logger) async throws {
        let rows = try await connection.query("""
            SELECT count(*) FILTER (WHERE id <> \(id))::bigint, count(*) FILTER (WHERE id = \(id))::bigint FROM users WHERE role = 'admin'
            """, logger: logger)
        for try await (others, isAdmin) in rows.decode((Int64, Int64).self) where isAdmin > 0 && others == 0 {
            throw Accounts.Failure.lastAdmin
        }
    }

    public func insertSession(_ s: StoredSession, idleBefore: Double) async throws {
        let logger = self.logger
        try await transaction { connection in
            try await connection.query("""
                INSERT INTO sessions (id_digest, user_id, csrf, created_at, expires_at, last_seen)
                VALUES (\(s.digest), \(s.userId), \(s.csrf), \(s.createdAt), \(s.expiresAt), \(s.lastSeen))
                """, logger: logger)
            try await connection.query("DELETE FROM sessions WHERE expires_at < \(s.createdAt) OR last_seen < \(idleBefore)", logger: logger)
        }
    }

    public func session(digest: String) async throws -> (session: StoredSession, user: Accounts.User)? {
        let rows = try await client.query("""
            SELECT s.csrf, s.created_at, s.expires_at, s.last_seen, u.id, u.name, u.role, u.must_change, u.created_at
            FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_digest = \(digest)
            """, logger: logger)
        for try await (csrf, created, expires, lastSeen, id, name, role, mustChange, userCreated) in rows.decode(
            (String, Double, Double, Double, Int64, String, String, Bool, Double).self) {
            return (StoredSession(digest: digest, userId: id, csrf: csrf, createdAt: created, expiresAt: expires, lastSeen: lastSeen),
                    Self.user((id, name, role, mustChange, userCreated)))
        }
        return nil
    }

    public func touchSession(digest: String, at: Double) async throws {
        try await client.query("UPDATE sessions SET last_seen = \(at) WHERE id_digest = \(digest)", logger: logger)
    }

    public func deleteSession(digest: String) async throws {
        try await client.query("DELETE FROM sessions WHERE id_digest = \(digest)", logger: logger)
    }

    public func insertToken(name: String, role: Role, digest: String, at: Date, owner: Int64?) async throws -> Accounts.Token {
        let rows = try await client.query("""
            WITH ins AS (INSERT INTO api_tokens (name, role, digest, created_at, created_by)
              VALUES (\(name), \(role.rawValue), \(digest), \(at.timeIntervalSince1970), \(owner)) RETURNING id, created_by)
            SELECT ins.id, u.name FROM ins LEFT JOIN users u ON u.id = ins.created_by
            """, logger: logger)
        for try await (id, ownerName) in rows.decode((Int64, String?).self) {
            return Accounts.Token(id: id, name: name, role: role, createdAt: at, lastUsed: nil, owner: ownerName)
        }
        throw Accounts.Failure.notFound("The token was not stored.")
    }

    public func tokens() async throws -> [Accounts.Token] {
        let rows = try await client.query("""
            SELECT t.id, t.name, t.role, t.created_at, t.last_used, u.name FROM api_tokens t LEFT JOIN users u ON u.id = t.created_by ORDER BY t.id
            """, logger: logger)
        var out: [Accounts.Token] = []
        for try await (id, name, role, created, lastUsed, owner) in rows.decode((Int64, String, String, Double, Double?, String?).self) {
            out.append(Accounts.Token(id: id, name: name, role: Role(rawValue: role) ?? .viewer, createdAt: Date(timeIntervalSince1970: created),
                                      lastUsed: lastUsed.map(Date.init(timeIntervalSince1970:)), owner: owner))
        }
        return out
    }

    public func deleteToken(id: Int64) async throws {
        var any = false
        for try await _ in try await client.query("DELETE FROM api_tokens WHERE id = \(id) RETURNING id", logger: logger) { any = true }
        guard any else { throw Accounts.Failure.notFound("No such token.") }
    }

    public func token(digest: String) async throws -> (name: String, role: Role, lastUsed: Double?)? {
        let rows = try await client.query("SELECT name, role, last_used FROM api_tokens WHERE digest = \(digest)", logger: logger)
        for try await (name, role, lastUsed) in rows.decode((String, String, Double?).self) {
            return (name, Role(rawValue: role) ?? .viewer, lastUsed)
        }
        return nil
    }

    public func touchToken(digest: String, at: Double) async throws {
        try await client.query("UPDATE api_tokens SET last_used = \(at) WHERE digest = \(digest)", logger: logger)
    }

    public func setting(_ key: String) async throws -> String? {
        for try await value in try await client.query("SELECT value FROM settings_kv WHERE key = \(key)", logger: logger).decode(String.self) {
            return value
        }
        return nil
    }

    public func setSetting(_ key: String, _ value: String) async throws {
        try await client.query("""
            INSERT INTO settings_kv (key, value) VALUES (\(key), \(value)) ON CONFLICT (key) DO UPDATE SET value = excluded.value
            """, logger: logger)
    }
}
