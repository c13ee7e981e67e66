import Foundation
import StreamPulseCore
import StreamPulseProberTesting
import Testing

@testable import SnapshotProber

/// The plugin run in process through its own C table (the prober test kit plays the host), against tiny
/// loopback HTTP servers that answer as a snapshot camera would, or would not.
@Suite struct SnapshotProberTests {
    /// A 2×1 JPEG's markers: SOI, an SOF0 segment giving the size, an empty scan, EOI.
    static let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x01, 0x00, 0x02, 0x01, 0x01, 0x11, 0x00,
                                0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0xFF, 0xD9]

    static func http(_ status: String, body: [UInt8] = []) -> LoopbackServer.Reply {
        .bytes(Array("HTTP/1.1 \(status)\r\nContent-Type: image/jpeg\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
    }

    func probe(_ port: Int, path: String = "/snapshot.jpg", timeoutMs: Int = 2000) async -> ProbeResult {
        await ProberHarness(SnapshotProber.self).probe(
            ProbeRequest(streamId: "snap", url: "snapshot://127.0.0.1:\(port)\(path)", timeoutMs: timeoutMs))
    }

    @Test func theDescriptor_crossesTheBoundary() {
        let harness = ProberHarness(SnapshotProber.self)
        #expect(harness.descriptor.name == "snapshot")
        #expect(harness.descriptor.schemes == ["snapshot"])
        #expect(harness.descriptor.capabilities.deepProbe)
    }

    @Test func aCompleteJPEG_isOk_withItsSize() async throws {
        let server = try LoopbackServer { _ in Self.http("200 OK", body: Self.jpeg) }
        defer { server.stop() }
        let result = await probe(server.port)
        #expect(result.reason == .ok, "\(result.message)")
        #expect(result.media?.width == 2 && result.media?.height == 1)
        #expect(server.requests.first?.hasPrefix("GET /snapshot.jpg HTTP/1.1") == true)
    }

    @Test func aCutOffJPEG_isCorrupt() async throws {
        let server = try LoopbackServer { _ in Self.http("200 OK", body: Array(Self.jpeg.dropLast(2))) }
        defer { server.stop() }
        let result = await probe(server.port)
        #expect(result.reason == .corruptJpeg)
        #expect(result.phase == .firstFrame)
    }

    @Test(arguments: [("401 Unauthorized", Reason.unauthorized), ("404 Not Found", .notFound), ("500 Internal Server Error", .protocolError)])
    func anHTTPError_isClassified(status: String, reason: Reason) async throws {
        let server = try LoopbackServer { _ in Self.http(status) }
        defer { server.stop() }
        #expect(await probe(server.port).reason == reason)
    }

    @Test func aSilentCamera_timesOut_withinTheDeadline() async throws {
        let server = try LoopbackServer { _ in .silence }
        defer { server.stop() }
        let result = await probe(server.port, timeoutMs: 300)
        #expect(result.reason == .timeout, "\(result.message)")
        #expect((result.timings.totalMs ?? .infinity) < 2000)
    }

    @Test func nothingListening_isRefused() async throws {
        let result = try await LoopbackServer.withRefusingPort { port in await probe(port) }
        #expect(result.reason == .connectionRefused)
        #expect(result.phase == .connect)
    }

    @Test func aNullRequest_isAnswered_notACrash() async {
        let result = await ProberHarness(SnapshotProber.self).start(rawRequest: nil).result()
        #expect(result.reason == .invalidRequest)
    }
}
