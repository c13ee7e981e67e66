import Foundation
import GRDB

/// Accounts, sessions, tokens and dashboard settings in the embedded database (migration `v3-accounts`).
extension SQLiteStore: AccountStorage {
    public func userCount() async throws -> Int {
        try await pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM users") ?? 0 }
    }

    public func users() async throws -> [Accounts.User] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, name, role, must_change, created_at FROM users ORDER BY name").map(Self.user)
        }
    }

    static func user(_ row: Row) -> Accounts.User {
        Accounts.User(id: row["id"], name: row["name"], role: Role(rawValue: row["role"]) ?? .viewer, mustChange: row["must_change"],
                      createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }

    public func insertUser(name: String, role: Role, passwordHash: String, mustChange: Bool, at: Date) async throws -> Accounts.User {
        try await pool.write { db in
            if try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users WHERE name = ? COLLATE NOCASE", arguments: [name]) ?? 0 > 0 {
                throw Accounts.Failure.duplicate("A user named '\(name)' exists.")
            }
            try db.execute(sql: "INSERT INTO users (name, role, password_hash, must_change, created_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [name, role.rawValue, passwordHash, mustChange, at.timeIntervalSince1970])
            return Accounts.User(id: db.lastInsertedRowID, name: name, role: role, mustChange: mustChange, createdAt: at)
        }
    }

    public func credentials(name: String) async throws -> (user: Accounts.User, passwordHash: String)? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT id, name, role, must_change, created_at, password_hash FROM users WHERE name = ? COLLATE NOCASE",
                             arguments: [name]).map { (Self.user($0), $0["password_hash"]) }
        }
    }

    public func updatePassword(userId: Int64, passwordHash: String, mustChange: Bool) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE users SET password_hash = ?, must_change = ? WHERE id = ?", arguments: [passwordHash, mustChange, userId])
            guard db.changesCount == 1 else { throw Accounts.Failure.notFound("No such user.") }
            try db.execute(sql: "DELETE FROM sessions WHERE user_id = ?", arguments: [userId])
        }
    }

    public func setRole(userId: Int64, role: Role) async throws {
        try await pool.write { db in
            if role != .admin { try Self.keepAnAdmin(db, leaving: userId) }
            try db.execute(sql: "UPDATE users SET role = ? WHERE id = ?", arguments: [role.rawValue, userId])
            guard db.changesCount == 1 else { throw Accounts.Failure.notFound("No such user.") }
        }
    }

    public func deleteUser(id: Int64) async throws {
        try await pool.write { db in
            try Self.keepAnAdmin(db, leaving: id)
            try db.execute(sql: "DELETE FROM sessions WHERE user_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM api_tokens WHERE created_by = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM users WHERE id = ?", arguments: [id])
            guard db.changesCount == 1 else { throw Accounts.Failure.notFound("No such user.") }
        }
    }

    static func keepAnAdmin(_ db: Database, leaving id: Int64) throws {
        let others = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users WHERE role = 'admin' AND id != ?", arguments: [id]) ?? 0
        let isAdmin = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users WHERE role = 'admin' AND id = ?", arguments: [id]) ?? 0
        if isAdmin > 0 && others == 0 { throw Accounts.Failure.lastAdmin }
    }

    public func insertSession(_ s: StoredSession, idleBefore: Double) async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO sessions (id_digest, user_id, csrf, created_at, expires_at, last_seen) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [s.digest, s.userId, s.csrf, s.createdAt, s.expiresAt, s.lastSeen])
            try db.execute(sql: "DELETE FROM sessions WHERE expires_at < ? OR last_seen < ?", arguments: [s.createdAt, idleBefore])
        }
    }

    public func session(digest: String) async throws -> (session: StoredSession, user: Accounts.User)? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: """
                SELECT s.csrf, s.created_at AS s_created, s.expires_at, s.last_seen, u.id, u.name, u.role, u.must_change, u.created_at
                FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_digest = ?
                """, arguments: [digest]).map { row in
                (StoredSession(digest: digest, userId: row["id"], csrf: row["csrf"], createdAt: row["s_created"], expiresAt: row["expires_at"],
                               lastSeen: row["last_seen"]), Self.user(row))
            }
        }
    }

    public func touchSession(digest: String, at: Double) async throws {
        try await pool.write { try $0.execute(sql: "UPDATE sessions SET last_seen = ? WHERE id_digest = ?", arguments: [at, digest]) }
    }

    public func deleteSession(digest: String) async throws {
        try await pool.write { try $0.execute(sql: "DELETE FROM sessions WHERE id_digest = ?", arguments: [digest]) }
    }

    public func insertToken(name: String, role: Role, digest: String, at: Date, owner: Int64?) async throws -> Accounts.Token {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO api_tokens (name, role, digest, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
                           arguments: [name, role.rawValue, digest, at.timeIntervalSince1970, owner])
            let id = db.lastInsertedRowID
            let ownerName = try owner.flatMap { try String.fetchOne(db, sql: "SELECT name FROM users WHERE id = ?", arguments: [$0]) }
            return Accounts.Token(id: id, name: name, role: role, createdAt: at, lastUsed: nil, owner: ownerName)
        }
    }

    public func tokens() async throws -> [Accounts.Token] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT t.id, t.name, t.role, t.created_at, t.last_used, u.name AS owner
                FROM api_tokens t LEFT JOIN users u ON u.id = t.created_by ORDER BY t.id
                """).map { row in
                Accounts.Token(id: row["id"], name: row["name"], role: Role(rawValue: row["role"]) ?? .viewer,
                               createdAt: Date(timeIntervalSince1970: row["created_at"]),
                               lastUsed: (row["last_used"] as Double?).map(Date.init(timeIntervalSince1970:)), owner: row["owner"])
            }
        }
    }

    public func deleteToken(id: Int64) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM api_tokens WHERE id = ?", arguments: [id])
            guard db.changesCount == 1 else { throw Accounts.Failure.notFound("No such token.") }
        }
    }

    public func token(digest: String) async throws -> (name: String, role: Role, lastUsed: Double?)? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT name, role, last_used FROM api_tokens WHERE digest = ?", arguments: [digest]).map {
                ($0["name"], Role(rawValue: $0["role"]) ?? .viewer, $0["last_used"])
            }
        }
    }

    public func touchToken(digest: String, at: Double) async throws {
        try await pool.write { try $0.execute(sql: "UPDATE api_tokens SET last_used = ? WHERE digest = ?", arguments: [at, digest]) }
    }

    public func setting(_ key: String) async throws -> String? {
        try await pool.read { try String.fetchOne($0, sql: "SELECT value FROM settings_kv WHERE key = ?", arguments: [key]) }
    }

    public func setSetting(_ key: String, _ value: String) async throws {
        try await pool.write { try $0.execute(sql: "INSERT OR REPLACE INTO settings_kv (key, value) VALUES (?, ?)", arguments: [key, value]) }
    }
}
