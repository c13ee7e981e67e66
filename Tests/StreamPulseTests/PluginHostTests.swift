import Foundation
import Logging
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// Loading real plugin files: what is refused, why, and whether any of its code ran.
@Suite(.serialized) struct PluginHostTests {
    /// Files mapped into this process, from /proc/self/maps: a file never dlopen'd never appears.
    static func mapped(_ path: String) -> Bool {
        let maps = (try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8)) ?? ""
        return maps.contains(path)
    }

    /// Copies a plugin and rewrites the protocol version in its `.streampulse_abi` marker, as if it had
    /// been built against another major version of the SDK.
    static func copy(_ source: String, to destination: String, abiVersion: UInt32) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: source)))
        let magic = Array("SPPLUGIN".utf8)
        let facts = try ELFInspector.inspect(Data(bytes))
        #expect(facts.abiVersion == 1)
        var index = 0
        var patched = 0
        while index + 16 <= bytes.count {
            if bytes[index] == magic[0], Array(bytes[index..<index + 8]) == magic,
               bytes[index + 8] == 1, bytes[index + 9] == 0, bytes[index + 12] == 16 {
                withUnsafeBytes(of: abiVersion.littleEndian) { for (i, b) in $0.enumerated() { bytes[index + 8 + i] = b } }
                patched += 1
                index += 16
            } else {
                index += 1
            }
        }
        #expect(patched >= 1)
        try Data(bytes).write(to: URL(fileURLWithPath: destination))
    }

    @Test func elfInspector_readsTheMarkerAndEntryPoint_ofARealPlugin() async throws {
        let facts = try ELFInspector.inspect(path: TestEnvironment.product("StreamPulseRTSP"))
        #expect(facts.abiVersion == 1)
        #expect(facts.hasEntryPointV1)
    }

    @Test func elfInspector_refusesTextAndGarbage() {
        #expect(throws: PluginRefusal.notELF) { try ELFInspector.inspect(Data("not a library\n".utf8)) }
        #expect(throws: PluginRefusal.notELF) { try ELFInspector.inspect(Data()) }
        var truncated = Data([0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0])
        truncated.append(Data(repeating: 0, count: 8))
        #expect(throws: (any Error).self) { try ELFInspector.inspect(truncated) }
        // Random bytes after a valid-looking header must not crash the reader.
        for seed in 0..<50 {
            var generator = SplitMix(seed: UInt64(seed))
            var bytes = [UInt8](repeating: 0, count: 4096).map { _ in UInt8.random(in: 0...255, using: &generator) }
            bytes.replaceSubrange(0..<8, with: [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0])
            bytes[16] = 3; bytes[17] = 0; bytes[18] = 62; bytes[19] = 0
            _ = try? ELFInspector.inspect(Data(bytes))
        }
    }

    @Test func host_loadsGoodPlugins_andRefusesEveryBadFile_withoutRunningTheirCode() async throws {
        let dir = try TestEnvironment.pluginsDirectory()
        let sentinel = TestEnvironment.temporaryDirectory("sentinel") + "/impostor-ran"
        setenv("STREAMPULSE_IMPOSTOR_SENTINEL", sentinel, 1)
        // A plugin built for protocol version 2, a text file named .so, a real shared library that is not
        // a plugin, and a second plugin claiming rtsp ("zz" sorts after rtsp.so, so rtsp.so claims first).
        try Self.copy(TestEnvironment.product("StreamPulseMJPEG"), to: dir + "/future-v2.so", abiVersion: 2)
        try "this is not a library\n".write(toFile: dir + "/notes.so", atomically: true, encoding: .utf8)
        let foreign = ["/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libavutil.so"]
            .first { FileManager.default.fileExists(atPath: $0) }!
        try FileManager.default.copyItem(atPath: URL(fileURLWithPath: foreign).resolvingSymlinksInPath().path, toPath: dir + "/random.so")
        // A dangling symlink is reported, not skipped silently.
        try FileManager.default.createSymbolicLink(atPath: dir + "/dangling.so", withDestinationPath: dir + "/missing-target")
        try FileManager.default.copyItem(atPath: TestEnvironment.product("StreamPulseTestImpostor"), toPath: dir + "/zz-impostor.so")

        let logs = CapturedLogs()
        let host = PluginHost(directory: dir, logger: logs.logger())
        host.scan()

        #expect(host.plugins.map(\.name).sorted() == ["mjpeg", "rtsp"])
        #expect(host.plugin(for: "rtsp://cam/1")?.name == "rtsp")
        let refused = Dictionary(uniqueKeysWithValues: host.refused.map { (($0.path as NSString).lastPathComponent, $0) })
        #expect(refused["future-v2.so"]?.refusal == .protocolVersion(found: 2, supported: [1]))
        #expect(refused["notes.so"]?.refusal == .notELF)
        #expect(refused["random.so"]?.refusal == .notAPlugin)
        #expect(refused["zz-impostor.so"]?.refusal == .duplicateScheme(scheme: "rtsp", ownedBy: "rtsp"))
        #expect(refused["dangling.so"]?.refusal == .unreadable("No such file or directory"))
        // Refused before dlopen: never mapped, so not one instruction of theirs ran.
        for name in ["future-v2.so", "notes.so", "random.so"] {
            #expect(refused[name]?.beforeLoading == true)
            #expect(!Self.mapped(dir + "/" + name), "\(name) was mapped into the process")
        }
        // The impostor's descriptor (static data) was read, but its prober was never created.
        #expect(!FileManager.default.fileExists(atPath: sentinel))
        // Every refusal is logged with the file and the cause.
        let text = logs.all.joined(separator: "\n")
        #expect(text.contains("future-v2.so refused: it speaks plugin protocol version 2; this host supports version 1"))
        #expect(text.contains("notes.so refused: it is not a shared library"))
        #expect(text.contains("random.so refused: it is a shared library but not a StreamPulse plugin"))
        #expect(text.contains("zz-impostor.so refused: it claims scheme 'rtsp', which plugin 'rtsp' already handles"))
    }

    @Test func rescan_loadsANewPlugin_andReportsAReplacedOne() async throws {
        let dir = try TestEnvironment.pluginsDirectory()
        let logs = CapturedLogs()
        let host = PluginHost(directory: dir, logger: logs.logger())
        #expect(host.scan().count == 2)
        #expect(host.scan().isEmpty)
        try FileManager.default.copyItem(atPath: TestEnvironment.product("StreamPulseTestMisbehaving"), toPath: dir + "/misbehaving.so")
        #expect(host.scan().map(\.name) == ["misbehaving"])
        // Replace rtsp.so with a new file: code is never unloaded, so the host asks for a restart.
        try FileManager.default.removeItem(atPath: dir + "/rtsp.so")
        try FileManager.default.copyItem(atPath: TestEnvironment.product("StreamPulseRTSP"), toPath: dir + "/rtsp.so")
        host.scan()
        #expect(logs.all.contains { $0.contains("restart to upgrade rtsp") })
        #expect(host.plugin(for: "rtsp://x/y") != nil)
    }
}

/// A deterministic random source for the ELF robustness test.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
