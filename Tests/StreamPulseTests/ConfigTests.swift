import Foundation
import Testing
@testable import StreamPulseHost

/// config.yaml parsing and validation: every problem, with its line and column.
@Suite struct ConfigTests {
    func load(_ yaml: String, env: [String: String] = [:], schemes: Set<String>? = ["rtsp", "http"]) -> ConfigLoadResult {
        ConfigLoader(environment: env, knownSchemes: schemes).load(yaml: yaml, file: "config.yaml", baseDirectory: "/nonexistent")
    }

    @Test func validConfig_loadsWithDefaultsAndEnvironmentSecrets() async throws {
        let result = load("""
            settings:
              interval: 45s
              deep_interval: 10m
            credentials:
              lobby:
                username: admin
                password: ${LOBBY_PW}
            streams:
              - id: a
                url: rtsp://10.0.0.5/1
                credentials: lobby
                thresholds: { min_fps: 5, max_first_frame: 2s }
              - id: b
                name: Back door
                url: http://10.0.0.6/video
                enabled: false
            """, env: ["LOBBY_PW": "pw"])
        #expect(result.problems.isEmpty, "\(result.problems)")
        let config = try #require(result.config)
        #expect(config.settings.interval == .seconds(45))
        #expect(config.settings.deepInterval == .seconds(600))
        #expect(config.settings.timeout == .seconds(10))
        #expect(config.credentials["lobby"]?.password == "pw")
        #expect(config.streams.map(\.id) == ["a", "b"])
        #expect(config.streams[0].name == "a")
        #expect(config.streams[0].thresholds.maxFirstFrame == .seconds(2))
        #expect(config.streams[1].enabled == false)
    }

    @Test func sectionOrder_permutedEveryWay_loadsTheSameConfig() throws {
        let dir = TestEnvironment.temporaryDirectory("order")
        try "lobby: { username: admin, password: from-secrets }\n".write(toFile: dir + "/my-secrets.yaml", atomically: true, encoding: .utf8)
        chmod(dir + "/my-secrets.yaml", 0o600)
        let sections = [
            "settings:\n  interval: 45s\n  secrets_file: my-secrets.yaml\n",
            "credentials:\n  lobby: {}\n",
            "streams:\n  - id: a\n    url: rtsp://10.0.0.5/1\n    credentials: lobby\n",
            "sinks:\n  - type: mqtt\n    credentials: lobby\n",
        ]
        func permutations(_ items: [String]) -> [[String]] {
            items.count <= 1 ? [items] : items.indices.flatMap { i in
                permutations(Array(items[..<i] + items[(i + 1)...])).map { [items[i]] + $0 }
            }
        }
        var configs: [Config] = []
        for order in permutations(sections) {
            let result = ConfigLoader(environment: [:]).load(yaml: order.joined(), file: "config.yaml", baseDirectory: dir)
            #expect(result.errors.isEmpty, "\(order.map { $0.prefix(8) }): \(result.errors)")
            configs.append(try #require(result.config))
        }
        #expect(configs.count == 24)
        #expect(configs.allSatisfy { $0 == configs[0] }, "every order gives one Config")
        #expect(configs[0].credentials["lobby"]?.password == "from-secrets")
        #expect((configs[0].sinks.first?.options as? MQTTOptions)?.credentials?.username == "admin")
        #expect(configs[0].settings.interval == .seconds(45))
    }

    /// Sites (issue #17): written on the stream, or its group's default from `groups:`, in any section
    /// order; the stream's own wins; a bad name or an unknown group key is said with its line.
    @Test func sites_comeFromTheStreamOrItsGroup_inAnyOrder() throws {
        let streams = """
            streams:
              - { id: a, url: "rtsp://10.0.0.5/1", group: depot, site: north }
              - { id: b, url: "rtsp://10.0.0.5/2", group: depot }
              - { id: c, url: "rtsp://10.0.0.5/3", group: shop }
              - { id: d, url: "rtsp://10.0.0.5/4" }

            """
        let groups = """
            groups:
              depot: { site: south }

            """
        for yaml in [streams + groups, groups + streams] {
            let result = load(yaml)
            #expect(result.problems.isEmpty, "\(result.problems)")
            let config = try #require(result.config)
            #expect(config.streams.map(\.site) == ["north", "south", nil, nil])
            #expect(config.sites == ["north", "south"])
            #expect(config.restricted(toSite: "south").streams.map(\.id) == ["b"])
        }
        let bad = load("""
            groups:
              depot: { site: "north east", colour: red }
            streams:
              - { id: a, url: "rtsp://10.0.0.5/1", site: "a/b" }
            """)
        #expect(bad.config == nil)
        let messages = bad.problems.map(\.description)
        #expect(messages.contains { $0.contains("config.yaml:2:") && $0.contains("site 'north east' is not a site name") }, "\(messages)")
        #expect(messages.contains { $0.contains("config.yaml:2:") && $0.contains("colour") }, "\(messages)")
        #expect(messages.contains { $0.contains("config.yaml:4:") && $0.contains("site 'a/b' is not a site name") }, "\(messages)")
    }

    /// `storage.postgres` (issue #17): host, port, database, the user and password from a credentials entry
    /// (so the password stays out of git), TLS; mistakes are named with their position.
    @Test func storagePostgres_takesItsUserAndPasswordFromCredentials() throws {
        let result = load("""
            credentials:
              db: { username: streampulse, password: "${DB_PW}" }
            storage:
              postgres: { host: db.example, port: 6432, database: fleet, credentials: db, tls: { mode: verify-full, ca: /etc/ssl/db-ca.pem } }
            streams:
              - { id: a, url: "rtsp://10.0.0.5/1" }
            """, env: ["DB_PW": "s3cret-db-pw"])
        #expect(result.problems.isEmpty, "\(result.problems)")
        let target = try #require(result.config?.postgres)
        #expect(target == PostgresTarget(host: "db.example", port: 6432, user: "streampulse", database: "fleet", password: "s3cret-db-pw",
                                         sslMode: "verify-full", rootCertificate: "/etc/ssl/db-ca.pem"))
        #expect(target.description == "postgres://streampulse@db.example:6432/fleet (TLS: verify-full)" && !target.description.contains("s3cret"))
        let bad = load("""
            storage:
              postgres: { host: db.example, credentials: nobody, tls: { mode: sometimes }, pool: 5 }
            streams:
              - { id: a, url: "rtsp://10.0.0.5/1" }
            """)
        #expect(bad.config == nil)
        let messages = bad.problems.map(\.description)
        #expect(messages.contains { $0.contains("config.yaml:2:") && $0.contains("no credentials named 'nobody'") }, "\(messages)")
        #expect(messages.contains { $0.contains("config.yaml:2:") && $0.contains("tls.mode must be disable, require or verify-full") }, "\(messages)")
        #expect(messages.contains { $0.contains("config.yaml:2:") && $0.contains("pool") }, "\(messages)")
    }

    @Test func fiveMistakes_areAllReported_withPositions() {
        let result = load("""
            settings:
              intervall: 30s
              timeout: soon
            streams:
              - id: cam1
                url: rtsp://10.0.0.5/1
                credentials: lobbby
              - id: cam1
                url: rtsp://10.0.0.6/1
              - id: cam3
                url: "rtsp:/broken"
            """)
        let lines = result.problems.filter { $0.severity == .error }.map(\.description)
        #expect(lines.count == 5, "\(lines)")
        #expect(lines.contains("config.yaml:2:3: error: unknown key 'intervall'; did you mean 'interval'?"))
        #expect(lines.contains { $0.hasPrefix("config.yaml:3:12: error: bad duration 'soon'") })
        #expect(lines.contains("config.yaml:7:18: error: unknown credentials 'lobbby'"))
        #expect(lines.contains { $0.hasPrefix("config.yaml:8:9: error: duplicate stream id 'cam1' (first at line 5)") })
        #expect(lines.contains { $0.hasPrefix("config.yaml:11:10: error: stream 'cam3': malformed URL") })
        #expect(result.config == nil)
    }

    /// Stream URLs are checked without Foundation's parser (fast at 10,000 streams), more strictly than it did.
    @Test(arguments: [
        ("rtsp://cam.local:554/live", nil), ("rtsp://[::1]:8554/x", nil), ("http://10.0.0.5/mjpg?x=1", nil), ("rtsp://cam", nil),
        ("rtsp://cam:99999/live", "1 to 65535"), ("rtsp://cam:/live", "empty port"), ("rtsp://cam:0/x", "1 to 65535"),
        ("rtsp://cam/my stream", "raw space"), ("rtsp://[::1/x", "closing ']'"), ("rtsp://[cam]/x", "not an IPv6 address"),
        ("rtsp:///live", "expected scheme://host"), ("rtsp:/broken", "expected scheme://host"),
    ] as [(String, String?)])
    func streamURLs_areChecked(url: String, problem: String?) {
        let result = load("streams:\n  - { id: a, url: \"\(url)\" }\n")
        let errors = result.problems.filter { $0.severity == .error }.map(\.description)
        if let problem {
            #expect(errors.count == 1 && errors[0].contains("malformed URL") && errors[0].contains(problem), "\(url): \(errors)")
        } else {
            #expect(errors.isEmpty, "\(url): \(errors)")
        }
    }

    @Test func yamlSyntaxError_hasLineAndColumn() async throws {
        let result = load("streams:\n  - id: a\n    url: [unclosed\n")
        let problem = try #require(result.problems.first)
        #expect(problem.severity == .error)
        #expect(problem.message.hasPrefix("YAML syntax"))
        #expect(problem.line >= 3)
    }

    @Test func unknownScheme_isOnlyAWarning_andInlineCredentialsAreMoved() async throws {
        let result = load("""
            streams:
              - id: h
                url: hls://cam/x.m3u8
              - id: i
                url: rtsp://admin:pw@cam/1
            """)
        #expect(result.errors.isEmpty)
        #expect(result.problems.contains { $0.severity == .warning && $0.message.contains("no loaded plugin handles 'hls://'") })
        #expect(result.problems.contains { $0.severity == .warning && $0.message.contains("credentials inside the URL") })
        let stream = try #require(result.config?.streams.last)
        #expect(stream.url == "rtsp://cam/1")
        #expect(stream.inlineCredentials?.password == "pw")
        #expect(!stream.maskedURL.contains("pw"))
    }

    @Test func missingSecret_andUnsetEnvironmentVariable_areErrors() {
        let result = load("""
            credentials:
              a: { username: u }
              b: { username: u, password: "${NOT_SET}" }
            """)
        #expect(result.errors.count == 3, "\(result.problems)")
        #expect(result.errors.contains { $0.message.contains("environment variable NOT_SET is not set") })
        #expect(result.errors.contains { $0.message.contains("credentials 'a': missing password") })
    }

    @Test(arguments: [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1.5s", 1.5), ("90", 90)])
    func durations_parse(text: String, seconds: Double) {
        #expect(parseDuration(text) == .milliseconds(Int64(seconds * 1000)))
    }

    @Test(arguments: ["", "soon", "5 minutes", "-3s", "1y", "1e300s", "99999999999h", "inf", "nan"])
    func badDurations_areRejected(text: String) {
        #expect(parseDuration(text) == nil)
    }

    @Test func validateCommand_printsProblems_andExits1() async throws {
        let dir = TestEnvironment.temporaryDirectory("cfg")
        try "streams:\n  - id: a\n    url: rtsp://h/1\n    colour: red\n".write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        let bad = try await TestEnvironment.run(["validate", dir + "/config.yaml", "--plugins-dir", dir])
        #expect(bad.status == 1)
        #expect(bad.stdout.contains("config.yaml:4:5: error: unknown key 'colour'"))
        try "streams:\n  - id: a\n    url: rtsp://h/1\n".write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        #expect(try await TestEnvironment.run(["validate", dir + "/config.yaml", "--plugins-dir", dir]).status == 0)
    }
}
