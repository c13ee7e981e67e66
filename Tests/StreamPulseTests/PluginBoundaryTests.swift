import Foundation
import StreamPulseCore
import StreamPulseProberKit
import StreamPulseProberTesting
import Synchronization
import Testing

/// A prober whose probes wait until cancelled, recording that they saw the cancellation.
struct SleepyProber: Prober {
    static let descriptor = PluginDescriptor(
        name: "sleepy", version: "1.0.0", schemes: ["sleepy"],
        capabilities: Capabilities(quickProbe: true, deepProbe: true, livePreview: true))
    /// The stream id of every probe that saw its cancellation.
    static let cancellations = AsyncStream.makeStream(of: String.self)

    init(context: PluginContext) {}

    func probe(_ request: ProbeRequest) async throws -> ProbeResult {
        if request.url.hasSuffix("/fast") { return ProbeResult(reason: .ok, phase: .firstFrame, message: "fast", timings: Timings()) }
        do {
            try await Task.sleep(for: .seconds(60))
        } catch {
            Self.cancellations.continuation.yield(request.streamId)
            throw error
        }
        return ProbeResult(reason: .ok, phase: .firstFrame, message: "slept", timings: Timings())
    }

    func preview(_ request: PreviewRequest, send: @escaping @Sendable (Data) -> Void) async throws -> ProbeResult {
        for _ in 0..<3 { send(Data([0xFF, 0xD8, 0xFF, 0xD9])) }
        return ProbeResult(reason: .ok, phase: .preview, message: "three frames", timings: Timings())
    }
}

/// The SDK's side of the C boundary, driven through the prober test kit exactly as the host drives a plugin.
@Suite struct PluginBoundaryTests {
    @Test func aNullZeroLengthRequest_isAnswered_notACrash() async throws {
        let harness = ProberHarness(SleepyProber.self)
        let call = harness.start(rawRequest: nil)
        let result = await call.result()
        #expect(result.reason == .invalidRequest)
        #expect(result.phase == .request)
        #expect(call.completions == 1)
        let garbage = await harness.start(rawRequest: Array("{not json".utf8)).result()
        #expect(garbage.reason == .invalidRequest)
    }

    @Test func theWatchdog_answersTimeout_andCancelsTheWork() async throws {
        let harness = ProberHarness(SleepyProber.self)
        let result = await harness.probe(ProbeRequest(streamId: "overrun", url: "sleepy://x/slow", timeoutMs: 100))
        #expect(result.reason == .timeout)
        #expect(result.message.contains("100 ms"))
        // The overrunning work was cancelled, not left sleeping for a minute (the 10 s bound only ends a failing run).
        let cancelled = await withTaskGroup(of: Bool.self) { group in
            group.addTask { for await id in SleepyProber.cancellations.stream where id == "overrun" { return true }; return false }
            group.addTask { try? await Task.sleep(for: .seconds(10)); return false }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        #expect(cancelled)
    }

    @Test func cancel_deliversOneCancelledCompletion() async throws {
        let harness = ProberHarness(SleepyProber.self)
        let call = harness.start(ProbeRequest(streamId: "s", url: "sleepy://x/slow", timeoutMs: 30_000))
        #expect(call.id != 0)
        call.cancel()
        let result = await call.result()
        #expect(result.reason == .cancelled)
        #expect(call.completions == 1)
        #expect(await harness.probe(ProbeRequest(streamId: "s", url: "sleepy://x/fast")).reason == .ok)
    }

    @Test func preview_framesArriveBeforeTheCompletion() async throws {
        let harness = ProberHarness(SleepyProber.self)
        #expect(harness.descriptor.name == "sleepy")
        #expect(harness.descriptor.protocolVersion == Int(PluginProtocol.version))
        let (frames, result) = await harness.preview(PreviewRequest(streamId: "s", url: "sleepy://x", seconds: 1))
        #expect(result.reason == .ok)
        #expect(frames.count == 3)
    }

    /// live555 (inside many cameras) rejects a Digest header with any unquoted parameter but qop/nc.
    @Test func digest_isAcceptedByStrictParsers() async throws {
        let challenge = try #require(AuthChallenge.parse(#"Digest realm="LIVE555 Streaming Media", nonce="abc""#))
        let header = challenge.authorization(method: "DESCRIBE", uri: "rtsp://h/s", credentials: Credentials(username: "u", password: "p"))
        let fields = header.dropFirst("Digest ".count).components(separatedBy: ", ")
        for field in fields {
            let value = field.split(separator: "=", maxSplits: 1)[1]
            #expect(value.hasPrefix("\"") && value.hasSuffix("\""), "unquoted: \(field)")
        }
        #expect(!header.contains("algorithm"))
        #expect(md5Hex("u:LIVE555 Streaming Media:p").count == 32)
    }

    @Test func loopbackServer_recordsRequests_andAnswers() async throws {
        let server = try LoopbackServer { head in head.hasPrefix("GET /quiet") ? .silence : .bytes(Array("HTTP/1.1 204 No Content\r\n\r\n".utf8)) }
        defer { server.stop() }
        let clock = ProbeClock(timeoutMs: 2000)
        let connection = try TCPConnection(host: "127.0.0.1", port: server.port, clock: clock)
        try connection.write(Array("GET /x HTTP/1.1\r\nHost: a\r\n\r\n".utf8))
        let answer = try connection.read(maximum: 100)
        #expect(String(decoding: answer, as: UTF8.self).hasPrefix("HTTP/1.1 204"))
        #expect(server.requests.first?.hasPrefix("GET /x") == true)
    }

    /// `readAvailable` never waits: 0 from a silent server at once (a waiting read would hit the probe's
    /// deadline and throw), the bytes once they are there, `.closed` after the server hung up.
    @Test func readAvailable_returnsAtOnce_whatHasArrived() throws {
        let server = try LoopbackServer { head in head.hasPrefix("GET /quiet") ? .silence : .bytes(Array("HTTP/1.1 204 No Content\r\n\r\n".utf8)) }
        defer { server.stop() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 1)
        defer { buffer.deallocate() }
        let quiet = try TCPConnection(host: "127.0.0.1", port: server.port, clock: ProbeClock(timeoutMs: 300))
        try quiet.write(Array("GET /quiet HTTP/1.1\r\n\r\n".utf8))
        #expect(try quiet.readAvailable(into: buffer) == 0)

        let answering = try TCPConnection(host: "127.0.0.1", port: server.port, clock: ProbeClock(timeoutMs: 2000))
        try answering.write(Array("GET /x HTTP/1.1\r\n\r\n".utf8))
        let count = try answering.read(into: buffer)  // waits for the answer (one segment on loopback)
        #expect(String(decoding: buffer[..<count], as: UTF8.self) == "HTTP/1.1 204 No Content\r\n\r\n")
        #expect(throws: TCPConnection.Failure.closed) { try answering.read(into: buffer) }  // waits for the hang-up
        #expect(throws: TCPConnection.Failure.closed) { try answering.readAvailable(into: buffer) }  // says it at once
    }
}
