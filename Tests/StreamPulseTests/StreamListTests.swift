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
}
