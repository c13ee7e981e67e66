import Foundation
import Hummingbird
import StreamPulseCore

/// Picture health: a stream's profile and reference view (viewer), accepting a new profile and setting
/// the current picture as the reference (admin).
enum PictureRoutes {
    /// What the API shows of a baseline: everything but the reference grid.
    struct BaselineAnswer: Encodable {
        var stream: String
        var profile: StreamProfile?
        var expect: StreamProfile?
        var profileSource: String?
        var profileAt: Date?
        var learningProbes: Int
        var driftSince: Date?
        var referenceAt: Date?
        var referenceBy: String?
        var referenceSharpness: Double?
        var referenceCoverage: Double?
        var pictureChecks: Bool
    }

    static func add(to router: some RouterMethods<WebContext>, _ web: WebServices) {
        let viewer = router.group(.viewer, web)
        let admin = router.group(.admin, web)
        viewer.get("/api/streams/{id}/baseline") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let stream = await web.engine.currentConfig.streams.first(where: { $0.id == id }) else { return notFound }
            let b = await web.engine.pictureBaseline(of: id) ?? PictureBaseline()
            return APIServer.json(BaselineAnswer(
                stream: id, profile: b.profile, expect: stream.expect, profileSource: b.profileSource, profileAt: b.profileAt,
                learningProbes: b.learning.count, driftSince: b.driftSince, referenceAt: b.referenceAt, referenceBy: b.referenceBy,
                referenceSharpness: b.referenceSharpness, referenceCoverage: b.referenceCoverage, pictureChecks: stream.pictureChecks))
        }
        viewer.get("/api/streams/{id}/reference.jpg") { _, context -> Response in
            guard let store = web.store, let picture = try await store.referencePicture(of: try context.parameters.require("id")) else {
                return APIServer.json(["error": "no reference picture"], status: .notFound)
            }
            return HistoryRoutes.jpegAnswer(picture.jpeg)
        }
        admin.post("/api/streams/{id}/profile/accept") { _, context -> Response in
            let id = try context.parameters.require("id")
            let who = context.identity?.name ?? "?"
            guard await web.engine.acceptProfile(of: id, by: who) else {
                return APIServer.json(["error": "no such stream, or no good deep probe of it yet"], status: .notFound)
            }
            web.logger.notice("stream=\(id) profile accepted by '\(who)'")
            return APIServer.json(["status": "accepted"])
        }
        admin.post("/api/streams/{id}/reference") { _, context -> Response in
            let id = try context.parameters.require("id")
            let who = context.identity?.name ?? "?"
            guard await web.engine.setReference(of: id, by: who) else { return notFound }
            web.logger.notice("stream=\(id) reference picture set by '\(who)' (taken from the next deep probe)")
            return APIServer.json(["status": "the next decoded picture becomes the reference"], status: .accepted)
        }
    }

    static var notFound: Response { APIServer.json(["error": "no such stream"], status: .notFound) }
}
