import Foundation
import StreamPulseCore
import StreamPulseProberTesting
import Testing
@testable import StreamPulseHost

/// Lanes, budgets, the running engine against real cameras, SIGTERM, and NTP against a real chronyd.
@Suite struct LaneAndBudgetTests {
    @Test func lane_limitsInFlight_andWakesWaitersInOrder() async {
        let lane = Lane(name: "t", minimum: 2, maximum: 2)
        await lane.acquire()
        await lane.acquire()
        let order = OrderLog()
        let third = Task { await lane.acquire(); order.add("third") }
        try? await Task.sleep(for: .milliseconds(50))
        #expect(await lane.waiting == 1)
        #expect(order.all.isEmpty)
        await lane.release(duration: .milliseconds(10))
        await third.value
        #expect(order.all == ["third"])
        #expect(await lane.inFlight == 2)
    }

    @Test func lane_growsWithDemand_betweenItsBounds() async {
        let lane = Lane(name: "t", minimum: 2, maximum: 64)
        // 200 arrivals/s of 1 s probes need ~200 in flight; the lane grows to its maximum, not beyond.
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<100 { group.addTask { await lane.acquire() } }
            try? await Task.sleep(for: .milliseconds(1100))
            for _ in 0..<100 { group.addTask { await lane.acquire() } }
            try? await Task.sleep(for: .milliseconds(100))
            #expect(await lane.limit == 64)
            #expect(await lane.inFlight == 64)
            for _ in 0..<200 { await lane.release(duration: .seconds(1)) }
        }
    }

    @Test func hostBudget_allowsNPerHost_andHostsAreIndependent() async {
        let budgets = HostBudgets(perHost: 2)
        await budgets.acquire("cam1")
        await budgets.acquire("cam1")
        await budgets.acquire("cam2")
        let waiting = Task { await budgets.acquire("cam1") }
        try? await Task.sleep(for: .milliseconds(50))
        #expect(await budgets.inUse("cam1") == 2)
        await budgets.release("cam1")
        await waiting.value
        #expect(await budgets.inUse("cam1") == 2)
        #expect(await budgets.inUse("cam2") == 1)
    }
}

final class OrderLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.withLock { items.append(s) } }
    var all: [String] { lock.withLock { items } }
}

@Suite(.serialized) struct EngineTests {
    func engine(_ yaml: String, startupSpread: Duration = .seconds(30)) throws -> (Engine, CapturedLogs) {
        let logs = CapturedLogs()
        let host = PluginHost(directory: try TestEnvironment.pluginsDirectory(), logger: logs.logger())
        host.scan()
        let config = try #require(ConfigLoader(environment: [:]).load(yaml: yaml, file: "c.yaml", baseDirectory: "/").config)
        return (Engine(config: config, plugins: host, logger: logs.logger(), startupSpread: startupSpread), logs)
    }

    func eventually(_ seconds: Double, _ condition: () async -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    @Test func engine_classifiesRealCameras() async throws {
        let c = try TestCameras.start()
        let (engine, logs) = try engine("""
            settings: { interval: 5s, timeout: 4s, retries: 1, host_sessions: 8 }
            streams:
              - { id: rtsp-ok, url: "rtsp://127.0.0.1:\(c.rtspPort)/normal" }
              - { id: rtsp-black, url: "rtsp://127.0.0.1:\(c.rtspPort)/black" }
              - { id: mjpeg-frozen, url: "http://127.0.0.1:\(c.mjpegPort)/frozen" }
              - { id: silent, url: "rtsp://127.0.0.1:\(c.fakePort)/silent" }
              - { id: refused, url: "http://127.0.0.1:1/x" }
              - { id: hls, url: "hls://127.0.0.1/x.m3u8" }
            """)
        let run = Task { await engine.run() }
        #expect(await eventually(15) { await engine.snapshot().allSatisfy { $0.lastCheck != nil } })
        let byID = Dictionary(uniqueKeysWithValues: await engine.snapshot().map { ($0.id, $0) })
        #expect(byID["rtsp-ok"]?.status == .ok && byID["rtsp-ok"]?.width == 640)
        #expect(byID["rtsp-black"]?.reason == .black)
        #expect(byID["mjpeg-frozen"]?.reason == .frozen)
        #expect(byID["silent"]?.reason == .noFrames && byID["silent"]?.pending == true)
        #expect(byID["refused"]?.reason == .connectionRefused)
        #expect(byID["hls"]?.status == .unknown && byID["hls"]?.reason == .noPlugin)
        #expect(logs.all.contains { $0.contains("stream=rtsp-black status=degraded reason=black") })
        run.cancel()
        await run.value
    }

    /// Deep probes beyond `max_deep_probes` wait in the engine (not as tasks) and start as slots free; a
    /// raised limit starts the waiting ones at once. The camera is a silent server, so each probe holds its
    /// slot until its 3 s timeout: the server's request count tells how many probes have started.
    @Test func deepProbes_waitForADecodeSlot_andARaisedLimitStartsThemAtOnce() async throws {
        let server = try LoopbackServer { _ in .silence }
        defer { server.stop() }
        func yaml(_ slots: Int) -> String {
            "settings: { interval: 60s, timeout: 3s, host_sessions: 100, max_deep_probes: \(slots) }\nstreams:\n"
                + (1...5).map { "  - { id: s\($0), url: \"http://127.0.0.1:\(server.port)/s\($0)\" }\n" }.joined()
        }
        let (engine, _) = try engine(yaml(2), startupSpread: .milliseconds(1))
        let run = Task { await engine.run() }
        defer { run.cancel() }
        func checked() async -> Int { await engine.snapshot().filter { $0.lastCheck != nil }.count }
        // The first check of every stream is deep: five are due, two start.
        #expect(await eventually(10) { server.requests.count == 2 })
        #expect(await engine.stats().inFlight == 5)
        // Both time out, their slots pass to the next two; no probe started meanwhile.
        #expect(await eventually(10) { await checked() == 2 })
        #expect(server.requests.count <= 4)
        #expect(await eventually(10) { server.requests.count == 4 })
        // A reload raising the limit starts the last one now, not when one of the two running ends.
        let raised = try #require(ConfigLoader(environment: [:]).load(yaml: yaml(5), file: "c.yaml", baseDirectory: "/").config)
        await engine.apply(raised)
        #expect(await eventually(10) { server.requests.count == 5 })
        #expect(await checked() == 2)
        #expect(await engine.limits().deepProbes == 5)
    }

    @Test func aCameraThatGoesAway_turnsRedAfterRetries_andGreenWhenItReturns() async throws {
        // A camera server of our own on a fixed port, so it can be stopped and started again.
        let port = try freePort()
        let dir = TestEnvironment.root + "/scripts/test-cameras/"
        var (server, _) = try TestCameras.launch(dir + "mjpeg_server.py", ["--port", String(port)])
        let (engine, _) = try engine("""
            settings: { interval: 1s, timeout: 2s, retries: 2, backoff_cap: 2s }
            streams:
              - { id: cam, url: "http://127.0.0.1:\(port)/normal" }
            """)
        let run = Task { await engine.run() }
        #expect(await eventually(8) { await engine.snapshot(id: "cam")?.status == .ok })
        kill(server.processIdentifier, SIGKILL)  // a camera pulled off the network
        server.waitUntilExit()
        #expect(await eventually(6) { await engine.snapshot(id: "cam")?.pending == true })
        #expect(await eventually(10) { await engine.snapshot(id: "cam")?.status == .down })
        (server, _) = try TestCameras.launch(dir + "mjpeg_server.py", ["--port", String(port)])
        #expect(await eventually(10) { await engine.snapshot(id: "cam")?.status == .ok })
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
        run.cancel()
        await run.value
    }

    @Test func sigterm_stopsServe_withinAFewSeconds_evenWithALiveDashboardConnected() async throws {
        let c = try TestCameras.start()
        let dir = TestEnvironment.temporaryDirectory("serve")
        let port = try freePort()
        try """
            settings: { interval: 1s, timeout: 8s, listen: "127.0.0.1:\(port)" }
            streams:
              - { id: hole, url: "rtsp://127.0.0.1:\(c.blackholePort)/x" }
              - { id: ok, url: "rtsp://127.0.0.1:\(c.rtspPort)/normal" }
            """.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        let token = try await TestEnvironment.apiToken(configDirectory: dir)
        let process = try TestEnvironment.startServe(configDirectory: dir)
        // Wait for the API, then for probes to be in flight (the black hole holds one for 8 s).
        var healthy = false
        for _ in 0..<50 where !healthy {
            try await Task.sleep(for: .milliseconds(200))
            healthy = (try? await httpGet("http://127.0.0.1:\(port)/healthz"))?.contains("ok") == true
        }
        #expect(healthy)
        #expect(try await httpGet("http://127.0.0.1:\(port)/api/streams").contains("401 Unauthorized"), "no token, no answer")
        let streams = try await httpGet("http://127.0.0.1:\(port)/api/streams", token: token)
        #expect(streams.contains("\"id\":\"hole\""))
        #expect(!streams.contains("password"))
        // A dashboard is connected to the live-update stream (which never ends by itself).
        let viewer = Process()
        viewer.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        viewer.arguments = ["-sN", "-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(port)/api/events"]
        let events = Pipe()
        viewer.standardOutput = events
        try launchProcess(viewer)
        defer { kill(viewer.processIdentifier, SIGKILL) }
        try await Task.sleep(for: .milliseconds(1500))
        let start = ContinuousClock.now
        process.terminate()  // SIGTERM
        while process.isRunning, start.duration(to: .now) < .seconds(10) { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!process.isRunning)
        #expect(start.duration(to: .now) < .seconds(4), "serve took \(start.duration(to: .now)) to stop")
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        #expect(String(decoding: events.fileHandleForReading.availableData, as: UTF8.self).contains("event: hello"))
    }
}

@Suite(.serialized) struct TimeTests {
    @Test func sntp_measuresOffset_againstARealChronyOnLoopback() async throws {
        let port = try freePort(udp: true)
        let dir = TestEnvironment.temporaryDirectory("chrony")
        try """
            port \(port)
            bindaddress 127.0.0.1
            allow 127.0.0.1
            local stratum 8
            cmdport 0
            driftfile \(dir)/drift
            pidfile \(dir)/chronyd.pid
            """.write(toFile: dir + "/chrony.conf", atomically: true, encoding: .utf8)
        let chrony = Process()
        chrony.executableURL = URL(fileURLWithPath: "/usr/sbin/chronyd")
        chrony.arguments = ["-x", "-d", "-f", dir + "/chrony.conf", "-u", "root"]
        chrony.standardOutput = FileHandle.nullDevice
        chrony.standardError = FileHandle.nullDevice
        try launchProcess(chrony)
        // SIGKILL: a child may inherit a blocked SIGTERM from the test process.
        defer { kill(chrony.processIdentifier, SIGKILL); chrony.waitUntilExit() }
        let service = TimeService(servers: ["127.0.0.1:\(port)"], interval: .seconds(60), logger: CapturedLogs().logger())
        var sync = TimeSync.unsynced(reason: "")
        for _ in 0..<20 where !sync.synced {
            sync = await service.measure()
            if !sync.synced { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(sync.synced, "\(sync)")
        #expect(sync.stratum == 8 || sync.stratum == 9)
        #expect(abs(sync.offsetSeconds ?? 99) < 0.5)
        #expect((sync.delaySeconds ?? 99) < 0.5)
        #expect(sync.server == "127.0.0.1:\(port)")
    }

    @Test func sntp_unreachableServer_isUnsynced_andChangesNothingElse() async throws {
        let port = try freePort(udp: true)
        let service = TimeService(servers: ["127.0.0.1:\(port)"], interval: .seconds(60), logger: CapturedLogs().logger())
        let sync = await service.measure()
        #expect(!sync.synced)
        #expect(sync.error?.contains("127.0.0.1:\(port)") == true)
    }
}

/// With no NTP server configured the clock state is the kernel's (adjtimex), not a red "unsynced".
@Suite struct KernelClockTests {
    @Test func theReading_agreesWithTheKernel_asPythonReadsIt() async throws {
        let reading = try #require(KernelClock.read())
        let script = """
            import ctypes
            class T(ctypes.Structure):
                _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long), ("maxerror", ctypes.c_long),
                            ("esterror", ctypes.c_long), ("status", ctypes.c_int), ("rest", ctypes.c_byte * 256)]
            t = T(); r = ctypes.CDLL(None).adjtimex(ctypes.byref(t)); print(r, t.status)
            """
        let run = try await TestEnvironment.run([], executable: "/usr/bin/python3", arguments: ["-c", script])
        let out = run.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Int32($0) }
        #expect(out == [reading.state, reading.status])
        let sync = KernelClock.sync(from: reading)
        #expect(sync.source == "kernel")
        #expect(sync.synced == (out.first != 5 && (out.last ?? 0) & 0x40 == 0))
    }

    @Test func aSynchronisedKernel_isSynced_withItsErrorBounds_andAnUnsynchronisedOneSaysWhy() {
        let synced = KernelClock.sync(from: .init(state: 0, status: 0x2001, esterror: 1_500, maxerror: 250_000))
        #expect(synced.synced && synced.estimatedErrorSeconds == 0.0015 && synced.maximumErrorSeconds == 0.25 && synced.error == nil)
        for reading in [KernelClock.Reading(state: 5, status: 0x40, esterror: 16_000_000, maxerror: 16_000_000),
                        KernelClock.Reading(state: 0, status: 0x40, esterror: 0, maxerror: 0)] {
            let sync = KernelClock.sync(from: reading)
            #expect(!sync.synced && sync.error?.contains("kernel says the clock is not synchronised") == true)
        }
        #expect(!KernelClock.sync(from: nil).synced)
    }
}

/// A port nothing listens on right now.
func freePort(udp: Bool = false) throws -> Int {
    let fd = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A plain HTTP GET over a socket (FoundationNetworking is not needed for this).
func httpGet(_ url: String, token: String? = nil) async throws -> String {
    let components = try #require(URLComponents(string: url))
    return try await withCheckedThrowingContinuation { continuation in
        Thread {
            continuation.resume(with: Result {
                let clock = ProbeClock(timeoutMs: 3000)
                let connection = try TCPConnection(host: components.host!, port: components.port!, clock: clock)
                let auth = token.map { "Authorization: Bearer \($0)\r\n" } ?? ""
                let target = components.percentEncodedPath + (components.percentEncodedQuery.map { "?" + $0 } ?? "")
                try connection.write(Array("GET \(target) HTTP/1.1\r\nHost: x\r\n\(auth)Connection: close\r\n\r\n".utf8))
                var bytes: [UInt8] = []
                while true {
                    do { bytes += try connection.read(maximum: 65536) } catch let failure as TCPConnection.Failure where failure == .closed { break }
                }
                return String(decoding: bytes, as: UTF8.self)
            })
        }.start()
    }
}
