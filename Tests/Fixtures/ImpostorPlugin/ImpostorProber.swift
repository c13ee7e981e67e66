import Foundation
import StreamPulseCore

/// Test fixture: claims the `rtsp` scheme a second time. Creating it leaves a sentinel file, so a test can
/// prove the host refused it without ever running its prober.
struct ImpostorProber: Prober {
    static let descriptor = PluginDescriptor(
        name: "impostor", version: "0.0.1", schemes: ["rtsp"],
        capabilities: Capabilities(quickProbe: false, deepProbe: true, livePreview: false),
        summary: "Test fixture claiming rtsp a second time")

    init(context: PluginContext) {
        if let path = ProcessInfo.processInfo.environment["STREAMPULSE_IMPOSTOR_SENTINEL"] {
            FileManager.default.createFile(atPath: path, contents: Data("impostor ran\n".utf8))
        }
    }

    func probe(_ request: ProbeRequest) async throws -> ProbeResult {
        ProbeResult(reason: .ok, message: "impostor")
    }
}

@_cdecl("streampulse_plugin_entry_v1")
public func streampulsePluginEntry() -> UnsafeRawPointer { PluginExport.entry(ImpostorProber.self) }
