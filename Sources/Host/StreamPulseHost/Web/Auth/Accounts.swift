import Crypto
import Foundation
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

/// Dashboard accounts, sessions and API tokens, kept by an `AccountStorage` (the embedded database, or PostgreSQL
/// for dashboards that share them).
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

    /// Where the rows live: the embedded database or PostgreSQL.
    public let storage: any AccountStorage
    let hashing = BlockingPool(name: "bcrypt", threads: 2, maxThreads: 2)
    /// Absolute session lifetime and idle timeout.
    public let sessionLifetime: TimeInterval
    public let idleTimeout: TimeInterval
    let cost: UInt8

    public convenience init(store: SQLiteStore, sessionLifetime: TimeInterval = 7 * 86_400, idleTimeout: TimeInterval = 12 * 3_600,
                            bcryptCost: UInt8 = 11) {
        self.init(storage: store, sessionLifetime: sessionLifetime, idleTimeout: idleTimeout, bcryptCost: bcryptCost)
    }

    public init(storage: any AccountStorage, sessionLifetime: TimeInterval = 7 * 86_400, idleTimeout: TimeInterval = 12 * 3_600,
                bcryptCost: UInt8 = 11) {
        self.storage = storage
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

    public func userCount() async throws -> Int { try await storage.userCount() }

    public func users() async throws -> [User] { try await storage.users() }

    @discardableResult
    public func createUser(name: String, role: Role, password: String, mustChange: Bool) async throws -> User {
        let name = try Self.checkName(name)
        try Self.checkPassword(password)
        let hashed = await hash(password)
        return try await storage.insertUser(name: name, role: role, passwordHash: hashed, mustChange: mustChange, at: Date())
    }

    /// The user when the password matches (bcrypt verify, off the cooperative pool); nil otherwise.
    public func verify(name: String, password: String) async throws -> User? {
        let found = try await Self.canonicalName(name).asyncFlatMap { try await storage.credentials(name: $0) }
        // An unknown name still costs one full bcrypt, so timing does not reveal which names exist.
        let stored: String
        if let found { stored = found.passwordHash } else { stored = await dummyHash() }
        let ok = await hashing.run { Bcrypt.verify(password, hash: stored) }
        guard ok, let found else { return nil }
        return found.user
    }

    /// Sets a password; the user's other sessions end with it.
    public func setPassword(userId: Int64, password: String, mustChange: Bool) async throws {
        try Self.checkPassword(password)
        let hashed = await hash(password)
        try await storage.updatePassword(userId: userId, passwordHash: hashed, mustChange: mustChange)
    }

    public func setRole(userId: Int64, role: Role) async throws {
        try await storage.setRole(userId: userId, role: role)
    }

    /// Deletes a user; its sessions and the tokens it made end with it.
    public func deleteUser(id: Int64) async throws {
        try await storage.deleteUser(id: id)
    }

    // MARK: Sessions

    public struct NewSession: Sendable {
        public var id: String
        public var csrf: String
        public var expires: Date
    }

    /// A new session (only its digest is stored); expired and idle sessions are swept on every sign-in.
    public func createSession(userId: Int64, now: Date = Date()) async throws -> NewSession {
        let id = Self.randomSecret(), csrf = Self.randomSecret()
        let expires = now.addingTimeInterval(sessionLifetime)
        let t = now.timeIntervalSince1970
        try await storage.insertSession(StoredSession(digest: Self.digest(id), userId: userId, csrf: csrf, createdAt: t,
                                                      expiresAt: expires.timeIntervalSince1970, lastSeen: t), idleBefore: t - idleTimeout)
        return NewSession(id: id, csrf: csrf, expires: expires)
    }

    /// The identity behind a session cookie, or nil when unknown, expired or idle too long.
    /// `last_seen` is written at most once a minute per session.
    public func session(_ id: String, now: Date = Date()) async throws -> Identity? {
        let digest = Self.digest(id)
        guard let (session, user) = try await storage.session(digest: digest) else { return nil }
        let t = now.timeIntervalSince1970
        guard session.expiresAt > t, session.lastSeen > t - idleTimeout else { return nil }
        if t - session.lastSeen > 60 { try? await storage.touchSession(digest: digest, at: t) }
        return Identity(userId: user.id, name: user.name, role: user.role, csrf: session.csrf, mustChangePassword: user.mustChange)
    }

    public func endSession(_ id: String) async throws {
        try await storage.deleteSession(digest: Self.digest(id))
    }

    // MARK: API tokens

    /// Creates a token and returns it in clear: the only time it is ever shown.
    /// - Parameter owner: the user making it (its tokens end with the user); nil on the command line.
    public func createToken(name: String, role: Role, owner: Int64? = nil) async throws -> (token: String, info: Token) {
        guard (1...64).contains(name.count), !name.unicodeScalars.contains(where: { CharacterSet.controlCharacters.contains($0) }) else {
            throw Failure.invalidName("A token name is 1–64 characters, without control characters.")
        }
        let token = "spt_" + Self.randomSecret()
        let info = try await storage.insertToken(name: name, role: role, digest: Self.digest(token), at: Date(), owner: owner)
        return (token, info)
    }

    public func tokens() async throws -> [Token] { try await storage.tokens() }

    public func revokeToken(id: Int64) async throws { try await storage.deleteToken(id: id) }

    /// The identity behind a bearer token; `last_used` is written at most once a minute.
    public func token(_ token: String, now: Date = Date()) async throws -> Identity? {
        guard token.hasPrefix("spt_") else { return nil }
        let digest = Self.digest(token)
        guard let found = try await storage.token(digest: digest) else { return nil }
        if (found.lastUsed ?? 0) < now.timeIntervalSince1970 - 60 { try? await storage.touchToken(digest: digest, at: now.timeIntervalSince1970) }
        return Identity(userId: nil, name: "token:" + found.name, role: found.role, csrf: nil, mustChangePassword: false)
    }

    // MARK: Settings (dashboard defaults editable by admins)

    public func setting(_ key: String) async throws -> String? { try await storage.setting(key) }

    public func setSetting(_ key: String, _ value: String) async throws { try await storage.setSetting(key, value) }

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

extension Optional {
    /// `flatMap` with an async transform.
    func asyncFlatMap<U>(_ transform: (Wrapped) async throws -> U?) async rethrows -> U? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}
