import Foundation
import Testing
@testable import StreamPulseHost
import StreamPulseCore

/// Picture health through a real `serve`: GStreamer cameras (scripts/test-cameras/picture_server.py) whose
/// view is swapped while they are watched — moved, blurred, covered, darkened, reset to other caps, video
/// dropped with audio still flowing — read back from /api/streams.
@Suite(.serialized) struct PictureHealthServeTests {
    /// The picture server with a pipe to its stdin, for "serve /path VARIANT" swaps.
    struct PictureServer {
        var process: Process
        var input: Pipe
        var port: Int
        func swap(_ path: String, to variant: String) {
            input.fileHandleForWriting.write(Data("serve \(path) \(variant)\n".utf8))
        }
    }

    static func launch(_ paths: [String: String]) throws -> PictureServer {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [TestEnvironment.root + "/scripts/test-cameras/picture_server.py",
                             "--serve", paths.map { "\($0.key)=\($0.value)" }.joined(separator: ",")]
        let out = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardInput = input
        process.standardError = FileHandle.standardError
        try launchProcess(process)
        var line = Data()
        while !line.contains(0x0A) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { throw TestCameras.FixtureError(message: "picture_server.py exited before it was ready") }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("READY port="), let port = Int(text.dropFirst("READY port=".count).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw TestCameras.FixtureError(message: "picture_server.py said: \(text)")
        }
        // Later lines ("SWAPPED …") are drained so the pipe never fills.
        out.fileHandleForReading.readabilityHandler = nil
        Thread { while !out.fileHandleForReading.availableData.isEmpty {} }.start()
        return PictureServer(process: process, input: input, port: port)
    }

    @Test func eachWayAPictureGoesWrong_isNamed_andHealthyChangesStayGreen() async throws {
        let cams = try Self.launch([
            "/moved": "scene", "/blur": "scene", "/cover": "scene", "/night": "scene", "/noise": "scene", "/clock": "clock",
            "/frozen": "frozen-clock", "/profile": "hd", "/audio": "av",
        ])
        defer { kill(cams.process.processIdentifier, SIGKILL) }
        let dir = TestEnvironment.temporaryDirectory("picture-serve")
        let web = try freePort()
        let ids = ["moved", "blur", "cover", "night", "noise", "clock", "frozen", "profile", "audio"]
        try """
            settings: { interval: 3s, deep_interval: 3s, timeout: 6s, retries: 1, listen: "127.0.0.1:\(web)" }
            streams:
            \(ids.map { "  - { id: \($0), url: \"rtsp://127.0.0.1:\(cams.port)/\($0)\" }" }.joined(separator: "\n"))
            """.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        let token = try await TestEnvironment.apiToken(configDirectory: dir)
        var serve = try TestEnvironment.startServe(configDirectory: dir)
        defer { if serve.isRunning { kill(serve.processIdentifier, SIGKILL) } }
        func api(_ path: String) async -> [String: Any]? {
            guard let text = try? await httpGet("http://127.0.0.1:\(web)\(path)", token: token),
                  let body = text.components(separatedBy: "\r\n\r\n").dropFirst().first else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
        }
        func reason(_ id: String) async -> String? { (await api("/api/streams/\(id)"))?["reason"] as? String }
        func learned(_ id: String) async -> Bool { (await api("/api/streams/\(id)/baseline"))?["profile_source"] as? String == "learned" }
        func post(_ path: String) async throws -> String {
            let answer = try await httpRequest("POST", port: web, path: path, headers: ["Authorization": "Bearer \(token)"], body: [])
            return "\(answer.status) \(answer.body)"
        }

        // Healthy first: every changing camera is green with its profile learned and a reference view.
        let healthy = ids.filter { $0 != "frozen" }
        let ready = await eventuallyTrue(60) {
            for id in healthy { guard await reason(id) == "ok", await learned(id) else { return false } }
            return true
        }
        var seen: [String: String] = [:]
        for id in ids { seen[id] = await reason(id) ?? "?" }
        #expect(ready, "\(seen)")
        // A frozen picture with a ticking on-screen clock is frozen.
        let frozen = await eventuallyTrue(20) { await reason("frozen") == "frozen" }
        let frozenState = await api("/api/streams/frozen") ?? [:]
        #expect(frozen, "\(frozenState)")
        // Its evidence: the first and the last picture of the window, stored with the change and served.
        let auth = ["Authorization": "Bearer \(token)"]
        let changes = try await httpRequest("GET", port: web, path: "/api/streams/frozen/changes", headers: auth)
        let list = (try? JSONSerialization.jsonObject(with: Data(changes.body.utf8))) as? [[String: Any]] ?? []
        let frozenChange = list.first { $0["reason"] as? String == "frozen" && $0["has_last_picture"] as? Bool == true }
        #expect(frozenChange != nil, "\(changes.body.prefix(600))")
        if let id = frozenChange?["id"] as? Int {
            let last = try await httpRequest("GET", port: web, path: "/api/changes/\(id)/last.jpg", headers: auth)
            #expect(last.status == 200 && last.headers["content-type"] == "image/jpeg", "\(last.status) \(last.headers)")
        }

        // The cameras change.
        for (path, variant) in [("/moved", "moved"), ("/blur", "blurred"), ("/cover", "covered"), ("/night", "night"),
                                ("/profile", "sd"), ("/audio", "audio")] { cams.swap(path, to: variant) }
        let expected = ["moved": "scene_changed", "blur": "blurred", "cover": "obstructed", "profile": "profile_changed", "audio": "no_video"]
        let named = await eventuallyTrue(60) {
            for (id, want) in expected { guard await reason(id) == want else { return false } }
            return true
        }
        for id in ids { seen[id] = await reason(id) ?? "?" }
        #expect(named, "\(seen)")
        let profileMessage = (await api("/api/streams/profile"))?["message"] as? String ?? ""
        #expect(profileMessage.contains("1920×1080 → 640×480"), "\(profileMessage)")
        // Night, noise and the ticking clock over a live scene stay green: no false scene change.
        for id in ["night", "noise", "clock"] {
            let state = await api("/api/streams/\(id)") ?? [:]
            #expect(state["reason"] as? String == "ok", "\(id): \(state)")
        }

        // The evidence: the reference picture is served (authenticated).
        let reference = try await httpRequest("GET", port: web, path: "/api/streams/moved/reference.jpg", headers: ["Authorization": "Bearer \(token)"])
        #expect(reference.status == 200 && reference.headers["content-type"] == "image/jpeg", "\(reference.status) \(reference.headers)")
        let anonymous = try await httpRequest("GET", port: web, path: "/api/streams/moved/reference.jpg")
        #expect(anonymous.status == 401, "the reference picture needs a signed-in viewer")

        // After a restart the baselines are still there: the moved camera is judged against the old view at once.
        kill(serve.processIdentifier, SIGTERM)
        serve.waitUntilExit()
        serve = try TestEnvironment.startServe(configDirectory: dir)
        let judgedAtOnce = await eventuallyTrue(30) { await reason("moved") == "scene_changed" }
        let movedState = await api("/api/streams/moved") ?? [:]
        #expect(judgedAtOnce, "\(movedState)")
        let kept = await learned("blur")
        #expect(kept, "the learned profile survived the restart")

        // An admin accepts the new profile and sets the current picture as the reference: green again.
        let accepted = try await post("/api/streams/profile/profile/accept")
        #expect(accepted.hasPrefix("200"), "\(accepted)")
        let referenced = try await post("/api/streams/moved/reference")
        #expect(referenced.hasPrefix("202"), "\(referenced)")
        let green = await eventuallyTrue(30) {
            let profile = await reason("profile"), moved = await reason("moved")
            return profile == "ok" && moved == "ok"
        }
        let after = "\(await reason("profile") ?? "?") \(await reason("moved") ?? "?")"
        #expect(green, "\(after)")
    }
}
