import Foundation

/// Where dashboard accounts, sessions, API tokens and the dashboard's settings are kept: the embedded SQLite
/// database (`SQLiteStore`, the default) or PostgreSQL (`PostgresAccounts`, shared by every dashboard of a
/// site deployment, so a sign-in at one answers at all of them behind a load balancer). `Accounts` holds the
/// policy (names, password rules, bcrypt, random secrets, expiry); a storage keeps rows and nothing else.
///
/// Contract — the same tests run against both (`AccountStorageTests`):
/// - a storage only ever receives digests of session ids and tokens, and bcrypt hashes of passwords;
/// - user names arrive canonical (lower-case) and are unique: `insertUser` throws `Accounts.Failure.duplicate`;
/// - `updatePassword` ends the user's sessions, `deleteUser` its sessions and the tokens it made, each in the
///   same transaction as the change;
/// - `setRole` (to anything but admin) and `deleteUser` throw `.lastAdmin` rather than leave no admin, and
///   `.notFound` for an unknown id (as do `updatePassword` and `deleteToken`);
/// - `insertSession` also deletes every session expired or idle since `idleBefore`;
/// - times are Unix seconds.
public protocol AccountStorage: Sendable {
    func userCount() async throws -> Int
    /// Every user, by name.
    func users() async throws -> [Accounts.User]
    func insertUser(name: String, role: Role, passwordHash: String, mustChange: Bool, at: Date) async throws -> Accounts.User
    /// The user of this canonical name with its password hash.
    func credentials(name: String) async throws -> (user: Accounts.User, passwordHash: String)?
    func updatePassword(userId: Int64, passwordHash: String, mustChange: Bool) async throws
    func setRole(userId: Int64, role: Role) async throws
    func deleteUser(id: Int64) async throws

    func insertSession(_ session: StoredSession, idleBefore: Double) async throws
    /// The session with this digest and its user.
    func session(digest: String) async throws -> (session: StoredSession, user: Accounts.User)?
    func touchSession(digest: String, at: Double) async throws
    func deleteSession(digest: String) async throws

    func insertToken(name: String, role: Role, digest: String, at: Date, owner: Int64?) async throws -> Accounts.Token
    /// Every token, oldest first.
    func tokens() async throws -> [Accounts.Token]
    func deleteToken(id: Int64) async throws
    /// The token with this digest.
    func token(digest: String) async throws -> (name: String, role: Role, lastUsed: Double?)?
    func touchToken(digest: String, at: Double) async throws

    func setting(_ key: String) async throws -> String?
    func setSetting(_ key: String, _ value: String) async throws
}

/// A dashboard session as stored: the digest of its id, never the id.
public struct StoredSession: Sendable, Equatable {
    public var digest: String
    public var userId: Int64
    public var csrf: String
    public var createdAt: Double
    public var expiresAt: Double
    public var lastSeen: Double

    public init(digest: String, userId: Int64, csrf: String, createdAt: Double, expiresAt: Double, lastSeen: Double) {
        self.digest = digest
        self.userId = userId
        self.csrf = csrf
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.lastSeen = lastSeen
    }
}
