import Hummingbird
import NIOCore

/// The page shell, its assets, health and the session probe: open to anyone (the page itself then asks
/// `/api/session` and shows the sign-in form when needed).
enum PageRoutes {
    static func add(to router: some RouterMethods<WebContext>, _ web: WebServices) {
        let open = router.group(.anyone, web)
        open.get("/") { _, _ in WebAssets.response("index.html") }
        open.get("/index.html") { _, _ in WebAssets.response("index.html") }
        open.get("/assets/{file}") { _, context in WebAssets.response(try context.parameters.require("file")) }
        open.get("/favicon.ico") { _, _ in WebAssets.response("favicon.svg") }
        open.get("/api/openapi.yaml") { _, _ in WebAssets.response("openapi.yaml") }
        open.get("/healthz") { _, _ in APIServer.json(["status": "ok"]) }
    }
}

/// The page, stylesheet and script, compiled into the binary (no files to install, no CDN).
enum WebAssets {
    static let files: [String: (type: String, bytes: [UInt8])] = [
        "index.html": ("text/html; charset=utf-8", PackageResources.index_html),
        "app.js": ("text/javascript; charset=utf-8", PackageResources.app_js),
        "app.css": ("text/css; charset=utf-8", PackageResources.app_css),
        "favicon.svg": ("image/svg+xml", PackageResources.favicon_svg),
        "openapi.yaml": ("application/yaml; charset=utf-8", PackageResources.openapi_yaml),
    ]

    static func response(_ name: String) -> Response {
        guard let file = files[name] else { return APIServer.json(["error": "not found"], status: .notFound) }
        var headers = HTTPFields()
        headers[.contentType] = file.type
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: file.bytes)))
    }
}
