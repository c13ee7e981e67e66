import Foundation
import Logging
import Synchronization

/// Everything the routes use, built once by `serve` (and by the in-process route tests).
public struct WebServices: Sendable {
    public var engine: Engine
    public var config: ConfigService
    public var plugins: PluginHost
    public var time: TimeService?
    public var store: SQLiteStore?
    /// Where the history routes read checks and changes: `store`, or PostgreSQL for a dashboard.
    public var history: (any HistoryReading)?
    /// What uptime figures and the availability report are computed from: `store`, or PostgreSQL for a dashboard.
    public var availability: (any AvailabilityReading)?
    public var sinks: SinkChain
    /// Nil when the history database could not be opened: then only public routes answer.
    public var accounts: Accounts?
    public var live: LiveHub
    public var previews: PreviewHub
    public var settings: LiveSettings
    public var logger: Logger
    /// Incidents, silences and notification channels (nil without the history database).
    public var incidents: IncidentService?
    let uptimes: UptimeCache
    let listing: StreamListCache
    let throttle = LoginGuard()
    /// Live-update streams open per account or token (each holds a connection and a subscriber).
    let liveStreams = ConnectionsByAddress(limit: 8, exempt: [])

    public init(engine: Engine, config: ConfigService, plugins: PluginHost, time: TimeService?, store: SQLiteStore?, sinks: SinkChain,
                accounts: Accounts?, live: LiveHub, previews: PreviewHub, settings: LiveSettings, logger: Logger = Logger(label: "web"),
                incidents: IncidentService? = nil, history: (any HistoryReading)? = nil, availability: (any AvailabilityReading)? = nil) {
        self.engine = engine
        self.history = history ?? store
        self.availability = availability ?? store
        self.config = config
        self.plugins = plugins
        self.time = time
        self.store = store
        self.sinks = sinks
        self.accounts = accounts
        self.live = live
        self.previews = previews
        self.settings = settings
        self.logger = logger
        var intervals: (@Sendable (Date, Date) -> [String: [(start: Date, end: Date)]])?
        if let incidents { intervals = { incidents.maintenanceIntervals(from: $0, to: $1) } }
        uptimes = UptimeCache(store: availability ?? store, maintenance: intervals)
        self.incidents = incidents
        var maintenance: (@Sendable () -> Set<String>)?
        if let incidents { maintenance = { incidents.streamsInMaintenance() } }
        listing = StreamListCache(engine: engine, uptimes: uptimes, maintenance: maintenance)
    }

    /// The server's time zone for CSV files and exports (settings.timezone).
    var serverTimeZone: TimeZone { TimeZone(identifier: settings.current.timezone) ?? .gmt }

    /// The dashboard's default time zone: the admin's choice in Settings, else settings.timezone.
    func dashboardTimeZone() async -> String {
        (try? await accounts?.setting("timezone_default")) ?? settings.current.timezone
    }
}

/// Failed sign-ins and password checks in progress, shared by every request.
final class LoginGuard: Sendable {
    let state = Mutex(LoginThrottle())
    /// Password checks (bcrypt) running or queued at once; more are refused with 429.
    static let maxVerifying = 8
    private let verifying = Atomic<Int>(0)

    /// A place in the bounded password-check queue, or nil when it is full.
    func verifySlot() -> Slot? {
        let (_, now) = verifying.add(1, ordering: .relaxed)
        guard now <= Self.maxVerifying else {
            verifying.subtract(1, ordering: .relaxed)
            return nil
        }
        return Slot(owner: self)
    }

    final class Slot: Sendable {
        private let owner: LoginGuard
        private let released = Atomic<Bool>(false)
        init(owner: LoginGuard) { self.owner = owner }
        /// Gives the place back (once; later calls do nothing).
        func release() {
            if !released.exchange(true, ordering: .relaxed) { owner.verifying.subtract(1, ordering: .relaxed) }
        }
        deinit { release() }
    }
}
