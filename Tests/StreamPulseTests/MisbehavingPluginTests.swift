import Foundation
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// A plugin that hangs, throws or logs secrets is bounded and contained; the host carries on.
@Suite(.serialized) struct MisbehavingPluginTests {
    static func host(logs: CapturedLogs, scrubber: SecretScrubber = SecretScrubber()) throws -> LoadedPlugin {
        let dir = TestEnvironment.temporaryDirectory("plugins")
        try FileManager.default.copyItem(atPath: TestEnvironment.product("StreamPulseTestMisbehaving"), toPath: dir + "/misbehaving.so")
        let host = PluginHost(directory: dir, logger: logs.logger(), scrubber: scrubber)
        host.scan()
        return try #require(host.plugin(for: "misbehave://x/ok"))
    }

    /// The double probe of issue #12: a URL edited while a probe that ignores cancellation runs.
    @Test func aStreamEditedMidProbe_isNeverProbedTwiceAtOnce_andItsChecksCountOnce() async throws {
        let dir = TestEnvironment.temporaryDirectory("plugins")
        try FileManager.default.copyItem(atPath: TestEnvironment.product("StreamPulseTestMisbehaving"), toPath: dir + "/misbehaving.so")
        let host = PluginHost(directory: dir, logger: CapturedLogs().logger())
        host.scan()
        func config(_ version: Int) throws -> Config {
            try #require(ConfigLoader(environment: [:]).load(yaml: """
                settings: { interval: 1s, timeout: 1s, retries: 0 }
                streams: [{ id: h, url: "misbehave://x/hang?v=\(version)" }]
                """, file: "c.yaml", baseDirectory: "/").config)
        }
        let engine = Engine(config: try config(1), plugins: host, logger: CapturedLogs().logger(), startupSpread: .milliseconds(10))
        let run = Task { await engine.run() }
        defer { run.cancel() }
        func sample() async -> (inFlight: Int, lane: Int, checks: Int) {
            let stats = await engine.stats()
            return (stats.inFlight, stats.lanes["misbehaving"] ?? 0, stats.checks)
        }
        // Wait for the first probe to be running in the plugin's lane, then edit the URL.
        var s = await sample()
        while s.lane == 0 { try await Task.sleep(for: .milliseconds(10)); s = await sample() }
        #expect(await engine.apply(try config(2)).restarted == ["h"])
        // Until the new generation has completed one check, never two probes in the lane.
        var maxLane = 0, maxInFlight = 0
        let deadline = ContinuousClock.now + .seconds(15)
        while s.checks < 1, ContinuousClock.now < deadline {
            maxLane = max(maxLane, s.lane)
            maxInFlight = max(maxInFlight, s.inFlight)
            try await Task.sleep(for: .milliseconds(5))
            s = await sample()
        }
        #expect(s.checks == 1, "the new generation's probe completed and counted; the old one did not")
        #expect(maxLane == 1 && maxInFlight == 1, "lane \(maxLane), in flight \(maxInFlight)")
        let snapshot = try #require(await engine.snapshot(id: "h"))
        #expect(snapshot.url == "misbehave://x/hang?v=2")
        #expect(snapshot.reason == .timeout)
    }

    @Test func aPluginThatNeverAnswers_isBoundedByTheDeadline() async throws {
        let plugin = try Self.host(logs: CapturedLogs())
        let start = ContinuousClock.now
        let result = await plugin.probe(ProbeRequest(streamId: "s", url: "misbehave://x/hang", timeoutMs: 500))
        let elapsed = start.duration(to: .now)
        #expect(result.reason == .timeout)
        #expect(elapsed < .seconds(3), "deadline 0.5 s + SDK grace 0.5 s + host grace 1.5 s")
        // The plugin still serves other calls.
        #expect(await plugin.probe(ProbeRequest(streamId: "s", url: "misbehave://x/ok", timeoutMs: 500)).reason == .ok)
    }

    /// A probe whose task is cancelled before the plugin call begins must still answer (it once waited
    /// forever: the cancellation answered a call whose continuation was not installed yet).
    @Test(.timeLimit(.minutes(1))) func aProbeCancelledBeforeItStarts_answersAtOnce_andNeverHangs() async throws {
        let plugin = try Self.host(logs: CapturedLogs())
        for _ in 0..<20 {
            let answer = await withTaskGroup(of: ProbeResult?.self) { group in
                group.addTask {
                    withUnsafeCurrentTask { $0?.cancel() }
                    return await plugin.probe(ProbeRequest(streamId: "s", url: "misbehave://x/slow", timeoutMs: 30_000))
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(5))
                    return nil
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            #expect(answer?.reason == .cancelled, "no answer within 5 s: the probe hung")
        }
    }

    @Test func aThrowingProber_becomesAPluginErrorResult() async throws {
        let plugin = try Self.host(logs: CapturedLogs())
        let result = await plugin.probe(ProbeRequest(streamId: "s", url: "misbehave://x/throw", timeoutMs: 1000))
        #expect(result.reason == .pluginError)
        #expect(result.message.contains("misbehaving plugin failed"))
    }

    @Test func cancellingTheCaller_stopsTheProbePromptly() async throws {
        let plugin = try Self.host(logs: CapturedLogs())
        let start = ContinuousClock.now
        let task = Task { await plugin.probe(ProbeRequest(streamId: "s", url: "misbehave://x/slow", timeoutMs: 30_000)) }
        try await Task.sleep(for: .milliseconds(200))
        task.cancel()
        let result = await task.value
        #expect(result.reason == .cancelled)
        #expect(start.duration(to: .now) < .seconds(2))
    }

    @Test func pluginLogLines_reachTheHostLogger_withSecretsScrubbed() async throws {
        let logs = CapturedLogs()
        let scrubber = SecretScrubber()
        scrubber.replace(with: [fixturePassword])
        let plugin = try Self.host(logs: logs, scrubber: scrubber)
        let request = ProbeRequest(streamId: "s", url: "misbehave://x/log", credentials: Credentials(username: "u", password: fixturePassword), timeoutMs: 1000)
        #expect(await plugin.probe(request).reason == .ok)
        try await Task.sleep(for: .milliseconds(50))
        #expect(logs.all.contains { $0.contains("connecting with password ***") })
        #expect(!logs.all.joined().contains(fixturePassword))
    }

    @Test func aMessageQuotingThePassword_isScrubbedByTheHost() async throws {
        let plugin = try Self.host(logs: CapturedLogs())
        let request = ProbeRequest(streamId: "s", url: "misbehave://x/leak", credentials: Credentials(username: "u", password: fixturePassword), timeoutMs: 1000)
        let result = await plugin.probe(request)
        #expect(result.reason == .unauthorized)
        #expect(result.message == "camera said: wrong password ***")
    }

    @Test func preview_deliversFrames_thenTheEnd() async throws {
        let plugin = try Self.host(logs: CapturedLogs())
        let frames = FrameCounter()
        let result = await plugin.preview(PreviewRequest(streamId: "s", url: "misbehave://x/ok", seconds: 1)) { frames.add($0) }
        #expect(result.reason == .ok)
        #expect(frames.count == 3)
    }
}

final class FrameCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var frames: [Data] = []
    func add(_ frame: Data) { lock.withLock { frames.append(frame) } }
    var count: Int { lock.withLock { frames.count } }
    var all: [Data] { lock.withLock { frames } }
}

/// Live previews run as child tasks of the hub's service: viewers share one upstream session, shutdown ends it.
@Suite struct PreviewHubTests {
    @Test func viewersShareOneSession_andShutdownEndsIt() async throws {
        let dir = TestEnvironment.temporaryDirectory("plugins")
        try FileManager.default.copyItem(atPath: TestEnvironment.product("StreamPulseTestMisbehaving"), toPath: dir + "/misbehaving.so")
        let host = PluginHost(directory: dir, logger: CapturedLogs().logger())
        host.scan()
        let config = try #require(ConfigLoader(environment: [:]).load(yaml: """
            settings: { interval: 1h }
            streams: [{ id: p, url: "misbehave://x/long" }]
            """, file: "c.yaml", baseDirectory: "/").config)
        let engine = Engine(config: config, plugins: host, logger: CapturedLogs().logger())
        let hub = PreviewHub(engine: engine, settings: LiveSettings(config.settings))
        await #expect(throws: PreviewHub.Refusal.stopped) { _ = try await hub.join("p", seconds: 30) }

        let service = Task { await hub.run() }
        // The hub refuses until its run loop is up; joining is retried on that one refusal only.
        var first: AsyncStream<Data>?
        while first == nil {
            do { first = try await hub.join("p", seconds: 30) } catch .stopped { await Task.yield() }
        }
        await #expect(throws: PreviewHub.Refusal.unknownStream) { _ = try await hub.join("nope", seconds: 5) }
        let second = try await hub.join("p", seconds: 30)
        var a = first!.makeAsyncIterator(), b = second.makeAsyncIterator()
        #expect(await a.next() != nil)
        #expect(await b.next() != nil)
        #expect(hub.upstreamSessionsStarted == 1)
        #expect(hub.activeSessions == 1)

        service.cancel()  // what graceful shutdown does to PreviewService
        while await a.next() != nil {}
        while await b.next() != nil {}
        await service.value
        #expect(hub.activeSessions == 0)
        await #expect(throws: PreviewHub.Refusal.stopped) { _ = try await hub.join("p", seconds: 5) }
    }
}
