import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import StreamPulseCore
import Synchronization

/// The routes behind the dashboard's pages: sign-in, accounts, tokens, settings, the legend, live
/// updates (Server-Sent Events) and live preview. Shapes are in `Web/Assets/openapi.yaml`.
public struct DashboardOptions: Sendable {
    /// Adds `Secure` to the session cookie (set when the dashboard is served over TLS, e.g. behind a proxy).
    public var secureCookies = false
    public var maxPreviews = 4
    public var previewSeconds = 5.0
    public init() {}
}

enum DashboardRoutes {
    struct LoginBody: Decodable { var name: String; var password: String }
    struct PasswordBody: Decodable { var current: String; var new: String }
    struct NewUserBody: Decodable { var name: String; var role: Role; var password: String }
    struct UserPatch: Decodable { var role: Role?; var password: String? }
    struct NewTokenBody: Decodable { var name: String; var role: Role? }
    struct SettingsBody: Decodable { var timezoneDefault: String }

    struct SessionInfo: Encodable {
        var authenticated: Bool
        var user: String?
        var role: Role?
        var mustChangePassword: Bool?
        var csrf: String?
        var timezoneDefault: String
    }

    static func decode<T: Decodable>(_ type: T.Type, _ request: Request, context: WebContext) async throws -> T {
        // JSON only: an HTML form on another site cannot send this content type without a CORS preflight.
        guard request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true else {
            throw HTTPError(.unsupportedMediaType, message: "send application/json")
        }
        let body = try await request.body.collect(upTo: 64 * 1024)
        do { return try Wire.decode(T.self, from: Data(buffer: body)) } catch {
            throw HTTPError(.badRequest, message: "bad JSON body: \(error)")
        }
    }

    /// A user-supplied name as it may appear in a log line: printable, one line, at most 64 characters.
    static func loggable(_ text: String) -> String {
        String(text.unicodeScalars.filter { !CharacterSet.controlCharacters.contains($0) }.prefix(64).map(Character.init))
    }

    static func cookie(_ value: String, maxAge: Int, secure: Bool) -> String {
        "\(AccessMiddleware.cookieName)=\(value); Path=/; Max-Age=\(maxAge); HttpOnly; SameSite=Strict" + (secure ? "; Secure" : "")
    }

    static func failure(_ error: Error) -> Response {
        if let failure = error as? Accounts.Failure { return APIServer.json(["error": failure.description], status: .badRequest) }
        if let http = error as? HTTPError { return APIServer.json(["error": http.body ?? "\(http.status)"], status: http.status) }
        return APIServer.json(["error": "\(error)"], status: .internalServerError)
    }

    static func add(to router: Router<WebContext>, accounts: Accounts?, engine: Engine, plugins: PluginHost, live: LiveHub,
                    previews: PreviewHub, options: DashboardOptions, defaultTimeZone: @escaping @Sendable () async -> String,
                    logger: Logger) {
        let throttle = Mutex(LoginThrottle())

        @Sendable func timezoneDefault() async -> String {
            if let stored = try? accounts?.setting("timezone_default") { return stored }
            return await defaultTimeZone()
        }

        // MARK: Page shell and assets (public; the page itself asks /api/session)
        router.get("/") { _, _ in WebAssets.response("index.html") }
        router.get("/index.html") { _, _ in WebAssets.response("index.html") }
        router.get("/assets/{file}") { _, context in WebAssets.response(try context.parameters.require("file")) }
        router.get("/favicon.ico") { _, _ in WebAssets.response("favicon.svg") }
        router.get("/api/openapi.yaml") { _, _ in WebAssets.response("openapi.yaml") }

        // MARK: Sessions
        router.get("/api/session") { _, context -> Response in
            let zone = await timezoneDefault()
            guard let identity = context.identity else {
                return APIServer.json(SessionInfo(authenticated: false, timezoneDefault: zone))
            }
            return APIServer.json(SessionInfo(authenticated: true, user: identity.name, role: identity.role,
                                              mustChangePassword: identity.mustChangePassword, csrf: identity.csrf, timezoneDefault: zone))
        }

        router.post("/api/login") { request, context -> Response in
            guard let accounts else { return APIServer.json(["error": "no accounts database"], status: .serviceUnavailable) }
            let body: LoginBody
            do { body = try await decode(LoginBody.self, request, context: context) } catch { return failure(error) }
            let now = Date().timeIntervalSince1970
            if let wait = throttle.withLock({ $0.retryAfter(user: body.name, address: context.remoteAddress, now: now) }) {
                logger.warning("login throttled for user '\(loggable(body.name))' from \(context.remoteAddress): retry in \(wait) s")
                var response = APIServer.json(["error": "too many failed sign-ins; try again in \(wait) s"], status: .tooManyRequests)
                response.headers[.retryAfter] = "\(wait)"
                return response
            }
            guard let user = try await accounts.verify(name: body.name, password: body.password) else {
                throttle.withLock { $0.failed(user: body.name, address: context.remoteAddress, now: now) }
                logger.warning("failed sign-in for user '\(loggable(body.name))' from \(context.remoteAddress)")
                return APIServer.json(["error": "wrong user name or password"], status: .unauthorized)
            }
            throttle.withLock { $0.succeeded(user: body.name) }
            let session = try accounts.createSession(userId: user.id)
            logger.info("user '\(user.name)' signed in from \(context.remoteAddress)")
            var response = APIServer.json(SessionInfo(authenticated: true, user: user.name, role: user.role, mustChangePassword: user.mustChange,
                                                      csrf: session.csrf, timezoneDefault: await timezoneDefault()))
            response.headers[.setCookie] = cookie(session.id, maxAge: Int(accounts.sessionLifetime), secure: options.secureCookies)
            return response
        }

        router.post("/api/logout") { _, context -> Response in
            if let id = context.sessionId { try? accounts?.endSession(id) }
            var response = APIServer.json(["status": "signed out"])
            response.headers[.setCookie] = cookie("", maxAge: 0, secure: options.secureCookies)
            return response
        }

        router.post("/api/me/password") { request, context -> Response in
            guard let accounts, let identity = context.identity, let userId = identity.userId else {
                return APIServer.json(["error": "API tokens have no password"], status: .badRequest)
            }
            do {
                let body = try await decode(PasswordBody.self, request, context: context)
                guard try await accounts.verify(name: identity.name, password: body.current) != nil else {
                    return APIServer.json(["error": "the current password is wrong"], status: .forbidden)
                }
                guard body.new != body.current else { return APIServer.json(["error": "choose a different password"], status: .badRequest) }
                try await accounts.setPassword(userId: userId, password: body.new, mustChange: false)
                let session = try accounts.createSession(userId: userId)
                logger.info("user '\(identity.name)' changed their password")
                var response = APIServer.json(SessionInfo(authenticated: true, user: identity.name, role: identity.role, mustChangePassword: false,
                                                          csrf: session.csrf, timezoneDefault: await timezoneDefault()))
                response.headers[.setCookie] = cookie(session.id, maxAge: Int(accounts.sessionLifetime), secure: options.secureCookies)
                return response
            } catch { return failure(error) }
        }

        // MARK: Users (admin)
        router.get("/api/users") { _, _ -> Response in
            APIServer.json(try accounts?.users() ?? [])
        }
        router.post("/api/users") { request, context -> Response in
            guard let accounts else { return APIServer.json(["error": "no accounts database"], status: .serviceUnavailable) }
            do {
                let body = try await decode(NewUserBody.self, request, context: context)
                // An admin sets a first password; the new user is asked to choose their own at first sign-in.
                let user = try await accounts.createUser(name: body.name, role: body.role, password: body.password, mustChange: true)
                logger.notice("user '\(user.name)' (\(user.role.rawValue)) created by '\(context.identity?.name ?? "?")'")
                return APIServer.json(user, status: .created)
            } catch { return failure(error) }
        }
        router.patch("/api/users/{id}") { request, context -> Response in
            guard let accounts, let id = Int64(try context.parameters.require("id")) else { return APIServer.json(["error": "bad id"], status: .badRequest) }
            do {
                let body = try await decode(UserPatch.self, request, context: context)
                if let role = body.role { try accounts.setRole(userId: id, role: role) }
                if let password = body.password { try await accounts.setPassword(userId: id, password: password, mustChange: true) }
                return APIServer.json(["status": "updated"])
            } catch { return failure(error) }
        }
        router.delete("/api/users/{id}") { _, context -> Response in
            guard let accounts, let id = Int64(try context.parameters.require("id")) else { return APIServer.json(["error": "bad id"], status: .badRequest) }
            guard id != context.identity?.userId else { return APIServer.json(["error": "you cannot delete yourself"], status: .badRequest) }
            do { try accounts.deleteUser(id: id); return APIServer.json(["status": "deleted"]) } catch { return failure(error) }
        }

        // MARK: API tokens (admin)
        router.get("/api/tokens") { _, _ -> Response in
            APIServer.json(try accounts?.tokens() ?? [])
        }
        router.post("/api/tokens") { request, context -> Response in
            guard let accounts else { return APIServer.json(["error": "no accounts database"], status: .serviceUnavailable) }
            do {
                let body = try await decode(NewTokenBody.self, request, context: context)
                let created = try accounts.createToken(name: body.name, role: body.role ?? .viewer)
                logger.notice("API token '\(body.name)' (\(created.info.role.rawValue)) created by '\(context.identity?.name ?? "?")'")
                struct Created: Encodable { var token: String; var info: Accounts.Token }
                return APIServer.json(Created(token: created.token, info: created.info), status: .created)
            } catch { return failure(error) }
        }
        router.delete("/api/tokens/{id}") { _, context -> Response in
            guard let accounts, let id = Int64(try context.parameters.require("id")) else { return APIServer.json(["error": "bad id"], status: .badRequest) }
            do { try accounts.revokeToken(id: id); return APIServer.json(["status": "revoked"]) } catch { return failure(error) }
        }

        // MARK: Settings (admin)
        router.get("/api/settings") { _, _ -> Response in
            struct Settings: Encodable {
                var timezoneDefault: String
                var maxPreviews: Int
                var previewSeconds: Double
                var secureCookies: Bool
            }
            return APIServer.json(Settings(timezoneDefault: await timezoneDefault(), maxPreviews: options.maxPreviews,
                                           previewSeconds: options.previewSeconds, secureCookies: options.secureCookies))
        }
        router.put("/api/settings") { request, context -> Response in
            guard let accounts else { return APIServer.json(["error": "no accounts database"], status: .serviceUnavailable) }
            do {
                let body = try await decode(SettingsBody.self, request, context: context)
                guard TimeZone(identifier: body.timezoneDefault) != nil else {
                    return APIServer.json(["error": "unknown time zone '\(body.timezoneDefault)'"], status: .badRequest)
                }
                try accounts.setSetting("timezone_default", body.timezoneDefault)
                return APIServer.json(["status": "saved"])
            } catch { return failure(error) }
        }

        // MARK: Legend, generated from the status model
        router.get("/api/legend") { _, _ -> Response in
            APIServer.json(Legend.current)
        }

        // MARK: Live updates (Server-Sent Events)
        router.get("/api/events") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/event-stream"
            headers[.cacheControl] = "no-store"
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                let subscriber = live.subscribe()
                // An event stream never ends by itself: it ends when the server shuts down gracefully.
                let stopping = StopFlag()
                await withGracefulShutdownHandler {
                do {
                    try await writer.write(ByteBuffer(string: "retry: 3000\nevent: hello\ndata: {}\n\n"))
                    var quiet = 0
                    while !Task.isCancelled && !stopping.isSet {
                        try await Task.sleep(for: .milliseconds(500))
                        let (ids, reload) = live.take(subscriber)
                        if reload {
                            try await writer.write(ByteBuffer(string: "event: reload\ndata: {}\n\n"))
                            quiet = 0
                        }
                        if !ids.isEmpty {
                            var snapshots: [StreamSnapshot] = []
                            for id in ids { if let s = await engine.snapshot(id: id) { snapshots.append(s) } }
                            let data = try Wire.encode(snapshots)
                            var buffer = ByteBuffer(string: "event: streams\ndata: ")
                            buffer.writeBytes(data)
                            buffer.writeString("\n\n")
                            try await writer.write(buffer)
                            quiet = 0
                        } else {
                            quiet += 1
                            if quiet >= 30 {  // a comment every 15 s keeps proxies from closing an idle stream
                                try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                                quiet = 0
                            }
                        }
                    }
                } catch {}
                } onGracefulShutdown: {
                    stopping.set()
                }
                live.unsubscribe(subscriber)
                try? await writer.finish(nil)
            })
        }

        router.get("/api/settings/previews") { _, _ -> Response in
            APIServer.json(["active": previews.activeSessions, "upstream_sessions_started": previews.upstreamSessionsStarted,
                            "max": previews.maxSessions])
        }

        // MARK: Live preview (admin): multipart JPEG, shown by an <img>
        router.get("/api/streams/{id}/preview") { request, context -> Response in
            let id = try context.parameters.require("id")
            let asked = request.uri.queryParameters["seconds"].flatMap { Double(String($0)) } ?? options.previewSeconds
            let seconds = min(max(asked, 1), 30)
            let frames: AsyncStream<Data>
            do {
                frames = try await previews.join(id, seconds: seconds)
            } catch PreviewHub.Refusal.unknownStream {
                return APIServer.json(["error": "no stream with id '\(id)'"], status: .notFound)
            } catch PreviewHub.Refusal.busy(let cap) {
                return APIServer.json(["error": "\(cap) previews are running (the limit); try again in a few seconds"], status: .tooManyRequests)
            }
            logger.info("preview of stream=\(id) for \(Int(seconds)) s by '\(context.identity?.name ?? "?")'")
            var headers = HTTPFields()
            headers[.contentType] = "multipart/x-mixed-replace; boundary=spframe"
            headers[.cacheControl] = "no-store"
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                do {
                    for await frame in frames {
                        var buffer = ByteBuffer(string: "--spframe\r\nContent-Type: image/jpeg\r\nContent-Length: \(frame.count)\r\n\r\n")
                        buffer.writeBytes(frame)
                        buffer.writeString("\r\n")
                        try await writer.write(buffer)
                    }
                    try await writer.write(ByteBuffer(string: "--spframe--\r\n"))
                } catch {}
                try? await writer.finish(nil)
            })
        }
    }
}

/// Colours and reasons as the status model defines them, for the dashboard's info modal.
public struct Legend: Encodable, Sendable {
    public struct Entry: Encodable, Sendable {
        public var key: String
        public var status: String
        public var meaning: String
    }
    public var statuses: [Entry]
    public var reasons: [Entry]

    /// What each known reason means to an operator.
    public static let meanings: [Reason: String] = [
        .ok: "Pictures decoded within the stream's thresholds.",
        .connectionRefused: "Nothing listens on the camera's port (off, wrong port, or service crashed).",
        .timeout: "No answer in time; the phase says where it stalled.",
        .noFrames: "The camera answered but no picture arrived (RTCP only, silent socket, stalled encoder).",
        .streamEnded: "The camera closed the stream before a picture was complete.",
        .protocolError: "The answer was not valid RTSP/HTTP for a video stream.",
        .unsupportedTransport: "The camera refused every transport offered (TCP and UDP).",
        .decodeError: "Data arrived but no picture could be decoded.",
        .serverError: "The camera answered with a server error (5xx).",
        .wrongContentType: "The URL answers, but not with a video or JPEG stream.",
        .truncatedFrame: "A JPEG frame was cut short.",
        .corruptJpeg: "A frame was not a valid JPEG picture.",
        .frameTooLarge: "A frame exceeded the size limit (a hostile or broken camera).",
        .dnsFailure: "The camera's host name does not resolve.",
        .unauthorized: "Wrong or missing user name/password for the camera.",
        .forbidden: "The camera refuses this user.",
        .notFound: "The stream path does not exist on the camera.",
        .frozen: "Pictures arrive but do not change (frozen encoder or image).",
        .black: "Pictures arrive but are black (covered lens, night without IR, dead sensor).",
        .lowFps: "Pictures arrive slower than the stream's minimum fps.",
        .slowFirstFrame: "The first picture took longer than the stream's threshold.",
        .cancelled: "The check was stopped (reload or shutdown).",
        .noPlugin: "No loaded plugin handles this URL's scheme.",
        .pluginError: "The plugin failed or answered garbage; the host recorded it.",
        .unsupported: "The plugin does not support this request.",
        .invalidRequest: "The probe request could not be built.",
    ]

    public static var current: Legend {
        let statusMeanings: [(String, String, String)] = [
            ("ok", "ok", "Green: pictures decoded within the thresholds."),
            ("degraded", "degraded", "Yellow: the camera answers but the picture is unusable for a fixable reason (password, path, frozen, black, slow)."),
            ("pending", "pending", "Amber outline: failing, but not yet past the configured retries."),
            ("down", "down", "Red: unreachable or no pictures after the retries."),
            ("unknown", "unknown", "Grey: not checked yet, disabled, or no plugin for its scheme."),
        ]
        return Legend(
            statuses: statusMeanings.map { Entry(key: $0.0, status: $0.1, meaning: $0.2) },
            reasons: meanings.sorted { $0.key.rawValue < $1.key.rawValue }.map { reason, meaning in
                let status = reason == "disabled" ? "unknown" : StatusModel.status(for: reason).rawValue
                return Entry(key: reason.rawValue, status: status, meaning: meaning)
            })
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
