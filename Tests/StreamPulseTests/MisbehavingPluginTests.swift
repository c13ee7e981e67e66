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
