import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import StreamPulseCore
import UnixSignals

/// The JSON API behind the dashboard and scripts (shapes documented in docs/api.md):
/// `GET /healthz`, `GET /api/streams`, `GET /api/streams/{id}`, `GET /api/config/status`,
/// `GET /api/plugins`, `GET /api/engine`, `GET /api/time`.
/// Camera credentials never appear: URLs are masked before they reach this layer.
public enum APIServer {
    public static func router(engine: Engine, config: ConfigService, plugins: PluginHost, time: TimeService?,
                              store: SQLiteStore?, sinks: SinkChain, timeZone: @escaping @Sendable () async -> TimeZone,
                              accounts: Accounts?, live: LiveHub, previews: PreviewHub, options: DashboardOptions = DashboardOptions(),
                              logger: Logger = Logger(label: "web")) -> Router<WebContext> {
        let router = Router(context: WebContext.self)
        router.add(middleware: SecurityHeadersMiddleware())
        router.add(middleware: AccessMiddleware(accounts: accounts))
        let uptimes = UptimeCache(store: store)
        let listing = StreamListCache(engine: engine, uptimes: uptimes)
        DashboardRoutes.add(to: router, accounts: accounts, engine: engine, plugins: plugins, live: live, previews: previews, options: options,
                            defaultTimeZone: { await engine.currentConfig.settings.timezone }, logger: logger)
        router.get("/healthz") { _, _ -> Response in
            json(["status": "ok"])
        }
        router.get("/api/summary") { _, _ -> Response in
            json(await listing.summary())
        }
        router.get("/api/streams") { request, _ -> Response in
            let q = request.uri.queryParameters
            if ["status", "protocol", "group", "tag", "limit", "offset"].contains(where: { q[$0[...]] != nil }) {
                // A filtered page (what a status script or wall display asks for), cut from the shared list.
                let status = q["status"].map(String.init), proto = q["protocol"].map(String.init)
                let group = q["group"].map(String.init), tag = q["tag"].map(String.init)
                let picture = await listing.picture()
                // Streams by colour are indexed when the picture is taken; other filters scan.
                var chosen = status.map { picture.byStatus[$0] ?? [] } ?? Array(picture.list.indices)
                if proto != nil || group != nil || tag != nil {
                    chosen = chosen.filter { i in
                        let s = picture.list[i]
                        return (proto == nil || proto == s.protocol) && (group == nil || group == s.group)
                            && (tag == nil || s.tags.contains(tag!))
                    }
                }
                let offset = min(max(0, q["offset"].flatMap { Int(String($0)) } ?? 0), chosen.count)
                let limit = min(max(0, q["limit"].flatMap { Int(String($0)) } ?? chosen.count), chosen.count - offset)
                // Each stream was encoded once when the picture was taken: a page is only joined bytes.
                var body = ByteBuffer(string: "[")
                for (n, i) in chosen[offset..<(offset + limit)].enumerated() {
                    if n > 0 { body.writeString(",") }
                    body.writeImmutableBuffer(picture.pieces[i])
                }
                body.writeString("]")
                return rawJSON(body)
            }
            return rawJSON(await listing.current())
        }
        router.get("/api/streams/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            // From the shared picture (≤ 2 s old) when the stream is in it; a stream just added asks the engine.
            if let piece = await listing.piece(id) { return rawJSON(piece) }
            guard var snapshot = await engine.snapshot(id: id) else {
                return json(["error": "no stream with id '\(id)'"], status: .notFound)
            }
            snapshot.uptime = await uptimes.current()[id]
            return json(snapshot)
        }
        router.get("/api/streams/{id}/checks") { request, context -> Response in
            let id = try context.parameters.require("id")
            guard let store else { return json(["error": "no history database"], status: .serviceUnavailable) }
            let q = request.uri.queryParameters
            let checks = try store.checks(stream: id, from: q["from"].flatMap { parseTime(String($0)) }, to: q["to"].flatMap { parseTime(String($0)) },
                                          before: q["before"].flatMap { Int64(String($0)) }, limit: q["limit"].flatMap { Int(String($0)) } ?? 100)
            return json(checks)
        }
        router.get("/api/streams/{id}/changes") { request, context -> Response in
            let id = try context.parameters.require("id")
            guard let store else { return json(["error": "no history database"], status: .serviceUnavailable) }
            let q = request.uri.queryParameters
            return json(try store.changes(stream: id, from: q["from"].flatMap { parseTime(String($0)) }, to: q["to"].flatMap { parseTime(String($0)) }))
        }
        router.get("/api/changes/{id}/thumbnail.jpg") { _, context -> Response in
            guard let store, let id = Int64(try context.parameters.require("id")), let jpeg = try store.thumbnail(change: id) else {
                return json(["error": "no thumbnail"], status: .notFound)
            }
            var headers = HTTPFields()
            headers[.contentType] = "image/jpeg"
            headers[.cacheControl] = "private, max-age=86400"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: jpeg)))
        }
        router.get("/api/export.csv") { request, _ -> Response in
            guard let store else { return json(["error": "no history database"], status: .serviceUnavailable) }
            let q = request.uri.queryParameters
            let streams = q["streams"].map { $0.split(separator: ",").map(String.init) }
            let from = q["from"].flatMap { parseTime(String($0)) }, to = q["to"].flatMap { parseTime(String($0)) }
            let serverZone = await timeZone()
            let zone = q["timezone"].flatMap { TimeZone(identifier: String($0)) } ?? serverZone
            var headers = HTTPFields()
            headers[.contentType] = "text/csv; charset=utf-8"
            headers[.contentDisposition] = "attachment; filename=\"streampulse-checks.csv\""
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                try await CSVExport.export(store: store, streams: streams, from: from, to: to, timeZone: zone) { chunk in
                    try await writer.write(ByteBuffer(string: chunk))
                }
                try await writer.finish(nil)
            })
        }
        router.get("/api/sinks") { _, _ -> Response in
            json(sinks.stats)
        }
        let metrics = MetricsExporter()
        router.get("/metrics") { _, _ -> Response in
            let figures = await uptimes.current()
            let snapshot = await engine.snapshot().map { s in
                var s = s
                s.uptime = figures[s.id]
                return s
            }
            let body = await metrics.render(snapshot: snapshot, stats: await engine.stats(), sinks: sinks.stats)
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        router.get("/api/config/status") { _, _ -> Response in
            json(await config.status)
        }
        router.get("/api/plugins") { _, _ -> Response in
            struct Listing: Encodable {
                var loaded: [PluginDescriptor]
                var refused: [[String: String]]
            }
            return json(Listing(
                loaded: plugins.plugins.map(\.descriptor),
                refused: plugins.refused.map { ["file": ($0.path as NSString).lastPathComponent, "reason": $0.message] }))
        }
        router.get("/api/engine") { _, _ -> Response in
            json(await engine.stats())
        }
        // Benchmarks measure a steady state: clears the lag window and the check counter (admin).
        router.post("/api/settings/engine-stats/reset") { _, _ -> Response in
            await engine.resetStats()
            return json(["status": "reset"])
        }
        router.get("/api/time") { _, _ -> Response in
            guard let time else { return json(TimeSync.unsynced(reason: "no NTP servers configured")) }
            return json(await time.current)
        }
        return router
    }

    /// Accepts Unix seconds or ISO 8601.
    static func parseTime(_ text: String) -> Date? {
        if let seconds = Double(text) { return Date(timeIntervalSince1970: seconds) }
        return ISO8601DateFormatter().date(from: text)
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

/// Runs the engine as a service: graceful shutdown cancels probes in flight.
public struct EngineService: Service {
    public let engine: Engine
    public init(engine: Engine) { self.engine = engine }
    public func run() async throws {
        await cancelWhenGracefulShutdown { await engine.run() }
    }
}

/// Watches the config, secrets and plugins folders; SIGHUP also reloads.
public struct ConfigWatchService: Service {
    public let config: ConfigService
    public let secretsPath: String?
    public init(config: ConfigService, secretsPath: String?) {
        self.config = config
        self.secretsPath = secretsPath
    }
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await config.watch(secretsPath: secretsPath) }
                group.addTask {
                    for await _ in await UnixSignalsSequence(trapping: .sighup) {
                        await config.reload(reason: "SIGHUP")
                    }
                }
                await group.waitForAll()
            }
        }
    }
}

/// glibc's malloc_trim (declared in <malloc.h>, which the Glibc module does not export).
@_silgen_name("malloc_trim") func glibcMallocTrim(_ pad: Int) -> Int32

/// Returns freed heap to the kernel every 30 s (after a burst of deep probes the allocator would
/// otherwise keep its peak).
public struct MemoryTrimService: Service {
    public init() {}
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(30))
                _ = glibcMallocTrim(0)
            }
        }
    }
}

/// Measures the clock offset in the background.
public struct TimeSyncService: Service {
    public let time: TimeService
    public init(time: TimeService) { self.time = time }
    public func run() async throws {
        await cancelWhenGracefulShutdown { await time.run() }
    }
}

/// Uptime figures for every stream, recomputed at most every 30 s (a few GROUP BYs over the rollups).
actor UptimeCache {
    let store: SQLiteStore?
    private var cached: [String: SQLiteStore.Uptime] = [:]
    private var computed = ContinuousClock.now - .seconds(3600)

    init(store: SQLiteStore?) { self.store = store }

    func current() -> [String: SQLiteStore.Uptime] {
        guard let store else { return [:] }
        if computed.duration(to: .now) > .seconds(30) {
            cached = (try? store.uptimes()) ?? cached
            computed = .now
        }
        return cached
    }
}

/// The encoded stream list, shared by every client. Rebuilt at most every 2 s and only when the engine's
/// state changed; while one rebuild runs (≈ 0.1–0.3 s for 10,000 streams) every request is answered from
/// the previous copy, so 20 dashboards polling 10,000 streams never queue behind an encode.
actor StreamListCache {
    let engine: Engine
    let uptimes: UptimeCache
    /// One consistent picture of the fleet, rebuilt at most every 2 s.
    struct Entry: Sendable {
        var buffer: ByteBuffer
        var list: [StreamSnapshot]
        /// Each stream's JSON, encoded once per picture.
        var pieces: [ByteBuffer]
        var index: [String: Int]
        /// Positions of the streams of each colour (ok, degraded, pending, down, unknown).
        var byStatus: [String: [Int]]
        var summary: Summary
    }
    private var cached: Entry?
    /// The engine's config generation the cached picture was taken at (or after).
    private var cachedGeneration = -1
    private var version = -1
    private var built = ContinuousClock.now
    private var rebuilding: Task<Entry, Never>?

    init(engine: Engine, uptimes: UptimeCache) {
        self.engine = engine
        self.uptimes = uptimes
    }

    /// The whole list, encoded.
    func current() async -> ByteBuffer { await entry().buffer }


    /// One stream's JSON from the shared picture (nil when it is not in it, e.g. added by a reload just now).
    func piece(_ id: String) async -> ByteBuffer? {
        let entry = await entry()
        return entry.index[id].map { entry.pieces[$0] }
    }

    /// The whole picture (for filtered pages).
    func picture() async -> Entry { await entry() }

    private func entry() async -> Entry {
        // Requests never wait on the engine once a picture exists: a stale one starts a rebuild and is
        // answered meanwhile. After a reload, though, the picture's list of streams is wrong: requests
        // wait for one taken after the reload (≈ 0.1–0.3 s for 10,000 streams).
        let generation = engine.configGeneration.load(ordering: .acquiring)
        if let cached, cachedGeneration >= generation {
            if rebuilding == nil && built.duration(to: .now) >= .seconds(2) { startRebuild() }
            return cached
        }
        for _ in 0..<3 {
            if rebuilding == nil { startRebuild() }
            let entry = await rebuilding!.value
            if cachedGeneration >= generation { return entry }
        }
        return cached!
    }

    struct Summary: Encodable, Sendable {
        var streams: Int
        var ok: Int
        var degraded: Int
        var pending: Int
        var down: Int
        var unknown: Int
        var engine: EngineStats
    }

    /// Counts per colour and engine figures: the cheapest answer to "is everything fine?".
    func summary() async -> Summary { await entry().summary }

    private func startRebuild() {
        let engine = self.engine, uptimes = self.uptimes
        let previous = cached, previousVersion = version, age = built.duration(to: .now)
        rebuilding = Task.detached {
            let generation = engine.configGeneration.load(ordering: .acquiring)
            let engineVersion = await engine.version
            if let previous, engineVersion == previousVersion && age < .seconds(30) {
                await self.finished(previous, version: engineVersion, generation: generation)  // nothing changed: keep it
                return previous
            }
            let figures = await uptimes.current()
            let list = await engine.snapshot().map { s in
                var s = s
                s.uptime = figures[s.id]
                return s
            }
            let pieces = list.map { ByteBuffer(bytes: (try? Wire.encode($0)) ?? Data("{}".utf8)) }
            var buffer = ByteBuffer()
            buffer.reserveCapacity(pieces.reduce(2) { $0 + $1.readableBytes + 1 })
            buffer.writeString("[")
            for (n, piece) in pieces.enumerated() {
                if n > 0 { buffer.writeString(",") }
                buffer.writeImmutableBuffer(piece)
            }
            buffer.writeString("]")
            var byStatus: [String: [Int]] = [:]
            var index: [String: Int] = [:]
            for (i, s) in list.enumerated() {
                byStatus[s.pending ? "pending" : s.status.rawValue, default: []].append(i)
                index[s.id] = i
            }
            func count(_ key: String) -> Int { byStatus[key]?.count ?? 0 }
            let summary = Summary(streams: list.count, ok: count("ok"), degraded: count("degraded"), pending: count("pending"),
                                  down: count("down"), unknown: count("unknown"), engine: await engine.stats())
            let entry = Entry(buffer: buffer, list: list, pieces: pieces, index: index, byStatus: byStatus, summary: summary)
            await self.finished(entry, version: engineVersion, generation: generation)
            return entry
        }
    }

    private func finished(_ entry: Entry, version engineVersion: Int, generation: Int) {
        cached = entry
        cachedGeneration = generation
        version = engineVersion
        built = .now
        rebuilding = nil
    }
}

/// Runs the sink chain; on shutdown every sink writes what is queued, then closes.
public struct SinkService: Service {
    public let manager: SinkManager
    public init(manager: SinkManager) { self.manager = manager }
    public func run() async throws {
        try? await gracefulShutdown()
        await manager.stopAll()
    }
}
