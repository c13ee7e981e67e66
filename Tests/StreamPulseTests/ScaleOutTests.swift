import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing
@testable import StreamPulseHost

/// Issue #17's scenario with real parts: a real PostgreSQL 15, real `streampulse serve` agents (processes), the
/// MJPEG test camera, and a network namespace (`ip netns` + veth, addresses on this machine only) to cut one
/// agent off.
@Suite(.serialized) struct ScaleOutTests {
    static let interval = 5.0
    static let lease = 4.0

    /// A network namespace joined to this machine by a veth pair: host end 10.177.N.1, namespace end 10.177.N.2.
    final class Namespace: Sendable {
        let name: String
        let hostSide: String
        let hostAddress: String
        init() throws {
            let n = Int(getpid() % 200) + 20
            name = "spns\(n)"
            hostSide = "spv\(n)h"
            hostAddress = "10.177.\(n).1"
            try? Self.ip(["netns", "del", name])
            try? Self.ip(["link", "del", hostSide])
            for command in [["netns", "add", name], ["link", "add", hostSide, "type", "veth", "peer", "name", "spv\(n)n"],
                            ["link", "set", "spv\(n)n", "netns", name], ["addr", "add", hostAddress + "/24", "dev", hostSide],
                            ["link", "set", hostSide, "up"], ["netns", "exec", name, "ip", "addr", "add", "10.177.\(n).2/24", "dev", "spv\(n)n"],
                            ["netns", "exec", name, "ip", "link", "set", "spv\(n)n", "up"], ["netns", "exec", name, "ip", "link", "set", "lo", "up"]] {
                try Self.ip(command)
            }
        }
        /// Cuts (false) or restores (true) the link: the agent inside keeps its cameras, loses PostgreSQL.
        func link(up: Bool) throws { try Self.ip(["link", "set", hostSide, up ? "up" : "down"]) }
        func remove() {
            try? Self.ip(["netns", "del", name])
            try? Self.ip(["link", "del", hostSide])
        }
        static func ip(_ arguments: [String]) throws {
            let run = try TestEnvironment.runBlocking(arguments, environment: [:], executable: "/usr/sbin/ip")
            guard run.status == 0 else {
                throw TestCameras.FixtureError(message: "ip \(arguments.joined(separator: " ")) failed (network namespaces need root): \(run.stderr)")
            }
        }
    }

    /// One `streampulse serve` agent, its output in a log file (read by the test for events).
    final class Agent: Sendable {
        let name: String
        let process: Process
        let log: String
        let port: Int
        /// An agent of `site`, or (site nil) a dashboard that probes nothing (`--no-probe`).
        init(name: String, site: String?, postgres: String, config: String, directory: String, namespace: String? = nil) throws {
            self.name = name
            log = directory + "/\(name).log"
            FileManager.default.createFile(atPath: log, contents: nil)
            let process = Process()
            port = try freePort()
            let role = site.map { ["--site", $0, "--agent", name] } ?? ["--no-probe"]
            let serve = [TestEnvironment.executable, "serve", "--config", config, "--data-dir", directory + "/data-\(name)",
                         "--plugins-dir", try TestEnvironment.pluginsDirectory(), "--listen", "127.0.0.1:\(port)",
                         "--postgres", postgres, "--lease-seconds", String(ScaleOutTests.lease)] + role
            if let namespace {
                process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
                process.arguments = ["netns", "exec", namespace] + serve  // ip execs the command: the pid is the agent's
            } else {
                process.executableURL = URL(fileURLWithPath: serve[0])
                process.arguments = Array(serve.dropFirst())
            }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            process.standardOutput = handle
            process.standardError = handle
            try launchProcess(process)
            self.process = process
        }
        var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        func kill(_ signal: Int32 = SIGKILL) {
            if process.isRunning { Foundation.kill(process.processIdentifier, signal) }
        }
    }

    struct Row: Sendable { var stream: String; var at: Double; var agent: String; var generation: Int64 }

    @Test func agentsShareSites_takeOverAKilledAgent_surviveAPostgreSQLRestart_andFenceACutOffAgent() async throws {
        let namespace = try Namespace()
        defer { namespace.remove() }
        // A camera of its own (not the suite's shared one, which other tests time), and the agent in the namespace
        // probes one more on the namespace's loopback, same port.
        let (camera, cameraReady) = try TestCameras.launch(TestEnvironment.root + "/scripts/test-cameras/mjpeg_server.py", [])
        defer { if camera.isRunning { kill(camera.processIdentifier, SIGTERM) } }
        let mjpegPort = try #require(cameraReady["port"])
        let nsCamera = Process()
        nsCamera.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        nsCamera.arguments = ["netns", "exec", namespace.name, "/usr/bin/python3", TestEnvironment.root + "/scripts/test-cameras/mjpeg_server.py",
                              "--port", String(mjpegPort)]
        let ready = Pipe()
        nsCamera.standardOutput = ready
        try launchProcess(nsCamera)
        defer { if nsCamera.isRunning { kill(nsCamera.processIdentifier, SIGTERM) } }
        _ = ready.fileHandleForReading.availableData  // its READY line

        let server = try await TestPostgres.start(alsoListen: [namespace.hostAddress])
        defer { server.remove() }
        let client = server.client()
        let clientTask = Task { await client.run() }
        var agents: [Agent] = []
        defer {
            // STREAMPULSE_KEEP_LOGS=DIR keeps the agents' logs for a look after the run.
            if let keep = ProcessInfo.processInfo.environment["STREAMPULSE_KEEP_LOGS"] {
                for agent in agents { try? agent.output.write(toFile: keep + "/\(agent.name).log", atomically: true, encoding: .utf8) }
            }
            for agent in agents { agent.kill() }
            clientTask.cancel()
        }
        let dir = TestEnvironment.temporaryDirectory("scale-out")
        var lines = ["settings: { interval: \(Int(Self.interval))s, deep_interval: 1h, timeout: 2s, host_sessions: 1000 }",
                     "notify: { open_after: 2s }", "streams:"]
        for i in 0..<200 {
            lines.append("  - { id: s\(String(format: "%03d", i)), url: \"http://127.0.0.1:\(mjpegPort)/cam/\(i)\", site: \(i < 140 ? "a" : "b") }")
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        let url = "postgres://\(server.user)@127.0.0.1:\(server.port)/postgres"

        let lastOwners = Mutex<[String: Int]>([:])
        func owners() async -> [String: Int] {
            var counts: [String: Int] = [:]
            guard let rows = try? await client.query("SELECT coalesce(owner, '-'), count(*)::int FROM stream_leases WHERE expires_at > now() GROUP BY 1") else { return [:] }
            do { for try await (owner, count) in rows.decode((String, Int).self) { counts[owner] = count } } catch { return [:] }
            lastOwners.withLock { $0 = counts }
            return counts
        }
        func now() async throws -> Double {
            for try await value in try await client.query("SELECT extract(epoch FROM now())::float8").decode(Double.self) { return value }
            throw TestCameras.FixtureError(message: "no answer from PostgreSQL")
        }
        func count(_ sql: String) async -> Int {
            guard let rows = try? await client.query(PostgresQuery(unsafeSQL: sql)) else { return -1 }
            do { for try await value in rows.decode(Int.self) { return value } } catch { return -1 }
            return -1
        }
        func why() -> String { "leases held: \(lastOwners.withLock { $0 })\n" + agents.map { "\($0.name): …\($0.output.suffix(1500))" }.joined(separator: "\n") }

        // The web instance: the dashboard and API over PostgreSQL, probing nothing.
        // Accounts are in PostgreSQL, shared by every dashboard and agent: the token is made there.
        let tokenRun = try await TestEnvironment.run(["token", "create", "--name", "t", "--role", "viewer", "--postgres", url])
        let token = tokenRun.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let web = try Agent(name: "web", site: nil, postgres: url, config: dir + "/config.yaml", directory: dir)
        defer { web.kill() }
        /// The web instance's streams: id → (status, reason, last check in whole seconds).
        func shown() async -> [String: (status: String, reason: String, lastCheck: Double)] {
            guard let answer = try? await httpRequest("GET", port: web.port, path: "/api/streams", headers: ["Authorization": "Bearer \(token)"]),
                  answer.status == 200, let list = try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [[String: Any]] else { return [:] }
            var out: [String: (String, String, Double)] = [:]
            let iso = ISO8601DateFormatter()
            for item in list {
                guard let id = item["id"] as? String else { continue }
                let last = (item["last_check"] as? String).flatMap(iso.date(from:))?.timeIntervalSince1970 ?? 0
                out[id] = (item["status"] as? String ?? "", item["reason"] as? String ?? "", last)
            }
            return out
        }

        // 1. Two agents on site a, one on site b: a's 140 streams split 70/70, b's 60 go to b1; all probed.
        agents.append(try Agent(name: "a1", site: "a", postgres: url, config: dir + "/config.yaml", directory: dir))
        agents.append(try Agent(name: "a2", site: "a", postgres: url, config: dir + "/config.yaml", directory: dir))
        agents.append(try Agent(name: "b1", site: "b", postgres: url, config: dir + "/config.yaml", directory: dir))
        let shared = await eventuallyTrue(60) {
            let split = await owners() == ["a1": 70, "a2": 70, "b1": 60]
            let probed = await count("SELECT count(DISTINCT stream_id)::int FROM results WHERE agent IS NOT NULL")
            return split && probed == 200
        }
        #expect(shared, "\(why())")
        guard shared else { return }
        // The web instance shows all 200 green, from the agents' results.
        let webGreen = await eventuallyTrue(30) { let list = await shown(); return list.count == 200 && list.values.allSatisfy { $0.status == "ok" } }
        let notGreen = await shown().filter { $0.value.status != "ok" }.prefix(5)
        #expect(webGreen, "web: \(notGreen) …\(web.output.suffix(2000))")
        // One sign-in for the whole deployment: an agent's own API takes the same token.
        let agentAnswer = try? await httpRequest("GET", port: agents[1].port, path: "/api/streams", headers: ["Authorization": "Bearer \(token)"])
        #expect(agentAnswer?.status == 200, "agent a2 refused the deployment's token: \(agentAnswer?.status ?? 0)")
        // Live: each batch an agent writes is notified (LISTEN/NOTIFY), so the web instance follows PostgreSQL within
        // a few seconds, not at its 30-s fallback read.
        for _ in 0..<3 {
            let newest = await count("SELECT floor(max(at))::int FROM results")
            let followed = await eventuallyTrue(3) { (await shown().values.map(\.lastCheck).max() ?? 0) >= Double(newest) }
            #expect(followed, "the web instance did not show the result of \(newest) within 3 s")
        }

        // 2. Kill a1: a2 probes every one of its streams within two lease periods.
        var a1Streams: [String] = []
        for try await id in try await client.query("SELECT stream_id FROM stream_leases WHERE owner = 'a1'").decode(String.self) { a1Streams.append(id) }
        agents[0].kill()
        let killed = try await now()
        let taken = "SELECT min(at - coalesce(total_ms, 0) / 1000) AS first FROM results WHERE agent = 'a2' AND at > \(killed) AND stream_id = ANY(ARRAY['\(a1Streams.joined(separator: "','"))']) GROUP BY stream_id"
        let tookOver = await eventuallyTrue(20) { await count("SELECT count(*)::int FROM (\(taken)) t") == a1Streams.count }
        #expect(tookOver && a1Streams.count == 70, "\(why())")
        let takeover = await count("SELECT ceil(1000 * max(first - \(killed)))::int FROM (\(taken)) t")
        #expect(takeover > 0 && Double(takeover) / 1000 <= 2 * Self.lease, "the last of a1's streams was first probed by a2 \(takeover) ms after the kill (probe start)")

        // They were taken over with their green state: a2's first check of each is quick (not a deep round), and
        // a2 records no change from "not checked" for any of them.
        let ids = "ARRAY['\(a1Streams.joined(separator: "','"))']"
        let quickFirst = await count("""
            SELECT count(*)::int FROM (SELECT DISTINCT ON (stream_id) mode FROM results
              WHERE agent = 'a2' AND at > \(killed) AND stream_id = ANY(\(ids)) ORDER BY stream_id, at) t WHERE mode = 'quick'
            """)
        #expect(quickFirst == a1Streams.count, "\(quickFirst) of a1's \(a1Streams.count) streams were first checked quick by a2")
        #expect(await count("SELECT count(*)::int FROM state_changes WHERE agent = 'a2' AND at > \(killed) AND from_status = 'unknown' AND stream_id = ANY(\(ids))") == 0)

        // The web instance's history of a stream is PostgreSQL's: every agent's checks of it, with their ids there.
        let checks = try? await httpRequest("GET", port: web.port, path: "/api/streams/s000/checks?limit=1000", headers: ["Authorization": "Bearer \(token)"])
        let webIDs = ((try? JSONSerialization.jsonObject(with: Data((checks?.body ?? "").utf8))) as? [[String: Any]] ?? []).compactMap { $0["id"] as? Int }
        var pgIDs: [Int] = []
        for try await id in try await client.query("SELECT id::int FROM results WHERE stream_id = 's000' AND id <= \(webIDs.first ?? 0) ORDER BY id DESC")
            .decode(Int.self) { pgIDs.append(id) }
        #expect(!webIDs.isEmpty && webIDs == pgIDs, "web: \(webIDs.prefix(8)), PostgreSQL: \(pgIDs.prefix(8))")
        // So is its CSV export: every check of the stream PostgreSQL had, and any written since.
        let csv = try await TestEnvironment.run(["-s", "-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(web.port)/api/export.csv?streams=s000"],
                                                executable: "/usr/bin/curl")
        let csvRows = csv.stdout.split(separator: "\r\n").dropFirst().filter { $0.contains(",s000,") }.count
        #expect(csvRows >= pgIDs.count && !pgIDs.isEmpty, "CSV rows of s000: \(csvRows), PostgreSQL had \(pgIDs.count)")

        // 3. Restart PostgreSQL: the agents buffer meanwhile and write it all afterwards; nothing committed is lost.
        let lastCommitted = await count("SELECT max(id)::int FROM results")
        let committed = await count("SELECT count(*)::int FROM results WHERE id <= \(lastCommitted)")
        await server.stop()
        let down = Date().timeIntervalSince1970
        // Down until both agents have noticed (a round failed), which is well within a lease period.
        let noticed = await eventuallyTrue(10) { [agents] in
            agents[1...2].allSatisfy { $0.output.contains("cannot renew its leases") }
        }
        #expect(noticed, "\(why())")
        try await server.start()
        let up = Date().timeIntervalSince1970
        let buffered = await eventuallyTrue(30) {
            await count("SELECT count(DISTINCT agent)::int FROM results WHERE at > \(down) AND at < \(up)") == 2
        }
        #expect(buffered, "results probed while PostgreSQL was down (\(String(format: "%.1f", up - down)) s) were not written afterwards: \(why())")
        #expect(await count("SELECT count(*)::int FROM results WHERE id <= \(lastCommitted)") == committed)

        // 4. A third agent of site a in the network namespace takes its share, then is cut off from PostgreSQL:
        // a2 takes its streams over, and when the link is back the results it probed meanwhile are refused.
        agents.append(try Agent(name: "a3", site: "a", postgres: "postgres://\(server.user)@\(namespace.hostAddress):\(server.port)/postgres",
                                config: dir + "/config.yaml", directory: dir, namespace: namespace.name))
        let joined = await eventuallyTrue(30) {
            let split = await owners() == ["a2": 70, "a3": 70, "b1": 60]
            let probed = await count("SELECT count(DISTINCT stream_id)::int FROM results WHERE agent = 'a3'")
            return split && probed == 70
        }
        #expect(joined, "\(why())")
        try namespace.link(up: false)
        let cut = try await now()
        #expect(await eventuallyTrue(20) { (await owners())["a2"] == 140 }, "\(why())")
        #expect(await eventuallyTrue(20) { agents[3].output.contains("stops probing") }, "\(agents[3].output.suffix(2000))")
        try namespace.link(up: true)
        #expect(await eventuallyTrue(30) { agents[3].output.contains("(fencing)") }, "\(agents[3].output.suffix(3000))")
        #expect(await count("SELECT count(*)::int FROM results WHERE agent = 'a3' AND at > \(cut)") == 0,
                "a cut-off agent's late results reached the history")
        // Back in the rounds, it gets a share again.
        #expect(await eventuallyTrue(30) { await owners() == ["a2": 70, "a3": 70, "b1": 60] }, "\(why())")

        // 5. Over the whole run: never two agents on one stream at once, and no gap longer than two intervals
        // plus the lease in any stream's history (up to a moment when every stream has been probed again).
        let rejoined = try await now()
        #expect(await eventuallyTrue(20) { await count("SELECT count(DISTINCT stream_id)::int FROM results WHERE at > \(rejoined)") == 200 })
        let end = try await now()
        var rows: [Row] = []
        for try await (stream, at, agent, generation) in try await client.query(
            "SELECT stream_id, at, agent, generation FROM results WHERE at <= \(end) ORDER BY stream_id, at").decode((String, Double, String, Int64).self) {
            rows.append(Row(stream: stream, at: at, agent: agent, generation: generation))
        }
        var worstGap = (0.0, ""), mostSwitches = (0, ""), overlaps: [String] = []
        for (stream, history) in Dictionary(grouping: rows, by: \.stream) {
            let switches = zip(history, history.dropFirst()).filter { $0.agent != $1.agent }.count
            // Each result carries the lease generation it was probed under. One agent at a time means: in time
            // order the generations never go back, and each belongs to one agent.
            for (earlier, later) in zip(history, history.dropFirst())
            where later.generation < earlier.generation || (later.generation == earlier.generation && later.agent != earlier.agent) {
                overlaps.append("\(stream): \(earlier.agent)#\(earlier.generation) at \(earlier.at), then \(later.agent)#\(later.generation) at \(later.at)")
            }
            let gap = max(zip(history, history.dropFirst()).map { $1.at - $0.at }.max() ?? 0, end - (history.last?.at ?? end))
            if gap > worstGap.0 { worstGap = (gap, stream) }
            if switches > mostSwitches.0 { mostSwitches = (switches, stream) }
        }
        #expect(overlaps.isEmpty, "\(overlaps.prefix(10))")
        // A stream changes hands at most at: the first split, the kill, a3 joining, the cut, a3 rejoining.
        #expect(mostSwitches.0 <= 5, "stream \(mostSwitches.1) changed agents \(mostSwitches.0) times")
        #expect(worstGap.0 <= 2 * Self.interval + Self.lease, "stream \(worstGap.1) has a gap of \(worstGap.0) s")
        print("scale-out: the last of a1's streams probed by a2 \(takeover) ms after the kill; PostgreSQL down \(String(format: "%.2f", up - down)) s; worst gap \(String(format: "%.2f", worstGap.0)) s (\(worstGap.1)); most agent switches \(mostSwitches.0); \(rows.count) results")
        // 6. Site b's only agent dies: the web instance shows its 60 streams as "site unreachable" (grey), not as
        // 60 dead cameras, with one incident for the site; site a stays green.
        agents[2].kill()
        let unreachable = await eventuallyTrue(Self.lease * 2 + 10) {
            let list = await shown()
            return list.filter { $0.value.reason == "site_unreachable" && $0.value.status == "unknown" }.count == 60
        }
        let siteB = await shown().filter { $0.key >= "s140" }.prefix(5)
        #expect(unreachable, "web: \(siteB) …\(web.output.suffix(2000))")
        let siteANotGreen = await shown().filter { $0.key < "s140" && $0.value.status != "ok" }
        #expect(siteANotGreen.isEmpty, "site a's streams stay as they are: \(siteANotGreen.prefix(5))")
        let incident = await eventuallyTrue(10) {
            guard let answer = try? await httpRequest("GET", port: web.port, path: "/api/incidents?state=open", headers: ["Authorization": "Bearer \(token)"]),
                  let body = try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) else { return false }
            let list = ((body as? [[String: Any]]) ?? []).compactMap { $0["incident"] as? [String: Any] }
            return list.count == 1 && list[0]["scope"] as? String == "site" && list[0]["key"] as? String == "b"
                && (list[0]["streams"] as? [String])?.count == 60 && list[0]["reason"] as? String == "site_unreachable"
        }
        let openIncidents = (try? await httpRequest("GET", port: web.port, path: "/api/incidents?state=open", headers: ["Authorization": "Bearer \(token)"]))?.body.prefix(1500) ?? ""
        #expect(incident, "one open incident for site b: \(openIncidents)")

        // A graceful stop gives the streams back and ends within seconds, PostgreSQL up or not.
        web.kill(SIGTERM)
        for agent in agents { agent.kill(SIGTERM) }
        let stopped = await eventuallyTrue(15) { [agents] in agents.allSatisfy { !$0.process.isRunning } }
        #expect(stopped, "agents still running 15 s after SIGTERM: \(agents.filter(\.process.isRunning).map(\.name))")
        await server.stop()
    }
}
