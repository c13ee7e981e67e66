import Foundation
import Logging
import PostgresNIO
import Testing
@testable import StreamPulseHost

/// Leases by which agents of one site share its streams (issue #17), on a real PostgreSQL 15.
@Suite(.serialized) struct StreamLeasesTests {
    /// Runs `body` with a fresh server, a running client and migrated lease tables; stops them afterwards.
    func withLeases(period: Duration, _ body: (StreamLeases, TestPostgres) async throws -> Void) async throws {
        let server = try await TestPostgres.start()
        defer { server.remove() }
        let client = server.client()
        let run = Task { await client.run() }
        let leases = StreamLeases(client: client, period: period, logger: Logger(label: "leases"))
        do {
            try await leases.migrate()
            try await body(leases, server)
        } catch {
            run.cancel()
            await server.stop()
            throw error
        }
        run.cancel()
        await server.stop()
    }

    /// Two agents share a site's 20 streams, 10 each and never the same one; when one stops renewing, the
    /// other holds all 20 within two lease periods (timed on PostgreSQL's clock); the stopped one, back,
    /// finds its old leases gone and its fenced writes refused, then gets its share again.
    @Test func twoAgents_shareASite_andTheSurvivorTakesOverWithinTwoPeriods_fencingTheReturningOne() async throws {
        try await withLeases(period: .seconds(1)) { leases, _ in
            let streams = (1...20).map { String(format: "cam%02d", $0) }
            try await leases.register(site: "a", streams: streams)
            try await leases.register(site: "b", streams: ["other"])
            // Both agents announce themselves, then each claims its share.
            var one = try await leases.round(site: "a", agent: "one", holding: [])
            var two = try await leases.round(site: "a", agent: "two", holding: [])
            one = try await leases.round(site: "a", agent: "one", holding: one)  // gives back what exceeds its share
            two = try await leases.round(site: "a", agent: "two", holding: two)
            #expect(one.count == 10 && two.count == 10, "one \(one.count), two \(two.count)")
            #expect(Set(one.map(\.streamID)).isDisjoint(with: two.map(\.streamID)))
            #expect(Set(one.map(\.streamID)).union(two.map(\.streamID)) == Set(streams))
            let writeTable = "CREATE TABLE IF NOT EXISTS fenced_writes (stream_id TEXT, agent TEXT)"
            try await leases.client.query(PostgresQuery(unsafeSQL: writeTable))
            let stale = try #require(one.first)
            _ = try await leases.fenced(stale, agent: "one") { connection in
                try await connection.query("INSERT INTO fenced_writes VALUES (\(stale.streamID), 'one')", logger: leases.logger)
            }
            // Agent one stops (no more rounds); two keeps renewing every half period and takes one's streams.
            let started = ContinuousClock.now
            while two.count < 20, ContinuousClock.now < started + .seconds(4) {
                try await Task.sleep(for: .milliseconds(500))
                two = try await leases.round(site: "a", agent: "two", holding: two)
            }
            #expect(two.count == 20)
            #expect(started.duration(to: .now) <= .seconds(2) + .milliseconds(600), "takeover took \(started.duration(to: .now))")
            #expect(!two.contains { $0.streamID == "other" })
            // One returns with its old leases: renewing keeps none, its write is refused and inserts nothing.
            #expect(try await leases.renew(agent: "one", one).isEmpty)
            await #expect(throws: StreamLeases.Fenced.self) {
                try await leases.fenced(stale, agent: "one") { connection in
                    try await connection.query("INSERT INTO fenced_writes VALUES (\(stale.streamID), 'one-late')", logger: leases.logger)
                }
            }
            let writes = try await leases.client.query("SELECT agent FROM fenced_writes ORDER BY agent")
            var agents: [String] = []
            for try await agent in writes.decode(String.self) { agents.append(agent) }
            #expect(agents == ["one"])
            // Back in the rounds, one gets a share again as two gives back its excess.
            one = try await leases.round(site: "a", agent: "one", holding: [])
            two = try await leases.round(site: "a", agent: "two", holding: two)
            one = try await leases.round(site: "a", agent: "one", holding: one)
            #expect(one.count == 10 && two.count == 10, "one \(one.count), two \(two.count)")
        }
    }

    /// Eight agents claiming one site's 400 streams at the same moment: every stream ends with exactly one
    /// owner (`FOR UPDATE SKIP LOCKED` never hands a row to two claims).
    @Test func agentsClaimingAtOnce_neverTakeTheSameStream() async throws {
        try await withLeases(period: .seconds(30)) { leases, _ in
            let streams = (1...400).map { "s\($0)" }
            try await leases.register(site: "a", streams: streams)
            let claims = try await withThrowingTaskGroup(of: Set<StreamLease>.self) { group in
                for agent in 1...8 { group.addTask { try await leases.claim(site: "a", agent: "agent\(agent)", count: 80) } }
                var all: [Set<StreamLease>] = []
                for try await claim in group { all.append(claim) }
                return all
            }
            let ids = claims.flatMap { $0.map(\.streamID) }
            #expect(ids.count == 400, "claimed \(ids.count)")
            #expect(Set(ids).count == ids.count, "a stream was claimed twice")
        }
    }

    /// A batch fenced at once: only the streams whose lease is still the agent's are handed to the write. An
    /// agent taking back its own expired lease (nobody held it meanwhile) keeps the generation, so its buffered
    /// results still pass; a stream another agent held meanwhile comes back with a new generation.
    @Test func batchFencing_passesOnlyCurrentLeases_andReclaimingOnesOwnLeaseKeepsItsGeneration() async throws {
        try await withLeases(period: .milliseconds(600)) { leases, _ in
            try await leases.register(site: "a", streams: ["x", "y"])
            let mine = try await leases.claim(site: "a", agent: "one", count: 2)
            #expect(mine.count == 2)
            // Both leases expire; "two" takes y only (so x is still one's, expired, untaken).
            try await Task.sleep(for: .milliseconds(700))
            let y = try #require(mine.first { $0.streamID == "y" })
            let x = try #require(mine.first { $0.streamID == "x" })
            try await leases.client.query("UPDATE stream_leases SET owner = 'two', generation = generation + 1, expires_at = now() + interval '1 minute' WHERE stream_id = 'y'")
            let passed = try await leases.fenced(mine, agent: "one") { _, current in current }
            #expect(passed == ["x"], "\(passed)")
            // Taking x back keeps its generation: what one probed under it is still one's to write.
            let again = try await leases.claim(site: "a", agent: "one", count: 2)
            #expect(again == [x], "\(again)")
            #expect(try await leases.fenced([x, y], agent: "one") { _, current in current } == ["x"])
            // Once two gives y up, one's claim of it is a takeover: a new generation, and the old one is refused.
            try await leases.release(agent: "two", [StreamLease(streamID: "y", generation: y.generation + 1)])
            let y2 = try await leases.claim(site: "a", agent: "one", count: 2).filter { $0.streamID == "y" }
            #expect(y2.map(\.generation) == [y.generation + 2], "\(y2)")
            #expect(try await leases.fenced([y], agent: "one") { _, current in current }.isEmpty)
        }
    }
}
