import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import StreamPulseCore
import UnixSignals

/// The web server's router: the dashboard's page and the JSON API (shapes in `Web/Assets/openapi.yaml`
/// and docs/api.md), one route group per area with its access rule attached (see `Access`).
/// Camera credentials never appear: URLs are masked before they reach this layer.
public enum APIServer {
    public static func router(_ web: WebServices) -> Router<WebContext> {
        let router = Router(context: WebContext.self)
        router.add(middleware: SecurityHeadersMiddleware())
        router.add(middleware: IdentityMiddleware(accounts: web.accounts, settings: web.settings))
        PageRoutes.add(to: router, web)
        AccountRoutes.add(to: router, web)
        StreamRoutes.add(to: router, web)
        HistoryRoutes.add(to: router, web)
        LiveRoutes.add(to: router, web)
        SystemRoutes.add(to: router, web)
        SettingsRoutes.add(to: router, web)
        IncidentRoutes.add(to: router, web)
        ReportRoutes.add(to: router, web)
        PictureRoutes.add(to: router, web)
        return router
    }

    /// Already-encoded JSON.
    static func rawJSON(_ body: ByteBuffer, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: body))
    }

    /// A JSON response in the wire format (snake_case keys, ISO 8601 dates).
    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        rawJSON(ByteBuffer(bytes: (try? Wire.encode(value)) ?? Data("{}".utf8)), status: status)
    }
}
