import Foundation
import Logging
import PostgresNIO
@testable import StreamPulseHost

/// A real PostgreSQL 15 (Debian's server) for one test: `initdb` in a temporary folder and `pg_ctl start` on
/// a loopback port with its socket in that folder, stopped (and the folder removed) by `stop()`. PostgreSQL
/// refuses to run as root: as root the folder goes to the `postgres` user and the commands run through
/// `setpriv` (see ../shared/FIELD-NOTES.md).
final class TestPostgres: Sendable {
    let directory: String
    let port: Int
    let user = "streampulse"
    private let binaries: String

    struct Failure: Error, CustomStringConvertible { var description: String }

    /// The server's programs: the newest `/usr/lib/postgresql/N/bin`.
    static func binaries() throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        guard let newest = versions.last, FileManager.default.isExecutableFile(atPath: "\(root)/\(newest)/bin/initdb") else {
            throw Failure(description: "no PostgreSQL server under \(root) (scripts/setup-deps --test installs Debian's postgresql)")
        }
        return "\(root)/\(newest)/bin"
    }

    /// - Parameter alsoListen: more addresses of this machine to listen on (a veth end for a network namespace),
    ///   each trusted like the loopback.
    static func start(alsoListen: [String] = []) async throws -> TestPostgres {
        let server = try TestPostgres(directory: TestEnvironment.temporaryDirectory("pg"), port: try freePort(), binaries: try binaries(),
                                      addresses: ["127.0.0.1"] + alsoListen)
        try await server.run([server.binaries + "/initdb", "-D", server.directory + "/data", "-U", server.user, "--auth=trust", "-E", "UTF8", "--no-sync"])
        if !alsoListen.isEmpty {
            let hba = try FileHandle(forWritingTo: URL(fileURLWithPath: server.directory + "/data/pg_hba.conf"))
            try hba.seekToEnd()
            try hba.write(contentsOf: Data(alsoListen.map { "host all all \($0)/24 trust\n" }.joined().utf8))
            try hba.close()
        }
        try await server.start()
        return server
    }

    /// Starts the (stopped) server again on the same folder and port.
    func start() async throws {
        try await run([binaries + "/pg_ctl", "-D", directory + "/data", "-l", directory + "/log", "-w", "start",
                       "-o", "-p \(port) -k \(directory) -c listen_addresses=\(addresses.joined(separator: ",")) -c fsync=off"])
    }

    private let addresses: [String]

    private init(directory: String, port: Int, binaries: String, addresses: [String]) throws {
        self.directory = directory
        self.port = port
        self.binaries = binaries
        self.addresses = addresses
        if geteuid() == 0 {
            let chown = try TestEnvironment.runBlocking(["-R", "postgres:postgres", directory], environment: [:], executable: "/usr/bin/chown")
            guard chown.status == 0 else { throw Failure(description: "chown \(directory): \(chown.stderr)") }
        }
    }

    /// Runs a server program as the user PostgreSQL accepts, through `system()` on a thread of its own.
    /// Not Foundation's `Process`: it learns of a child's exit from a descriptor the child inherits, and the
    /// server `pg_ctl start` leaves running inherits it too, so that wait never ended.
    private func run(_ command: [String]) async throws {
        // setpriv execs the command as the user (runuser forks a PAM session child). Python first closes every
        // descriptor above 2: `system()` passes on all of this process's, and a server holding the one Foundation
        // watches for another test's child (a `git` of the hot-reload test) would stall that test's wait.
        let closeAll = ["/usr/bin/python3", "-c", "import os, sys; os.closerange(3, 1 << 16); os.execv(sys.argv[1], sys.argv[1:])"]
        let argv = closeAll + (geteuid() == 0 ? ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] : []) + command
        let line = argv.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
            + " < /dev/null > '\(directory)/command.log' 2>&1"
        let status: Int32 = await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: system(line)) }.start()
        }
        guard status == 0 else {
            let log = (try? String(contentsOfFile: directory + "/command.log", encoding: .utf8)) ?? ""
            throw Failure(description: "\(command[0]) failed (\(status)): \(log)")
        }
    }

    /// A client for the `postgres` database (run it with `client.run()` in a task).
    func client() -> PostgresClient {
        PostgresClient(configuration: .init(host: "127.0.0.1", port: port, username: user, password: nil, database: "postgres", tls: .disable))
    }

    /// Stops the server at once (`immediate`: what a crash or a kill looks like to the clients).
    func stop(mode: String = "fast") async {
        try? await run([binaries + "/pg_ctl", "-D", directory + "/data", "-m", mode, "-w", "stop"])
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}
