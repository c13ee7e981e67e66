import Foundation
import Logging

/// What the SDK hands a prober when the host first needs it.
public struct PluginContext: Sendable {
    /// Log lines go to the host's logger (labelled with the plugin's name). Never log credentials.
    public let logger: Logger
}

/// A protocol prober: the one type a plugin author writes.
///
/// Contract:
/// - `descriptor` is static data; the host may read it without creating a prober.
/// - `init(context:)` runs once, on the first probe or preview, never while the host only inspects.
/// - `probe` and `preview` may run concurrently for different streams. They must honour task cancellation
///   and the request's `timeoutMs`; the SDK answers `timeout` on their behalf when they overrun, and the
///   host has its own watchdog on top.
/// - Thrown errors become a `plugin_error` result; they never cross the boundary.
/// - Blocking calls (C libraries, sockets in blocking mode) must run on the plugin's own threads, never on
///   Swift's cooperative pool, which the host shares.
public protocol Prober: Sendable {
    /// Name, version, schemes and capabilities of this plugin.
    static var descriptor: PluginDescriptor { get }

    /// Creates the prober. Called at most once per process.
    init(context: PluginContext)

    /// Probes one stream once.
    func probe(_ request: ProbeRequest) async throws -> ProbeResult

    /// Sends JPEG frames through `send` for `request.seconds`, then returns how it ended.
    func preview(_ request: PreviewRequest, send: @escaping @Sendable (Data) -> Void) async throws -> ProbeResult
}

extension Prober {
    /// Plugins without live preview answer `unsupported`.
    public func preview(_ request: PreviewRequest, send: @escaping @Sendable (Data) -> Void) async throws -> ProbeResult {
        .failure(.unsupported, phase: .preview, "The \(Self.descriptor.name) plugin has no live preview.")
    }
}

/// Errors a prober may throw to end a probe with a specific class (other errors become `plugin_error`).
public struct ProbeFailure: Error, Sendable {
    public var result: ProbeResult
    public init(_ reason: Reason, phase: Phase?, _ message: String) {
        result = .failure(reason, phase: phase, message)
    }
}
