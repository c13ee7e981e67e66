import Foundation
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// The incident machine on virtual time: grace, correlation by camera host and for the whole fleet,
/// reminders and acknowledgement, recovery notices, maintenance, restarts.
@Suite struct IncidentMachineTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func machine(rules: [NotifyRule] = [NotifyRule(channels: ["slack", "mail"], grace: .seconds(60), repeatEvery: .seconds(3600))],
                 maintenance: [MaintenanceWindow] = []) -> IncidentMachine {
        var notify = NotifyConfig()
        notify.rules = rules
        var m = IncidentMachine(notify: notify, maintenance: maintenance)
        // 20 streams on one NVR, 5 elsewhere.
        m.setStreams((0..<20).map { WatchedStream(id: "nvr-\($0)", name: "NVR \($0)", host: "10.0.0.9", group: "lobby", tags: []) }
                     + (0..<5).map { WatchedStream(id: "cam-\($0)", name: "Cam \($0)", host: "10.0.1.\($0)", group: nil, tags: ["outdoor"]) })
        for id in m.streams.keys { m.stateChanged(id, state(.ok, at: Self.t0), at: Self.t0) }
        return m
    }

    func state(_ status: StreamStatus, at: Date, pending: Bool = false) -> StreamState {
        var s = StreamState.initial
        s.status = status
        s.reason = status == .ok ? .ok : .connectionRefused
        s.message = status == .ok ? "Pictures decoded" : "Connection refused"
        s.pending = pending
        s.since = at
        return s
    }

    func notices(_ actions: [IncidentAction]) -> [IncidentNotice] {
        actions.compactMap { if case .notify(let n) = $0 { n } else { nil } }
    }

    /// Ticks once a second from `from` to `to`, collecting notices.
    func run(_ m: inout IncidentMachine, from: TimeInterval, to: TimeInterval) -> [IncidentNotice] {
        stride(from: from, through: to, by: 1).flatMap { notices(m.tick(now: Self.t0.addingTimeInterval($0))) }
    }

    @Test func twentyStreamsOfOneHostDie_oneGroupedIncident_oneNoticePerChannel_thenOneRecoveryWithTheDuration() {
        var m = machine()
        // They die over three seconds (their probes are spread out).
        for i in 0..<20 { m.stateChanged("nvr-\(i)", state(.down, at: Self.t0.addingTimeInterval(10 + Double(i % 3))), at: Self.t0.addingTimeInterval(10)) }
        #expect(run(&m, from: 11, to: 69).isEmpty, "nothing within the grace time")
        let opened = run(&m, from: 70, to: 200)
        #expect(opened.count == 1, "\(opened.map(\.kind))")
        #expect(opened.first?.kind == .opened && opened.first?.channels == ["slack", "mail"])
        let incident = try! #require(m.openIncidents.first)
        #expect(m.openIncidents.count == 1 && incident.scope == .host && incident.key == "10.0.0.9")
        #expect(incident.streams.count == 20 && incident.title == "Camera host 10.0.0.9: 20 of 20 streams fail")
        #expect(incident.started == Self.t0.addingTimeInterval(10))
        // They come back at 35 min: one recovery notice, with the downtime.
        let back = Self.t0.addingTimeInterval(10 + 35 * 60)
        for i in 0..<20 { m.stateChanged("nvr-\(i)", state(.ok, at: back), at: back) }
        let resolved = notices(m.tick(now: back))
        #expect(resolved.count == 1 && resolved.first?.kind == .resolved && resolved.first?.channels == ["slack", "mail"])
        #expect(m.openIncidents.isEmpty)
        let text = NoticeText(resolved[0], names: [:], timeZone: .gmt, now: back, evidence: nil)
        #expect(text.details.hasPrefix("No pictures from 08:00 to 08:35, 35 min."), "\(text.details)")
    }

    /// A site whose agents all stopped reporting is one incident (told like an outage), not one per camera;
    /// it resolves when the agents report its streams again, whatever their verdicts.
    @Test func anUnreachableSite_isOneIncident_resolvedWhenItsAgentsReportAgain() {
        var m = machine()
        m.setStreams(m.streams.values.map { var s = $0; s.site = s.id.hasPrefix("nvr") ? "depot" : "hq"; return s })
        for i in 0..<20 {
            var grey = StreamState.initial
            grey.reason = .siteUnreachable
            grey.message = "No agent of site depot has reported for 31 s"
            grey.since = Self.t0.addingTimeInterval(10)
            m.stateChanged("nvr-\(i)", grey, at: Self.t0.addingTimeInterval(10))
        }
        #expect(run(&m, from: 11, to: 69).isEmpty, "nothing within the grace time")
        let opened = run(&m, from: 70, to: 200)
        #expect(opened.count == 1 && opened.first?.kind == .opened, "\(opened.map(\.kind))")
        let incident = try! #require(m.openIncidents.first)
        #expect(m.openIncidents.count == 1 && incident.scope == .site && incident.key == "depot" && incident.streams.count == 20)
        #expect(incident.status == .down && incident.reason == .siteUnreachable && incident.started == Self.t0.addingTimeInterval(10))
        #expect(incident.title == "Site depot unreachable: none of its agents reports; 20 of 20 streams not known")
        // The agents are back: one stream is dead, the others fine — the site incident resolves all the same.
        let back = Self.t0.addingTimeInterval(600)
        for i in 0..<20 { m.stateChanged("nvr-\(i)", state(i == 0 ? .down : .ok, at: back), at: back) }
        let resolved = notices(m.tick(now: back))
        #expect(resolved.map(\.kind) == [.resolved] && !m.openIncidents.contains { $0.scope == .site })
    }

    @Test func aMemberFailingForAnotherReason_isRecordedOnTheIncident() {
        var m = machine()
        m.stateChanged("cam-1", state(.down, at: Self.t0.addingTimeInterval(5)), at: Self.t0.addingTimeInterval(5))
        _ = run(&m, from: 6, to: 100)
        var frozen = state(.degraded, at: Self.t0.addingTimeInterval(101))
        frozen.reason = .frozen
        frozen.message = "The picture does not change"
        m.stateChanged("cam-1", frozen, at: Self.t0.addingTimeInterval(101))
        let saved = m.tick(now: Self.t0.addingTimeInterval(102)).compactMap { if case .save(let i) = $0 { i } else { nil } }
        #expect(saved.count == 1 && saved[0].reason == .frozen && saved[0].updates.last?.text == "Cam 1: connection_refused → frozen", "\(saved)")
    }

    @Test func oneStreamFails_aStreamIncident_andTheOthersStayOutOfIt() {
        var m = machine()
        m.stateChanged("cam-1", state(.down, at: Self.t0.addingTimeInterval(5)), at: Self.t0.addingTimeInterval(5))
        let sent = run(&m, from: 6, to: 120)
        #expect(sent.count == 1 && m.openIncidents.first?.scope == .stream && m.openIncidents.first?.streams == ["cam-1"])
    }

    @Test func nearlyEveryStreamFailsAtOnce_oneMonitorIncident() {
        var m = machine()
        let at = Self.t0.addingTimeInterval(5)
        for id in m.streams.keys.sorted().dropLast(2) { m.stateChanged(id, state(.down, at: at), at: at) }
        let sent = run(&m, from: 6, to: 120)
        #expect(sent.count == 1, "\(sent.map(\.incident.title))")
        #expect(m.openIncidents.count == 1 && m.openIncidents.first?.scope == .monitor)
        #expect(m.openIncidents.first?.title.hasPrefix("The monitor seems to have lost its network: 23 of 25") == true)
    }

    @Test func anUnacknowledgedIncident_getsItsReminder_anAcknowledgedOneDoesNot() {
        var a = machine(), b = machine()
        for m in [0, 1] {
            let at = Self.t0.addingTimeInterval(5)
            if m == 0 { a.stateChanged("cam-0", state(.down, at: at), at: at) } else { b.stateChanged("cam-0", state(.down, at: at), at: at) }
        }
        #expect(run(&a, from: 6, to: 100).count == 1)
        #expect(run(&b, from: 6, to: 100).count == 1)
        let id = b.openIncidents[0].id
        #expect(!b.acknowledge(id, by: "ops", comment: "on it", at: Self.t0.addingTimeInterval(200)).isEmpty)
        let reminders = run(&a, from: 101, to: 3700)
        #expect(reminders.map(\.kind) == [.reminder], "one reminder an hour after the first notice")
        #expect(run(&b, from: 101, to: 3700).isEmpty, "acknowledged: no reminder")
        #expect(b.openIncidents[0].acknowledgedBy == "ops" && b.openIncidents[0].acknowledgeComment == "on it")
    }

    @Test func aStreamInMaintenance_dies_noIncident_noNotice() {
        let window = MaintenanceWindow(name: "nightly NVR reboot", match: StreamMatch(groups: ["lobby"]),
                                       schedule: .once(from: Self.t0, to: Self.t0.addingTimeInterval(1800)), timeZone: .gmt)
        var m = machine(maintenance: [window])
        let at = Self.t0.addingTimeInterval(5)
        m.stateChanged("nvr-3", state(.down, at: at), at: at)
        #expect(m.inMaintenance("nvr-3", at: at) && !m.inMaintenance("cam-0", at: at))
        #expect(run(&m, from: 6, to: 600).isEmpty)
        #expect(m.openIncidents.isEmpty)
    }

    @Test func aPendingStream_opensNothing_untilItIsPastItsRetries() {
        var m = machine()
        let at = Self.t0.addingTimeInterval(5)
        m.stateChanged("cam-2", state(.down, at: at, pending: true), at: at)
        #expect(run(&m, from: 6, to: 300).isEmpty)
        m.stateChanged("cam-2", state(.down, at: at), at: Self.t0.addingTimeInterval(301))
        #expect(run(&m, from: 301, to: 302).count == 1, "already failing since t0+5 s, so past the grace at once")
    }

    @Test func weeklyMaintenance_followsItsTimeZone_acrossMidnight() {
        var berlin = Calendar(identifier: .gregorian)
        berlin.timeZone = TimeZone(identifier: "Europe/Berlin")!
        let window = MaintenanceWindow(name: "n", match: StreamMatch(), schedule: .weekly(days: [2], minuteOfDay: 23 * 60 + 30, duration: .seconds(3600)),
                                       timeZone: berlin.timeZone)
        // Monday 2026-12-07 23:45 and Tuesday 00:15 Berlin are inside; Tuesday 00:45 and Sunday 23:45 are not.
        func at(_ day: Int, _ h: Int, _ mi: Int) -> Date { berlin.date(from: DateComponents(year: 2026, month: 12, day: day, hour: h, minute: mi))! }
        #expect(window.isActive(at: at(7, 23, 45)) && window.isActive(at: at(8, 0, 15)))
        #expect(!window.isActive(at: at(8, 0, 45)) && !window.isActive(at: at(6, 23, 45)))
    }

    @Test func afterARestart_anOpenIncident_isNeitherNotifiedAgainNorResolvedBeforeItsStreamIsChecked() {
        var first = machine()
        first.stateChanged("cam-4", state(.down, at: Self.t0), at: Self.t0)
        #expect(run(&first, from: 1, to: 100).count == 1)
        let stored = first.openIncidents[0]
        var second = IncidentMachine(notify: { var n = NotifyConfig(); n.rules = first.rules; return n }(), maintenance: [])
        second.setStreams(first.streams.values.map { $0 })
        second.restore(stored)
        #expect(run(&second, from: 101, to: 200).isEmpty)
        #expect(second.openIncidents.count == 1)
        second.stateChanged("cam-4", state(.ok, at: Self.t0.addingTimeInterval(201)), at: Self.t0.addingTimeInterval(201))
        #expect(run(&second, from: 201, to: 201).map(\.kind) == [.resolved])
    }

    @Test func aSilence_survivesARestart_andEndsOnTime() async throws {
        let store = try SQLiteStore(path: TestEnvironment.temporaryDirectory("silence") + "/streampulse.db")
        let first = IncidentService(config: Config(), store: store, logger: CapturedLogs().logger())
        let made = try await first.silence(StreamMatch(groups: ["lobby"]), until: Date().addingTimeInterval(3600), comment: "lens cleaning", by: "ops")
        _ = try await first.silence(StreamMatch(streams: ["gate"]), until: Date().addingTimeInterval(120), comment: "", by: "ops")
        try await first.removeSilence(2)
        // A new monitor on the same database: the lobby silence is back, the removed one is not.
        let second = IncidentService(config: Config(), store: store, logger: CapturedLogs().logger())
        try await second.write([.streams([.forTests(id: "nvr-1", name: "NVR 1", group: "lobby")], at: Date())])
        #expect(second.silences.map(\.id) == [made.id] && second.silences.first?.comment == "lens cleaning")
        #expect(second.inMaintenance("nvr-1"))
        // One that has ended is not restored.
        let expired = IncidentService(config: Config(), store: store, logger: CapturedLogs().logger(), now: { Date().addingTimeInterval(7200) })
        try await expired.write([])
        #expect(expired.silences.isEmpty)
    }

    @Test func theIssuesExampleConfig_validates() throws {
        let yaml = """
            credentials:
              smtp: { username: alerts@example.com }        # password from secrets.yaml
            notify:
              channels:
                - { name: ops-slack, type: slack, url: "${SLACK_WEBHOOK_URL}" }
                - { name: hook, type: webhook, url: "https://alerts.example.com/streampulse", ca_file: /etc/ssl/private-ca.pem }
                - name: oncall-mail
                  type: email
                  smtp: { host: smtp.example.com, port: 587, starttls: true, credentials: smtp }
                  from: streampulse@example.com
                  to: [oncall@example.com]
              rules:
                - { channels: [ops-slack, hook, oncall-mail], statuses: [down, degraded], for: 1m, repeat: 1h, resolved: true }
            maintenance:
              - name: nightly NVR reboot
                match: { groups: [lobby] }
                weekly: { days: [mon, tue, wed, thu, fri], at: "03:00", duration: 30m }
                timezone: Europe/Berlin
            """
        let dir = TestEnvironment.temporaryDirectory("notifycfg")
        try "smtp: { password: s3cret-smtp-pass }\n".write(toFile: dir + "/secrets.yaml", atomically: true, encoding: .utf8)
        let loaded = ConfigLoader(environment: ["SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/XyZsecret"])
            .load(yaml: yaml, file: dir + "/config.yaml", baseDirectory: dir)
        let config = try #require(loaded.config, "\(loaded.problems)")
        #expect(config.notify.channels.map(\.name) == ["ops-slack", "hook", "oncall-mail"])
        #expect(config.notify.channels[2].smtp?.credentials?.password == "s3cret-smtp-pass")
        #expect(config.notify.rules.first?.repeatEvery == .seconds(3600) && config.notify.openAfter == .seconds(60))
        #expect(config.maintenance.first?.timeZone.identifier == "Europe/Berlin")
        #expect(config.notify.channels[0].secrets.contains("/services/T0/B0/XyZsecret"))
        // Mistakes are named.
        let bad = ConfigLoader(environment: [:]).load(yaml: """
            notify:
              channels: [{ name: a, type: slak, url: "https://x" }, { name: t, type: telegram, token: abc }]
              rules: [{ channels: [b], for: 1m }]
            """, file: "c", baseDirectory: dir)
        let messages = bad.errors.map(\.message)
        #expect(messages.contains { $0.hasPrefix("unknown channel type 'slak'") }, "\(messages)")
        #expect(messages.contains("channel 't' (telegram) needs chat_id"), "\(messages)")
        #expect(messages.contains { $0.hasPrefix("a notify rule names the unknown channel 'b'") }, "\(messages)")
    }
}

/// The whole path in a real `serve`: 20 streams on one camera host (a test camera on 127.0.0.2) and 5 on
/// another (127.0.0.1), an HTTPS receiver for two channels, a stream in a maintenance window.
@Suite(.serialized) struct IncidentScenarioTests {
    func launchCamera(port: Int) throws -> Process {
        try TestCameras.launch(TestEnvironment.root + "/scripts/test-cameras/mjpeg_server.py", ["--port", String(port)]).0
    }

    @Test func twentyDieTogether_oneGroupedIncident_reminderUntilAcknowledged_oneRecovery_maintenanceStaysQuiet() async throws {
        let shared = try TestCameras.start()
        let nvrPort = try freePort()
        var nvr = try launchCamera(port: nvrPort)
        defer { kill(nvr.processIdentifier, SIGKILL) }
        let r = try await NotifyChannelTests().receiver()
        defer { kill(r.process.processIdentifier, SIGKILL) }
        let dir = TestEnvironment.temporaryDirectory("incident-serve")
        let web = try freePort()
        var streams = (0..<20).map { "  - { id: nvr-\($0), url: \"http://127.0.0.2:\(nvrPort)/cam/\($0)\", group: lobby }" }
        streams += (0..<5).map { "  - { id: cam-\($0), url: \"http://127.0.0.1:\(shared.mjpegPort)/cam/x\($0)\" }" }
        streams.append("  - { id: works, url: \"http://127.0.0.3:9/x\", group: works }")
        try """
            settings: { interval: 1s, deep_interval: 1s, timeout: 3s, retries: 1, listen: "127.0.0.1:\(web)" }
            streams:
            \(streams.joined(separator: "\n"))
            notify:
              channels:
                - { name: hook, type: webhook, url: "https://127.0.0.1:\(r.port)/hook/streampulse", ca_file: "\(r.ca)" }
                - { name: ops-slack, type: slack, url: "https://127.0.0.1:\(r.port)\(NotifyChannelTests.slackPath)", ca_file: "\(r.ca)" }
              rules:
                - { channels: [hook, ops-slack], statuses: [down, degraded], for: 3s, repeat: 4s, resolved: true }
            maintenance:
              - { name: rewiring, match: { groups: [works] }, from: "2020-01-01 00:00", to: "2099-01-01 00:00" }
            """.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        let validate = try await TestEnvironment.run(["validate", dir + "/config.yaml"])
        #expect(validate.status == 0, "\(validate.stdout)")
        let token = try await TestEnvironment.apiToken(configDirectory: dir)
        let serve = try TestEnvironment.startServe(configDirectory: dir)
        defer { if serve.isRunning { kill(serve.processIdentifier, SIGKILL) } }
        func api(_ path: String) async -> [String: Any]? {
            guard let text = try? await httpGet("http://127.0.0.1:\(web)\(path)", token: token),
                  let body = text.components(separatedBy: "\r\n\r\n").dropFirst().first else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
        }
        func incidents() async -> [[String: Any]] {
            guard let text = try? await httpGet("http://127.0.0.1:\(web)/api/incidents", token: token),
                  let body = text.components(separatedBy: "\r\n\r\n").dropFirst().first,
                  let list = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [[String: Any]] else { return [] }
            return list.compactMap { $0["incident"] as? [String: Any] }
        }
        func hookKinds() -> [String] { r.records().filter { ($0["path"] as? String)?.hasPrefix("/hook/") == true }.compactMap { ($0["fields"] as? [String: Any])?["kind"] as? String } }
        func slackCount() -> Int { r.records().filter { ($0["path"] as? String)?.hasPrefix("/slack/") == true }.count }

        // All 25 cameras deliver pictures first.
        let allOK = await eventuallyTrue(40) { (await api("/api/summary"))?["ok"] as? Int == 25 }
        let summary = await api("/api/summary") ?? [:]
        #expect(allOK, "\(summary)")
        #expect((await api("/api/streams/works"))?["maintenance"] as? Bool == true, "the maintenance stream is marked")

        // The NVR dies: one grouped incident, one notice per channel after `for:`.
        kill(nvr.processIdentifier, SIGKILL)
        nvr.waitUntilExit()
        #expect(await eventuallyTrue(30) { hookKinds().contains("opened") && slackCount() >= 1 }, "\(r.records())")
        let joined = await eventuallyTrue(20) { (await incidents()).first.map { ($0["failing"] as? [String])?.count == 20 } ?? false }
        let open = await incidents()
        #expect(joined, "all 20 joined the one incident: \(open)")
        #expect(open.count == 1 && open.first?["scope"] as? String == "host" && open.first?["key"] as? String == "127.0.0.2", "\(open)")
        #expect(hookKinds().filter { $0 == "opened" }.count == 1 && r.records().filter { ($0["path"] as? String)?.hasPrefix("/slack/") == true }
            .compactMap { (($0["fields"] as? [String: Any])?["text"] as? String) }.filter { !$0.hasPrefix("Still") }.count == 1)
        // Unacknowledged: a reminder comes; after the acknowledgement, no more.
        #expect(await eventuallyTrue(15) { hookKinds().contains("reminder") }, "\(hookKinds())")
        let id = try #require(open.first?["id"] as? Int)
        let ack = try await httpRequest("POST", port: web, path: "/api/incidents/\(id)/ack",
                                        headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/json"],
                                        body: Array(#"{"comment":"NVR rebooting"}"#.utf8))
        #expect(ack.status == 200, "\(ack.body)")
        let remindersAtAck = hookKinds().filter { $0 == "reminder" }.count
        // No event to wait on for "nothing more is sent": watch one and a half reminder intervals.
        try await Task.sleep(for: .seconds(6))
        #expect(hookKinds().filter { $0 == "reminder" }.count == remindersAtAck, "\(hookKinds())")

        // It comes back: one recovery notice per channel, with the downtime.
        nvr = try launchCamera(port: nvrPort)
        #expect(await eventuallyTrue(40) { hookKinds().contains("resolved") }, "\(hookKinds())")
        let resolved = r.records().first { (($0["fields"] as? [String: Any])?["kind"] as? String) == "resolved" }
        let incident = (resolved?["fields"] as? [String: Any])?["incident"] as? [String: Any]
        #expect((incident?["duration_seconds"] as? Double ?? 0) > 5, "\(String(describing: incident))")
        #expect(incident?["acknowledged_by"] as? String == "token:tests", "who acknowledged is recorded")
        #expect(await eventuallyTrue(5) { r.records().filter { ($0["path"] as? String)?.hasPrefix("/slack/") == true }
            .contains { (($0["fields"] as? [String: Any])?["text"] as? String)?.hasPrefix("Resolved") == true } })
        #expect(hookKinds().filter { $0 == "resolved" }.count == 1)
        // The stream in maintenance never opened an incident, and no notice names it.
        #expect((await incidents()).allSatisfy { !(($0["streams"] as? [String]) ?? []).contains("works") })
        #expect(!r.records().contains { "\($0)".contains("works") })
        // No secret path of a channel URL in the API's channel list.
        let channels = try await httpGet("http://127.0.0.1:\(web)/api/notify/channels", token: token)
        #expect(channels.contains(#""name":"ops-slack""#) && !channels.contains("sl4ck-s3cret-path"))
        // `notify test` sends through the channel from the command line.
        let test = try await TestEnvironment.run(["notify", "test", "hook", "--config", dir + "/config.yaml"])
        #expect(test.status == 0 && test.stdout.contains("hook: delivered"), "\(test.stdout) \(test.stderr)")
        #expect(hookKinds().contains("test"))
    }
}
