import Foundation
import Prometheus

/// `/metrics` in the Prometheus text format (swift-prometheus): per-stream gauges and engine figures,
/// refreshed from the engine on each scrape; gauges of streams removed from the config are dropped.
public actor MetricsExporter {
    private let registry = PrometheusCollectorRegistry()
    private struct StreamGauges {
        var status: Gauge, up: Gauge, latency: Gauge, fps: Gauge, width: Gauge, height: Gauge, sincePicture: Gauge
        var uptime: [Gauge]
        var all: [Gauge] { [status, up, latency, fps, width, height, sincePicture] + uptime }
    }
    private var streams: [String: (labels: [(String, String)], gauges: StreamGauges)] = [:]
    private var checksSeen = 0
    private var droppedSeen: [String: Int] = [:]
    private let checks: Counter
    private let lagP50: Gauge
    private let lagP99: Gauge

    public init() {
        checks = registry.makeCounter(name: "streampulse_checks_total", help: "Checks completed since start")
        lagP50 = registry.makeGauge(name: "streampulse_schedule_lag_seconds", labels: [("quantile", "0.5")], help: "Schedule lag of recent checks")
        lagP99 = registry.makeGauge(name: "streampulse_schedule_lag_seconds", labels: [("quantile", "0.99")], help: "Schedule lag of recent checks")
    }

    public func render(snapshot: [StreamSnapshot], stats: EngineStats, sinks: [SinkStats], now: Date = Date()) -> [UInt8] {
        var seen = Set<String>()
        for s in snapshot {
            seen.insert(s.id)
            let labels = [("stream", s.id), ("protocol", s.protocol ?? "none")]
            if let existing = streams[s.id], existing.labels.map(\.1) != labels.map(\.1) { drop(s.id) }
            let g = streams[s.id]?.gauges ?? make(labels)
            streams[s.id] = (labels, g)
            g.status.set(Double(StreamStatus.allCases.firstIndex(of: s.status) ?? 3))
            g.up.set(s.status == .ok ? 1.0 : 0.0)
            g.latency.set((s.latencyMs ?? .nan) / 1000)
            g.fps.set(s.fps ?? .nan)
            g.width.set(Double(s.width ?? 0))
            g.height.set(Double(s.height ?? 0))
            g.sincePicture.set(s.lastPicture.map { now.timeIntervalSince($0) } ?? .nan)
            let windows = [s.uptime?.day, s.uptime?.week, s.uptime?.month]
            for (gauge, value) in zip(g.uptime, windows) { gauge.set(value ?? .nan) }
        }
        for id in streams.keys where !seen.contains(id) { drop(id) }
        if stats.checks > checksSeen { checks.increment(by: Int64(stats.checks - checksSeen)) }
        checksSeen = stats.checks
        lagP50.set(stats.lagP50Ms / 1000)
        lagP99.set(stats.lagP99Ms / 1000)
        for (lane, inFlight) in stats.lanes {
            registry.makeGauge(name: "streampulse_lane_in_flight", labels: [("lane", lane)], help: "Probes in flight per plugin lane").set(Double(inFlight))
        }
        for sink in sinks {
            let dropped = registry.makeCounter(name: "streampulse_sink_dropped_total", labels: [("sink", sink.name)], help: "Events a sink's full buffer dropped")
            let delta = sink.dropped - droppedSeen[sink.name, default: 0]
            if delta > 0 { dropped.increment(by: Int64(delta)) }
            droppedSeen[sink.name] = sink.dropped
            registry.makeGauge(name: "streampulse_sink_queued", labels: [("sink", sink.name)], help: "Events waiting in a sink's buffer").set(Double(sink.queued))
        }
        return registry.emitToBuffer()
    }

    private func make(_ labels: [(String, String)]) -> StreamGauges {
        func gauge(_ name: String, _ help: String, _ extra: [(String, String)] = []) -> Gauge {
            registry.makeGauge(name: name, labels: labels + extra, help: help)
        }
        return StreamGauges(
            status: gauge("streampulse_stream_status", "0 ok, 1 degraded, 2 down, 3 unknown"),
            up: gauge("streampulse_stream_up", "1 when pictures are delivered"),
            latency: gauge("streampulse_stream_probe_seconds", "Duration of the last probe"),
            fps: gauge("streampulse_stream_fps", "Frames per second of the last deep probe"),
            width: gauge("streampulse_stream_width_pixels", "Picture width"),
            height: gauge("streampulse_stream_height_pixels", "Picture height"),
            sincePicture: gauge("streampulse_stream_seconds_since_picture", "Seconds since a picture was last decoded"),
            uptime: ["24h", "7d", "30d"].map { gauge("streampulse_stream_uptime_ratio", "Share of green checks", [("window", $0)]) })
    }

    private func drop(_ id: String) {
        guard let entry = streams.removeValue(forKey: id) else { return }
        for gauge in entry.gauges.all { registry.unregisterGauge(gauge) }
    }
}
