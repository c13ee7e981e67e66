import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// Every setting, changed in the file of an assembled monitor (the assembly `serve` runs), either takes
/// effect on the reload or is reported under `needs_restart` — never silently ignored.
@Suite(.serialized) struct LiveSettingsTests {
    struct Fixture {
        let dir: String
        let monitor: Monitor
        let token: String

        /// One request to the monitor's real router, in process, as an admin.
        func get(_ path: String) async throws -> (status: HTTPResponse.Status, body: String) {
            let app = Application(router: APIServer.router(monitor.web))
            return try await app.test(.router) { client in
                try await client.execute(uri: path, method: .get, headers: [.authorization: "Bearer \(token)"]) {
                    ($0.status, String(buffer: $0.body))
                }
            }
        }

        func json(_ path: String) async throws -> [String: Any] {
            let (_, body) = try await get(path)
            return try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] ?? [:]
        }
    }

    static func writeConfig(_ dir: String, settings: String) throws {
        var lines = settings.split(separator: "\n").map(String.init)
        if !lines.contains(where: { $0.hasPrefix("data_dir:") }) { lines.append("data_dir: \(dir)/data") }
        if !lines.contains(where: { $0.hasPrefix("listen:") }) { lines.append("listen: 127.0.0.1:18080") }
        let block = lines.map { "  " + $0 }.joined(separator: "\n")
        try """
            settings:
            \(block)
            credentials:
              lobby: {}
            streams:
              - { id: cam, url: "rtsp://127.0.0.1:9/x", credentials: lobby }
            sinks:
              - { type: csv, name: files }

            """.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
    }

    static func fixture() async throws -> Fixture {
        let dir = TestEnvironment.temporaryDirectory("live")
        for (file, password) in [("secrets.yaml", "first-secret"), ("other-secrets.yaml", "second-secret")] {
            try "lobby: { username: admin, password: \(password) }\n".write(toFile: dir + "/" + file, atomically: true, encoding: .utf8)
            chmod(dir + "/" + file, 0o600)
        }
        try writeConfig(dir, settings: "")
        // No plugins: nothing is probed, and the settings are what is under test.
        let monitor = try await Monitor.assemble(configPath: dir + "/config.yaml", pluginsDirectory: dir, logger: CapturedLogs().logger(),
                                                 environment: ["STREAMPULSE_ADMIN_PASSWORD": "an-admin-password"], bcryptCost: 4)
        let token = try await #require(monitor.web.accounts).createToken(name: "t", role: .admin).token
        return Fixture(dir: dir, monitor: monitor, token: token)
    }

    /// How each live setting's effect is seen, once its sample value is in the file.
    static let effects: [String: @Sendable (Fixture) async throws -> Bool] = [
        "interval": { await $0.monitor.engine.currentConfig.settings.interval == .seconds(45) },
        "deep_interval": { await $0.monitor.engine.currentConfig.settings.deepInterval == .seconds(600) },
        "timeout": { f in
            let config = await f.monitor.engine.currentConfig
            return makeProbeRequest(for: config.streams[0], config: config, mode: .deep).timeoutMs == 4000
        },
        "retries": { await $0.monitor.engine.currentConfig.settings.retries == 5 },
        "backoff_cap": { await $0.monitor.engine.currentConfig.settings.backoffCap == .seconds(900) },
        "timezone": { f in
            let csvZone = await f.monitor.sinkManager.timeZone.identifier
            return try await f.json("/api/session")["timezone_default"] as? String == "Europe/Berlin" && csvZone == "Europe/Berlin"
        },
        "retention.raw_days": { f in try #require(f.sqlite).retention.raw == 7 },
        "retention.rollup_days": { f in try #require(f.sqlite).retention.rollup == 90 },
        "host_sessions": { await $0.monitor.engine.limits().hostSessions == 3 },
        "max_deep_probes": { await $0.monitor.engine.limits().deepProbes == 16 },
        "secrets_file": { await $0.monitor.engine.currentConfig.credentials["lobby"]?.password == "second-secret" },
        "web.secure_cookies": { try await $0.json("/api/settings")["secure_cookies"] as? Bool == true },
        "web.max_previews": { f in
            try await f.json("/api/settings")["max_previews"] as? Int == 1 && f.monitor.web.previews.maxSessions == 1
        },
        "web.preview_seconds": { try await $0.json("/api/settings")["preview_seconds"] as? Double == 9 },
        "web.trusted_proxies": { f in
            IdentityMiddleware.clientAddress(peer: "127.0.0.1", forwardedFor: "203.0.113.9", trusted: f.monitor.web.settings.current.trustedProxies)
                == "203.0.113.9"
        },
    ]

    @Test(arguments: SettingKeys.all.map(\.name))
    func aChangedSetting_appliesOnReload_orIsReportedAsNeedingRestart(name: String) async throws {
        let key = try #require(SettingKeys.all.first { $0.name == name })
        let fixture = try await Self.fixture()
        let before = fixture.monitor.web.settings.current
        try Self.writeConfig(fixture.dir, settings: ConfigKeyTests.yaml(key, key.sample).split(separator: "\n").dropFirst()
            .map { String($0.dropFirst(2)) }.joined(separator: "\n"))
        #expect(await fixture.monitor.config.reload(reason: "test") != nil, "the reload was applied")
        let status = try await fixture.json("/api/config/status")
        let restart = status["needs_restart"] as? [String] ?? []
        switch key.applies {
        case .live:
            let effect = try #require(Self.effects[name], "no effect check for \(name)")
            #expect(try await effect(fixture), "\(name) did not take effect")
            #expect(key.differs(before, fixture.monitor.web.settings.current))
            #expect(restart.isEmpty, "\(restart)")
            #expect((status["last_change"] as? String)?.contains(name) == true, "\(status["last_change"] ?? "")")
        case .restart:
            #expect(restart == ["\(name) (needs restart)"], "\(restart)")
            #expect(!key.differs(before, fixture.monitor.web.settings.current), "the running value stays until the restart")
        }
    }

    @Test func commandLineOverrides_areNotReportedAsNeedingRestart() async throws {
        let dir = TestEnvironment.temporaryDirectory("live-cli")
        try "lobby: { username: admin, password: p }\n".write(toFile: dir + "/secrets.yaml", atomically: true, encoding: .utf8)
        chmod(dir + "/secrets.yaml", 0o600)
        try Self.writeConfig(dir, settings: "")
        let monitor = try await Monitor.assemble(configPath: dir + "/config.yaml", pluginsDirectory: dir, dataDirectory: dir + "/cli-data",
                                                 listen: "127.0.0.1:18999", logger: CapturedLogs().logger(),
                                                 environment: ["STREAMPULSE_ADMIN_PASSWORD": "an-admin-password"], bcryptCost: 4)
        try Self.writeConfig(dir, settings: "interval: 45s")
        #expect(await monitor.config.reload(reason: "test") != nil)
        #expect(await monitor.config.status.needsRestart.isEmpty)
        #expect(monitor.web.settings.current.dataDir == dir + "/cli-data")
        #expect(monitor.web.settings.current.listen == "127.0.0.1:18999")
    }
}

extension LiveSettingsTests.Fixture {
    /// The SQLite history sink the monitor runs.
    var sqlite: SQLiteSink? {
        monitor.web.sinks.members.lazy.compactMap { $0.sink as? SQLiteSink }.first
    }
}
