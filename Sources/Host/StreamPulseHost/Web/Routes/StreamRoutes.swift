import Foundation
import Hummingbird
import NIOCore

/// The fleet's status (viewer): the summary, the list (whole or filtered pages) and single streams, all
/// cut from the shared picture of the fleet.
enum StreamRoutes {
    static func add(to router: some RouterMethods<WebContext>, _ web: WebServices) {
        let viewer = router.group(.viewer, web)
        let listing = web.listing
        viewer.get("/api/summary") { _, _ -> Response in
            APIServer.json(await listing.summary())
        }
        viewer.get("/api/streams") { request, _ -> Response in
            let q = request.uri.queryParameters
            guard ["status", "protocol", "group", "site", "tag", "limit", "offset"].contains(where: { q[$0[...]] != nil }) else {
                return APIServer.rawJSON(await listing.current())
            }
            return try await page(request, listing: listing)
        }
        viewer.get("/api/streams/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            // From the shared picture when the stream is in it; one added this instant asks the engine.
            if let piece = await listing.piece(id) { return APIServer.rawJSON(piece) }
            guard var snapshot = await web.engine.snapshot(id: id) else {
                return APIServer.json(["error": "no stream with id '\(id)'"], status: .notFound)
            }
            snapshot.uptime = await web.uptimes.current()[id]
            return APIServer.json(snapshot)
        }
    }

    /// A filtered page (what a status script or wall display asks for), cut from the shared list.
    static func page(_ request: Request, listing: StreamListCache) async throws -> Response {
        let q = request.uri.queryParameters
        let status = q["status"].map(String.init), proto = q["protocol"].map(String.init)
        let group = q["group"].map(String.init), tag = q["tag"].map(String.init), site = q["site"].map(String.init)
        let offset = try RequestSupport.int(request, "offset", in: 0...Int(Int32.max)) ?? 0
        let limit = try RequestSupport.int(request, "limit", in: 0...Int(Int32.max))
        let picture = await listing.picture()
        // Streams by colour are indexed when the picture is taken; other filters scan.
        var chosen = status.map { picture.byStatus[$0] ?? [] } ?? Array(picture.list.indices)
        if proto != nil || group != nil || tag != nil || site != nil {
            chosen = chosen.filter { i in
                let s = picture.list[i]
                return (proto == nil || proto == s.protocol) && (group == nil || group == s.group) && (site == nil || site == s.site)
                    && (tag.map { s.tags.contains($0) } ?? true)
            }
        }
        let start = min(offset, chosen.count)
        let count = min(limit ?? chosen.count, chosen.count - start)
        // Each stream was encoded once when the picture was taken: a page is only joined bytes.
        var body = ByteBuffer(string: "[")
        for (n, i) in chosen[start..<(start + count)].enumerated() {
            if n > 0 { body.writeString(",") }
            body.writeImmutableBuffer(picture.pieces[i])
        }
        body.writeString("]")
        return APIServer.rawJSON(body)
    }
}
