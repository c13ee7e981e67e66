import Foundation
import Hummingbird
import NIOCore

/// Incidents (viewer: list, evidence, acknowledge), silences (admin) and notification channels (viewer:
/// names and delivery figures, never their URLs or tokens; admin: send a test notification).
enum IncidentRoutes {
    struct AckBody: Decodable { var comment: String? }
    struct SilenceBody: Decodable {
        var streams: [String]?
        var groups: [String]?
        var tags: [String]?
        /// Seconds from now (1 h = 3600), or…
        var seconds: Double?
        /// …an ISO 8601 time.
        var until: Date?
        var comment: String?
    }
    struct TestBody: Decodable { var channel: String }

    static func add(to router: some RouterMethods<WebContext>, _ web: WebServices) {
        let viewer = router.group(.viewer, web)
        let admin = router.group(.admin, web)
        viewer.get("/api/incidents") { request, _ -> Response in
            // Where the incident service keeps them: the local database, or PostgreSQL shared by the dashboards.
            guard let store = web.incidents?.storage ?? web.store else { return HistoryRoutes.noDatabase }
            let q = request.uri.queryParameters
            let open: Bool? = switch q["state"].map(String.init) {
            case "open": true
            case "resolved": false
            case nil, "all": nil
            default: throw HTTPError(.badRequest, message: "'state' must be open, resolved or all")
            }
            let list = try await store.incidents(open: open, stream: q["stream"].map(String.init), from: try RequestSupport.time(request, "from"),
                                                 to: try RequestSupport.time(request, "to"),
                                                 limit: try RequestSupport.int(request, "limit", in: 1...1000) ?? 100)
            return APIServer.json(list)
        }
        viewer.get("/api/incidents/{id}/evidence.jpg") { _, context -> Response in
            guard let store = web.incidents?.storage ?? web.store, let id = Int64(try context.parameters.require("id")),
                  let jpeg = try await store.incidentEvidence(id) else {
                return APIServer.json(["error": "no evidence picture"], status: .notFound)
            }
            return HistoryRoutes.jpegAnswer(jpeg)
        }
        viewer.post("/api/incidents/{id}/ack") { request, context -> Response in
            guard let incidents = web.incidents else { return unavailable }
            guard let id = Int64(try context.parameters.require("id")) else { return APIServer.json(["error": "no such incident"], status: .notFound) }
            let body = (try? await RequestSupport.decode(AckBody.self, request)) ?? AckBody()
            let comment = String((body.comment ?? "").prefix(500))
            let who = context.identity?.name ?? "?"
            guard try await incidents.acknowledge(id, by: who, comment: comment) else {
                return APIServer.json(["error": "no open incident \(id)"], status: .notFound)
            }
            web.logger.notice("incident \(id) acknowledged by '\(who)'")
            return APIServer.json(["status": "acknowledged"])
        }
        viewer.get("/api/silences") { _, _ -> Response in
            guard let incidents = web.incidents else { return unavailable }
            return APIServer.json(incidents.silences)
        }
        admin.post("/api/silences") { request, context -> Response in
            guard let incidents = web.incidents else { return unavailable }
            do {
                let body = try await RequestSupport.decode(SilenceBody.self, request)
                let match = StreamMatch(streams: body.streams ?? [], groups: body.groups ?? [], tags: body.tags ?? [])
                guard !match.isEverything else { return APIServer.json(["error": "name streams, groups or tags to silence"], status: .badRequest) }
                let until: Date
                if let seconds = body.seconds {
                    guard seconds.isFinite, seconds >= 60, seconds <= 30 * 86_400 else {
                        return APIServer.json(["error": "'seconds' must be between 60 and 2592000 (30 days)"], status: .badRequest)
                    }
                    until = Date().addingTimeInterval(seconds)
                } else if let at = body.until, at > Date(), at < Date().addingTimeInterval(30 * 86_400) {
                    until = at
                } else {
                    return APIServer.json(["error": "give 'seconds' or a future 'until' within 30 days"], status: .badRequest)
                }
                let who = context.identity?.name ?? "?"
                let silence = try await incidents.silence(match, until: until, comment: String((body.comment ?? "").prefix(500)), by: who)
                web.logger.notice("silence \(silence.id) until \(until) by '\(who)'")
                return APIServer.json(silence, status: .created)
            } catch { return try RequestSupport.failure(error) }
        }
        admin.delete("/api/silences/{id}") { _, context -> Response in
            guard let incidents = web.incidents else { return unavailable }
            guard let id = Int64(try context.parameters.require("id")) else { return APIServer.json(["error": "no such silence"], status: .notFound) }
            try await incidents.removeSilence(id)
            return APIServer.json(["status": "removed"])
        }
        viewer.get("/api/notify/channels") { _, _ -> Response in
            guard let incidents = web.incidents else { return unavailable }
            return APIServer.json(incidents.notifier.channelStats)
        }
        admin.post("/api/notify/test") { request, _ -> Response in
            guard let incidents = web.incidents else { return unavailable }
            do {
                let body = try await RequestSupport.decode(TestBody.self, request)
                guard incidents.notifier.channelNames.contains(body.channel) else {
                    return APIServer.json(["error": "no channel named '\(RequestSupport.loggable(body.channel))'"], status: .notFound)
                }
                let outcome = await incidents.sendTest(channel: body.channel)
                return APIServer.json(TestAnswer(channel: outcome.channel, delivered: outcome.delivered, retries: outcome.retries, error: outcome.error),
                                      status: outcome.delivered ? .ok : .badGateway)
            } catch { return try RequestSupport.failure(error) }
        }
    }

    struct TestAnswer: Encodable { var channel: String; var delivered: Bool; var retries: Int; var error: String? }

    static var unavailable: Response { APIServer.json(["error": "incidents need the history database"], status: .serviceUnavailable) }
}
