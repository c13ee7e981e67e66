import Foundation
import Hummingbird
import NIOCore

/// The availability report (viewer): JSON, CSV, and a printable page (server-rendered HTML, no script).
enum ReportRoutes {
    static func add(to router: some RouterMethods<WebContext>, _ web: WebServices) {
        let viewer = router.group(.viewer, web)
        viewer.get("/api/report") { request, _ -> Response in
            guard let report = try await build(request, web) else { return HistoryRoutes.noDatabase }
            if request.uri.queryParameters["format"] == "csv" {
                var headers = HTTPFields()
                headers[.contentType] = "text/csv; charset=utf-8"
                headers[.contentDisposition] = "attachment; filename=\"streampulse-availability.csv\""
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: report.csv())))
            }
            return APIServer.json(report)
        }
        viewer.get("/report") { request, _ -> Response in
            guard let report = try await build(request, web) else { return HistoryRoutes.noDatabase }
            var headers = HTTPFields()
            headers[.contentType] = "text/html; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: page(report, timeZone: web.serverTimeZone))))
        }
    }

    /// `from`/`to` (ISO 8601 or Unix seconds), default the last 7 days; at most 400 days.
    static func build(_ request: Request, _ web: WebServices) async throws -> AvailabilityReport? {
        guard let source = web.availability, let incidents = web.incidents?.storage ?? web.store else { return nil }
        let now = Date()
        let to = try RequestSupport.time(request, "to") ?? now
        let from = try RequestSupport.time(request, "from") ?? to.addingTimeInterval(-7 * 86_400)
        guard from < to, to.timeIntervalSince(from) <= 400 * 86_400 else {
            throw HTTPError(.badRequest, message: "'from' must be before 'to', at most 400 days apart")
        }
        let streams = await web.engine.currentConfig.streams.map { (id: $0.id, name: $0.name, group: $0.group) }
        let excluded = web.incidents?.maintenanceIntervals(from: from, to: to) ?? [:]
        return try await SQLiteStore.report(from: from, to: to, now: now, streams: streams, history: source, incidents: incidents) { excluded[$0] ?? [] }
    }

    static func page(_ report: AvailabilityReport, timeZone: TimeZone) -> String {
        func escape(_ text: String) -> String {
            text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = timeZone
        formatter.dateFormat = "yyyy-MM-dd HH:mm zzz"
        func percent(_ value: Double?) -> String { value.map { String(format: "%.2f %%", $0 * 100) } ?? "—" }
        func length(_ seconds: Double?) -> String { seconds.map { Incident.describe($0) } ?? "—" }
        func table(_ rows: [AvailabilityReport.Row], first: String) -> String {
            var html = "<table><thead><tr><th>\(first)</th><th>Availability</th><th>Downtime</th><th>Incidents</th><th>MTTR</th><th>Longest outage</th><th>Unknown</th><th>Maintenance</th></tr></thead><tbody>"
            for r in rows {
                html += "<tr><td>\(escape(r.name))</td><td>\(percent(r.availability))</td><td>\(length(r.downSeconds))</td><td>\(r.incidents)</td>"
                html += "<td>\(length(r.mttrSeconds))</td><td>\(length(r.longestOutageSeconds))</td><td>\(length(r.unknownSeconds))</td><td>\(length(r.maintenanceSeconds))</td></tr>"
            }
            return html + "</tbody></table>"
        }
        return """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><title>StreamPulse availability report</title>
            <link rel="stylesheet" href="/assets/app.css"></head>
            <body class="report"><h1>Availability report</h1><p>\(escape(formatter.string(from: report.from))) – \(escape(formatter.string(from: report.to))).
            Availability is the share of observed time with pictures; time the monitor was not running is unknown, and maintenance is left out.</p>
            <h2>Groups</h2>\(table(report.groups, first: "Group"))<h2>Streams</h2>\(table(report.streams, first: "Stream"))</body></html>
            """
    }
}
