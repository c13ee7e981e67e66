import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import StreamPulseCore
import UnixSignals

/// The JSON API behind the dashboard and scripts (shapes documented in docs/api.md):
/// `GET /healthz`, `GET /api/streams`, `GET /api/streams/{id}`, `GET /api/config/status`,
/// `GET /api/plugins`, `GET /api/engine`, `GET /api/time`.
/// Camera credentials never appear: URLs are masked before they reach this layer.
public enum APIServer {
    public static func router(engine: Engine, config: ConfigService, plugins: PluginHost, time: TimeService?) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/healthz") { _, _ -> Response in
            json(["status": "ok"])
        }
        router.get("/api/streams") { _, _ -> Response in
            json(await engine.snapshot())
        }
        router.get("/api/streams/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let snapshot = await engine.snapshot(id: id) else {
                return json(["error": "no stream with id '\(id)'"], status: .notFound)
            }
            return json(snapshot)
        }
        router.get("/api/config/status") { _, _ -> Response in
            json(await config.status)
        }
        router.get("/api/plugins") { _, _ -> Response in
            struct Listing: Encodable {
                var loaded: [PluginDescriptor]
                var refused: [[String: String]]
            }
            return json(Listing(
                loaded: plugins.plugins.map(\.descriptor),
                refused: plugins.refused.map { ["file": ($0.path as NSString).lastPathComponent, "reason": $0.message] }))
        }
        router.get("/api/engine") { _, _ -> Response in
            json(await engine.stats())
        }
        router.get("/api/time") { _, _ -> Response in
            guard let time else { return json(TimeSync.unsynced(reason: "no NTP servers configured")) }
            return json(await time.current)
        }
        return router
    }

    /// A JSON response in the wire format (snake_case keys, ISO 8601 dates).
    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? Wire.encode(value)) ?? Data("{}".utf8)
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Runs the engine as a service: graceful shutdown cancels probes in flight.
public struct EngineService: Service {
    public let engine: Engine
    public init(engine: Engine) { self.engine = engine }
    public func run() async throws {
        await cancelWhenGracefulShutdown { await engine.run() }
    }
}

/// Watches the config, secrets and plugins folders; SIGHUP also reloads.
public struct ConfigWatchService: Service {
    public let config: ConfigService
    public let secretsPath: String?
    public init(config: ConfigService, secretsPath: String?) {
        self.config = config
        self.secretsPath = secretsPath
    }
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await config.watch(secretsPath: secretsPath) }
                group.addTask {
                    for await _ in await UnixSignalsSequence(trapping: .sighup) {
                        await config.reload(reason: "SIGHUP")
                    }
                }
                await group.waitForAll()
            }
        }
    }
}

/// Measures the clock offset in the background.
public struct TimeSyncService: Service {
    public let time: TimeService
    public init(time: TimeService) { self.time = time }
    public func run() async throws {
        await cancelWhenGracefulShutdown { await time.run() }
    }
}
