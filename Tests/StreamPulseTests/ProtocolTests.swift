import Foundation
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// The plugin protocol's messages, version rules and routing: pure, no I/O.
@Suite struct ProtocolTests {
    @Test func probeRequest_roundTrips_withSnakeCaseKeys_andCredentialsBesideTheURL() async throws {
        let request = ProbeRequest(
            streamId: "lobby", url: "rtsp://cam/1", credentials: Credentials(username: "u", password: "p"), mode: .quick,
            timeoutMs: 3000, options: ProbeOptions(transport: "udp", sampleFrames: 5, minFps: 4, maxFirstFrameMs: 900))
        let json = try Wire.encode(request)
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(object["stream_id"] as? String == "lobby")
        #expect(object["timeout_ms"] as? Int == 3000)
        #expect((object["options"] as? [String: Any])?["max_first_frame_ms"] as? Double == 900)
        #expect((object["credentials"] as? [String: Any])?["username"] as? String == "u")
        #expect(try Wire.decode(ProbeRequest.self, from: json) == request)
    }

    @Test func probeResult_roundTrips_withThumbnailAsBase64() async throws {
        let result = ProbeResult(
            reason: .frozen, phase: .sample, message: "still", mode: .deep,
            timings: Timings(connectMs: 1, firstByteMs: 2, firstFrameMs: 3, totalMs: 4),
            media: MediaFacts(codec: "h264", width: 640, height: 480, fps: 25, bitrateBps: 1e6),
            image: ImageFacts(frozen: true, black: false, meanLuma: 120, meanDifference: 0, framesSampled: 25),
            thumbnailJpeg: Data([0xFF, 0xD8, 0xFF, 0xD9]))
        let json = try Wire.encode(result)
        #expect(String(decoding: json, as: UTF8.self).contains("\"thumbnail_jpeg\":\"\\/9j\\/2Q==\"") ||
                String(decoding: json, as: UTF8.self).contains("\"thumbnail_jpeg\":\"/9j/2Q==\""))
        #expect(try Wire.decode(ProbeResult.self, from: json) == result)
    }

    @Test func decoding_ignoresUnknownFields_soMinorVersionsCanAddThem() async throws {
        let json = Data(#"{"reason":"ok","message":"fine","timings":{"total_ms":5,"future_ms":1},"added_in_1_1":{"x":1}}"#.utf8)
        let result = try Wire.decode(ProbeResult.self, from: json)
        #expect(result.reason == .ok)
        #expect(result.timings.totalMs == 5)
    }

    @Test func unknownReasons_decode_andCountAsDown() async throws {
        let result = try Wire.decode(ProbeResult.self, from: Data(#"{"reason":"lens_cap_on","message":"m","timings":{}}"#.utf8))
        #expect(result.reason.rawValue == "lens_cap_on")
        #expect(StatusModel.status(for: result.reason) == .down)
    }

    @Test func descriptor_carriesTheSDKsProtocolVersion_andLowerCaseSchemes() async throws {
        let descriptor = PluginDescriptor(name: "x", version: "1.2.3", schemes: ["RTSP", "rtsps"],
                                          capabilities: Capabilities(quickProbe: true, deepProbe: true, livePreview: false))
        #expect(descriptor.protocolVersion == 1)
        #expect(descriptor.schemes == ["rtsp", "rtsps"])
        #expect(try Wire.decode(PluginDescriptor.self, from: Wire.encode(descriptor)) == descriptor)
    }

    @Test(arguments: [
        ("ok", StreamStatus.ok), ("unauthorized", .degraded), ("forbidden", .degraded), ("not_found", .degraded),
        ("frozen", .degraded), ("black", .degraded), ("low_fps", .degraded), ("slow_first_frame", .degraded),
        ("connection_refused", .down), ("timeout", .down), ("no_frames", .down), ("stream_ended", .down),
        ("protocol_error", .down), ("decode_error", .down), ("no_plugin", .unknown), ("cancelled", .unknown),
    ])
    func statusModel_mapsEachReason(reason: String, status: StreamStatus) {
        #expect(StatusModel.status(for: Reason(rawValue: reason)) == status)
    }

    @Test func exitCodes_followTheCheckContract() {
        #expect(StreamStatus.ok.exitCode == 0)
        #expect(StreamStatus.degraded.exitCode == 1)
        #expect(StreamStatus.down.exitCode == 2)
        #expect(StreamStatus.unknown.exitCode == 3)
    }
}

@Suite struct SchemeRouterTests {
    @Test func routesByScheme_caseInsensitively() {
        var router = SchemeRouter()
        let first = router.claim(["rtsp", "rtsps"], by: "rtsp")
        let second = router.claim(["http"], by: "mjpeg")
        #expect(first && second)
        #expect(router.route("RTSP://cam/1") == "rtsp")
        #expect(router.route("http://cam/video") == "mjpeg")
        #expect(router.route("hls://cam/x.m3u8") == nil)
        #expect(router.route("not a url") == nil)
    }

    @Test func secondClaim_onAnOwnedScheme_failsWithoutChangingAnything() async throws {
        var router = SchemeRouter()
        let first = router.claim(["rtsp"], by: "rtsp")
        #expect(first)
        let conflict = try #require(router.conflict(for: ["snapshot", "rtsp"]))
        #expect(conflict.scheme == "rtsp" && conflict.owner == "rtsp")
        let second = router.claim(["snapshot", "rtsp"], by: "impostor")
        #expect(!second)
        #expect(router.route("snapshot://x/y") == nil)
        #expect(router.claims.count == 1)
    }

    @Test(arguments: ["rtsp://h/p", "http://h", "snapshot+http://h/x", "a.b-c://h"])
    func scheme_isParsed(url: String) {
        #expect(SchemeRouter.scheme(of: url) == String(url.prefix { $0 != ":" }).lowercased())
    }

    @Test(arguments: ["://h", "1abc://h", "no-scheme", "ht tp://h"])
    func scheme_isRejected(url: String) {
        #expect(SchemeRouter.scheme(of: url) == nil)
    }
}

@Suite struct RedactionTests {
    @Test func splitCredentials_movesUserInfoOutOfTheURL() {
        let (url, credentials) = URLRedaction.splitCredentials("rtsp://admin:p%40ss@10.0.0.5:554/live?x=1")
        #expect(url == "rtsp://10.0.0.5:554/live?x=1")
        #expect(credentials == Credentials(username: "admin", password: "p@ss"))
        #expect(URLRedaction.splitCredentials("http://cam/a@b").credentials == nil)
    }

    /// Passwords with the characters URLs reserve, written unescaped as people do.
    @Test(arguments: [
        ("rtsp://user:Zq9#SECRET@10.0.0.5/live", "Zq9#SECRET", "rtsp://10.0.0.5/live"),
        ("rtsp://user:771/Zq9@cam.local:554/x", "771/Zq9", "rtsp://cam.local:554/x"),
        ("rtsp://user:a?b=c@[::1]:8554/x", "a?b=c", "rtsp://[::1]:8554/x"),
        ("http://user:p@ss@10.0.0.6/video.mjpg", "p@ss", "http://10.0.0.6/video.mjpg"),
        ("http://user:x/y#z?w@10.0.0.6", "x/y#z?w", "http://10.0.0.6"),
    ])
    func splitCredentials_handlesReservedCharactersInPasswords(url: String, password: String, bare: String) {
        let (rest, credentials) = URLRedaction.splitCredentials(url)
        #expect(credentials?.password == password)
        #expect(credentials?.username == "user")
        #expect(rest == bare)
        #expect(!URLRedaction.mask(url).contains(password))
        #expect(!URLRedaction.scrub("failed to open \(url) now", secrets: []).contains(password))
    }

    @Test func anAtSignInAPath_isNotUserInformation() {
        #expect(URLRedaction.splitCredentials("rtsp://cam/stream@1").credentials == nil)
        #expect(URLRedaction.splitCredentials("rtsp://cam/a@b/c").credentials == nil)
        // `rtsp://cam:554/a@b/c` reads the same as `rtsp://user:771/Zq9@cam/x`: it is taken as credentials
        // (masked), the safe side — a password is never shown because it looked like a path.
        #expect(URLRedaction.splitCredentials("rtsp://cam:554/a@b/c").credentials != nil)
    }

    @Test func aURLTooBrokenToSplit_isMaskedUpToItsLastAtSign() {
        #expect(URLRedaction.mask("rtsp://user:Zq9#SECRET/x?y@/live") == "rtsp://***@/live")
        #expect(URLRedaction.mask("rtsp://cam/live") == "rtsp://cam/live")
    }

    @Test func mask_andScrub_neverLeaveThePassword() {
        #expect(URLRedaction.mask("rtsp://admin:hunter2@cam/x") == "rtsp://***@cam/x")
        let line = URLRedaction.scrub("open rtsp://admin:hunter2@cam/x failed; pw hunter2", secrets: ["hunter2"])
        #expect(!line.contains("hunter2"))
        #expect(line.contains("rtsp://***@cam/x"))
    }
}
