import Foundation
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// The shared picture of the fleet behind `/api/streams`.
@Suite struct StreamListTests {
    /// With the rebuild service running (as in `serve`, where the reload itself starts the rebuild) and
    /// without it (a monitor assembled in a test, where the request builds the picture).
    @Test(arguments: [true, false]) func aReload_isVisibleInTheSharedList_atOnce(serviceRunning: Bool) async throws {
        let host = PluginHost(directory: TestEnvironment.temporaryDirectory("noplugins"), logger: CapturedLogs().logger())
        func config(_ ids: [String], name: String = "Cam") throws -> Config {
            try #require(ConfigLoader(environment: [:]).load(
                yaml: "streams:\n" + ids.map { "  - { id: \($0), name: \"\(name) \($0)\", url: \"rtsp://127.0.0.1/\($0)\" }\n" }.joined(),
                file: "c.yaml", baseDirectory: "/").config)
        }
        let engine = Engine(config: try config(["a", "b"]), plugins: host, logger: CapturedLogs().logger())
        let listing = StreamListCache(engine: engine, uptimes: UptimeCache(store: nil))
        let service = serviceRunning ? Task { await listing.run() } : nil
        defer { service?.cancel() }
        func ids() async throws -> [String] {
            let data = Data(buffer: await listing.current())
            return try (JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
        }
        func names() async throws -> [String] {
            let data = Data(buffer: await listing.current())
            return try (JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        }
        #expect(try await ids() == ["a", "b"])
        await engine.apply(try config(["a", "b", "c"]))
        // No waiting for the 2 s refresh: the first request after the reload sees the new stream.
        #expect(try await ids() == ["a", "b", "c"])
        #expect(await listing.summary().streams == 3)
        await engine.apply(try config(["c"]))
        #expect(try await ids() == ["c"])
        // A rename changes no probe result (the engine's version): the picture must still follow the reload.
        await engine.apply(try config(["c"], name: "Renamed"))
        #expect(try await names() == ["Renamed c"])
    }

    /// `serve --site a` (issue #17's agent of one site): only site a's streams are probed and listed, also
    /// after a reload moves a stream into the site; the summary counts per site; `?site=` filters.
    @Test func serveForOneSite_probesAndListsOnlyThatSite_alsoAfterAReload() async throws {
        let dir = TestEnvironment.temporaryDirectory("site-serve")
        let port = try freePort()
        func write(bSite: String) throws {
            try """
                settings: { interval: 2s, timeout: 2s, listen: "127.0.0.1:\(port)" }
                groups:
                  depot: { site: a }
                streams:
                  - { id: a1, url: "http://127.0.0.1:1/a1", site: a }
                  - { id: a2, url: "http://127.0.0.1:1/a2", group: depot }
                  - { id: b1, url: "http://127.0.0.1:1/b1", site: \(bSite) }
                """.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        }
        try write(bSite: "b")
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
        let token = try await TestEnvironment.apiToken(configDirectory: dir)
        let serve = try TestEnvironment.startServe(configDirectory: dir, arguments: ["--site", "a"])
        defer { if serve.isRunning { kill(serve.processIdentifier, SIGKILL) } }
        #expect(await TestEnvironment.untilListening(port: port))
        func json(_ path: String) async throws -> Any {
            let response = try await httpGet("http://127.0.0.1:\(port)\(path)", token: token)
            let body = response.range(of: "\r\n\r\n").map { String(response[$0.upperBound...]) } ?? ""
            return try JSONSerialization.jsonObject(with: Data(body.utf8))
        }
        func listed(_ path: String = "/api/streams") async throws -> [String] {
            (try await json(path) as? [[String: Any]] ?? []).map { "\($0["id"] ?? "")@\($0["site"] ?? "-")" }
        }
        #expect(try await listed() == ["a1@a", "a2@a"])
        // Both of site a's streams are checked (a refused port: down or pending), b1 never is.
        #expect(await eventuallyTrue(15) {
            let streams = (try? await json("/api/streams") as? [[String: Any]]) ?? []
            return streams.count == 2 && streams.allSatisfy { $0["last_check"] != nil }
        })
        let summary = try #require(try await json("/api/summary") as? [String: Any])
        let sites = try #require(summary["sites"] as? [String: [String: Int]])
        #expect(sites.keys.sorted() == ["a"] && sites["a"]?["streams"] == 2, "\(sites)")
        // The file moves b1 into site a: this agent takes it on at the reload.
        try write(bSite: "a")
        #expect(await eventuallyTrue(10) { (try? await listed()) == ["a1@a", "a2@a", "b1@a"] })
        #expect(try await listed("/api/streams?site=a&limit=2") == ["a1@a", "a2@a"])
        #expect(try await listed("/api/streams?site=b") == [])
        kill(serve.processIdentifier, SIGTERM)
        serve.waitUntilExit()
    }

    @Test func serve_refusesASiteThatIsNoSiteName() async throws {
        let run = try await TestEnvironment.run(["serve", "--site", "north east", "--config", "/nonexistent.yaml"])
        #expect(run.status != 0)
        #expect(run.stderr.contains("is not a site name"), "\(run.stderr)")
    }
}
