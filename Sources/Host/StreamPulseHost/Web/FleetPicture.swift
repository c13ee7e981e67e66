import Foundation
import NIOCore
import StreamPulseCore

/// Uptime figures for every stream: the share of time with pictures, from state changes and monitor runs.
actor UptimeCache {
    let store: (any AvailabilityReading)?
    /// Each stream's maintenance intervals over a period (left out of its uptime).
    let maintenance: (@Sendable (Date, Date) -> [String: [(start: Date, end: Date)]])?
    private var cached: [String: SQLiteStore.Uptime] = [:]
    private var computed = ContinuousClock.now - .seconds(3600)

    init(store: (any AvailabilityReading)?, maintenance: (@Sendable (Date, Date) -> [String: [(start: Date, end: Date)]])? = nil) {
        self.store = store
        self.maintenance = maintenance
    }

    /// Time-based availability (`SQLiteStore.availability`), recomputed at most every 30 s.
    func current() async -> [String: SQLiteStore.Uptime] {
        guard let store else { return [:] }
        if computed.duration(to: .now) > .seconds(30) {
            computed = .now  // before the read: callers meanwhile get the previous figures, not a second read
            let now = Date()
            let excluded = maintenance?(now.addingTimeInterval(-30 * 86_400), now) ?? [:]
            let month = now.addingTimeInterval(-30 * 86_400)
            if let history = try? await store.availabilityHistory(from: month, to: now, now: now) {
                cached = SQLiteStore.uptimes(history, now: now) { excluded[$0] ?? [] }
            }
        }
        return cached
    }
}

/// The encoded stream list, shared by every client. Rebuilt by `run()` (the `FleetPictureService`) at most
/// every 2 s when read and the engine's state changed, and at once after a reload; while one rebuild runs
/// (≈ 0.1–0.3 s for 10,000 streams) every request is answered from the previous copy, so 20 dashboards
/// polling 10,000 streams never queue behind an encode.
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
        /// Streams in maintenance when the picture was taken.
        var maintenance: Set<String> = []
    }
    private var cached: Entry?
    /// The engine's config generation the cached picture was taken at (or after).
    private var cachedGeneration = -1
    private var version = -1
    private var built = ContinuousClock.now
    /// Requests waiting for a picture newer than the cached one.
    private var waiters: [CheckedContinuation<Entry, Never>] = []
    /// Fired when a rebuild is wanted: a stale picture was read, or a reload changed the streams.
    private nonisolated let wanted = Signal()
    private var running = false

    /// Which streams are in maintenance now (the incident service's windows and silences).
    let maintenance: (@Sendable () -> Set<String>)?

    init(engine: Engine, uptimes: UptimeCache, maintenance: (@Sendable () -> Set<String>)? = nil) {
        self.engine = engine
        self.uptimes = uptimes
        self.maintenance = maintenance
        engine.onConfigApplied { [wanted] in wanted.fire() }
    }

    /// Rebuilds the picture whenever one is wanted, until cancelled (`FleetPictureService`). After a reload
    /// the rebuild starts at once, so `/api/streams` shows the new streams as soon as the engine has them.
    func run() async {
        running = true
        defer { running = false }
        while !Task.isCancelled {
            await wanted.wait()
            guard !Task.isCancelled else { break }
            finished(await rebuild())
        }
        let stranded = waiters
        waiters = []
        for waiter in stranded { waiter.resume(returning: cached ?? Self.empty) }
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
        // Requests never wait on the engine once a picture exists: a stale one asks for a rebuild and is
        // answered meanwhile. After a reload, though, the picture's list of streams is wrong: requests
        // wait for one taken after the reload (≈ 0.1–0.3 s for 10,000 streams, started by the reload).
        let generation = engine.configGeneration.load(ordering: .acquiring)
        if let cached, cachedGeneration >= generation {
            if built.duration(to: .now) >= .seconds(2) { wanted.fire() }
            return cached
        }
        guard running else {
            // No rebuild service (a monitor assembled but not served, as in-process tests do): build here.
            let result = await rebuild()
            finished(result)
            return result.entry
        }
        for _ in 0..<3 {
            wanted.fire()
            let entry = await withCheckedContinuation { waiters.append($0) }
            if cachedGeneration >= generation || !running { return entry }
        }
        return cached ?? Self.empty
    }

    struct Summary: Encodable, Sendable {
        var streams: Int
        var ok: Int
        var degraded: Int
        var pending: Int
        var down: Int
        var unknown: Int
        var engine: EngineStats
        /// The same counts per site, for fleets whose streams name one (absent otherwise).
        var sites: [String: SiteCounts]? = nil
    }

    /// One site's streams by colour.
    struct SiteCounts: Encodable, Sendable, Equatable {
        var streams = 0, ok = 0, degraded = 0, pending = 0, down = 0, unknown = 0
    }

    /// Counts per colour and engine figures: the cheapest answer to "is everything fine?".
    func summary() async -> Summary { await entry().summary }

    /// A new picture taken against the cached one (reused where nothing changed).
    private func rebuild() async -> Built {
        await Self.build(engine: engine, uptimes: uptimes, maintenance: maintenance?() ?? [], previous: cached, previousVersion: version, previousGeneration: cachedGeneration,
                         age: built.duration(to: .now))
    }

    /// A picture with no streams (answered only if the service stops while a request waits).
    static let empty = Entry(buffer: ByteBuffer(string: "[]"), list: [], pieces: [], index: [:], byStatus: [:],
                             summary: Summary(streams: 0, ok: 0, degraded: 0, pending: 0, down: 0, unknown: 0, engine: EngineStats(streams: 0, checks: 0, inFlight: 0, lagP50Ms: 0, lagP99Ms: 0, lanes: [:])))

    /// What one rebuild produces: the picture and the engine state it was taken at.
    struct Built: Sendable {
        var entry: Entry
        var version: Int
        var generation: Int
    }

    /// Takes and encodes a new picture (off the actor: `nonisolated`), reusing `previous` where nothing changed.
    nonisolated static func build(engine: Engine, uptimes: UptimeCache, maintenance: Set<String>, previous: Entry?, previousVersion: Int, previousGeneration: Int,
                                  age: Duration) async -> Built {
            let generation = engine.configGeneration.load(ordering: .acquiring)
            let engineVersion = await engine.version
            // A reload may rename a stream without any probe result (the version) changing: compare both.
            if let previous, engineVersion == previousVersion, generation == previousGeneration, maintenance == previous.maintenance,
               age < .seconds(30) {
                return Built(entry: previous, version: engineVersion, generation: generation)  // nothing changed: keep it
            }
            let figures = await uptimes.current()
            let list = await engine.snapshot().map { s in
                var s = s
                s.uptime = figures[s.id]
                if maintenance.contains(s.id) { s.maintenance = true }
                return s
            }
            // Only streams whose snapshot changed are encoded again (a few hundred per rebuild at 10,000 streams
            // and 60 s intervals): encoding is most of a rebuild's cost, so a reload shows up at once.
            let pieces = list.map { s -> ByteBuffer in
                if let previous, let i = previous.index[s.id], previous.list[i] == s { return previous.pieces[i] }
                return ByteBuffer(bytes: (try? Wire.encode(s)) ?? Data("{}".utf8))
            }
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
            var summary = Summary(streams: list.count, ok: count("ok"), degraded: count("degraded"), pending: count("pending"),
                                  down: count("down"), unknown: count("unknown"), engine: await engine.stats())
            var sites: [String: SiteCounts] = [:]
            for s in list {
                guard let site = s.site else { continue }
                var counts = sites[site] ?? SiteCounts()
                counts.streams += 1
                switch s.pending ? "pending" : s.status.rawValue {
                case "ok": counts.ok += 1
                case "degraded": counts.degraded += 1
                case "pending": counts.pending += 1
                case "down": counts.down += 1
                default: counts.unknown += 1
                }
                sites[site] = counts
            }
            if !sites.isEmpty { summary.sites = sites }
            let entry = Entry(buffer: buffer, list: list, pieces: pieces, index: index, byStatus: byStatus, summary: summary,
                              maintenance: maintenance)
            return Built(entry: entry, version: engineVersion, generation: generation)
    }

    private func finished(_ result: Built) {
        cached = result.entry
        cachedGeneration = result.generation
        version = result.version
        built = .now
        let woken = waiters
        waiters = []
        for waiter in woken { waiter.resume(returning: result.entry) }
    }
}
