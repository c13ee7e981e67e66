import Foundation
import StreamPulseCore
import StreamPulseProberKit

/// Probes cameras that only offer a still JPEG over HTTP, under the `snapshot://` scheme:
/// `snapshot://camera.local:8080/cgi-bin/snapshot.jpg` fetches `http://camera.local:8080/cgi-bin/snapshot.jpg`
/// and checks that a complete JPEG comes back.
struct SnapshotProber: Prober {
    static let descriptor = PluginDescriptor(
        name: "snapshot", version: "0.1.0", schemes: ["snapshot"],
        capabilities: Capabilities(quickProbe: false, deepProbe: true, livePreview: false),
        summary: "Example third-party plugin: JPEG snapshot URLs over HTTP")

    /// Blocking socket work stays off Swift's cooperative pool.
    let pool = BlockingPool(name: "snapshot", threads: 2)
    let context: PluginContext

    init(context: PluginContext) { self.context = context }

    func probe(_ request: ProbeRequest) async throws -> ProbeResult {
        guard let url = URLComponents(string: request.url), let host = url.host else {
            throw ProbeFailure(.invalidRequest, phase: .request, "Not a snapshot:// URL with a host.")
        }
        let clock = ProbeClock(timeoutMs: request.timeoutMs)
        let path = url.percentEncodedPath.isEmpty ? "/" : url.percentEncodedPath
        let port = url.port ?? 80
        return await withTaskCancellationHandler {
            await pool.run {
                do {
                    return try fetch(host: host, port: port, path: path, clock: clock)
                } catch let failure as ProbeFailure {
                    return failure.result
                } catch {
                    return .failure(.protocolError, phase: .handshake, "Reading the snapshot failed: \(error).")
                }
            }
        } onCancel: {
            clock.cancel()
        }
    }

    private func fetch(host: String, port: Int, path: String, clock: ProbeClock) throws -> ProbeResult {
        let connection: TCPConnection
        do {
            connection = try TCPConnection(host: host, port: port, clock: clock)
        } catch {
            return connectFailure(error, host: host, port: port)
        }
        var timings = Timings(connectMs: clock.elapsedMs)
        try connection.write(Array("GET \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n".utf8))
        var response: [UInt8] = []
        while response.count < 16 * 1024 * 1024 {
            do { response += try connection.read(maximum: 65536) } catch {
                if error == .closed { break }
                if error == .timedOut { throw ProbeFailure(.timeout, phase: timings.firstByteMs == nil ? .handshake : .firstFrame, "No complete answer within the deadline.") }
                throw error
            }
            if timings.firstByteMs == nil { timings.firstByteMs = clock.elapsedMs }
        }
        guard let end = ResponseHead.endOfHead(in: response), let head = try? ResponseHead.parse(response[..<end], protocols: ["HTTP/"]) else {
            throw ProbeFailure(.protocolError, phase: .handshake, "No complete HTTP answer.")
        }
        let body = response[end...]
        switch head.status {
        case 200: break
        case 401: throw ProbeFailure(.unauthorized, phase: .authenticate, "The camera wants credentials (HTTP 401).")
        case 404: throw ProbeFailure(.notFound, phase: .handshake, "No snapshot at \(path) (HTTP 404).")
        default: throw ProbeFailure(.protocolError, phase: .handshake, "HTTP \(head.status).")
        }
        let info: JPEGInfo
        do {
            info = try JPEGInfo.inspect(body)
        } catch {
            throw ProbeFailure(.corruptJpeg, phase: .firstFrame, "The snapshot is not a complete JPEG (\(body.count) bytes: \(error)).")
        }
        timings.firstFrameMs = clock.elapsedMs
        context.logger.debug("snapshot of \(body.count) bytes")
        return ProbeResult(reason: .ok, phase: .firstFrame, message: "Snapshot received: a complete \(body.count)-byte JPEG.",
                           timings: timings, media: MediaFacts(codec: "jpeg", width: info.width, height: info.height))
    }
}

// The one line that makes this library a StreamPulse plugin.
@_cdecl("streampulse_plugin_entry_v1")
public func streampulsePluginEntry() -> UnsafeRawPointer { PluginExport.entry(SnapshotProber.self) }
