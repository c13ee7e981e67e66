import Foundation
import Hummingbird
import NIOCore
import StreamPulseCore

/// The monitor about itself (viewer): config status, plugins, engine figures, clock sync, sinks, the
/// legend and Prometheus metrics; resetting the engine's figures needs an admin.
enum SystemRoutes {

    struct Listing: Encodable {
        var loaded: [PluginDescriptor]
        var refused: [[String: String]]
    }
    static func add(to router: some RouterMethods<WebContext>, _ web: WebServices) {
        let viewer = router.group(.viewer, web)
        let engine = web.engine
        viewer.get("/api/config/status") { _, _ -> Response in
            APIServer.json(await web.config.status)
        }
        viewer.get("/api/plugins") { _, _ -> Response in
            return APIServer.json(Listing(
                loaded: web.plugins.plugins.map(\.descriptor),
                refused: web.plugins.refused.map { ["file": ($0.path as NSString).lastPathComponent, "reason": $0.message] }))
        }
        viewer.get("/api/engine") { _, _ -> Response in
            APIServer.json(await engine.stats())
        }
        viewer.get("/api/time") { _, _ -> Response in
            guard let time = web.time else { return APIServer.json(KernelClock.sync(from: KernelClock.read())) }
            return APIServer.json(await time.current)
        }
        viewer.get("/api/sinks") { _, _ -> Response in
            // Notification channels are listed as `notify:<name>` (written = notices sent, failed_batches = notices
            // that failed after their retries), so a channel that gave up shows as failing like any sink.
            let channels = (web.incidents?.notifier.channelStats ?? []).map { c in
                SinkStats(name: "notify:\(c.name)", queued: 0, dropped: 0, written: c.sent, failedBatches: c.failed, lastError: c.lastError,
                          failing: c.failing)
            }
            return APIServer.json(web.sinks.stats + channels)
        }
        viewer.get("/api/legend") { _, _ -> Response in
            APIServer.json(Legend.current)
        }
        let metrics = MetricsExporter()
        viewer.get("/metrics") { _, _ -> Response in
            let figures = await web.uptimes.current()
            let snapshot = await engine.snapshot().map { s in
                var s = s
                s.uptime = figures[s.id]
                return s
            }
            let body = await metrics.render(snapshot: snapshot, stats: await engine.stats(), sinks: web.sinks.stats)
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }

        let admin = router.group(.admin, web)
        // Benchmarks measure a steady state: clears the lag window and the check counter.
        admin.post("/api/settings/engine-stats/reset") { _, _ -> Response in
            await engine.resetStats()
            return APIServer.json(["status": "reset"])
        }
    }
}
