import Foundation
import Logging
import PluginABI
import Synchronization

/// Turns a `Prober` type into the C table of plugin protocol version 1.
///
/// A plugin exports it with one declaration:
/// ```swift
/// @_cdecl("streampulse_plugin_entry_v1")
/// public func streampulsePluginEntry() -> UnsafeRawPointer { PluginExport.entry(MyProber.self) }
/// ```
public enum PluginExport {
    /// One table per `Prober` type (a plugin library has one; an in-process test may build several).
    private static let tables = Mutex<[ObjectIdentifier: UnsafeRawPointer]>([:])

    /// Returns this plugin's `sp_plugin_v1` table, creating it on the first call. The table lives forever.
    ///
    /// Every function in the table tolerates what a careless host might pass: a NULL request pointer (read as
    /// an empty request, answered `invalid_request`), a NULL completion (the call is refused with id 0), a NULL
    /// frame callback (frames are dropped) and a NULL context (ignored). None of them can crash the host.
    public static func entry<P: Prober>(_ type: P.Type) -> UnsafeRawPointer {
        tables.withLock { tables in
            if let cached = tables[ObjectIdentifier(type)] { return cached }
            let runtime = PluginRuntime(descriptor: P.descriptor, make: { P(context: $0) })
            let pointer = UnsafeMutablePointer<sp_plugin_v1>.allocate(capacity: 1)
            pointer.initialize(to: sp_plugin_v1(
                abi_version: PluginProtocol.version,
                struct_size: UInt32(MemoryLayout<sp_plugin_v1>.size),
                context: Unmanaged.passRetained(runtime).toOpaque(),
                describe: { context in PluginRuntime.from(context)?.descriptorJSON ?? PluginRuntime.emptyJSON },
                set_log: { context, user, log in PluginRuntime.from(context)?.setLog(user: user, log: log) },
                probe: { context, bytes, length, user, done in
                    PluginRuntime.from(context)?.startProbe(PluginRuntime.copy(bytes, length), user: user, done: done) ?? 0
                },
                preview: { context, bytes, length, user, frame, done in
                    PluginRuntime.from(context)?.startPreview(PluginRuntime.copy(bytes, length), user: user, frame: frame, done: done) ?? 0
                },
                cancel: { context, id in PluginRuntime.from(context)?.cancel(id) }
            ))
            let table = UnsafeRawPointer(pointer)
            tables[ObjectIdentifier(type)] = table
            return table
        }
    }
}

/// The plugin-side state behind the C table: the lazily created prober and the calls in flight.
final class PluginRuntime: Sendable {
    /// A C callback and its opaque argument, carried across threads; the host guarantees they stay valid.
    struct Callback<F>: @unchecked Sendable {
        let user: UnsafeMutableRawPointer?
        let function: F
    }

    let descriptor: PluginDescriptor
    /// NUL-terminated JSON, allocated once and never freed (the host may keep the pointer).
    nonisolated(unsafe) let descriptorJSON: UnsafePointer<CChar>
    private let make: @Sendable (PluginContext) -> any Prober
    private let prober = Mutex<(any Prober)?>(nil)
    private let logSink = Mutex<Callback<sp_log_fn>?>(nil)
    private let calls = Mutex<(next: UInt64, tasks: [UInt64: Task<Void, Never>])>((1, [:]))

    init(descriptor: PluginDescriptor, make: @escaping @Sendable (PluginContext) -> any Prober) {
        self.descriptor = descriptor
        self.make = make
        let json = (try? Wire.encode(descriptor)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
        self.descriptorJSON = UnsafePointer(strdup(json)!)
    }

    /// `"{}"`, answered by `describe` for a NULL context.
    nonisolated(unsafe) static let emptyJSON: UnsafePointer<CChar> = UnsafePointer(strdup("{}")!)

    /// The runtime behind the `context` member of the table (which holds a retained PluginRuntime).
    static func from(_ context: UnsafeMutableRawPointer?) -> PluginRuntime? {
        guard let context else { return nil }
        return Unmanaged<PluginRuntime>.fromOpaque(context).takeUnretainedValue()
    }

    /// The request bytes as `Data`; a NULL pointer or zero length is an empty request.
    static func copy(_ bytes: UnsafePointer<UInt8>?, _ length: Int) -> Data {
        guard let bytes, length > 0 else { return Data() }
        return Data(bytes: bytes, count: length)
    }

    func setLog(user: UnsafeMutableRawPointer?, log: sp_log_fn?) {
        logSink.withLock { $0 = log.map { Callback(user: user, function: $0) } }
    }

    private func instance() -> any Prober {
        prober.withLock { current in
            if let current { return current }
            let logger = Logger(label: "plugin.\(descriptor.name)") { [self] label in
                HostLogHandler(label: label, sink: { level, message in self.log(level, message) })
            }
            let created = make(PluginContext(logger: logger))
            current = created
            return created
        }
    }

    private func log(_ level: Logger.Level, _ message: String) {
        guard let sink = logSink.withLock({ $0 }) else { return }
        let level: Int32 = switch level {
        case .trace: Int32(SP_LOG_TRACE)
        case .debug: Int32(SP_LOG_DEBUG)
        case .info: Int32(SP_LOG_INFO)
        case .notice: Int32(SP_LOG_NOTICE)
        case .warning: Int32(SP_LOG_WARNING)
        case .error: Int32(SP_LOG_ERROR)
        case .critical: Int32(SP_LOG_CRITICAL)
        }
        URLRedaction.scrub(message, secrets: []).withCString { sink.function(sink.user, level, $0) }
    }

    func startProbe(_ json: Data, user: UnsafeMutableRawPointer?, done: sp_done_fn?) -> UInt64 {
        guard let done else { return 0 }  // nobody to answer: refuse the call
        let reply = Callback(user: user, function: done)
        let request: ProbeRequest
        do {
            request = try Wire.decode(ProbeRequest.self, from: json)
        } catch {
            Self.deliver(.failure(.invalidRequest, phase: .request, "The plugin could not read the probe request: \(error)"), to: reply)
            return 0
        }
        return start(timeoutMs: request.timeoutMs, phase: .plugin, reply: reply) { prober in
            try await prober.probe(request)
        }
    }

    func startPreview(_ json: Data, user: UnsafeMutableRawPointer?, frame: sp_frame_fn?, done: sp_done_fn?) -> UInt64 {
        guard let done else { return 0 }  // nobody to answer: refuse the call
        let reply = Callback(user: user, function: done)
        let sendFrame = frame.map { Callback(user: user, function: $0) }
        let request: PreviewRequest
        do {
            request = try Wire.decode(PreviewRequest.self, from: json)
        } catch {
            Self.deliver(.failure(.invalidRequest, phase: .request, "The plugin could not read the preview request: \(error)"), to: reply)
            return 0
        }
        // Frames must stop before the completion: `open` is cleared under the same lock that sends.
        let open = Mutex(true)
        let budget = request.timeoutMs + Int(request.seconds * 1000)
        return start(timeoutMs: budget, phase: .preview, reply: reply, beforeDone: { open.withLock { $0 = false } }) { prober in
            try await prober.preview(request) { jpeg in
                open.withLock { isOpen in
                    guard isOpen, let sendFrame else { return }
                    jpeg.withUnsafeBytes { raw in
                        sendFrame.function(sendFrame.user, raw.bindMemory(to: UInt8.self).baseAddress, raw.count)
                    }
                }
            }
        }
    }

    /// Runs `work` in a task, racing it against the timeout; exactly one completion reaches the host.
    private func start(
        timeoutMs: Int, phase: Phase, reply: Callback<sp_done_fn>, beforeDone: @escaping @Sendable () -> Void = {},
        work: @escaping @Sendable (any Prober) async throws -> ProbeResult
    ) -> UInt64 {
        let finished = Mutex(false)
        let started = ContinuousClock.now
        let finish: @Sendable (ProbeResult) -> Void = { result in
            guard finished.withLock({ done in defer { done = true }; return !done }) else { return }
            beforeDone()
            var result = result
            if result.timings.totalMs == nil { result.timings.totalMs = started.duration(to: .now).milliseconds }
            Self.deliver(result, to: reply)
        }
        let id = calls.withLock { state -> UInt64 in
            let id = state.next
            state.next += 1
            return id
        }
        let prober = instance()
        // The work runs in its own task so the watchdog can cancel it: a prober that overruns its deadline
        // (plus a grace period) is answered for and told to stop, not left running. The watchdog is not a
        // child of the call, so it still answers when the host cancels a prober that ignores cancellation.
        let job = Task.detached { [descriptor] () -> ProbeResult in
            do {
                return try await work(prober)
            } catch let failure as ProbeFailure {
                return failure.result
            } catch is CancellationError {
                return .failure(.cancelled, phase: phase, "The probe was cancelled.")
            } catch {
                return .failure(.pluginError, phase: .plugin, "The \(descriptor.name) plugin failed: \(error)")
            }
        }
        let watchdog = Task.detached {
            try? await Task.sleep(for: .milliseconds(timeoutMs + 500))
            guard !Task.isCancelled else { return }
            finish(.failure(.timeout, phase: phase, "The plugin did not finish within its \(timeoutMs) ms deadline."))
            job.cancel()
        }
        let task = Task.detached { [self] in
            let result = await withTaskCancellationHandler { await job.value } onCancel: { job.cancel() }
            watchdog.cancel()
            finish(Task.isCancelled && result.reason != .ok ? ProbeResult.failure(.cancelled, phase: result.phase ?? phase, "The probe was cancelled.") : result)
            calls.withLock { _ = $0.tasks.removeValue(forKey: id) }
        }
        calls.withLock { state in
            // The task may already have finished and tried to remove itself; only keep live ones.
            if !finished.withLock({ $0 }) { state.tasks[id] = task }
        }
        return id
    }

    func cancel(_ id: UInt64) {
        calls.withLock { $0.tasks[id] }?.cancel()
    }

    private static func deliver(_ result: ProbeResult, to reply: Callback<sp_done_fn>) {
        let json = (try? Wire.encode(result)) ?? Data(#"{"reason":"plugin_error","message":"unencodable result","timings":{}}"#.utf8)
        json.withUnsafeBytes { raw in
            reply.function(reply.user, raw.bindMemory(to: UInt8.self).baseAddress, raw.count)
        }
    }
}

/// Forwards swift-log records to the host's log callback.
struct HostLogHandler: LogHandler {
    let label: String
    let sink: @Sendable (Logger.Level, String) -> Void
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
        file: String, function: String, line: UInt
    ) {
        let merged = metadata.merging(explicit ?? [:]) { $1 }
        let suffix = merged.isEmpty ? "" : " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        sink(level, "\(message)\(suffix)")
    }
}

extension Duration {
    /// The duration in milliseconds, as a Double.
    public var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}
