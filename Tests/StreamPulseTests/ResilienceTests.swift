import Foundation
import GRDB
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// Abuse the monitor is built for: config storms, a full disk, hostile cameras at scale. Real files,
/// real inotify, a real SQLite file, real cameras on 127.0.0.1.
@Suite(.serialized) struct ResilienceTests {

    @Test func configStorm_100EditsIn10s_withInvalidOnes_neverStopsMonitoring_andEndsOnTheLastValidFile() async throws {
        let cameras = try TestCameras.start()
        func yaml(_ round: Int) -> String {
            "settings:\n  interval: 1s\n  timeout: 2s\nstreams:\n"
                + (0..<5).map { "  - id: steady\($0)\n    url: http://127.0.0.1:\(cameras.mjpegPort)/cam/\($0)\n" }.joined()
                + "  - id: edited\n    name: Edit \(round)\n    url: http://127.0.0.1:\(cameras.mjpegPort)/cam/\(100 + round % 3)\n"
        }
        let rig = try await HotReloadTests.Rig(yaml: yaml(0))
        #expect(await rig.eventually(8) { await rig.engine.snapshot(id: "steady0")?.status == .ok })
        let checksBefore = await rig.engine.stats().checks
        var lastValid = 0
        var checksDuringStorm: [Int] = []
        var picture: [String] = []  // what the engine looked like at each sample, for the failure message
        for round in 1...100 {
            let text: String
            switch round % 4 {
            case 1: text = "streams:\n  - id: a\n    url: [broken\n"                          // YAML syntax error
            case 2: text = yaml(round).replacingOccurrences(of: "interval: 1s", with: "interval: soon")  // bad value
            default: text = yaml(round); lastValid = round
            }
            if round % 2 == 0 {
                try text.write(toFile: rig.dir + "/.config.tmp", atomically: false, encoding: .utf8)
                rename(rig.dir + "/.config.tmp", rig.path)                                        // rename-save
            } else {
                try text.write(toFile: rig.path, atomically: false, encoding: .utf8)              // in-place save
            }
            if round % 10 == 0 {
                let stats = await rig.engine.stats()
                checksDuringStorm.append(stats.checks)
                let states = await rig.engine.snapshot().map { "\($0.id)=\($0.reason)\($0.pending ? "?" : "")" }
                picture.append("round \(round): checks \(stats.checks) in flight \(stats.inFlight) lanes \(stats.lanes) \(states.joined(separator: " "))")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        // Monitoring never stopped: checks kept completing through every two seconds of the storm (six
        // streams due every second on one camera host with two sessions; two seconds leave room for a probe
        // slowed by other tests sharing the test camera), and keep completing after it.
        #expect(zip(checksDuringStorm, checksDuringStorm.dropFirst(2)).allSatisfy { $0 < $1 },
                "\(checksBefore) \(checksDuringStorm)\n\(picture.joined(separator: "\n"))")
        let afterStorm = await rig.engine.stats().checks
        #expect(await rig.eventually(8) { await rig.engine.stats().checks >= afterStorm + 6 }, "\(picture.joined(separator: "\n"))")
        // The last write was valid (round 100 % 4 == 0): the engine ends on it, with no error left.
        #expect(lastValid == 100)
        #expect(await rig.eventually { await rig.engine.snapshot(id: "edited")?.name == "Edit 100" })
        #expect(await rig.service.status.errors.isEmpty)
        #expect(await rig.eventually(8) { await rig.engine.snapshot().allSatisfy { $0.status == .ok } })
        await rig.stop()
    }

    @Test func diskFullOrReadOnly_isReportedClearly_readsContinue_andWritesResumeWithNothingLost() async throws {
        let dir = TestEnvironment.temporaryDirectory("diskfull")
        let store = try SQLiteStore(path: dir + "/streampulse.db")
        let logs = CapturedLogs()
        let runner = SinkRunner(sink: SQLiteSink(store: store, settings: LiveSettings(Settings()), logger: logs.logger()), logger: logs.logger())
        let task = Task { await runner.run() }
        func result(_ i: Int) -> SinkEvent {
            .result(ResultRecord(streamId: "cam\(i % 10)", at: Date(), mode: .quick, status: .ok, pending: false, reason: .ok, phase: nil,
                                 message: "Pictures decoded (\(i)) with a message long enough to fill pages quickly", timings: Timings(), media: nil))
        }
        for i in 0..<200 { runner.submit(result(i)) }
        #expect(await eventuallyTrue { runner.stats.written == 200 })
        // The disk fills up: SQLite's page limit makes the real write path fail with SQLITE_FULL
        // ("database or disk is full"), exactly as a full file system does.
        let pages = try await store.pool.write { try Int.fetchOne($0, sql: "PRAGMA page_count")! }
        _ = try await store.pool.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA max_page_count = \(pages)") }
        for i in 200..<5_200 { runner.submit(result(i)) }
        #expect(await eventuallyTrue { runner.stats.failing })
        let error = runner.stats.lastError ?? ""
        #expect(error.contains("full"), "\(error)")
        #expect(logs.all.contains { $0.contains("sink sqlite") && $0.contains("keeping them and retrying") && $0.contains("full") }, "\(logs.all.suffix(3))")
        // Reads (the dashboard's history, CSV export) still work while writes fail.
        await #expect(try store.checks(stream: "cam1", from: nil, to: nil, limit: 5).count == 5)
        #expect(runner.stats.dropped == 0)
        // Space returns: the kept batch and everything queued behind it is written; nothing was lost.
        _ = try await store.pool.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA max_page_count = 1073741823") }
        #expect(await eventuallyTrue(15) { runner.stats.written == 5_200 && !runner.stats.failing })
        await #expect(try store.resultCount() == 5_200)
        #expect(logs.all.contains { $0.contains("writing works again") })
        // The data file turns read-only (SQLite's query_only on the writer: SQLITE_READONLY, as a read-only
        // mount gives): same path — a clear error, nothing dropped, writes resume when it is writable again.
        _ = try await store.pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA query_only = 1") }
        for i in 5_200..<5_300 { runner.submit(result(i)) }
        #expect(await eventuallyTrue { runner.stats.failing })
        #expect((runner.stats.lastError ?? "").contains("readonly"), "\(runner.stats.lastError ?? "")")
        #expect(runner.stats.dropped == 0)
        _ = try await store.pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA query_only = 0") }
        #expect(await eventuallyTrue(15) { runner.stats.written == 5_300 && !runner.stats.failing })
        await #expect(try store.resultCount() == 5_300)
        await #expect(try store.integrityCheck() == "ok")
        runner.stop()
        await task.value
    }

    @Test func twoHundredHostileCameras_doNotPushHealthyStreamsOffSchedule() async throws {
        let cameras = try TestCameras.start()
        var yaml = "settings: { interval: 2s, deep_interval: 1h, timeout: 3s, retries: 1, host_sessions: 1000 }\nstreams:\n"
        let hostile = ["rtsp://127.0.0.1:\(cameras.blackholePort)/x", "rtsp://127.0.0.1:\(cameras.garbagePort)/x",
                       "http://127.0.0.1:\(cameras.mjpegPort)/drip", "http://127.0.0.1:\(cameras.mjpegPort)/endless-header"]
        for i in 0..<200 { yaml += "  - { id: bad\(i), url: \"\(hostile[i % hostile.count])\" }\n" }
        for i in 0..<20 { yaml += "  - { id: good\(i), url: \"http://127.0.0.1:\(cameras.mjpegPort)/cam/\(i)\" }\n" }
        let path = TestEnvironment.temporaryDirectory("hostile") + "/config.yaml"
        try yaml.write(toFile: path, atomically: false, encoding: .utf8)
        let logs = CapturedLogs()
        let host = PluginHost(directory: try TestEnvironment.pluginsDirectory(), logger: logs.logger())
        host.scan()
        let config = try #require(ConfigLoader(environment: [:], knownSchemes: nil).load(path: path).config)
        let engine = Engine(config: config, plugins: host, logger: logs.logger(), startupSpread: .seconds(2))
        let run = Task { await engine.run() }
        try await Task.sleep(for: .seconds(4))
        await engine.resetStats()
        try await Task.sleep(for: .seconds(8))
        let healthy = await engine.stats(include: { $0.hasPrefix("good") })
        let snapshot = await engine.snapshot()
        run.cancel()
        await run.value
        // Every healthy stream stayed green and was checked on time despite 200 hostile ones in flight.
        let good = snapshot.filter { $0.id.hasPrefix("good") }
        #expect(good.count == 20 && good.allSatisfy { $0.status == .ok })
        // At a 2 s interval over ~12 s each healthy stream has several green checks in its heartbeat.
        #expect(good.allSatisfy { ($0.recent ?? "").filter { $0 == "o" }.count >= 4 }, "\(good.map { $0.recent ?? "" })")
        #expect(healthy.lagP99Ms < 1_000, "\(healthy)")
        // And every hostile one ended with a class, none reported up.
        let bad = snapshot.filter { $0.id.hasPrefix("bad") }
        #expect(bad.allSatisfy { $0.status != .ok && $0.reason != "not_checked" }, "\(Set(bad.map(\.reason.rawValue)))")
    }
}

extension ResilienceTests {
    /// wrk on the status API while 1,000 streams are probed: no error answers, probing stays on schedule.
    @Test func dashboardUnderLoad_noErrors_andProbingStaysOnSchedule() async throws {
        let cameras = try TestCameras.start()
        let dir = TestEnvironment.temporaryDirectory("load")
        let port = try freePort()
        var yaml = "settings: { interval: 20s, deep_interval: 5m, timeout: 5s, host_sessions: 10000, listen: \"127.0.0.1:\(port)\" }\nstreams:\n"
        for i in 0..<1_000 { yaml += "  - { id: c\(i), url: \"http://127.0.0.1:\(cameras.mjpegPort)/cam/\(i)\" }\n" }
        try yaml.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        let token = try await TestEnvironment.apiToken(configDirectory: dir)
        let serve = try TestEnvironment.startServe(configDirectory: dir)
        defer { kill(serve.processIdentifier, SIGKILL); serve.waitUntilExit() }
        // The first round (all deep) is done within the interval; then measure a steady window under load.
        var checked = 0
        for _ in 0..<120 where checked < 1_000 {
            try await Task.sleep(for: .milliseconds(500))
            if let body = try? await httpGet("http://127.0.0.1:\(port)/api/streams", token: token) {
                checked = body.components(separatedBy: "\"last_check\"").count - 1
            }
        }
        #expect(checked == 1_000)
        try await Task.sleep(for: .seconds(2))
        // The status API's cheap forms: counts, a colour's page, a page by position.
        #expect(try await httpGet("http://127.0.0.1:\(port)/api/summary", token: token).contains(#""ok":1000"#))
        #expect(try await httpGet("http://127.0.0.1:\(port)/api/streams?status=down", token: token).hasSuffix("\r\n\r\n[]"))
        let page = try await httpGet("http://127.0.0.1:\(port)/api/streams?status=ok&limit=5&offset=10", token: token)
        #expect(page.components(separatedBy: #""id":"#).count - 1 == 5 && page.contains(#""id":"c10""#) && page.contains(#""id":"c14""#), "\(page)")
        let auth = ["-H", "Authorization: Bearer \(token)"]
        _ = try await TestEnvironment.run(["-c", "curl -s -X POST -H 'Authorization: Bearer \(token)' http://127.0.0.1:\(port)/api/settings/engine-stats/reset"],
                                          executable: "/bin/sh")
        let wrk = try await TestEnvironment.run(["-t2", "-c20", "-d8s", "--latency"] + auth + ["http://127.0.0.1:\(port)/api/streams"],
                                                executable: "/usr/bin/wrk")
        #expect(wrk.status == 0, "\(wrk.stderr)")
        #expect(wrk.stdout.contains("Requests/sec"), "\(wrk.stdout)")
        #expect(!wrk.stdout.contains("Non-2xx"), "\(wrk.stdout)")
        #expect(!wrk.stdout.contains("Socket errors"), "\(wrk.stdout)")
        let engine = try await httpGet("http://127.0.0.1:\(port)/api/engine", token: token)
        let p99 = engine.range(of: #""lag_p99_ms":"#).map { Double(engine[$0.upperBound...].prefix { "0123456789.".contains($0) }) ?? -1 } ?? -1
        let checks = engine.range(of: #""checks":"#).map { Int(engine[$0.upperBound...].prefix { $0.isNumber }) ?? -1 } ?? -1
        #expect(p99 >= 0 && p99 < 1_000, "schedule lag p99 under load: \(engine)")
        #expect(checks >= 300, "about 50 checks/s were due during the 8 s of load: \(engine)")
    }
}

/// Waits until `condition` holds or `seconds` pass.
func eventuallyTrue(_ seconds: Double = 10, _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return await condition()
}
