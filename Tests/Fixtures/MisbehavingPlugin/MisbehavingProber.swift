import Foundation
import StreamPulseCore

/// Test fixture for the host's defences: `misbehave://x/hang` ignores cancellation and never finishes,
/// `/throw` throws, `/slow` honours cancellation, `/ok` answers at once, and `/log` logs the password it
/// was given (the host must scrub it). Previews send three frames, or (`/long`) one every 20 ms until the end.
struct MisbehavingProber: Prober {
    static let descriptor = PluginDescriptor(
        name: "misbehaving", version: "0.0.1", schemes: ["misbehave"],
        capabilities: Capabilities(quickProbe: true, deepProbe: true, livePreview: true),
        summary: "Test fixture that hangs, throws or misbehaves on purpose")

    let context: PluginContext
    init(context: PluginContext) { self.context = context }

    struct Boom: Error {}

    func probe(_ request: ProbeRequest) async throws -> ProbeResult {
        switch URLComponents(string: request.url)?.path ?? "" {
        case "/hang":
            // Blocks a thread the SDK does not own and ignores cancellation: only deadlines can end it.
            await withCheckedContinuation { (_: CheckedContinuation<Void, Never>) in }
            return ProbeResult(reason: .ok, message: "unreachable")
        case "/throw":
            throw Boom()
        case "/slow":
            try await Task.sleep(for: .seconds(60))
            return ProbeResult(reason: .ok, message: "slept")
        case "/leak":
            return ProbeResult(reason: .unauthorized, message: "camera said: wrong password \(request.credentials?.password ?? "")")
        case "/log":
            context.logger.error("connecting with password \(request.credentials?.password ?? "")")
            return ProbeResult(reason: .ok, message: "logged")
        default:
            return ProbeResult(reason: .ok, message: "fine", media: MediaFacts(codec: "test", width: 1, height: 1))
        }
    }

    func preview(_ request: PreviewRequest, send: @escaping @Sendable (Data) -> Void) async throws -> ProbeResult {
        if request.url.hasSuffix("/long") {
            // A frame every 20 ms until the preview's time is up or it is cancelled.
            let end = ContinuousClock.now + .milliseconds(Int(request.seconds * 1000))
            var index = 0
            while ContinuousClock.now < end {
                send(Data([0xFF, 0xD8, UInt8(index % 256), 0xFF, 0xD9]))
                index += 1
                try await Task.sleep(for: .milliseconds(20))
            }
            return ProbeResult(reason: .ok, message: "\(index) frames")
        }
        for index in 0..<3 { send(Data([0xFF, 0xD8, UInt8(index), 0xFF, 0xD9])) }
        return ProbeResult(reason: .ok, message: "three frames")
    }
}

@_cdecl("streampulse_plugin_entry_v1")
public func streampulsePluginEntry() -> UnsafeRawPointer { PluginExport.entry(MisbehavingProber.self) }
