import Foundation
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// Honest uptime: time in each state, not the share of checks (issue #15 item 6).
@Suite struct AvailabilityTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func change(_ id: String, _ from: StreamStatus, _ to: StreamStatus, at: Date) -> SinkEvent {
        var a = StreamState.initial, b = StreamState.initial
        a.status = from
        b.status = to
        b.reason = to == .ok ? .ok : .connectionRefused
        return .change(StateChange(streamId: id, from: a, to: b, at: at))
    }

    func result(_ id: String, _ status: StreamStatus, at: Date) -> SinkEvent {
        .result(ResultRecord(streamId: id, at: at, mode: .deep, status: status, pending: false, reason: status == .ok ? .ok : .connectionRefused,
                             phase: nil, message: "m", timings: Timings(), media: nil))
    }

    /// A camera up for 12 h then down for 12 h, checked every 30 s while up and under backoff (1×, 2×, 4×…
    /// up to 5 min) while down, in a real SQLite file on virtual time.
    @Test func downForHalfTheDayUnderBackoff_is50Percent_whereTheCheckShareSaidAbout90() async throws {
        let store = try SQLiteStore(path: TestEnvironment.temporaryDirectory("avail") + "/streampulse.db")
        let run = try await store.startRun(at: Self.t0)
        var events: [SinkEvent] = [change("cam", .unknown, .ok, at: Self.t0)]
        var t: TimeInterval = 0
        while t < 12 * 3600 { events.append(result("cam", .ok, at: Self.t0.addingTimeInterval(t))); t += 30 }
        events.append(change("cam", .ok, .down, at: Self.t0.addingTimeInterval(12 * 3600)))
        var delay: TimeInterval = 30
        t = 12 * 3600
        while t < 24 * 3600 { events.append(result("cam", .down, at: Self.t0.addingTimeInterval(t))); t += delay; delay = min(delay * 2, 300) }
        try await store.write(events)
        let now = Self.t0.addingTimeInterval(24 * 3600)
        try await store.markAlive(run: run, at: now)
        let checkShare = try #require(try await store.uptimes(now: now)["cam"]?.day)
        let time = try #require(try await store.availability(now: now)["cam"]?.day)
        #expect(abs(time - 0.5) <= 0.02, "time-based \(time)")
        #expect(checkShare > 0.85, "the old share of checks was \(checkShare)")
    }

    @Test func theReport_perStreamAndGroup_availabilityIncidentsMTTRLongestOutage_asJSONCSVAndPage() async throws {
        let store = try SQLiteStore(path: TestEnvironment.temporaryDirectory("report") + "/streampulse.db")
        let run = try await store.startRun(at: Self.t0)
        try await store.write([change("a", .unknown, .ok, at: Self.t0), change("b", .unknown, .ok, at: Self.t0),
                               change("a", .ok, .down, at: Self.t0.addingTimeInterval(3600)), change("a", .down, .ok, at: Self.t0.addingTimeInterval(4200)),
                               change("a", .ok, .down, at: Self.t0.addingTimeInterval(7200)), change("a", .down, .ok, at: Self.t0.addingTimeInterval(7500))])
        let end = Self.t0.addingTimeInterval(10_000)
        try await store.markAlive(run: run, at: end)
        var incident = Incident(id: 1, scope: .stream, key: "a", title: "A: no pictures", streams: ["a"], failing: [], started: Self.t0.addingTimeInterval(3600),
                                status: .down, reason: .connectionRefused, phase: .connect, message: "refused")
        incident.resolved = Self.t0.addingTimeInterval(4200)
        try await store.save(incident)
        let report = try await store.report(from: Self.t0, to: end, now: end, streams: [("a", "<b>A</b>", "yard"), ("b", "B", "yard")])
        let a = try #require(report.streams.first { $0.key == "a" })
        #expect(a.downSeconds == 900 && a.upSeconds == 9100 && a.incidents == 1 && a.mttrSeconds == 600 && a.longestOutageSeconds == 600, "\(a)")
        #expect(abs((a.availability ?? 0) - 0.91) < 1e-9)
        let yard = try #require(report.groups.first)
        #expect(yard.key == "yard" && abs((yard.availability ?? 0) - 19_100.0 / 20_000) < 1e-9 && yard.incidents == 1)
        let csv = report.csv().components(separatedBy: "\r\n")
        #expect(csv[0] == "kind,key,name,group,availability,up_s,down_s,unknown_s,maintenance_s,incidents,mttr_s,longest_outage_s")
        #expect(csv[1] == "stream,a,<b>A</b>,yard,0.9100,9100,900,0,0,1,600,600", "\(csv)")
        let page = ReportRoutes.page(report, timeZone: .gmt)
        #expect(page.contains("&lt;b&gt;A&lt;/b&gt;") && !page.contains("<b>A</b>") && page.contains("91.00 %"))
    }

    @Test func timeTheMonitorWasNotRunning_isUnknown_notUp() {
        // Up 2 h, monitor stopped 20 h, back 2 h with the stream down.
        let runs = [(start: Self.t0, end: Self.t0.addingTimeInterval(7200)),
                    (start: Self.t0.addingTimeInterval(22 * 3600), end: Self.t0.addingTimeInterval(24 * 3600))]
        let a = Availability.compute(from: Self.t0, to: Self.t0.addingTimeInterval(86_400), before: nil,
                                     changes: [(Self.t0, .up), (Self.t0.addingTimeInterval(22 * 3600 + 60), .failing)],
                                     runs: runs, excluded: [])
        #expect(a.up == 7200 && a.unknown == 20 * 3600 + 60 && a.down == 7200 - 60, "\(a)")
        #expect(abs((a.ratio ?? 0) - 7200.0 / (14400 - 60)) < 1e-9)
    }

    @Test func maintenance_isLeftOut() {
        let runs = [(start: Self.t0, end: Self.t0.addingTimeInterval(86_400))]
        // Down 03:00–03:30 every day, inside a 30-minute window: 100 %.
        let a = Availability.compute(from: Self.t0, to: Self.t0.addingTimeInterval(86_400), before: nil,
                                     changes: [(Self.t0, .up), (Self.t0.addingTimeInterval(3 * 3600), .failing), (Self.t0.addingTimeInterval(3.5 * 3600), .up)],
                                     runs: runs, excluded: [(Self.t0.addingTimeInterval(3 * 3600), Self.t0.addingTimeInterval(3.5 * 3600))])
        #expect(a.ratio == 1 && a.maintenance == 1800 && a.down == 0, "\(a)")
        let weekly = MaintenanceWindow(name: "n", match: StreamMatch(), schedule: .weekly(days: Set(1...7), minuteOfDay: 180, duration: .seconds(1800)),
                                       timeZone: .gmt)
        #expect(weekly.occurrences(from: Self.t0, to: Self.t0.addingTimeInterval(7 * 86_400)).count == 7)
    }

    /// One real run: a camera up for a while, then killed, watched as long again with backoff active; the
    /// figure `serve` stored is read with the function the API uses.
    @Test func aRealRun_halfUpHalfDown_underBackoff_is50Percent() async throws {
        let port = try freePort()
        let camera = try TestCameras.launch(TestEnvironment.root + "/scripts/test-cameras/mjpeg_server.py", ["--port", String(port)]).0
        defer { kill(camera.processIdentifier, SIGKILL) }
        let dir = TestEnvironment.temporaryDirectory("avail-serve")
        try """
            settings: { interval: 500ms, deep_interval: 500ms, timeout: 2s, retries: 0, backoff_cap: 4s, listen: "127.0.0.1:\(try freePort())" }
            streams:
              - { id: cam, url: "http://127.0.0.2:\(port)/normal" }
            """.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
        let serve = try TestEnvironment.startServe(configDirectory: dir)
        defer { if serve.isRunning { kill(serve.processIdentifier, SIGKILL) } }
        let store = try SQLiteStore(path: dir + "/data/streampulse.db")
        func changes() async -> [SQLiteStore.Change] { (try? await store.changes(stream: "cam", from: nil, to: nil)) ?? [] }
        #expect(await eventuallyTrue(20) { await changes().contains { $0.toStatus == "ok" } })
        let up = try #require(await changes().last { $0.toStatus == "ok" }?.at)
        // Up for 12 s (measured from the stored change), then the camera dies.
        try await Task.sleep(until: .now + .seconds(max(0, 12 - Date().timeIntervalSince(up))))
        kill(camera.processIdentifier, SIGKILL)
        #expect(await eventuallyTrue(10) { await changes().contains { $0.toStatus == "down" } })
        let down = try #require(await changes().first { $0.toStatus == "down" }?.at)
        // Watched down as long as it was up (the engine backs off meanwhile).
        let end = down.addingTimeInterval(down.timeIntervalSince(up))
        try await Task.sleep(until: .now + .seconds(max(0, end.timeIntervalSinceNow)))
        let ratio = try #require(try await store.availability(now: end)["cam"]?.day)
        let checks = try await store.checks(stream: "cam", from: up, to: end, limit: 1000)
        let checkShare = Double(checks.filter { $0.status == "ok" }.count) / Double(max(1, checks.count))
        // (The share of checks depends on how long each probe takes, so it is only reported here.)
        #expect(abs(ratio - 0.5) <= 0.02, "time-based \(ratio), share of checks \(checkShare) of \(checks.count)")
    }
}
