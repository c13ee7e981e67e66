import Foundation
import Logging
import Synchronization
import Testing

/// Where the build put things, and helpers to run the real `streampulse` binary and real test cameras.
enum TestEnvironment {
    /// The package root (two levels above this file's folder).
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// `swift build --show-bin-path` for the debug build; scripts/test exports it.
    static let binDir: String = ProcessInfo.processInfo.environment["STREAMPULSE_BIN_DIR"] ?? root + "/.build/debug"

    static var executable: String { binDir + "/streampulse" }

    static func product(_ name: String) -> String { binDir + "/lib\(name).so" }

    /// The example plugin built in its own package by scripts/test.
    static var examplePlugin: String {
        ProcessInfo.processInfo.environment["STREAMPULSE_EXAMPLE_PLUGIN"]
            ?? root + "/examples/snapshot-prober/.build/debug/libSnapshotProber.so"
    }

    /// This test process's folder for temporary files: `$TMPDIR/streampulse-tests/<pid>`. Folders left by
    /// earlier test processes that are gone are removed when it is first made, so runs do not pile up (each
    /// plugins folder held 35 MB of plugin copies; 2,228 of them once filled a 252 GB disk).
    static let temporaryRoot: String = {
        let base = NSTemporaryDirectory() + "streampulse-tests/"
        try? FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] {
            guard let pid = Int32(entry), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { try? FileManager.default.removeItem(atPath: base + entry) }
        }
        let root = base + String(getpid())
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        // And this process's own folder goes when it exits normally.
        atexit {
            try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "streampulse-tests/" + String(getpid()))
        }
        return root + "/"
    }()

    /// A fresh temporary folder (inside `temporaryRoot`).
    static func temporaryDirectory(_ label: String = "sp") -> String {
        let path = temporaryRoot + "\(label)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A plugins folder holding copies of the bundled RTSP and MJPEG plugins. Copies, not links: the
    /// dynamic loader would take two links to one file for one library, and in-process tests load each
    /// folder's plugins as separate libraries.
    static func pluginsDirectory(extra: [String: String] = [:]) throws -> String {
        let dir = temporaryDirectory("plugins")
        try FileManager.default.copyItem(atPath: product("StreamPulseRTSP"), toPath: dir + "/rtsp.so")
        try FileManager.default.copyItem(atPath: product("StreamPulseMJPEG"), toPath: dir + "/mjpeg.so")
        for (name, source) in extra { try FileManager.default.copyItem(atPath: source, toPath: dir + "/" + name) }
        return dir
    }

    /// An admin API token for the serve started on `dir` (created offline with `streampulse token create`).
    static func apiToken(configDirectory dir: String) async throws -> String {
        let run = try await run(["token", "create", "--name", "tests", "--role", "admin", "--data-dir", dir + "/data"])
        guard run.status == 0 else { throw TestCameras.FixtureError(message: "token create failed: \(run.stderr)") }
        return run.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Starts `streampulse serve` on a config in `dir` (data in `dir/data`), output discarded.
    static func startServe(configDirectory dir: String, arguments: [String] = []) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["serve", "--config", dir + "/config.yaml", "--data-dir", dir + "/data", "--plugins-dir", try pluginsDirectory()] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try launchProcess(process)
        return process
    }

    /// Waits (up to `seconds`) until something listens on 127.0.0.1:`port`, read from /proc/net/tcp so the
    /// check itself never connects (ffmpeg's `-listen 1` would take that connection as its one client).
    static func untilListening(port: Int, seconds: Double = 15) async -> Bool {
        let needle = String(format: ":%04X 00000000:0000 0A", port)
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if let table = try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8), table.contains(needle) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
        var seconds: Double
        var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any]
        }
    }

    /// Runs the real binary and waits for it.
    static func run(_ arguments: [String], environment: [String: String] = [:], discardStdout: Bool = false,
                    executable: String? = nil, arguments other: [String]? = nil) async throws -> Run {
        // Wait on a plain thread: blocking a cooperative thread would starve every other test's timers.
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result {
                    try runBlocking(other ?? arguments, environment: environment, discardStdout: discardStdout, executable: executable ?? Self.executable)
                })
            }.start()
        }
    }

    static func runBlocking(_ arguments: [String], environment: [String: String], discardStdout: Bool = false, executable: String = executable) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // Output goes to files, not pipes: Foundation's Process lets children spawned at the same moment by
        // other tests inherit a pipe's write end, and reading to end-of-file then waits for *their* exit
        // (seen: a hang until a long-running `serve` of another test ended). A file has no such wait.
        let base = temporaryDirectory("run") + "/"
        FileManager.default.createFile(atPath: base + "out", contents: nil)
        FileManager.default.createFile(atPath: base + "err", contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: base + "out"))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: base + "err"))
        defer { try? out.close(); try? err.close() }
        process.standardOutput = discardStdout ? FileHandle.nullDevice : out
        process.standardError = err
        let start = Date()
        try launchProcess(process)
        process.waitUntilExit()
        let outText = discardStdout ? "" : ((try? String(contentsOfFile: base + "out", encoding: .utf8)) ?? "")
        let errText = (try? String(contentsOfFile: base + "err", encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: base)
        return Run(status: process.terminationStatus, stdout: outText, stderr: errText, seconds: Date().timeIntervalSince(start))
    }
}

/// The fixture password used by every authenticated test camera; no test output may contain it.
let fixtureUser = "viewer"
let fixturePassword = "s3cret-Pa55"

/// Real test cameras, started once per test process on 127.0.0.1. They exit on their own when this
/// process ends (they watch their parent).
final class TestCameras: Sendable {
    let rtspPort: Int
    let rtspAuthPort: Int
    /// The RTSP camera `/normal` on the IPv6 loopback ([::1]); 0 when the machine has no IPv6.
    let rtspV6Port: Int
    /// Whether the MJPEG server also listens on [::1] (same port).
    let mjpegOnIPv6: Bool
    let fakePort: Int
    let blackholePort: Int
    let garbagePort: Int
    let mjpegPort: Int
    private let processes: [Process]

    private static let shared = Mutex<TestCameras?>(nil)

    static func start() throws -> TestCameras {
        try shared.withLock { current in
            if let current { return current }
            let cameras = try TestCameras()
            current = cameras
            return cameras
        }
    }

    private init() throws {
        let dir = TestEnvironment.root + "/scripts/test-cameras/"
        let (rtsp, rtspReady) = try Self.launch(dir + "rtsp_server.py", ["--user", fixtureUser, "--password", fixturePassword])
        let (fake, fakeReady) = try Self.launch(dir + "rtsp_fake.py", [])
        let (mjpeg, mjpegReady) = try Self.launch(dir + "mjpeg_server.py", ["--user", fixtureUser, "--password", fixturePassword])
        processes = [rtsp, fake, mjpeg]
        rtspPort = rtspReady["port"]!
        rtspAuthPort = rtspReady["auth_port"]!
        rtspV6Port = rtspReady["v6_port"] ?? 0
        fakePort = fakeReady["port"]!
        blackholePort = fakeReady["blackhole_port"]!
        garbagePort = fakeReady["garbage_port"]!
        mjpegPort = mjpegReady["port"]!
        mjpegOnIPv6 = mjpegReady["v6"] == 1
    }

    /// Starts a fixture and waits for its `READY key=value ...` line.
    static func launch(_ script: String, _ arguments: [String]) throws -> (Process, [String: Int]) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [script] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.standardError
        try launchProcess(process)
        var line = Data()
        while !line.contains(0x0A) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { throw FixtureError(message: "\(script) exited before it was ready") }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("READY") else { throw FixtureError(message: "\(script) said: \(text)") }
        var ports: [String: Int] = [:]
        for pair in text.split(whereSeparator: \.isWhitespace).dropFirst() {
            let kv = pair.split(separator: "=")
            if kv.count == 2, let value = Int(kv[1]) { ports[String(kv[0])] = value }
        }
        return (process, ports)
    }

    struct FixtureError: Error, CustomStringConvertible { var message: String; var description: String { message } }
}

/// Collects log lines in memory, to check what reaches the logs.
final class CapturedLogs: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }

    func logger(_ label: String = "test") -> Logger {
        Logger(label: label) { [self] label in CaptureHandler(sink: self) }
    }

    func append(_ line: String) { lines.withLock { $0.append(line) } }

    struct CaptureHandler: LogHandler {
        let sink: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            sink.append("\(level) \(message) \(metadata ?? [:])")
        }
    }
}

/// Starts a process. Foundation's Process on Linux can fail with EBADF when another thread closes a pipe
/// while the child is being spawned (the suites run in parallel and start many processes); that is a
/// race in the launcher, not in the program under test, so the launch is retried.
func launchProcess(_ process: Process) throws {
    var attempt = 0
    while true {
        do {
            try process.run()
            return
        } catch let error as NSError where error.domain == NSPOSIXErrorDomain && error.code == Int(EBADF) && attempt < 5 {
            attempt += 1
            Thread.sleep(forTimeInterval: 0.02)
        }
    }
}
