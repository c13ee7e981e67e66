import Foundation
import Logging
import PostgresNIO
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// The `IncidentStorage` contract, run against the embedded database (`IncidentStorageSQLiteTests`) and
/// PostgreSQL (`PostgresIncidentsTests`).
enum IncidentStorageContract {
    static func incident(_ id: Int64, streams: [String], started: Double, resolved: Double? = nil) -> Incident {
        var incident = Incident(id: id, scope: streams.count > 1 ? .host : .stream, key: streams.count > 1 ? "10.0.0.9" : streams[0],
                                title: "incident \(id)", streams: streams, failing: resolved == nil ? streams : [],
                                started: Date(timeIntervalSince1970: started), status: .down, reason: .connectionRefused, phase: .connect,
                                message: "Connection refused")
        incident.resolved = resolved.map { Date(timeIntervalSince1970: $0) }
        return incident
    }

    static func run(_ storage: any IncidentStorage) async throws {
        #expect(try await storage.lastIncidentID() == 0)
        let jpeg = Data([0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 0xFF, 0xD9])
        try await storage.save(incident(1, streams: ["a"], started: 1000, resolved: 1500), evidence: (jpeg, Date(timeIntervalSince1970: 990)))
        try await storage.save(incident(2, streams: ["b", "c"], started: 2000), evidence: nil)
        try await storage.save(incident(3, streams: ["a"], started: 3000), evidence: nil)
        #expect(try await storage.lastIncidentID() == 3)
        func ids(open: Bool? = nil, stream: String? = nil, from: Double? = nil, to: Double? = nil, limit: Int = 100) async throws -> [Int64] {
            try await storage.incidents(open: open, stream: stream, from: from.map { Date(timeIntervalSince1970: $0) },
                                        to: to.map { Date(timeIntervalSince1970: $0) }, limit: limit).map(\.incident.id)
        }
        #expect(try await ids() == [3, 2, 1], "newest first")
        #expect(try await ids(open: true) == [3, 2])
        #expect(try await ids(open: false) == [1])
        #expect(try await ids(stream: "a") == [3, 1])
        #expect(try await ids(stream: "c") == [2])
        #expect(try await ids(stream: "zz").isEmpty)
        #expect(try await ids(from: 1600) == [3, 2], "resolved before the period: left out")
        #expect(try await ids(to: 2500) == [2, 1], "started after the period: left out")
        #expect(try await ids(limit: 1) == [3])
        // The evidence stays when the incident is saved again without one (acknowledged, resolved).
        var acknowledged = incident(1, streams: ["a"], started: 1000, resolved: 1500)
        acknowledged.acknowledgedBy = "olga"
        try await storage.save(acknowledged, evidence: nil)
        let first = try #require(try await storage.incidents(open: false, stream: nil, from: nil, to: nil, limit: 10).first)
        #expect(first.incident.acknowledgedBy == "olga" && first.hasEvidence && first.evidenceAt == Date(timeIntervalSince1970: 990))
        #expect(try await storage.incidentEvidence(1) == jpeg)
        #expect(try await storage.incidentEvidence(2) == nil)
        // Resolving moves it from open to resolved; a member added later is found by stream.
        var grown = incident(2, streams: ["b", "c", "d"], started: 2000, resolved: 2600)
        grown.failing = []
        try await storage.save(grown, evidence: nil)
        #expect(try await ids(open: true) == [3])
        #expect(try await ids(stream: "d") == [2])

        // Silences: running ones are listed, ended ones deleted.
        let now = Date(timeIntervalSince1970: 10_000)
        try await storage.save(Silence(id: 1, match: StreamMatch(groups: ["lobby"]), until: now.addingTimeInterval(3600), comment: "lens", by: "ops"))
        try await storage.save(Silence(id: 2, match: StreamMatch(streams: ["gate"]), until: now.addingTimeInterval(-1), comment: "", by: "ops"))
        try await storage.save(Silence(id: 3, match: StreamMatch(tags: ["outdoor"]), until: now.addingTimeInterval(60), comment: "", by: "ops"))
        #expect(try await storage.silences(now: now).map(\.id) == [1, 3])
        try await storage.deleteSilence(3)
        let left = try await storage.silences(now: now)
        #expect(left.map(\.id) == [1] && left.first?.comment == "lens" && left.first?.match == StreamMatch(groups: ["lobby"]))
        #expect(try await storage.silences(now: now.addingTimeInterval(7200)).isEmpty)
    }
}

@Suite struct IncidentStorageSQLiteTests {
    @Test func theIncidentContract_holdsOnSQLite() async throws {
        try await IncidentStorageContract.run(try SQLiteStore(path: TestEnvironment.temporaryDirectory("incidents") + "/streampulse.db"))
    }
}

/// Incidents in PostgreSQL (issue #17): the same contract; and several dashboards on one database open each
/// incident once — only the elected notifier acts, an acknowledgement at another dashboard reaches it, and when
/// the notifier goes another takes over from what it stored (no second incident, nothing opened twice).
@Suite(.serialized) struct PostgresIncidentsTests {
    @Test func theIncidentContract_holdsOnPostgreSQL_andOneOfTwoDashboardsNotifies() async throws {
        let server = try await TestPostgres.start()
        defer { server.remove() }
        let clients = [server.client(), server.client(), server.client()]
        let runs = clients.map { client in Task { await client.run() } }
        defer { for run in runs { run.cancel() } }
        let logger = Logger(label: "incidents")
        try await PostgresHistory(client: clients[0], logger: logger).migrate()
        try await IncidentStorageContract.run(PostgresIncidents(client: clients[0], logger: logger))
        try await clients[0].query("TRUNCATE incidents, incident_streams, silences")

        // Two dashboards, each with its own connections; one open_after of 1 s.
        var config = Config()
        config.notify.openAfterSetting = .seconds(1)
        let elections = [NotifierElection(client: clients[1], logger: logger, retry: .milliseconds(200)),
                         NotifierElection(client: clients[2], logger: logger, retry: .milliseconds(200))]
        let electionTasks = elections.map { election in Task { await election.run() } }
        defer { for task in electionTasks { task.cancel() } }
        let dashboards = zip(clients[1...], elections).map { client, election in
            IncidentService(config: config, store: nil, storage: PostgresIncidents(client: client, logger: logger), election: election, logger: logger)
        }
        #expect(await eventuallyTrue(10) { elections.filter(\.isLeading).count == 1 }, "one notifier")
        let leader = elections[0].isLeading ? 0 : 1, follower = 1 - leader
        // Both see the same stream list and the same change (they read the same results).
        let cam = SinkEvent.streams([.forTests(id: "cam", name: "Cam")], at: Date())
        var down = StreamState.initial
        down.status = .down
        down.reason = .connectionRefused
        down.message = "Connection refused"
        down.since = Date().addingTimeInterval(-5)
        let change = SinkEvent.change(StateChange(streamId: "cam", from: .initial, to: down, at: Date().addingTimeInterval(-5)))
        for dashboard in dashboards { try await dashboard.write([cam, change]) }
        let storage = PostgresIncidents(client: clients[0], logger: logger)
        func stored() async -> [Incident] {
            (try? await storage.incidents(open: nil, stream: nil, from: nil, to: nil, limit: 100).map(\.incident)) ?? []
        }
        #expect(await eventuallyTrue(10) {
            for dashboard in dashboards { try? await dashboard.write([]) }
            return await stored().count == 1
        }, "the notifier opened the incident")
        for _ in 0..<3 {
            for dashboard in dashboards { try await dashboard.write([]) }
            try await Task.sleep(for: .milliseconds(400))
        }
        #expect(await stored().map(\.id) == [1], "opened once, not once per dashboard")
        // Acknowledged at the other dashboard: the notifier adopts it (no more reminders there).
        #expect(try await dashboards[follower].acknowledge(1, by: "olga", comment: "on it"))
        #expect(await eventuallyTrue(10) {
            try? await dashboards[leader].write([])
            return dashboards[leader].openIncidents.first?.acknowledgedBy == "olga"
        })
        #expect(await stored().first?.updates.contains { $0.text == "Acknowledged by olga: on it" } == true)
        // A silence made at the notifier shows at the other dashboard too (the stream list's maintenance flag).
        let silence = try await dashboards[leader].silence(StreamMatch(streams: ["cam"]), until: Date().addingTimeInterval(3600), comment: "", by: "olga")
        #expect(await eventuallyTrue(10) {
            try? await dashboards[follower].write([])
            return dashboards[follower].inMaintenance("cam")
        })
        try await dashboards[leader].removeSilence(silence.id)
        // The notifier goes (its election stops, its lock goes with its connection): the other takes over from
        // what was stored and resolves the same incident when the camera is back.
        electionTasks[leader].cancel()
        #expect(await eventuallyTrue(10) { elections[follower].isLeading && !elections[leader].isLeading })
        var up = StateChange(streamId: "cam", from: down, to: .initial, at: Date())
        up.to.status = .ok
        up.to.reason = .ok
        try await dashboards[follower].write([.change(up)])
        #expect(await eventuallyTrue(10) {
            try? await dashboards[follower].write([])
            let all = await stored()
            return all.count == 1 && all.first?.resolved != nil
        })
        await server.stop()
    }
}

/// A dashboard's uptime figures and availability report over PostgreSQL (issue #17): every agent's state
/// changes, watched while some agent of the stream's site ran (the agents' runs merged per site); time no
/// agent of a site ran is unknown, not up.
@Suite(.serialized) struct PostgresAvailabilityTests {
    @Test func uptime_followsEveryAgentsChanges_andTheRunsOfTheStreamsSite() async throws {
        let server = try await TestPostgres.start()
        defer { server.remove() }
        let client = server.client()
        let run = Task { await client.run() }
        defer { run.cancel() }
        let history = PostgresHistory(client: client, logger: Logger(label: "availability"))
        try await history.migrate()
        let now = Date(), t0 = now.addingTimeInterval(-3600)
        // Site north: a1 ran for the first 20 minutes, a2 from minute 10 until now (seen 5 s ago); site south's
        // only agent stopped at minute 30.
        let a1 = try await history.startRun(agent: "a1", site: "north", at: t0)
        try await history.markAlive(run: a1, at: t0.addingTimeInterval(1200))
        let a2 = try await history.startRun(agent: "a2", site: "north", at: t0.addingTimeInterval(600))
        try await history.markAlive(run: a2, at: now.addingTimeInterval(-5))
        let b1 = try await history.startRun(agent: "b1", site: "south", at: t0)
        try await history.markAlive(run: b1, at: t0.addingTimeInterval(1800))
        let t = t0.timeIntervalSince1970
        try await client.query("""
            INSERT INTO streams (id, name, url, site, first_seen, last_seen) VALUES
              ('n1', 'N1', 'rtsp://h/1', 'north', \(t), \(t)), ('s1', 'S1', 'rtsp://h/2', 'south', \(t), \(t))
            """)
        // n1: ok (a1), down at minute 30 and ok again at minute 45 (a2); s1 ok from the start.
        try await client.query("""
            INSERT INTO state_changes (stream_id, at, from_status, to_status, pending, reason, message, agent, generation) VALUES
              ('n1', \(t + 10), 'unknown', 'ok', false, 'ok', '', 'a1', 1),
              ('n1', \(t + 1800), 'ok', 'down', false, 'connection_refused', '', 'a2', 2),
              ('n1', \(t + 2700), 'down', 'ok', false, 'ok', '', 'a2', 2),
              ('s1', \(t + 10), 'unknown', 'ok', false, 'ok', '', 'b1', 1)
            """)
        let data = try await history.availabilityHistory(from: now.addingTimeInterval(-86_400), to: now, now: now)
        #expect(data.runs(of: "n1").count == 1, "a1's and a2's runs merged: \(data.runs(of: "n1"))")
        let uptimes = SQLiteStore.uptimes(data, now: now) { _ in [] }
        let north = try #require(uptimes["n1"]?.day)
        #expect(abs(north - 2690.0 / 3590.0) < 0.001, "n1 up 1,790 + 900 s, down 900 s: \(north)")
        #expect(uptimes["s1"]?.day == 1.0, "after its site's only agent stopped, s1 is unknown, not up or down")
        // The availability report over the hour: the same figures, from PostgreSQL's history and incidents.
        let report = try await SQLiteStore.report(from: t0, to: now, now: now, streams: [("n1", "N1", nil), ("s1", "S1", nil)], history: history,
                                                  incidents: PostgresIncidents(client: client, logger: Logger(label: "availability"))) { _ in [] }
        let n1 = try #require(report.streams.first { $0.key == "n1" })
        #expect(abs(n1.downSeconds - 900) < 1 && abs(n1.upSeconds - 2690) < 2, "\(n1)")
        let s1 = try #require(report.streams.first { $0.key == "s1" })
        #expect(abs(s1.unknownSeconds - 1810) < 2, "\(s1)")
        // Retention (settings.retention) prunes PostgreSQL's history too: old rows go, recent ones stay.
        try await client.query("""
            INSERT INTO results (stream_id, at, mode, status, reason, message) VALUES
              ('n1', \(t - 40 * 86_400), 'deep', 'ok', 'ok', ''), ('n1', \(t), 'deep', 'ok', 'ok', '')
            """)
        try await client.query("INSERT INTO rollups_daily (stream_id, period, checks, ok) VALUES ('n1', \(Int64(t) - 400 * 86_400), 1, 1), ('n1', \(Int64(t)), 1, 1)")
        let pruned = try await history.prune(rawDays: 30, rollupDays: 365, now: now)
        var left: [Int64] = []
        for try await (results, rollups, changes) in try await client.query(
            "SELECT (SELECT count(*) FROM results), (SELECT count(*) FROM rollups_daily), (SELECT count(*) FROM state_changes)").decode((Int64, Int64, Int64).self) {
            left = [results, rollups, changes]
        }
        #expect(pruned == 2 && left == [1, 1, 4], "pruned \(pruned), left results/rollups/changes \(left)")
        // A dashboard's notices take their evidence from the agents' changes: the failing picture since the
        // incident began, else the last good one.
        let failing = Data([0xFF, 0xD8, 1, 0xFF, 0xD9]), good = Data([0xFF, 0xD8, 2, 0xFF, 0xD9])
        try await client.query("""
            INSERT INTO state_changes (stream_id, at, from_status, to_status, pending, reason, message, thumbnail, agent, generation) VALUES
              ('n1', \(t + 3000), 'ok', 'degraded', false, 'frozen', '', \(failing), 'a2', 2), ('s1', \(t + 20), 'unknown', 'ok', false, 'ok', '', \(good), 'b1', 1)
            """)
        #expect(try await history.evidence(stream: "n1", good: false, since: t0)?.jpeg == failing)
        #expect(try await history.evidence(stream: "n1", good: false, since: now)?.jpeg == nil)
        #expect(try await history.evidence(stream: "s1", good: true, since: nil)?.jpeg == good)
        await server.stop()
    }
}
