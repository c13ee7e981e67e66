import Foundation
import Hummingbird
import NIOCore

/// History from the database (viewer): checks, state changes, evidence thumbnails and the CSV export.
enum HistoryRoutes {
    /// The most checks one request returns.
    static let maxChecks = 1_000

    static func add(to router: some RouterMethods<WebContext>, _ web: WebServices) {
        let viewer = router.group(.viewer, web)
        let store = web.store, history = web.history
        viewer.get("/api/streams/{id}/checks") { request, context -> Response in
            let id = try context.parameters.require("id")
            guard let history else { return noDatabase }
            let checks = try await history.checks(
                stream: id, from: try RequestSupport.time(request, "from"), to: try RequestSupport.time(request, "to"),
                before: try RequestSupport.int(request, "before", in: 0...Int.max).map(Int64.init),
                limit: try RequestSupport.int(request, "limit", in: 1...maxChecks) ?? 100)
            return APIServer.json(checks)
        }
        viewer.get("/api/streams/{id}/changes") { request, context -> Response in
            let id = try context.parameters.require("id")
            guard let history else { return noDatabase }
            return await APIServer.json(try history.changes(stream: id, from: try RequestSupport.time(request, "from"), to: try RequestSupport.time(request, "to"),
                                                            limit: 200))
        }
        viewer.get("/api/changes/{id}/thumbnail.jpg") { _, context -> Response in
            guard let history, let id = Int64(try context.parameters.require("id")), let jpeg = try await history.thumbnail(change: id) else {
                return APIServer.json(["error": "no thumbnail"], status: .notFound)
            }
            return jpegAnswer(jpeg)
        }
        viewer.get("/api/changes/{id}/last.jpg") { _, context -> Response in
            guard let history, let id = Int64(try context.parameters.require("id")), let jpeg = try await history.lastPicture(change: id) else {
                return APIServer.json(["error": "no last picture"], status: .notFound)
            }
            return jpegAnswer(jpeg)
        }
        viewer.get("/api/export.csv") { request, _ -> Response in
            guard let history else { return noDatabase }
            let q = request.uri.queryParameters
            let streams = q["streams"].map { $0.split(separator: ",").map(String.init) }
            let from = try RequestSupport.time(request, "from"), to = try RequestSupport.time(request, "to")
            let zone = q["timezone"].flatMap { TimeZone(identifier: String($0)) } ?? web.serverTimeZone
            var headers = HTTPFields()
            headers[.contentType] = "text/csv; charset=utf-8"
            headers[.contentDisposition] = "attachment; filename=\"streampulse-checks.csv\""
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                try await CSVExport.export(store: history, streams: streams, from: from, to: to, timeZone: zone) { chunk in
                    try await writer.write(ByteBuffer(string: chunk))
                }
                try await writer.finish(nil)
            })
        }
    }

    /// A stored evidence picture (it never changes, so it may be cached privately).
    static func jpegAnswer(_ jpeg: Data) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "image/jpeg"
        headers[.cacheControl] = "private, max-age=86400"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: jpeg)))
    }

    static var noDatabase: Response { APIServer.json(["error": "no history database"], status: .serviceUnavailable) }
}
