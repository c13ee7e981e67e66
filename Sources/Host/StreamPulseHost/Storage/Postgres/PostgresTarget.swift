import Foundation
import NIOSSL
import PostgresNIO

/// Where the PostgreSQL server is (`serve --postgres URL`): `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`
/// with `?sslmode=disable|require|verify-full` and `sslrootcert=PATH`. A password left out of the URL is read
/// from `PGPASSWORD` (the environment, not the command line, which every local user can read in `ps`).
/// `description` never contains the password.
public struct PostgresTarget: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var database: String
    var password: String?
    /// `disable` (the default), `require` (TLS, server certificate not checked) or `verify-full`.
    public var sslMode: String
    public var rootCertificate: String?

    /// Why a URL was not accepted (the message never repeats the password).
    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// A target from the config's `storage.postgres` (the password from its credentials entry).
    public init(host: String, port: Int = 5432, user: String, database: String, password: String?, sslMode: String = "disable",
                rootCertificate: String? = nil) {
        self.host = host
        self.port = port
        self.user = user
        self.database = database
        self.password = password
        self.sslMode = sslMode
        self.rootCertificate = rootCertificate
    }

    public init(url text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard let url = URLComponents(string: text), ["postgres", "postgresql"].contains(url.scheme ?? ""),
              let host = url.host, !host.isEmpty else {
            throw Invalid(description: "--postgres must look like postgres://USER@HOST:PORT/DATABASE")
        }
        guard let user = url.user, !user.isEmpty else {
            throw Invalid(description: "--postgres: the URL names no user (postgres://USER@\(host)/…)")
        }
        self.host = host
        self.port = url.port ?? 5432
        self.user = user.removingPercentEncoding ?? user
        let path = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
        self.database = path.isEmpty ? self.user : path
        self.password = url.password.map { $0.removingPercentEncoding ?? $0 } ?? environment["PGPASSWORD"]
        let query = Dictionary((url.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        self.sslMode = query["sslmode"] ?? "disable"
        self.rootCertificate = query["sslrootcert"]
        guard ["disable", "require", "verify-full"].contains(sslMode) else {
            throw Invalid(description: "--postgres: sslmode must be disable, require or verify-full, not '\(sslMode.prefix(40))'")
        }
    }

    public var description: String { "postgres://\(user)@\(host):\(port)/\(database) (TLS: \(sslMode))" }

    /// The client configuration postgres-nio needs. `holdLocksAtMost` bounds how long the server keeps a
    /// session that sits in an open transaction (`idle_in_transaction_session_timeout`): an agent cut off in
    /// the middle of a fenced write must not keep its lease rows locked — the others' claims skip locked rows.
    public func clientConfiguration(holdLocksAtMost: Duration? = nil) throws -> PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS
        switch sslMode {
        case "disable":
            tls = .disable
        default:
            var configuration = TLSConfiguration.makeClientConfiguration()
            if sslMode == "require" { configuration.certificateVerification = .none }
            if let rootCertificate { configuration.trustRoots = .file(rootCertificate) }
            tls = .require(configuration)
        }
        var configuration = PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        configuration.options.connectTimeout = .seconds(5)
        if let holdLocksAtMost {
            let milliseconds = max(1000, holdLocksAtMost.components.seconds * 1000 + holdLocksAtMost.components.attoseconds / 1_000_000_000_000_000)
            configuration.options.additionalStartupParameters = [("idle_in_transaction_session_timeout", String(milliseconds))]
        }
        return configuration
    }
}
