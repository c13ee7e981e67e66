import Foundation
import PluginABI
import StreamPulseCore
import Synchronization

/// Runs a `Prober` in process through the same C table the host loads from `plugins.d/`, playing the host's
/// part: it reads the descriptor, installs a log sink, sends requests as JSON and waits for the completion.
///
/// What passes here passes the real boundary (JSON both ways, one completion per call, frames before the
/// completion), without building a `.so` or starting `streampulse`:
/// ```swift
/// let harness = ProberHarness(SnapshotProber.self)
/// let result = await harness.probe(ProbeRequest(url: "snapshot://127.0.0.1:\(port)/x.jpg", mode: .deep, timeoutMs: 2000))
/// #expect(result.reason == .ok)
/// ```
public final class ProberHarness: Sendable {
    /// One line the plugin logged.
    public struct LogLine: Sendable, Equatable {
        /// `SP_LOG_*` level (0 trace … 6 critical).
        public var level: Int32
        public var message: String
    }

    /// The descriptor as the host reads it: decoded from the table's `describe` JSON.
    public let descriptor: PluginDescriptor
    private nonisolated(unsafe) let table: UnsafePointer<sp_plugin_v1>
    private let logs: LogBox

    /// A harness for `type`, through `PluginExport.entry` exactly as the plugin exports it.
    public convenience init<P: Prober>(_ type: P.Type) {
        self.init(table: PluginExport.entry(type))
    }

    /// A harness for a table returned by a plugin's `streampulse_plugin_entry_v1`.
    public init(table raw: UnsafeRawPointer) {
        let table = raw.assumingMemoryBound(to: sp_plugin_v1.self)
        self.table = table
        let json = table.pointee.describe.flatMap { $0(table.pointee.context) }.map { String(cString: $0) } ?? "{}"
        descriptor = (try? Wire.decode(PluginDescriptor.self, from: Data(json.utf8)))
            ?? PluginDescriptor(name: "", version: "", schemes: [], capabilities: Capabilities(quickProbe: false, deepProbe: false, livePreview: false))
        // The sink outlives any one harness: the plugin keeps the pointer until the next `set_log`.
        logs = LogBox()
        table.pointee.set_log?(table.pointee.context, Unmanaged.passRetained(logs).toOpaque()) { user, level, message in
            guard let user, let message else { return }
            Unmanaged<LogBox>.fromOpaque(user).takeUnretainedValue().lines.withLock {
                $0.append(LogLine(level: level, message: String(cString: message)))
            }
        }
    }

    /// Every line logged since this harness installed its sink.
    public var logLines: [LogLine] { logs.lines.withLock { $0 } }

    /// Runs one probe and returns its result.
    public func probe(_ request: ProbeRequest) async -> ProbeResult {
        await start(request).result()
    }

    /// Starts one probe; the call can be cancelled before its result is awaited.
    public func start(_ request: ProbeRequest) -> Call {
        start(rawRequest: (try? Wire.encode(request)).map { [UInt8]($0) })
    }

    /// Starts a probe from raw request bytes as a careless host might send them: `nil` passes a NULL pointer
    /// with length 0. The plugin must answer (`invalid_request`), never crash.
    public func start(rawRequest: [UInt8]?) -> Call {
        let call = Call(table: table)
        let user = Unmanaged.passRetained(call.box).toOpaque()
        let done: sp_done_fn = { user, bytes, length in Call.complete(user, bytes, length) }
        let id: UInt64
        if let rawRequest {
            id = rawRequest.withUnsafeBufferPointer { table.pointee.probe(table.pointee.context, $0.baseAddress, $0.count, user, done) }
        } else {
            id = table.pointee.probe(table.pointee.context, nil, 0, user, done)
        }
        call.id = id
        return call
    }

    /// Runs one live preview, collecting its frames, and returns them with the completion.
    public func preview(_ request: PreviewRequest) async -> (frames: [Data], result: ProbeResult) {
        let call = Call(table: table)
        let user = Unmanaged.passRetained(call.box).toOpaque()
        let bytes = (try? Wire.encode(request)).map { [UInt8]($0) } ?? []
        call.id = bytes.withUnsafeBufferPointer { buffer in
            table.pointee.preview(
                table.pointee.context, buffer.baseAddress, buffer.count, user,
                { user, jpeg, length in Call.frame(user, jpeg, length) },
                { user, bytes, length in Call.complete(user, bytes, length) })
        }
        let result = await call.result()
        return (call.box.state.withLock { $0.frames }, result)
    }

    /// One started probe or preview. Its completion box stays retained for the life of the process (the
    /// plugin holds the pointer; one that answers twice must not reach freed memory): fine for a test run.
    public final class Call: Sendable {
        final class Box: Sendable {
            struct State {
                var result: ProbeResult?
                var waiter: CheckedContinuation<ProbeResult, Never>?
                var frames: [Data] = []
                var completions = 0
                var framesAfterCompletion = 0
            }
            let state = Mutex(State())
        }

        let box = Box()
        private nonisolated(unsafe) let table: UnsafePointer<sp_plugin_v1>
        private let callID = Mutex<UInt64>(0)

        init(table: UnsafePointer<sp_plugin_v1>) { self.table = table }

        /// The plugin's call id (0 when the plugin refused the call).
        public internal(set) var id: UInt64 {
            get { callID.withLock { $0 } }
            set { callID.withLock { $0 = newValue } }
        }

        /// Asks the plugin to stop the call (the completion still arrives).
        public func cancel() { table.pointee.cancel(table.pointee.context, id) }

        /// The completion, once it arrives.
        public func result() async -> ProbeResult {
            await withCheckedContinuation { continuation in
                let ready: ProbeResult? = box.state.withLock { state in
                    if let result = state.result { return result }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }

        /// How many completions the plugin delivered (the protocol allows exactly one).
        public var completions: Int { box.state.withLock { $0.completions } }
        /// Frames delivered after the completion (the protocol allows none).
        public var framesAfterCompletion: Int { box.state.withLock { $0.framesAfterCompletion } }

        static func complete(_ user: UnsafeMutableRawPointer?, _ bytes: UnsafePointer<UInt8>?, _ length: Int) {
            guard let user else { return }
            let box = Unmanaged<Box>.fromOpaque(user).takeUnretainedValue()
            let json = bytes.map { Data(bytes: $0, count: length) } ?? Data()
            let result = (try? Wire.decode(ProbeResult.self, from: json))
                ?? .failure(.pluginError, phase: .plugin, "The plugin answered a completion that is not a ProbeResult.")
            let waiter: CheckedContinuation<ProbeResult, Never>? = box.state.withLock { state in
                state.completions += 1
                guard state.completions == 1 else { return nil }
                state.result = result
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: result)
        }

        static func frame(_ user: UnsafeMutableRawPointer?, _ jpeg: UnsafePointer<UInt8>?, _ length: Int) {
            guard let user, let jpeg else { return }
            let box = Unmanaged<Box>.fromOpaque(user).takeUnretainedValue()
            box.state.withLock { state in
                if state.completions > 0 { state.framesAfterCompletion += 1 } else { state.frames.append(Data(bytes: jpeg, count: length)) }
            }
        }
    }

    final class LogBox: Sendable {
        let lines = Mutex<[LogLine]>([])
    }
}
