import Foundation
import Logging
import PluginABI
import StreamPulseCore
import Synchronization

/// A plugin that passed every check and is loaded for the life of the process.
///
/// Wraps the C table with async Swift calls. Every call is bounded by the request's deadline plus a grace
/// period even when the plugin never calls back, and task cancellation is forwarded to the plugin.
public final class LoadedPlugin: Sendable {
    public let path: String
    public let descriptor: PluginDescriptor
    /// Identity of the file when loaded, to notice replacement.
    let fileIdentity: FileIdentity
    nonisolated(unsafe) let table: UnsafePointer<sp_plugin_v1>
    /// Extra time the host waits for a plugin past the request's own deadline.
    public static let watchdogGrace: Duration = .milliseconds(1500)

    /// Every message a plugin returns passes through it: known passwords never leave this type.
    let scrubber: SecretScrubber

    init(path: String, descriptor: PluginDescriptor, fileIdentity: FileIdentity, table: UnsafePointer<sp_plugin_v1>, scrubber: SecretScrubber) {
        self.scrubber = scrubber
        self.path = path
        self.descriptor = descriptor
        self.fileIdentity = fileIdentity
        self.table = table
    }

    public var name: String { descriptor.name }

    /// Runs one probe. Never throws: every failure, including a silent plugin, is a `ProbeResult`.
    public func probe(_ request: ProbeRequest) async -> ProbeResult {
        var result = await call(timeoutMs: request.timeoutMs, phase: .plugin, encode: { try Wire.encode(request) }, onFrame: nil) { table, json, user in
            json.withUnsafeBytes { raw in
                table.pointee.probe(table.pointee.context, raw.bindMemory(to: UInt8.self).baseAddress, raw.count, user, hostDone)
            }
        }
        result.message = scrubber.scrub(result.message, extra: [request.credentials?.password])
        return result
    }

    /// Runs a live preview, handing each JPEG frame to `onFrame` (on the plugin's thread, in order).
    public func preview(_ request: PreviewRequest, onFrame: @escaping @Sendable (Data) -> Void) async -> ProbeResult {
        guard descriptor.capabilities.livePreview else {
            return .failure(.unsupported, phase: .preview, "The \(name) plugin has no live preview.")
        }
        // The host's own bound, whatever a caller passed: a non-finite or huge length must not trap here.
        guard request.seconds.isFinite, (0...3600).contains(request.seconds), (0...3_600_000).contains(request.timeoutMs) else {
            return .failure(.invalidRequest, phase: .preview, "Preview length \(request.seconds) s is not between 0 and 3600 s.")
        }
        let budget = request.timeoutMs + Int(request.seconds * 1000)
        var result = await call(timeoutMs: budget, phase: .preview, encode: { try Wire.encode(request) }, onFrame: onFrame) { table, json, user in
            json.withUnsafeBytes { raw in
                table.pointee.preview(
                    table.pointee.context, raw.bindMemory(to: UInt8.self).baseAddress, raw.count, user, hostFrame, hostDone)
            }
        }
        result.message = scrubber.scrub(result.message, extra: [request.credentials?.password])
        return result
    }

    private func call(
        timeoutMs: Int, phase: Phase, encode: () throws -> Data, onFrame: (@Sendable (Data) -> Void)?,
        start: (UnsafePointer<sp_plugin_v1>, Data, UnsafeMutableRawPointer) -> UInt64
    ) async -> ProbeResult {
        let json: Data
        do { json = try encode() } catch {
            return .failure(.invalidRequest, phase: .request, "The request could not be encoded: \(error)")
        }
        let pending = PendingCall(pluginName: name, onFrame: onFrame)
        let table = self.table
        let plugin = name
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ProbeResult, Never>) in
                // Cancelled before the call began (the handler already ran): answer now, start nothing.
                guard pending.install(continuation) else {
                    continuation.resume(returning: .failure(.cancelled, phase: nil, "The probe was cancelled before it started."))
                    return
                }
                // One retain belongs to the plugin and is released by `hostDone`.
                let user = Unmanaged.passRetained(pending).toOpaque()
                let id = start(table, json, user)
                pending.started(id: id)
                // The watchdog answers for a plugin that never calls back; its late answer is then dropped.
                // It is cancelled as soon as the plugin answers, so thousands of calls leave no sleepers.
                pending.setWatchdog(Task.detached {
                    try? await Task.sleep(for: .milliseconds(timeoutMs) + LoadedPlugin.watchdogGrace)
                    guard !Task.isCancelled else { return }
                    if pending.resume(with: .failure(
                        .timeout, phase: phase,
                        "The \(plugin) plugin did not answer within its \(timeoutMs) ms deadline; the call was abandoned."))
                    {
                        if let id = pending.callID { self.cancelCall(id) }
                    }
                })
            }
        } onCancel: {
            if let id = pending.callID { self.cancelCall(id) }
            pending.cancelRequested()
        }
    }
}

extension LoadedPlugin {
    /// Asks the plugin to stop a call; harmless when it already finished.
    func cancelCall(_ id: UInt64) {
        table.pointee.cancel(table.pointee.context, id)
    }
}

/// State of one call across the C boundary: resumed exactly once, by the plugin or the watchdog.
final class PendingCall: Sendable {
    private struct State {
        var continuation: CheckedContinuation<ProbeResult, Never>?
        var resumed = false
        var callID: UInt64?
        var watchdog: Task<Void, Never>?
    }
    private let state = Mutex(State())
    let pluginName: String
    let onFrame: (@Sendable (Data) -> Void)?

    init(pluginName: String, onFrame: (@Sendable (Data) -> Void)?) {
        self.pluginName = pluginName
        self.onFrame = onFrame
    }

    /// Keeps the continuation to resume; false when the call was already answered (cancelled before it
    /// began), in which case nobody else will ever resume it.
    func install(_ continuation: CheckedContinuation<ProbeResult, Never>) -> Bool {
        state.withLock { state in
            guard !state.resumed else { return false }
            state.continuation = continuation
            return true
        }
    }

    func started(id: UInt64) { state.withLock { $0.callID = id == 0 ? nil : id } }

    /// Keeps the watchdog so an answer can cancel it (or cancels it at once if the answer came first).
    func setWatchdog(_ task: Task<Void, Never>) {
        let already = state.withLock { state -> Bool in
            state.watchdog = task
            return state.resumed
        }
        if already { task.cancel() }
    }
    var callID: UInt64? { state.withLock { $0.callID } }
    var isResumed: Bool { state.withLock { $0.resumed } }

    /// Resumes the waiting task unless it already was; returns whether this call did it.
    @discardableResult
    func resume(with result: ProbeResult) -> Bool {
        let (continuation, watchdog) = state.withLock { state -> (CheckedContinuation<ProbeResult, Never>?, Task<Void, Never>?) in
            guard !state.resumed else { return (nil, nil) }
            state.resumed = true
            defer { state.continuation = nil; state.watchdog = nil }
            return (state.continuation, state.watchdog)
        }
        watchdog?.cancel()
        continuation?.resume(returning: result)
        return continuation != nil
    }

    /// Cancellation before the plugin had even started: nothing will call back with a useful answer soon.
    func cancelRequested() {
        if callID == nil { _ = resume(with: .failure(.cancelled, phase: nil, "The probe was cancelled.")) }
    }
}

/// Completion from the plugin: decode, resume, release the plugin's retain.
private let hostDone: sp_done_fn = { user, bytes, length in
    let pending = Unmanaged<PendingCall>.fromOpaque(user!).takeRetainedValue()
    let data = bytes.map { Data(bytes: $0, count: length) } ?? Data()
    let result: ProbeResult
    do {
        result = try Wire.decode(ProbeResult.self, from: data)
    } catch {
        result = .failure(.pluginError, phase: .plugin, "The \(pending.pluginName) plugin answered with a result the host cannot read (\(data.count) bytes).")
    }
    pending.resume(with: result)
}

/// A preview frame from the plugin; dropped once the call has ended.
private let hostFrame: sp_frame_fn = { user, bytes, length in
    let pending = Unmanaged<PendingCall>.fromOpaque(user!).takeUnretainedValue()
    guard let bytes, length > 0, !pending.isResumed, let onFrame = pending.onFrame else { return }
    onFrame(Data(bytes: bytes, count: length))
}

/// Device and inode of a file, to tell a replaced plugin from the loaded one.
struct FileIdentity: Sendable, Equatable {
    var device: UInt64
    var inode: UInt64
    var modified: Int

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        modified = Int(info.st_mtim.tv_sec)
    }
}
