import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// Every route of the real router, in process (HummingbirdTesting), for anonymous, viewer, admin and an
/// account that must change its password first — from one table. Access is attached to the routes'
/// groups, so a trailing slash (which the router ignores) gets the same answer.
@Suite(.serialized) struct RouteAccessTests {
    /// Every route: method, path template, who may call it.
    static let table: [(HTTPRequest.Method, String, Access)] = [
        (.get, "/", .anyone), (.get, "/index.html", .anyone), (.get, "/assets/{file}", .anyone), (.get, "/favicon.ico", .anyone),
        (.get, "/api/openapi.yaml", .anyone), (.get, "/healthz", .anyone), (.get, "/api/session", .anyone), (.post, "/api/login", .anyone),
        (.post, "/api/logout", .account), (.post, "/api/me/password", .account),
        (.get, "/api/summary", .viewer), (.get, "/api/streams", .viewer), (.get, "/api/streams/{id}", .viewer),
        (.get, "/api/streams/{id}/checks", .viewer), (.get, "/api/streams/{id}/changes", .viewer),
        (.get, "/api/changes/{id}/thumbnail.jpg", .viewer), (.get, "/api/changes/{id}/last.jpg", .viewer),
        (.get, "/api/export.csv", .viewer), (.get, "/api/events", .viewer),
        (.get, "/api/config/status", .viewer), (.get, "/api/plugins", .viewer), (.get, "/api/engine", .viewer), (.get, "/api/time", .viewer),
        (.get, "/api/sinks", .viewer), (.get, "/api/legend", .viewer), (.get, "/metrics", .viewer),
        (.get, "/api/users", .admin), (.post, "/api/users", .admin), (.patch, "/api/users/{id}", .admin), (.delete, "/api/users/{id}", .admin),
        (.get, "/api/tokens", .admin), (.post, "/api/tokens", .admin), (.delete, "/api/tokens/{id}", .admin),
        (.get, "/api/settings", .admin), (.put, "/api/settings", .admin), (.get, "/api/settings/previews", .admin),
        (.post, "/api/settings/engine-stats/reset", .admin), (.get, "/api/streams/{id}/preview", .admin),
        (.get, "/api/streams/{id}/baseline", .viewer), (.get, "/api/streams/{id}/reference.jpg", .viewer),
        (.post, "/api/streams/{id}/profile/accept", .admin), (.post, "/api/streams/{id}/reference", .admin),
        (.get, "/api/incidents", .viewer), (.get, "/api/incidents/{id}/evidence.jpg", .viewer), (.post, "/api/incidents/{id}/ack", .viewer),
        (.get, "/api/silences", .viewer), (.post, "/api/silences", .admin), (.delete, "/api/silences/{id}", .admin),
        (.get, "/api/notify/channels", .viewer), (.post, "/api/notify/test", .admin),
        (.get, "/api/report", .viewer), (.get, "/report", .viewer),
    ]

    /// Routes whose allowed answer is an endless stream: only their refusals are checked here (the browser
    /// tests use them for real).
    static let streaming: Set<String> = ["/api/events"]

    struct Fixture {
        let web: WebServices
        let viewer: String
        let admin: String
        let fresh: (cookie: String, csrf: String)
    }

    static func fixture() async throws -> Fixture {
        let dir = TestEnvironment.temporaryDirectory("routes")
        let config = try #require(ConfigLoader(environment: [:]).load(yaml: "streams: [{ id: cam, url: \"rtsp://127.0.0.1:9/x\" }]\n",
                                                                      file: dir + "/config.yaml", baseDirectory: dir).config)
        try "streams: []\n".write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        let logs = CapturedLogs()
        let plugins = PluginHost(directory: TestEnvironment.temporaryDirectory("noplugins"), logger: logs.logger())
        let engine = Engine(config: config, plugins: plugins, logger: logs.logger())
        let store = try SQLiteStore(path: dir + "/streampulse.db")
        let accounts = Accounts(store: store, bcryptCost: 4)
        let settings = LiveSettings(config.settings)
        let service = ConfigService(path: dir + "/config.yaml", initial: config, settings: settings, initialProblems: [], engine: engine,
                                    plugins: plugins, scrubber: SecretScrubber(), logger: logs.logger())
        let web = WebServices(engine: engine, config: service, plugins: plugins, time: nil, store: store, sinks: SinkChain(),
                              accounts: accounts, live: LiveHub(), previews: PreviewHub(engine: engine, settings: settings),
                              settings: settings, logger: logs.logger())
        let viewer = try await accounts.createToken(name: "v", role: .viewer).token
        let admin = try await accounts.createToken(name: "a", role: .admin).token
        let user = try await accounts.createUser(name: "newbie", role: .admin, password: "a-long-first-password", mustChange: true)
        let session = try await accounts.createSession(userId: user.id)
        return Fixture(web: web, viewer: viewer, admin: admin, fresh: (session.id, session.csrf))
    }

    static func concrete(_ template: String) -> String {
        template.replacingOccurrences(of: "{file}", with: "app.js").replacingOccurrences(of: "{id}", with: "999")
    }

    @Test func theTable_coversEveryRouteTheRouterHas() async throws {
        let router = APIServer.router(try await Self.fixture().web)
        let registered = Set(router.routes.map { "\($0.method) \($0.path)" })
        let listed = Set(Self.table.map { "\($0.0) \(RouterPath($0.1))" })
        #expect(registered == listed, "only in the router: \(registered.subtracting(listed)); only in the table: \(listed.subtracting(registered))")
    }

    @Test func everyRoute_answersAnonymousViewerAdminAndFreshAccount_asItsAccessSays() async throws {
        let fixture = try await Self.fixture()
        let app = Application(router: APIServer.router(fixture.web))
        try await app.test(.router) { client in
            for (method, template, access) in Self.table {
                for path in [Self.concrete(template), Self.concrete(template) + "/"] where !(template == "/" && path == "//") {
                    func status(_ headers: HTTPFields) async throws -> HTTPResponse.Status {
                        try await client.execute(uri: path, method: method, headers: headers) { $0.status }
                    }
                    let bearer = { (token: String) in HTTPFields([HTTPField(name: .authorization, value: "Bearer " + token)]) }
                    var cookie = HTTPFields()
                    cookie[.cookie] = "sp_session=\(fixture.fresh.cookie)"
                    cookie[HTTPField.Name("X-CSRF-Token")!] = fixture.fresh.csrf
                    let denied: Set<HTTPResponse.Status> = [.unauthorized, .forbidden]
                    let label = "\(method) \(path)"

                    let anonymous = try await status([:])
                    if access == .anyone { #expect(!denied.contains(anonymous), "\(label) anonymous → \(anonymous)") } else {
                        #expect(anonymous == .unauthorized, "\(label) anonymous → \(anonymous)")
                    }
                    if Self.streaming.contains(template) { continue }
                    let viewer = try await status(bearer(fixture.viewer))
                    if access == .admin { #expect(viewer == .forbidden, "\(label) viewer → \(viewer)") } else {
                        #expect(!denied.contains(viewer), "\(label) viewer → \(viewer)")
                    }
                    let admin = try await status(bearer(fixture.admin))
                    #expect(!denied.contains(admin), "\(label) admin → \(admin)")
                    if access == .viewer || access == .admin {
                        #expect(try await status(cookie) == .forbidden, "\(label) before the password change")
                    }
                }
            }
        }
    }

    @Test func numbersFromTheQuery_areCheckedAsFiniteAndInRange_with400NamingTheParameter() async throws {
        let fixture = try await Self.fixture()
        let app = Application(router: APIServer.router(fixture.web))
        try await app.test(.router) { client in
            let admin = HTTPFields([HTTPField(name: .authorization, value: "Bearer " + fixture.admin)])
            for (path, parameter) in [
                ("/api/streams/cam/preview?seconds=nan", "seconds"), ("/api/streams/cam/preview/?seconds=inf", "seconds"),
                ("/api/streams/cam/preview?seconds=1e308", "seconds"), ("/api/streams/cam/checks?limit=-1", "limit"),
                ("/api/streams/cam/checks?limit=99999999999999999999", "limit"), ("/api/streams/cam/checks?before=-5", "before"),
                ("/api/streams/cam/checks?from=nan", "from"), ("/api/streams/cam/changes?to=1e300", "to"),
                ("/api/streams?limit=-1", "limit"), ("/api/streams?offset=nan", "offset"), ("/api/export.csv?from=x", "from"),
            ] {
                try await client.execute(uri: path, method: .get, headers: admin) { response in
                    #expect(response.status == .badRequest, "\(path) → \(response.status)")
                    #expect(String(buffer: response.body).contains("'\(parameter)'"), "\(path): \(String(buffer: response.body))")
                }
            }
            // The monitor is still there.
            try await client.execute(uri: "/api/streams/cam", method: .get, headers: admin) { #expect($0.status == .ok) }
        }
    }

    @Test func errorAnswers_carryTheSecurityHeaders_andNoDecoderInternals() async throws {
        let fixture = try await Self.fixture()
        let app = Application(router: APIServer.router(fixture.web))
        try await app.test(.router) { client in
            var headers = HTTPFields([HTTPField(name: .authorization, value: "Bearer " + fixture.admin)])
            try await client.execute(uri: "/no/such/page", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(response.headers[.contentSecurityPolicy] != nil && response.headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
            }
            headers[.contentType] = "application/json"
            try await client.execute(uri: "/api/tokens", method: .post, headers: headers, body: ByteBuffer(string: #"{"nam":"x"}"#)) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body) == #"{"error":"bad JSON body: missing field 'name'"}"#)
            }
            try await client.execute(uri: "/api/tokens", method: .post, headers: headers,
                                     body: ByteBuffer(string: #"{"name":""# + String(repeating: "x", count: 70_000) + #""}"#)) { response in
                #expect(response.status == .contentTooLarge)
                #expect(response.headers[.contentSecurityPolicy] != nil)
            }
        }
    }
}
