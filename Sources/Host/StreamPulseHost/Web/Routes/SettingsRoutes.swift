import Foundation
import Hummingbird

/// Dashboard settings (admin): the default time zone, and the preview figures.
enum SettingsRoutes {
    struct SettingsBody: Decodable { var timezoneDefault: String }

    struct Answer: Encodable {
        var timezoneDefault: String
        var maxPreviews: Int
        var previewSeconds: Double
        var secureCookies: Bool
    }

    static func add(to router: some RouterMethods<WebContext>, _ web: WebServices) {
        let admin = router.group(.admin, web)
        admin.get("/api/settings") { _, _ -> Response in
            let current = web.settings.current
            return await APIServer.json(Answer(timezoneDefault: web.dashboardTimeZone(), maxPreviews: current.maxPreviews,
                                           previewSeconds: current.previewSeconds, secureCookies: current.secureCookies))
        }
        admin.put("/api/settings") { request, _ -> Response in
            guard let accounts = web.accounts else { return APIServer.json(["error": "no accounts database"], status: .serviceUnavailable) }
            do {
                let body = try await RequestSupport.decode(SettingsBody.self, request)
                guard TimeZone(identifier: body.timezoneDefault) != nil else {
                    return APIServer.json(["error": "unknown time zone '\(RequestSupport.loggable(body.timezoneDefault))'"], status: .badRequest)
                }
                try await accounts.setSetting("timezone_default", body.timezoneDefault)
                return APIServer.json(["status": "saved"])
            } catch { return try RequestSupport.failure(error) }
        }
        admin.get("/api/settings/previews") { _, _ -> Response in
            APIServer.json(["active": web.previews.activeSessions, "upstream_sessions_started": web.previews.upstreamSessionsStarted,
                            "max": web.previews.maxSessions])
        }
    }
}
