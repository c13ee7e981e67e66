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
