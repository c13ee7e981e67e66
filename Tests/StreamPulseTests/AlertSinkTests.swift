import Foundation
import StreamPulseCore
import Synchronization
import Testing
@testable import StreamPulseHost

/// Webhook and MQTT sinks against real local receivers (a Python HTTP receiver, Debian's mosquitto),
/// and /metrics rendering.
@Suite(.serialized) struct AlertSinkTests {
    func change(_ id: String, _ from: StreamStatus, _ to: StreamStatus, at: Date = Date(), pending: Bool = false) -> SinkEvent {
        var a = StreamState.initial, b = StreamState.initial
        a.status = from
        b.status = to
        b.pending = pending
        b.reason = to == .ok ? .ok : .connectionRefused
        b.message = "m"
        return .change(StateChange(streamId: id, from: a, to: b, at: at))
    }

    func receiver(hang: Bool = false, fail: Int = 0, tls: (cert: String, key: String)? = nil) throws -> (port: Int, out: String, process: Process) {
        let out = TestEnvironment.temporaryDirectory("hook") + "/bodies"
        FileManager.default.createFile(atPath: out, contents: nil)
        var arguments = ["--out", out, "--fail", String(fail)] + (hang ? ["--hang"] : [])
        if let tls { arguments += ["--cert", tls.cert, "--key", tls.key] }
        let (process, ports) = try TestCameras.launch(TestEnvironment.root + "/scripts/test-cameras/http_receiver.py", arguments)
        return (ports["port"]!, out, process)
    }

    /// A private CA and a certificate for 127.0.0.1 signed by it (openssl), in a new folder.
    func privateCA() async throws -> (ca: String, cert: String, key: String) {
        let dir = TestEnvironment.temporaryDirectory("tls")
        try "subjectAltName=IP:127.0.0.1\n".write(toFile: dir + "/ext.cnf", atomically: true, encoding: .utf8)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for arguments in [
            ["req", "-x509"] + ec + ["-keyout", dir + "/ca.key", "-out", dir + "/ca.pem", "-days", "2", "-subj", "/CN=StreamPulse test CA"],
            ["req"] + ec + ["-keyout", dir + "/server.key", "-out", dir + "/server.csr", "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", dir + "/server.csr", "-CA", dir + "/ca.pem", "-CAkey", dir + "/ca.key", "-CAcreateserial",
             "-out", dir + "/server.pem", "-days", "2", "-extfile", dir + "/ext.cnf"],
        ] {
            let run = try await TestEnvironment.run([], executable: "/usr/bin/openssl", arguments: arguments)
            #expect(run.status == 0, "openssl \(arguments.first ?? ""): \(run.stderr)")
        }
        return (dir + "/ca.pem", dir + "/server.pem", dir + "/server.key")
    }

    @Test func webhook_aFailedDelivery_isKept_showsFailing_andArrivesOnceTheReceiverAnswers() async throws {
        let r = try receiver(fail: 2)
        defer { kill(r.process.processIdentifier, SIGKILL) }
        var options = WebhookOptions(url: "http://127.0.0.1:\(r.port)/hook/tok3n-in-the-path")
        options.minDuration = .zero
        let logs = CapturedLogs()
        let runner = SinkRunner(sink: try WebhookSink(name: "ops", options: options, logger: logs.logger()), logger: logs.logger())
        let task = Task { await runner.run() }
        runner.submit(change("gate", .ok, .down))
        // The receiver answers 500 twice: the runner shows the sink failing, keeps the alert and retries.
        #expect(await eventuallyTrue { runner.stats.failing })
        #expect(runner.stats.lastError?.contains("HTTP 500") == true, "\(runner.stats.lastError ?? "")")
        #expect(await eventuallyTrue { lines(r.out).count == 1 && !runner.stats.failing }, "\(runner.stats)")
        #expect(lines(r.out).first?.contains(#""stream_id":"gate""#) == true)
        #expect(runner.stats.dropped == 0 && runner.stats.failedBatches == 2)
        #expect(logs.all.contains { $0.contains("writing works again") })
        #expect(!logs.all.joined().contains("tok3n"), "the URL's path never reaches the log")
        #expect(!(runner.stats.lastError ?? "").contains("tok3n"))
        runner.stop()
        await task.value
    }

    @Test func webhook_overHTTPS_trustsTheConfiguredCA_andRefusesAnUnknownOne() async throws {
        let pki = try await privateCA()
        let r = try receiver(tls: (pki.cert, pki.key))
        defer { kill(r.process.processIdentifier, SIGKILL) }
        var options = WebhookOptions(url: "https://127.0.0.1:\(r.port)/hook")
        options.minDuration = .zero
        // Without the CA: the certificate is not trusted, the delivery throws (and nothing arrives).
        let untrusting = try WebhookSink(name: "plain", options: options, logger: CapturedLogs().logger())
        let refused = await #expect(throws: (any Error).self) { try await untrusting.write([change("gate", .ok, .down)]) }
        #expect("\(refused.map { "\($0)" } ?? "")".contains("TLS"), "the cause is named: \(refused.map { "\($0)" } ?? "")")
        await untrusting.close()
        #expect(lines(r.out).isEmpty)
        // With `ca_file`: delivered over TLS.
        options.caFile = pki.ca
        let trusting = try WebhookSink(name: "private-ca", options: options, logger: CapturedLogs().logger())
        try await trusting.write([change("gate", .ok, .down)])
        #expect(trusting.delivered == 1 && lines(r.out).count == 1)
        await trusting.close()
        // A CA file that cannot be read stops the sink at start, with the path named.
        options.caFile = pki.ca + ".missing"
        #expect(throws: SinkSetupError.self) { _ = try WebhookSink(name: "broken", options: options, logger: CapturedLogs().logger()) }
    }

    func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    @Test func webhook_postsAChangeThatHolds_andSuppressesAFlap() async throws {
        let r = try receiver()
        defer { kill(r.process.processIdentifier, SIGKILL) }
        var options = WebhookOptions(url: "http://127.0.0.1:\(r.port)/hook")
        options.minDuration = .seconds(2)
        options.statuses = ["down", "ok"]
        let sink = try WebhookSink(name: "ops", options: options, logger: CapturedLogs().logger())
        // cam1 goes down and stays down; cam2 flaps down and back within the minimum duration.
        try await sink.write([change("cam1", .ok, .down), change("cam2", .ok, .down)])
        try await Task.sleep(for: .milliseconds(200))
        try await sink.write([change("cam2", .down, .degraded)])
        #expect(lines(r.out).isEmpty, "nothing before the minimum duration")
        try await Task.sleep(for: .milliseconds(2100))
        try await sink.write([])  // as the runner's tick does: cam1's state has held 2 s
        let posted = lines(r.out)
        #expect(posted.count == 1, "\(posted)")
        #expect(posted.first?.contains(#""stream_id":"cam1""#) == true && posted.first?.contains(#""status":"down""#) == true)
        #expect(sink.delivered == 1)
        await sink.close()
    }

    @Test func webhook_filtersByStreamAndTag() async throws {
        let r = try receiver()
        defer { kill(r.process.processIdentifier, SIGKILL) }
        var options = WebhookOptions(url: "http://127.0.0.1:\(r.port)/hook")
        options.minDuration = .milliseconds(1)
        options.tags = ["outdoor"]
        let sink = try WebhookSink(name: "ops", options: options, logger: CapturedLogs().logger())
        func snap(_ id: String, _ tags: [String]) -> StreamSnapshot {
            StreamSnapshot(id: id, name: id.uppercased(), url: "", protocol: nil, group: nil, tags: tags, enabled: true, status: .unknown, reason: "x",
                           phase: nil, message: "", pending: false, since: nil, lastCheck: nil, lastPicture: nil, consecutiveFailures: 0, latencyMs: nil)
        }
        try await sink.write([.streams([snap("yard", ["outdoor"]), snap("hall", ["indoor"])], at: Date()), change("yard", .ok, .down), change("hall", .ok, .down)])
        try await Task.sleep(for: .milliseconds(10))
        try await sink.write([])  // as the runner's tick does: the 1 ms minimum has passed
        let posted = lines(r.out)
        #expect(posted.count == 1)
        #expect(posted.first?.contains(#""stream_name":"YARD""#) == true)
        await sink.close()
    }

    @Test func aWebhookReceiverThatNeverAnswers_blocksOnlyItsOwnSink() async throws {
        let r = try receiver(hang: true)
        defer { kill(r.process.processIdentifier, SIGKILL) }
        var options = WebhookOptions(url: "http://127.0.0.1:\(r.port)/hook")
        options.minDuration = .zero  // every change is due at once, so the runner itself waits on the receiver
        let logs = CapturedLogs()
        let store = try SQLiteStore(path: TestEnvironment.temporaryDirectory("db") + "/streampulse.db")
        let stuck = SinkRunner(sink: try WebhookSink(name: "stuck", options: options, logger: logs.logger()), capacity: 50, logger: logs.logger())
        let sqlite = SinkRunner(sink: SQLiteSink(store: store, settings: LiveSettings(Settings()), logger: logs.logger()), logger: logs.logger())
        let chain = SinkChain([stuck, sqlite])
        let tasks = [Task { await stuck.run() }, Task { await sqlite.run() }]
        // First get the webhook runner stuck inside a delivery to the silent receiver …
        stuck.submit(change("first", .ok, .down))
        // Synchronised on the runner taking it (a fixed 300 ms wait failed once right after a cold build).
        #expect(await eventuallyTrue(10) { stuck.stats.queued == 0 }, "the runner took the first change and is waiting on the receiver")
        // … then flood the chain: the stuck sink's buffer stays bounded, SQLite gets everything.
        let start = ContinuousClock.now
        for i in 0..<500 {
            chain.submit(change("cam\(i % 20)", i % 2 == 0 ? .ok : .down, i % 2 == 0 ? .down : .ok))
            chain.submit(.result(ResultRecord(streamId: "cam\(i % 20)", at: Date(), mode: .deep, status: .ok, pending: false, reason: .ok,
                                              phase: nil, message: "m", timings: Timings(), media: nil)))
        }
        #expect(start.duration(to: .now) < .milliseconds(200), "submitting never waits")
        #expect(await eventuallyTrue(10) { (try? await store.resultCount()) == 500 }, "SQLite got every result")
        #expect(stuck.stats.queued == stuck.capacity)
        #expect(stuck.stats.dropped == 1000 - stuck.capacity)
        sqlite.stop()
        await tasks[1].value
        tasks[0].cancel()
        await tasks[0].value
    }

    /// Debian's mosquitto on a free port (with a TLS listener when `tls` is given), ready when it accepts a connection.
    func mosquitto(tls: (ca: String, cert: String, key: String)? = nil) async throws -> (port: Int, process: Process) {
        let port = try freePort()
        let dir = TestEnvironment.temporaryDirectory("mqtt")
        var conf = "listener \(port) 127.0.0.1\nallow_anonymous true\npersistence false\n"
        // `user root`: the broker otherwise drops to user mosquitto, who cannot read the test's private key.
        if let tls { conf += "cafile \(tls.ca)\ncertfile \(tls.cert)\nkeyfile \(tls.key)\nuser root\n" }
        try conf.write(toFile: dir + "/m.conf", atomically: true, encoding: .utf8)
        let broker = Process()
        broker.executableURL = URL(fileURLWithPath: "/usr/sbin/mosquitto")
        broker.arguments = ["-c", dir + "/m.conf"]
        broker.standardOutput = FileHandle.nullDevice
        broker.standardError = FileHandle.nullDevice
        try launchProcess(broker)
        // Ready when it listens (not after a guessed pause: a loaded machine starts it late).
        #expect(await TestEnvironment.untilListening(port: port), "mosquitto listens")
        return (port, broker)
    }

    func stop(_ process: Process) {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func mqttOptions(port: Int) -> MQTTOptions {
        var options = MQTTOptions()
        options.port = port
        options.topicPrefix = "sp"
        options.qos = 1
        return options
    }

    func result(_ id: String, _ status: StreamStatus) -> SinkEvent {
        .result(ResultRecord(streamId: id, at: Date(), mode: .deep, status: status, pending: false, reason: status == .ok ? .ok : .timeout,
                             phase: status == .ok ? .sample : .handshake, message: "m", timings: Timings(), media: nil))
    }

    @Test func mqtt_publishesRetainedStatus_events_andTheLastWill() async throws {
        let (port, broker) = try await mosquitto()
        defer { stop(broker) }
        let sink = try MQTTSink(name: "ha", options: mqttOptions(port: port), logger: CapturedLogs().logger())
        try await sink.write([result("gate", .down), change("gate", .ok, .down)])
        // A subscriber that connects afterwards still gets the retained status and the monitor's presence.
        let retained = try await subscribe(port: port, topic: "sp/#", count: 2)
        #expect(retained.contains { $0.hasPrefix("sp/streams/gate/status {") && $0.contains(#""status":"down""#) && $0.contains(#""reason":"timeout""#) }, "\(retained)")
        #expect(retained.contains("sp/monitor/status online"))
        // The monitor vanishing without DISCONNECT makes the broker publish the will.
        let watcher = try MQTTWatcher(port: port, topic: "sp/monitor/status")
        defer { watcher.stop() }
        // Subscribed once the retained "online" has reached it.
        #expect(await eventuallyTrue { watcher.lines == ["sp/monitor/status online"] }, "\(watcher.lines)")
        sink.dropConnectionForTest()
        #expect(await eventuallyTrue(5) { watcher.lines.last == "sp/monitor/status offline" }, "\(watcher.lines)")
    }

    /// Issue #15: the client never sent PINGREQ, so after 1.5× keep-alive of quiet the broker dropped it and
    /// published "offline" while the monitor was healthy.
    @Test func mqtt_staysConnected_through3xKeepAliveOfQuiet() async throws {
        let (port, broker) = try await mosquitto()
        defer { stop(broker) }
        var options = mqttOptions(port: port)
        options.keepAlive = .seconds(1)
        let logs = CapturedLogs()
        let sink = try MQTTSink(name: "ha", options: options, logger: logs.logger())
        try await sink.write([result("gate", .ok)])
        // Watch the presence topic for 3.5 s (3.5× keep-alive) of quiet: only the retained "online" arrives.
        let presence = try await subscribe(port: port, topic: "sp/monitor/status", count: 2, seconds: 4)
        #expect(presence == ["sp/monitor/status online"], "\(presence)")
        // The same connection still publishes: no reconnect was needed.
        try await sink.write([result("gate", .down)])
        #expect(logs.all.filter { $0.contains("connected to") }.count == 1, "\(logs.all)")
        await sink.close()
    }

    /// A graceful stop of `serve` (SIGTERM) leaves "offline" retained, not a stale "online".
    @Test func mqtt_sigterm_leavesOfflineRetained() async throws {
        let (port, broker) = try await mosquitto()
        defer { stop(broker) }
        let dir = TestEnvironment.temporaryDirectory("serve-mqtt")
        let web = try freePort()
        try """
            settings: { interval: 1s, listen: "127.0.0.1:\(web)" }
            streams:
              - { id: gate, url: "rtsp://127.0.0.1:1/x" }
            sinks:
              - { type: mqtt, host: 127.0.0.1, port: \(port), topic_prefix: sp }
            """.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        let serve = try TestEnvironment.startServe(configDirectory: dir)
        defer { if serve.isRunning { kill(serve.processIdentifier, SIGKILL) } }
        // Synchronised on the monitor's first retained status for the stream.
        let first = try await subscribe(port: port, topic: "sp/streams/gate/status", count: 1, seconds: 20)
        #expect(first.count == 1, "serve published the stream's status")
        #expect(try await subscribe(port: port, topic: "sp/monitor/status", count: 1) == ["sp/monitor/status online"])
        serve.terminate()
        serve.waitUntilExit()
        #expect(try await subscribe(port: port, topic: "sp/monitor/status", count: 1) == ["sp/monitor/status offline"])
    }

    @Test func mqtt_homeAssistantDiscovery_announcesAndClearsEntities() async throws {
        let (port, broker) = try await mosquitto()
        defer { stop(broker) }
        var options = mqttOptions(port: port)
        options.discovery = true
        let sink = try MQTTSink(name: "ha", options: options, logger: CapturedLogs().logger())
        var gate = StreamSnapshot.forTests(id: "gate", name: "Front gate")
        try await sink.write([.streams([gate, .forTests(id: "nvr1:ch3", name: "Yard")], at: Date()), result("gate", .down)])
        let configs = try await subscribe(port: port, topic: "homeassistant/#", count: 4)
        let problem = try #require(configs.first { $0.hasPrefix("homeassistant/binary_sensor/streampulse/gate_problem/config ") }, "\(configs)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(problem.split(separator: " ", maxSplits: 1)[1].utf8)) as? [String: Any])
        #expect(json["device_class"] as? String == "problem")
        #expect(json["state_topic"] as? String == "sp/streams/gate/status")
        #expect(json["availability_topic"] as? String == "sp/monitor/status")
        #expect(json["unique_id"] as? String == "streampulse_gate_problem")
        #expect((json["device"] as? [String: Any])?["name"] as? String == "Front gate")
        #expect(configs.contains { $0.hasPrefix("homeassistant/sensor/streampulse/gate_status/config {") })
        // ':' is not allowed in a Home Assistant object id: it is replaced and the id's hash keeps it unique.
        #expect(configs.contains { $0.hasPrefix("homeassistant/binary_sensor/streampulse/nvr1_ch3_") && $0.contains(#""name":"Yard""#) }, "\(configs)")
        // The yard stream leaves the config: its entities are cleared (no retained config remains).
        gate.name = "Front gate"
        try await sink.write([.streams([gate], at: Date())])
        let left = try await subscribe(port: port, topic: "homeassistant/#", count: 3, seconds: 2)
        #expect(left.count == 2 && left.allSatisfy { $0.contains("/gate_") }, "\(left)")
        await sink.close()
    }

    @Test func mqtt_overTLS_verifiesTheBrokerAgainstTheCAFile() async throws {
        let ca = try await privateCA()
        let (port, broker) = try await mosquitto(tls: ca)
        defer { stop(broker) }
        var options = mqttOptions(port: port)
        options.tls = true
        // Without the private CA the broker's certificate is not trusted: nothing is sent.
        let untrusted = try MQTTSink(name: "ha", options: options, logger: CapturedLogs().logger())
        await #expect(throws: (any Error).self) { try await untrusted.write([self.result("gate", .down)]) }
        options.caFile = ca.ca
        let sink = try MQTTSink(name: "ha", options: options, logger: CapturedLogs().logger())
        try await sink.write([result("gate", .down)])
        let got = try await subscribe(port: port, topic: "sp/streams/gate/status", count: 1, cafile: ca.ca)
        #expect(got.first?.contains(#""status":"down""#) == true, "\(got)")
        await sink.close()
    }

    @Test func mqttOptions_tlsDefaultsOnFor8883_andTopicsAreChecked() {
        let loaded = ConfigLoader(environment: [:]).load(yaml: """
            sinks:
              - { type: mqtt, name: a, port: 8883 }
              - { type: mqtt, name: b, port: 8883, tls: false, topic_prefix: "home/#" }
              - { type: mqtt, name: c, keep_alive: 30h }
            """, file: "c", baseDirectory: "/tmp")
        #expect(loaded.errors.map(\.message) == ["topic_prefix must not contain the wildcards '#' or '+'", "keep_alive must be between 1s and 18h"])
        let a = ConfigLoader(environment: [:]).load(yaml: "sinks:\n  - { type: mqtt, port: 8883 }\n", file: "c", baseDirectory: "/tmp")
        #expect((a.config?.sinks.first?.options as? MQTTOptions)?.tls == true)
    }

    /// The messages on `topic` (retained ones first), once `count` have arrived or `seconds` have passed.
    /// (mosquitto_sub's own `-W` never fires in a child of the test process, which blocks SIGALRM.)
    func subscribe(port: Int, topic: String, count: Int, seconds: Double = 5, cafile: String? = nil) async throws -> [String] {
        let watcher = try MQTTWatcher(port: port, topic: topic, cafile: cafile)
        defer { watcher.stop() }
        _ = await eventuallyTrue(seconds) { watcher.lines.count >= count }
        return watcher.lines
    }

    @Test func csvFileSink_writesOneFilePerDay_inTheChosenTimeZone() async throws {
        let dir = TestEnvironment.temporaryDirectory("csvsink")
        let sink = try CSVFileSink(name: "daily", timeZone: TimeZone(identifier: "America/New_York")!, directory: dir)
        // 2025-06-16T03:30Z is still June 15th in New York.
        let late = Date(timeIntervalSince1970: 1_750_044_600), next = late.addingTimeInterval(86400)
        func r(_ at: Date) -> SinkEvent {
            .result(ResultRecord(streamId: "gate", at: at, mode: .deep, status: .ok, pending: false, reason: .ok, phase: .sample,
                                 message: "Pictures decoded, fine", timings: Timings(totalMs: 900), media: MediaFacts(codec: "h264", width: 640, height: 480, fps: 25)))
        }
        try await sink.write([r(late), r(late.addingTimeInterval(60))])
        try await sink.write([r(next)])
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(files == ["streampulse-2025-06-15.csv", "streampulse-2025-06-16.csv"])
        let first = try String(contentsOfFile: dir + "/" + files[0], encoding: .utf8).components(separatedBy: "\r\n").filter { !$0.isEmpty }
        #expect(first.count == 3)
        #expect(first[0] == CSVExport.columns.joined(separator: ","))
        #expect(first[1].hasPrefix("2025-06-15T23:30:00-04:00,gate,,ok,false,ok,sample,deep,\"Pictures decoded, fine\""))
    }

    /// The sink added through the registry alone (its folder plus one line in `SinkRegistry.types`), run from
    /// config.yaml through the manager as `serve` runs it.
    @Test func jsonlSink_fromTheConfig_appendsOneObjectPerLine() async throws {
        let dir = TestEnvironment.temporaryDirectory("jsonl")
        let loaded = ConfigLoader(environment: [:]).load(yaml: "sinks:\n  - { type: jsonl, name: ship, file: logs/sp.jsonl }\n", file: "c", baseDirectory: dir)
        let config = try #require(loaded.config, "\(loaded.problems)")
        #expect(ConfigLoader(environment: [:]).load(yaml: "sinks:\n  - { type: jsonl, fil: x }\n", file: "c", baseDirectory: dir)
            .errors.map(\.message) == ["unknown key 'fil'; did you mean 'file'?"])
        let manager = SinkManager(chain: SinkChain(), logger: CapturedLogs().logger())
        await manager.setLocation(dataDirectory: dir, timeZone: .gmt)
        await manager.apply(config.sinks)
        let running = Task { await manager.run() }
        manager.chain.submit(.result(ResultRecord(streamId: "gate", at: Date(), mode: .deep, status: .down, pending: false, reason: .timeout,
                                                  phase: .handshake, message: "no answer", timings: Timings(totalMs: 5000), media: nil)))
        manager.chain.submit(change("gate", .ok, .down))
        await manager.stopAll()
        await running.value
        let written = lines(dir + "/logs/sp.jsonl")
        #expect(written.count == 2, "\(written)")
        #expect(written.first?.contains(#""kind":"result""#) == true && written.first?.contains(#""reason":"timeout""#) == true)
        #expect(written.last?.contains(#""kind":"change""#) == true && written.last?.contains(#""to":"down""#) == true)
    }

    @Test func sinksSection_isParsed_andValidated() {
        let result = ConfigLoader(environment: [:]).load(yaml: """
            sinks:
              - { type: webhook, name: ops, url: "http://127.0.0.1:9000/hook", min_duration: 1m, statuses: [down], tags: [outdoor] }
              - { type: mqtt, host: 127.0.0.1, port: 1883, topic_prefix: home/cams, qos: 1 }
              - { type: csv, dir: daily }
              - { type: pager }
              - { type: webhook, name: bad, url: "ftp://x", statuses: [purple] }
            """, file: "c.yaml", baseDirectory: "/")
        let errors = result.errors.map(\.message)
        #expect(errors.contains("unknown sink type 'pager'; expected webhook, mqtt, csv, jsonl"))
        #expect(errors.contains("webhook url must be http(s)://host[:port]/path"))
        #expect(errors.contains { $0.hasPrefix("unknown status 'purple'") })
        let ok = ConfigLoader(environment: [:]).load(yaml: "sinks:\n  - { type: webhook, name: ops, url: \"http://127.0.0.1:9000/hook\", min_duration: 1m }\n  - { type: csv, dir: daily }\n", file: "c", baseDirectory: "/")
        #expect(ok.config?.sinks.map(\.type) == ["webhook", "csv"])
        #expect((ok.config?.sinks.first?.options as? WebhookOptions)?.minDuration == .seconds(60))
    }

    @Test func metrics_renderPerStreamGaugesAndEngineFigures() async throws {
        let exporter = MetricsExporter()
        var s = StreamSnapshot(id: "gate", name: "Gate", url: "", protocol: "rtsp", group: nil, tags: [], enabled: true, status: .ok, reason: .ok,
                               phase: nil, message: "", pending: false, since: nil, lastCheck: Date(), lastPicture: Date(timeIntervalSinceNow: -5),
                               consecutiveFailures: 0, latencyMs: 1200, codec: "h264", width: 640, height: 480, fps: 25)
        s.uptime = SQLiteStore.Uptime(day: 0.5, week: 0.75, month: 1)
        let stats = EngineStats(streams: 1, checks: 7, inFlight: 0, lagP50Ms: 1, lagP99Ms: 3, lanes: ["rtsp": 2])
        let text = String(decoding: await exporter.render(snapshot: [s], stats: stats, sinks: [SinkStats(name: "sqlite", queued: 3, dropped: 2, written: 9, failedBatches: 0)]), as: UTF8.self)
        #expect(text.contains(#"streampulse_stream_up{stream="gate",protocol="rtsp"} 1"#))
        #expect(text.contains(#"streampulse_stream_width_pixels{stream="gate",protocol="rtsp"} 640"#))
        #expect(text.contains(#"streampulse_stream_uptime_ratio{stream="gate",protocol="rtsp",window="7d"} 0.75"#))
        #expect(text.contains(#"streampulse_checks_total 7"#))
        #expect(text.contains(#"streampulse_lane_in_flight{lane="rtsp"} 2"#))
        #expect(text.contains(#"streampulse_sink_dropped_total{sink="sqlite"} 2"#))
        // A stream removed from the config disappears from the next scrape.
        let after = String(decoding: await exporter.render(snapshot: [], stats: stats, sinks: []), as: UTF8.self)
        #expect(!after.contains(#"stream="gate""#))
    }

    /// Prometheus' own linter accepts a scrape, and a camera broken since the start has a series to alert on.
    @Test func metrics_passPromtool_andNeverSeenIsInfinity() async throws {
        let exporter = MetricsExporter()
        func stream(_ id: String, enabled: Bool = true, picture: Date?) -> StreamSnapshot {
            StreamSnapshot(id: id, name: id, url: "", protocol: "rtsp", group: nil, tags: [], enabled: enabled, status: picture == nil ? .down : .ok,
                           reason: picture == nil ? .timeout : .ok, phase: nil, message: "", pending: false, since: nil, lastCheck: Date(),
                           lastPicture: picture, consecutiveFailures: 0, latencyMs: 900, codec: nil, width: nil, height: nil, fps: nil)
        }
        let snapshot = [stream("seen", picture: Date(timeIntervalSinceNow: -30)), stream("never", picture: nil), stream("off", enabled: false, picture: nil)]
        let stats = EngineStats(streams: 3, checks: 9, inFlight: 1, lagP50Ms: 1, lagP99Ms: 40, lanes: ["rtsp": 1])
        let text = String(decoding: await exporter.render(snapshot: snapshot, stats: stats, sinks: [SinkStats(name: "sqlite", queued: 0, dropped: 0, written: 9, failedBatches: 0)]), as: UTF8.self)
        #expect(text.contains(#"streampulse_stream_seconds_since_picture{stream="never",protocol="rtsp"} +Inf"#))
        #expect(!text.contains(#"streampulse_stream_seconds_since_picture{stream="off""#))
        #expect(text.contains("streampulse_schedule_lag_p99_seconds 0.04"))
        #expect(!text.contains("quantile="))

        let promtool = Process()
        promtool.executableURL = URL(fileURLWithPath: "/usr/bin/promtool")
        promtool.arguments = ["check", "metrics"]
        let input = Pipe(), output = Pipe()
        promtool.standardInput = input
        promtool.standardOutput = output
        promtool.standardError = output
        try launchProcess(promtool)
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        promtool.waitUntilExit()
        #expect(promtool.terminationStatus == 0, "promtool: \(said)")
        #expect(said.isEmpty, "promtool: \(said)")
    }
}

/// A mosquitto_sub left running, its output lines collected as they arrive.
final class MQTTWatcher: Sendable {
    private let process = Process()
    private final class Output: Sendable {
        let lines = Mutex<[String]>([])
        let pending = Mutex("")
    }
    private let output = Output()

    init(port: Int, topic: String, cafile: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/mosquitto_sub")
        process.arguments = ["-h", "127.0.0.1", "-p", String(port), "-t", topic, "-v"] + (cafile.map { ["--cafile", $0] } ?? [])
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try launchProcess(process)
        // A plain thread reading until end of file (readabilityHandler crashed libdispatch here).
        let reader = pipe.fileHandleForReading
        Thread { [output] in
            while true {
                let data = reader.availableData
                if data.isEmpty { return }
                let chunk = String(decoding: data, as: UTF8.self)
                let complete = output.pending.withLock { rest -> [String] in
                    rest += chunk
                    var lines = rest.components(separatedBy: "\n")
                    rest = lines.removeLast()
                    return lines
                }
                output.lines.withLock { $0 += complete }
            }
        }.start()
    }

    var lines: [String] { output.lines.withLock { $0 } }

    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

extension StreamSnapshot {
    /// A stream as a `.streams` event carries it, never checked yet.
    static func forTests(id: String, name: String, group: String? = nil, tags: [String] = []) -> StreamSnapshot {
        StreamSnapshot(id: id, name: name, url: "", protocol: "rtsp", group: group, tags: tags, enabled: true, status: .unknown,
                       reason: .notChecked, phase: nil, message: "", pending: false, since: nil, lastCheck: nil, lastPicture: nil,
                       consecutiveFailures: 0, latencyMs: nil)
    }
}
