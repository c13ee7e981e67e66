import Foundation
import Prometheus

/// `/metrics` in the Prometheus text format: engine and sink figures through swift-prometheus's registry,
/// per-stream series written straight from the engine snapshot on each scrape.
///
/// Why the split: the registry adds each new label set by copying the metric family (measured: 35 s to
/// register the first scrape of 10,000 streams × 10 series, quadratic), and streams come and go with the
/// config. Writing the per-stream series from the snapshot costs tens of milliseconds and needs no
/// unregistering when a stream is removed.
public actor MetricsExporter {
    private let registry = PrometheusCollectorRegistry()
    private var checksSeen = 0
    private var droppedSeen: [String: Int] = [:]
    private let checks: Counter
    private let lagP50: Gauge
    private let lagP99: Gauge

    public init() {
        checks = registry.makeCounter(name: "streampulse_checks_total", help: "Checks completed since start")
        // Percentiles as plain gauges: a `quantile` label belongs to summaries only (promtool rejects it here).
        lagP50 = registry.makeGauge(name: "streampulse_schedule_lag_p50_seconds", help: "Median schedule lag of recent checks")
        lagP99 = registry.makeGauge(name: "streampulse_schedule_lag_p99_seconds", help: "99th percentile schedule lag of recent checks")
    }

    public func render(snapshot: [StreamSnapshot], stats: EngineStats, sinks: [SinkStats], now: Date = Date()) -> [UInt8] {
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
        var out = registry.emitToBuffer()
        var text = ""
        text.reserveCapacity(snapshot.count * 900)
        let labels = snapshot.map { "{stream=\"\(Self.escape($0.id))\",protocol=\"\(Self.escape($0.protocol ?? "none"))\"" }
        func family(_ name: String, _ help: String, _ value: (StreamSnapshot) -> [(String, Double?)]) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) gauge\n"
            for (index, s) in snapshot.enumerated() {
                for (extra, v) in value(s) {
                    guard let v, !v.isNaN else { continue }
                    text += name
                    text += labels[index]
                    text += extra
                    text += "} "
                    text += Self.format(v)
                    text += "\n"
                }
            }
        }
        family("streampulse_stream_status", "0 ok, 1 degraded, 2 down, 3 unknown") { [("", Double(StreamStatus.allCases.firstIndex(of: $0.status) ?? 3))] }
        family("streampulse_stream_up", "1 when pictures are delivered") { [("", $0.status == .ok ? 1 : 0)] }
        family("streampulse_stream_probe_seconds", "Duration of the last probe") { [("", $0.latencyMs.map { $0 / 1000 })] }
        family("streampulse_stream_fps", "Frames per second of the last deep probe") { [("", $0.fps)] }
        family("streampulse_stream_width_pixels", "Picture width") { [("", $0.width.map(Double.init))] }
        family("streampulse_stream_height_pixels", "Picture height") { [("", $0.height.map(Double.init))] }
        // +Inf for a stream never seen with a picture since the monitor started: an alert on this series must fire
        // for a camera broken since the start too (disabled streams have no series).
        family("streampulse_stream_seconds_since_picture", "Seconds since a picture was last decoded (+Inf: none since start)") { s in
            guard s.enabled else { return [] }
            return [("", s.lastPicture.map { now.timeIntervalSince($0) } ?? .infinity)]
        }
        family("streampulse_stream_uptime_ratio", "Share of time with pictures over the window (monitor downtime and maintenance left out)") {
            [(",window=\"24h\"", $0.uptime?.day), (",window=\"7d\"", $0.uptime?.week), (",window=\"30d\"", $0.uptime?.month)]
        }
        out += text.utf8
        return out
    }

    /// Label values: backslash, double quote and line feed escaped.
    static func escape(_ value: String) -> String {
        guard value.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        return value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func format(_ value: Double) -> String {
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
