import Foundation
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// Hot reload with real file operations in a temp dir, watched by real inotify, applied to a running engine.
@Suite(.serialized) struct HotReloadTests {
    /// A running engine + config service over a temp config directory.
    final class Rig: @unchecked Sendable {
        let dir: String
        let path: String
        let pluginsDir: String
        let engine: Engine
        let service: ConfigService
        let logs = CapturedLogs()
        var tasks: [Task<Void, Never>] = []

        init(yaml: String, secrets: String? = nil, plugins: [String: String] = [:]) async throws {
            dir = TestEnvironment.temporaryDirectory("reload")
            path = dir + "/config.yaml"
            pluginsDir = try TestEnvironment.pluginsDirectory(extra: plugins)
            try yaml.write(toFile: path, atomically: false, encoding: .utf8)
            if let secrets {
                try secrets.write(toFile: dir + "/secrets.yaml", atomically: false, encoding: .utf8)
                chmod(dir + "/secrets.yaml", 0o600)
            }
            let host = PluginHost(directory: pluginsDir, logger: logs.logger())
            host.scan()
            let loaded = ConfigLoader(environment: [:], knownSchemes: nil).load(path: path)
            let config = try #require(loaded.config, "\(loaded.problems)")
            engine = Engine(config: config, plugins: host, logger: logs.logger())
            service = ConfigService(path: path, initial: config, initialProblems: [], engine: engine, plugins: host,
                                    scrubber: SecretScrubber(), logger: logs.logger(), environment: [:])
            let engine = engine, service = service, secretsPath = dir + "/secrets.yaml"
            tasks.append(Task { await engine.run() })
            tasks.append(Task { await service.watch(secretsPath: secretsPath) })
            await service.untilWatching()
        }

        func stop() async {
            for task in tasks { task.cancel() }
            for task in tasks { await task.value }
        }

        /// Waits until `condition` holds or `seconds` pass.
        func eventually(_ seconds: Double = 5, _ condition: () async -> Bool) async -> Bool {
            let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
            while ContinuousClock.now < deadline {
                if await condition() { return true }
                try? await Task.sleep(for: .milliseconds(50))
            }
            return await condition()
        }

        func ids() async -> [String] { await engine.snapshot().map(\.id) }
    }

    static func yaml(_ ids: [String], name: String = "Cam", extra: String = "") -> String {
        "settings:\n  interval: 2s\n  timeout: 1s\n" + extra + "streams:\n" + ids.map { "  - id: \($0)\n    name: \(name) \($0)\n    url: http://127.0.0.1:1/\($0)\n" }.joined()
    }

    /// An in-place save is a truncate then a write: a reload that reads between the two sees an empty file,
    /// which must not be taken for "no streams" (seen: the whole fleet dropped mid-save in the config storm).
    @Test func anEmptyFile_isNeverApplied_butStreamsEmptyIs() async throws {
        let rig = try await Rig(yaml: Self.yaml(["a", "b"]))
        try "".write(toFile: rig.path, atomically: false, encoding: .utf8)
        #expect(await rig.eventually { await rig.service.status.errors.first?.contains("is empty") == true })
        #expect(await rig.ids() == ["a", "b"], "the last good config stays active")
        let attempted = await rig.service.status.lastAttempt
        try "  \n".write(toFile: rig.path, atomically: false, encoding: .utf8)
        #expect(await rig.eventually { await rig.service.status.lastAttempt != attempted }, "the watcher tried it")
        #expect(await rig.ids() == ["a", "b"])
        try "streams: []\n".write(toFile: rig.path, atomically: false, encoding: .utf8)
        #expect(await rig.eventually { await rig.ids().isEmpty }, "an explicit empty list removes every stream")
        #expect(await rig.service.status.errors.isEmpty)
        await rig.stop()
    }

    @Test func inPlaceWrite_isApplied() async throws {
        let rig = try await Rig(yaml: Self.yaml(["a"]))
        try Self.yaml(["a", "b"]).write(toFile: rig.path, atomically: false, encoding: .utf8)
        #expect(await rig.eventually { await rig.ids() == ["a", "b"] })
        #expect(await rig.service.lastDiff?.added == ["b"])
        await rig.stop()
    }

    @Test func renameSave_mvOver_isApplied() async throws {
        let rig = try await Rig(yaml: Self.yaml(["a"]))
        try Self.yaml(["a", "c"]).write(toFile: rig.dir + "/.config.yaml.tmp", atomically: false, encoding: .utf8)
        #expect(rename(rig.dir + "/.config.yaml.tmp", rig.path) == 0)
        #expect(await rig.eventually { await rig.ids() == ["a", "c"] })
        await rig.stop()
    }

    @Test func deleteThenRecreate_isApplied_andTheGapChangesNothing() async throws {
        let rig = try await Rig(yaml: Self.yaml(["a", "b"]))
        try FileManager.default.removeItem(atPath: rig.path)
        #expect(await rig.eventually { await rig.service.handledBatches >= 1 })
        #expect(await rig.ids() == ["a", "b"], "a missing file keeps the active config")
        try Self.yaml(["b"]).write(toFile: rig.path, atomically: false, encoding: .utf8)
        #expect(await rig.eventually { await rig.ids() == ["b"] })
        await rig.stop()
    }

    @Test func gitCheckout_ofAnotherCommit_isApplied_andTheCommitIsReported() async throws {
        let rig = try await Rig(yaml: Self.yaml(["a"]))
        func git(_ args: String...) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
            p.arguments = ["-C", rig.dir, "-c", "user.email=t@t", "-c", "user.name=t"] + args
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try launchProcess(p)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "git \(args)")
        }
        try git("init", "-q", "-b", "main")
        try git("add", "config.yaml")
        try git("commit", "-qm", "one stream")
        try git("checkout", "-qb", "more")
        try Self.yaml(["a", "b", "c"]).write(toFile: rig.path, atomically: false, encoding: .utf8)
        try git("commit", "-qam", "three streams")
        #expect(await rig.eventually { await rig.ids() == ["a", "b", "c"] })
        try git("checkout", "-q", "main")
        #expect(await rig.eventually { await rig.ids() == ["a"] })
        let committed = await rig.eventually {
            let commit = await rig.service.status.gitCommit
            return commit != nil && !(commit ?? "").hasSuffix("+changes")
        }
        let commit = await rig.service.status.gitCommit
        #expect(committed, "\(commit ?? "no commit")")
        await rig.stop()
    }

    @Test func configMapSymlinkSwap_isApplied() async throws {
        // Kubernetes layout: config.yaml -> ..data/config.yaml, ..data -> ..2024_01; an update swaps ..data.
        let dir = TestEnvironment.temporaryDirectory("configmap")
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/..v1", withIntermediateDirectories: true)
        try Self.yaml(["a"]).write(toFile: dir + "/..v1/config.yaml", atomically: false, encoding: .utf8)
        try fm.createSymbolicLink(atPath: dir + "/..data", withDestinationPath: "..v1")
        try fm.createSymbolicLink(atPath: dir + "/config.yaml", withDestinationPath: "..data/config.yaml")
        let rig = try await Rig(yaml: Self.yaml(["a"]))
        // Point the rig's service at the ConfigMap directory instead.
        let host = PluginHost(directory: rig.pluginsDir, logger: rig.logs.logger())
        let engine = Engine(config: try #require(ConfigLoader(environment: [:]).load(path: dir + "/config.yaml").config), plugins: host, logger: rig.logs.logger())
        let service = ConfigService(path: dir + "/config.yaml", initial: await engine.currentConfig, initialProblems: [], engine: engine,
                                    plugins: host, scrubber: SecretScrubber(), logger: rig.logs.logger(), environment: [:])
        let watch = Task { await service.watch(secretsPath: nil) }
        await service.untilWatching()
        try fm.createDirectory(atPath: dir + "/..v2", withIntermediateDirectories: true)
        try Self.yaml(["a", "z"]).write(toFile: dir + "/..v2/config.yaml", atomically: false, encoding: .utf8)
        try fm.createSymbolicLink(atPath: dir + "/..data_tmp", withDestinationPath: "..v2")
        #expect(rename(dir + "/..data_tmp", dir + "/..data") == 0)
        #expect(await rig.eventually { await engine.snapshot().map(\.id) == ["a", "z"] })
        watch.cancel()
        await watch.value
        await rig.stop()
    }

    @Test func aBurstOfTwentyWrites_makesOneReload_endingOnTheLastFile() async throws {
        let rig = try await Rig(yaml: Self.yaml(["a"]))
        // Each write closes the file, so a pause longer than the settle time (50 ms) after it may rightly end
        // a batch; on a loaded machine this task can be paused that long, so the writes' own gaps are measured
        // and allowed for.
        var longGaps = 0
        var lastWrite: ContinuousClock.Instant?
        for i in 1...20 {
            try Self.yaml(["a"] + (1...i).map { "s\($0)" }).write(toFile: rig.path, atomically: false, encoding: .utf8)
            if let lastWrite, lastWrite.duration(to: .now) > .milliseconds(40) { longGaps += 1 }
            lastWrite = .now
            try await Task.sleep(for: .milliseconds(12))
        }
        #expect(await rig.eventually { await rig.ids().count == 21 })
        // One more, distinct change as a marker: once it is applied, every batch of the burst was handled.
        let burst = await rig.service.appliedReloads
        try Self.yaml(["a"]).write(toFile: rig.path, atomically: false, encoding: .utf8)
        #expect(await rig.eventually { await rig.ids() == ["a"] })
        let reloads = await rig.service.appliedReloads - 1
        #expect(reloads == burst)
        #expect(reloads >= 1 && reloads <= 1 + longGaps,
                "\(reloads) reloads for the burst (\(longGaps) pauses over 40 ms): \(rig.logs.all.filter { $0.contains("reload") })")
        await rig.stop()
    }

    /// A save that is complete (the writer closed the file, or renamed a whole file into place) is delivered
    /// after the short settle time, not the long quiet time meant for files still being written.
    @Test func aCompletedSave_isDeliveredAfterTheSettleTime_notTheQuietTime() async throws {
        let dir = TestEnvironment.temporaryDirectory("watch")
        let watcher = try DirectoryWatcher(directories: [dir])
        var batches = watcher.batches(quiet: .seconds(60), settle: .milliseconds(50)).makeAsyncIterator()
        // Without the settle path nothing would arrive for 60 s; the watcher is stopped after 20 s instead.
        let timeout = Task { try await Task.sleep(for: .seconds(20)); watcher.stop() }
        defer { timeout.cancel(); watcher.stop() }
        func nextBatch(containing mask: Int32) async -> Bool {
            while let batch = await batches.next() {
                if batch.contains(where: { $0.name == "config.yaml" && $0.mask & UInt32(mask) != 0 }) { return true }
            }
            return false
        }
        let started = ContinuousClock.now
        try "a: 1\n".write(toFile: dir + "/config.yaml", atomically: false, encoding: .utf8)  // in place: MODIFY, CLOSE_WRITE
        #expect(await nextBatch(containing: IN_CLOSE_WRITE))
        try "a: 2\n".write(toFile: dir + "/new.yaml", atomically: false, encoding: .utf8)
        #expect(rename(dir + "/new.yaml", dir + "/config.yaml") == 0)                          // rename-save: MOVED_TO
        #expect(await nextBatch(containing: IN_MOVED_TO))
        #expect(ContinuousClock.now - started < .seconds(20), "the watcher waited for the 60 s quiet time")
    }

    @Test func touch_withoutChanges_reloadsNothing() async throws {
        let rig = try await Rig(yaml: Self.yaml(["a"]))
        try Self.yaml(["a"]).write(toFile: rig.path, atomically: false, encoding: .utf8)
        #expect(await rig.eventually { await rig.service.handledBatches >= 1 })
        #expect(await rig.service.appliedReloads == 0)
        await rig.stop()
    }

    @Test func invalidEdit_keepsTheLastGoodConfig_andReportsLineAndColumn() async throws {
        let rig = try await Rig(yaml: Self.yaml(["a", "b"]))
        try "streams:\n  - id: a\n    url: [broken\n".write(toFile: rig.path, atomically: false, encoding: .utf8)
        #expect(await rig.eventually { await !rig.service.status.errors.isEmpty })
        let errors = await rig.service.status.errors
        #expect(errors.first?.contains("config.yaml:") == true && errors.first?.contains("YAML syntax") == true, "\(errors)")
        #expect(await rig.ids() == ["a", "b"])
        try Self.yaml(["a"]).write(toFile: rig.path, atomically: false, encoding: .utf8)
        #expect(await rig.eventually { await rig.ids() == ["a"] })
        #expect(await rig.service.status.errors.isEmpty)
        await rig.stop()
    }

    @Test func renamingAStream_keepsItsStateAndSchedule() async throws {
        let rig = try await Rig(yaml: Self.yaml(["a", "b"]))
        #expect(await rig.eventually(6) { await rig.engine.snapshot().allSatisfy { $0.lastCheck != nil } })
        let before = try #require(await rig.engine.snapshot(id: "a"))
        try Self.yaml(["a", "b"], name: "Renamed").write(toFile: rig.path, atomically: false, encoding: .utf8)
        #expect(await rig.eventually { await rig.engine.snapshot(id: "a")?.name == "Renamed a" })
        let after = try #require(await rig.engine.snapshot(id: "a"))
        #expect(await rig.service.lastDiff?.relabelled.sorted() == ["a", "b"])
        #expect(after.lastCheck == before.lastCheck && after.since == before.since && after.reason == before.reason)
        await rig.stop()
    }

    @Test func aSecretsChange_restartsOnlyTheStreamsUsingIt() async throws {
        let yaml = """
            settings:
              interval: 1h
            credentials:
              lobby: { username: u }
            streams:
              - id: uses
                url: http://127.0.0.1:1/a
                credentials: lobby
              - id: other
                url: http://127.0.0.1:1/b
            """
        let rig = try await Rig(yaml: yaml, secrets: "lobby:\n  password: one\n")
        try "lobby:\n  password: two\n".write(toFile: rig.dir + "/secrets.yaml", atomically: false, encoding: .utf8)
        #expect(await rig.eventually { await rig.service.lastDiff?.restarted == ["uses"] })
        #expect(await rig.service.appliedReloads == 1)
        await rig.stop()
    }

    @Test func droppingAPluginIntoTheWatchedFolder_startsItsStreams() async throws {
        let cameras = try TestCameras.start()
        let yaml = "settings:\n  interval: 2s\nstreams:\n  - id: snap\n    url: snapshot://127.0.0.1:\(cameras.mjpegPort)/snapshot\n"
        let rig = try await Rig(yaml: yaml)
        #expect(await rig.eventually { await rig.engine.snapshot(id: "snap")?.reason == .noPlugin })
        let example = TestEnvironment.examplePlugin
        try FileManager.default.copyItem(atPath: example, toPath: rig.pluginsDir + "/.snapshot.so.tmp")
        #expect(rename(rig.pluginsDir + "/.snapshot.so.tmp", rig.pluginsDir + "/snapshot.so") == 0)
        #expect(await rig.eventually(8) { await rig.engine.snapshot(id: "snap")?.status == .ok })
        await rig.stop()
    }
}
