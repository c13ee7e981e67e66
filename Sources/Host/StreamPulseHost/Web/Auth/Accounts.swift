import Crypto
import Foundation
import GRDB
import HummingbirdBcrypt
import StreamPulseCore
import Synchronization

/// What a signed-in user or an API token may do.
public enum Role: String, Codable, Sendable, CaseIterable {
    /// Settings, users, tokens, live preview, plus everything a viewer can do.
    case admin
    /// Read-only: dashboard, history, CSV export.
    case viewer
}

/// Who is making a request.
public struct Identity: Sendable, Equatable {
    public var userId: Int64?
    public var name: String
    public var role: Role
    /// Set for cookie sessions; token requests carry no ambient credentials and need no CSRF token.
    public var csrf: String?
    public var mustChangePassword: Bool
}

/// Dashboard accounts, sessions and API tokens in the history database (migration `v3-accounts`).
///
/// Passwords are bcrypt hashes (hummingbird-auth's `Bcrypt`, run on a small thread pool because a hash
/// takes ~100 ms by design). Session ids and API tokens are 256-bit random values; only their SHA-256
/// digests are stored, so a copy of the database opens no session.
public final class Accounts: Sendable {
    public struct User: Codable, Sendable, Equatable {
        public var id: Int64
        public var name: String
        public var role: Role
        public var mustChange: Bool
        public var createdAt: Date
    }

    public struct Token: Codable, Sendable, Equatable {
        public var id: Int64
        public var name: String
        public var role: Role
        public var createdAt: Date
        public var lastUsed: Date?
        /// The user who made it; nil when it was made with `streampulse token create`.
        public var owner: String?
    }

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case invalidName(String)
        case weakPassword(String)
        case duplicate(String)
        case notFound(String)
        case lastAdmin
        public var description: String {
            switch self {
            case .invalidName(let m), .weakPassword(let m), .duplicate(let m), .notFound(let m): m
            case .lastAdmin: "The last admin cannot be removed or demoted."
            }
        }
    }

    let pool: DatabasePool
    let hashing = BlockingPool(name: "bcrypt", threads: 2, maxThreads: 2)
    /// Absolute session lifetime and idle timeout.
    public let sessionLifetime: TimeInterval
    public let idleTimeout: TimeInterval
    let cost: UInt8

    public init(store: SQLiteStore, sessionLifetime: TimeInterval = 7 * 86_400, idleTimeout: TimeInterval = 12 * 3_600, bcryptCost: UInt8 = 11) {
        self.pool = store.pool
        self.sessionLifetime = sessionLifetime
        self.idleTimeout = idleTimeout
        self.cost = bcryptCost
    }

    // MARK: Secrets

    /// 32 random bytes from the kernel's CSPRNG, base64url without padding.
    public static func randomSecret(bytes: Int = 32) -> String {
        var generator = SystemRandomNumberGenerator()
        let raw = (0..<bytes).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return Data(raw).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// A password people can type: 20 characters from an alphabet without look-alikes (~115 bits).
    public static func randomPassword() -> String {
        let alphabet = Array("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<20).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }

    static func digest(_ secret: String) -> String {
        SHA256.hash(data: Data(secret.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Constant-time comparison for CSRF tokens.
    public static func same(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in x.indices { diff |= x[i] ^ y[i] }
        return diff == 0
    }

    /// The one spelling of a user name that accounts, sign-in and the throttle use: ASCII letters, digits
    /// and `. _ - @`, 1–64 characters, lower-cased. Nil for anything else — control characters (a NUL would
    /// cut the SQL lookup short), look-alike letters from other scripts, fullwidth forms.
    public static func canonicalName(_ name: String) -> String? {
        guard (1...64).contains(name.unicodeScalars.count),
              name.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-@".unicodeScalars.contains($0)) })
        else { return nil }
        return name.lowercased()
    }

    static func checkName(_ name: String) throws -> String {
        guard let canonical = canonicalName(name) else {
            throw Failure.invalidName("A user name is 1–64 ASCII letters, digits or . _ - @ (not case-sensitive).")
        }
        return canonical
    }

    /// Passwords seen first in every guessing list; refused whatever their length.
    static let commonPasswords: Set<String> = [
        "1234567890", "12345678910", "123456789012", "0123456789", "0987654321", "1111111111", "password1", "password12",
        "password123", "password1234", "passw0rd123", "qwertyuiop", "qwertyuiop1", "1q2w3e4r5t", "1qaz2wsx3edc", "asdfghjkl1",
        "administrator", "admin12345", "admin123456", "adminadmin", "changeme123", "letmein123", "welcome123", "iloveyou12",
        "abcdefghij", "abc1234567", "streampulse", "streampulse1", "camera1234", "security123", "trustno1234", "monkey12345",
    ]

    static func checkPassword(_ password: String) throws {
        guard password.count >= 10 else { throw Failure.weakPassword("A password has at least 10 characters.") }
        guard password.utf8.count <= 72 else { throw Failure.weakPassword("A password has at most 72 bytes (bcrypt's limit).") }
        guard Set(password).count >= 5, !password.allSatisfy(\.isWhitespace) else {
            throw Failure.weakPassword("A password needs at least 5 different characters.")
        }
        guard !commonPasswords.contains(password.lowercased()) else {
            throw Failure.weakPassword("That password is on every guessing list; choose another.")
        }
    }

    private let dummy = Mutex<String?>(nil)

    func dummyHash() async -> String {
        if let known = dummy.withLock({ $0 }) { return known }
        let made = await hash(Self.randomSecret())
        dummy.withLock { $0 = made }
        return made
    }

    func hash(_ password: String) async -> String {
        let cost = self.cost
        return await hashing.run { Bcrypt.hash(password, cost: cost) }
    }

    // MARK: Users

    public func userCount() async throws -> Int {
        try await pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM users") ?? 0 }
    }

    public func users() async throws -> [User] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, name, role, must_change, created_at FROM users ORDER BY name").map(Self.user)
        }
    }

    static func user(_ row: Row) -> User {
        User(id: row["id"], name: row["name"], role: Role(rawValue: row["role"]) ?? .viewer, mustChange: row["must_change"],
             createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }

    @discardableResult
    public func createUser(name: String, role: Role, password: String, mustChange: Bool) async throws -> User {
        let name = try Self.checkName(name)
        try Self.checkPassword(password)
        let hashed = await hash(password)
        return try await pool.write { db in
            if try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users WHERE name = ? COLLATE NOCASE", arguments: [name]) ?? 0 > 0 {
                throw Failure.duplicate("A user named '\(name)' exists.")
            }
            try db.execute(sql: "INSERT INTO users (name, role, password_hash, must_change, created_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [name, role.rawValue, hashed, mustChange, Date().timeIntervalSince1970])
            return User(id: db.lastInsertedRowID, name: name, role: role, mustChange: mustChange, createdAt: Date())
        }
    }

    /// The user when the password matches (bcrypt verify, off the cooperative pool); nil otherwise.
    public func verify(name: String, password: String) async throws -> User? {
        let canonical = Self.canonicalName(name)
        let row = try await pool.read { db in
            try canonical.flatMap {
                try Row.fetchOne(db, sql: "SELECT id, name, role, must_change, created_at, password_hash FROM users WHERE name = ? COLLATE NOCASE",
                                 arguments: [$0])
            }
        }
        // An unknown name still costs one full bcrypt, so timing does not reveal which names exist.
        let stored: String
        if let hash: String = row?["password_hash"] { stored = hash } else { stored = await dummyHash() }
        let ok = await hashing.run { Bcrypt.verify(password, hash: stored) }
        guard ok, let row else { return nil }
        return Self.user(row)
    }

    public func setPassword(userId: Int64, password: String, mustChange: Bool) async throws {
        try Self.checkPassword(password)
        let hashed = await hash(password)
        try await pool.write { db in
            try db.execute(sql: "UPDATE users SET password_hash = ?, must_change = ? WHERE id = ?", arguments: [hashed, mustChange, userId])
            guard db.changesCount == 1 else { throw Failure.notFound("No such user.") }
            // Other sessions of this user end with a password change.
            try db.execute(sql: "DELETE FROM sessions WHERE user_id = ?", arguments: [userId])
        }
    }

    public func setRole(userId: Int64, role: Role) async throws {
        try await pool.write { db in
            if role != .admin { try Self.keepAnAdmin(db, leaving: userId) }
            try db.execute(sql: "UPDATE users SET role = ? WHERE id = ?", arguments: [role.rawValue, userId])
            guard db.changesCount == 1 else { throw Failure.notFound("No such user.") }
        }
    }

    public func deleteUser(id: Int64) async throws {
        try await pool.write { db in
            try Self.keepAnAdmin(db, leaving: id)
            try db.execute(sql: "DELETE FROM sessions WHERE user_id = ?", arguments: [id])
            // A deleted user's access ends with them: the tokens they made go too.
            try db.execute(sql: "DELETE FROM api_tokens WHERE created_by = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM users WHERE id = ?", arguments: [id])
            guard db.changesCount == 1 else { throw Failure.notFound("No such user.") }
        }
    }

    static func keepAnAdmin(_ db: Database, leaving id: Int64) throws {
        let others = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users WHERE role = 'admin' AND id != ?", arguments: [id]) ?? 0
        let isAdmin = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users WHERE role = 'admin' AND id = ?", arguments: [id]) ?? 0
        if isAdmin > 0 && others == 0 { throw Failure.lastAdmin }
    }

    // MARK: Sessions

    public struct NewSession: Sendable {
        public var id: String
        public var csrf: String
        public var expires: Date
    }

    public func createSession(userId: Int64, now: Date = Date()) async throws -> NewSession {
        let id = Self.randomSecret(), csrf = Self.randomSecret()
        let expires = now.addingTimeInterval(sessionLifetime)
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO sessions (id_digest, user_id, csrf, created_at, expires_at, last_seen) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [Self.digest(id), userId, csrf, now.timeIntervalSince1970, expires.timeIntervalSince1970, now.timeIntervalSince1970])
            // Expired sessions are swept on every login.
            try db.execute(sql: "DELETE FROM sessions WHERE expires_at < ? OR last_seen < ?",
                           arguments: [now.timeIntervalSince1970, now.timeIntervalSince1970 - idleTimeout])
        }
        return NewSession(id: id, csrf: csrf, expires: expires)
    }

    /// The identity behind a session cookie, or nil when unknown, expired or idle too long.
    /// `last_seen` is written at most once a minute per session.
    public func session(_ id: String, now: Date = Date()) async throws -> Identity? {
        let digest = Self.digest(id)
        let row = try await pool.read { db in
            try Row.fetchOne(db, sql: """
                SELECT s.csrf, s.expires_at, s.last_seen, u.id, u.name, u.role, u.must_change
                FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_digest = ?
                """, arguments: [digest])
        }
        guard let row else { return nil }
        let t = now.timeIntervalSince1970
        let expires: Double = row["expires_at"], lastSeen: Double = row["last_seen"]
        guard expires > t, lastSeen > t - idleTimeout else { return nil }
        if t - lastSeen > 60 {
            try? await pool.write { try $0.execute(sql: "UPDATE sessions SET last_seen = ? WHERE id_digest = ?", arguments: [t, digest]) }
        }
        return Identity(userId: row["id"], name: row["name"], role: Role(rawValue: row["role"]) ?? .viewer, csrf: row["csrf"],
                        mustChangePassword: row["must_change"])
    }

    public func endSession(_ id: String) async throws {
        try await pool.write { try $0.execute(sql: "DELETE FROM sessions WHERE id_digest = ?", arguments: [Self.digest(id)]) }
    }

    // MARK: API tokens

    /// Creates a token and returns it in clear: the only time it is ever shown.
    /// - Parameter owner: the user making it (its tokens end with the user); nil on the command line.
    public func createToken(name: String, role: Role, owner: Int64? = nil) async throws -> (token: String, info: Token) {
        guard (1...64).contains(name.count), !name.unicodeScalars.contains(where: { CharacterSet.controlCharacters.contains($0) }) else {
            throw Failure.invalidName("A token name is 1–64 characters, without control characters.")
        }
        let token = "spt_" + Self.randomSecret()
        let now = Date()
        let (id, ownerName) = try await pool.write { db -> (Int64, String?) in
            try db.execute(sql: "INSERT INTO api_tokens (name, role, digest, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
                           arguments: [name, role.rawValue, Self.digest(token), now.timeIntervalSince1970, owner])
            let id = db.lastInsertedRowID
            return (id, try owner.flatMap { try String.fetchOne(db, sql: "SELECT name FROM users WHERE id = ?", arguments: [$0]) })
        }
        return (token, Token(id: id, name: name, role: role, createdAt: now, lastUsed: nil, owner: ownerName))
    }

    public func tokens() async throws -> [Token] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT t.id, t.name, t.role, t.created_at, t.last_used, u.name AS owner
                FROM api_tokens t LEFT JOIN users u ON u.id = t.created_by ORDER BY t.id
                """).map { row in
                Token(id: row["id"], name: row["name"], role: Role(rawValue: row["role"]) ?? .viewer,
                      createdAt: Date(timeIntervalSince1970: row["created_at"]),
                      lastUsed: (row["last_used"] as Double?).map(Date.init(timeIntervalSince1970:)), owner: row["owner"])
            }
        }
    }

    public func revokeToken(id: Int64) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM api_tokens WHERE id = ?", arguments: [id])
            guard db.changesCount == 1 else { throw Failure.notFound("No such token.") }
        }
    }

    public func token(_ token: String, now: Date = Date()) async throws -> Identity? {
        guard token.hasPrefix("spt_") else { return nil }
        let digest = Self.digest(token)
        guard let row = try await pool.read({ try Row.fetchOne($0, sql: "SELECT id, name, role, last_used FROM api_tokens WHERE digest = ?", arguments: [digest]) })
        else { return nil }
        let lastUsed: Double? = row["last_used"]
        if (lastUsed ?? 0) < now.timeIntervalSince1970 - 60 {
            try? await pool.write { try $0.execute(sql: "UPDATE api_tokens SET last_used = ? WHERE digest = ?", arguments: [now.timeIntervalSince1970, digest]) }
        }
        return Identity(userId: nil, name: "token:" + (row["name"] as String), role: Role(rawValue: row["role"]) ?? .viewer, csrf: nil,
                        mustChangePassword: false)
    }

    // MARK: Settings (dashboard defaults editable by admins)

    public func setting(_ key: String) async throws -> String? {
        try await pool.read { try String.fetchOne($0, sql: "SELECT value FROM settings_kv WHERE key = ?", arguments: [key]) }
    }

    public func setSetting(_ key: String, _ value: String) async throws {
        try await pool.write { try $0.execute(sql: "INSERT OR REPLACE INTO settings_kv (key, value) VALUES (?, ?)", arguments: [key, value]) }
    }

    // MARK: First start

    /// Where the first start writes the one-time admin password.
    public static func bootstrapFile(in dataDirectory: String) -> String {
        (dataDirectory as NSString).appendingPathComponent("admin-password.txt")
    }

    /// With no users yet: creates `admin` with the password from `STREAMPULSE_ADMIN_PASSWORD`, or a random
    /// one that must be changed at first login, written to `admin-password.txt` (mode 0600) in the data folder.
    /// Returns the generated password (nil when none was generated).
    public func bootstrap(dataDirectory: String, environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> (password: String, file: String)? {
        guard try await userCount() == 0 else { return nil }
        if let given = environment["STREAMPULSE_ADMIN_PASSWORD"], !given.isEmpty {
            try await createUser(name: "admin", role: .admin, password: given, mustChange: false)
            return nil
        }
        let password = Self.randomPassword()
        try await createUser(name: "admin", role: .admin, password: password, mustChange: true)
        let file = Self.bootstrapFile(in: dataDirectory)
        // Never through a symlink or into a file someone else prepared: a stale file is removed (unlink
        // removes a link, not its target) and the new one created exclusively.
        unlink(file)
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
        if fd >= 0 {
            fchmod(fd, 0o600)
            let text = "user: admin\npassword: \(password)\n(you are asked to change it at first login; then delete this file)\n"
            _ = text.withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        return (password, file)
    }
}
