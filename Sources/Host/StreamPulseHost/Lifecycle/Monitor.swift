import Foundation
import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle

/// `streampulse serve` assembled from a config file: plugins → config → sinks → engine → web, and the
/// services that run them in one `ServiceGroup` (the application's). Tests assemble the same monitor.
public struct Monitor: Sendable {
    /// Why the monitor cannot start, with the exit code `serve` uses.
    public struct Refusal: Error, Sendable {
        public var message: String
        public var exitCode: Int32
    }

    public let engine: Engine
    public let config: ConfigService
    public let web: WebServices
    public let sinkManager: SinkManager
    let services: [any Service]
    let address: (host: String, port: Int)
    let httpLogger: Logger

    /// Loads the config and builds every part; nothing runs until `run()`.
    /// - Parameters:
    ///   - dataDirectory, listen: command-line overrides of `settings.data_dir` and `settings.listen`.
    ///   - bcryptCost: the cost of password hashes (tests lower it).
    /// - Parameter site: probe only this site's streams (`serve --site NAME`), also after every reload.
    /// - Parameter agent: share the site with other agents through leases in PostgreSQL, writing results there
    ///   (`serve --site NAME --postgres URL`); needs `site`.
    /// - Parameter dashboard: probe nothing; show what the agents write to PostgreSQL (`serve --no-probe`).
    public static func assemble(configPath: String, pluginsDirectory: String, dataDirectory: String? = nil, listen: String? = nil,
                                site: String? = nil, agent agentRequest: AgentOptions? = nil, dashboard dashboardRequest: DashboardOptions? = nil,
                                verbose: Bool = false, logger: Logger,
                                environment: [String: String] = ProcessInfo.processInfo.environment,
                                bcryptCost: UInt8 = 11) async throws -> Monitor {
        let scrubber = SecretScrubber()
        let plugins = PluginHost(directory: pluginsDirectory, logger: logger, scrubber: scrubber)
        plugins.scan()
        let loaded = ConfigLoader(environment: environment, knownSchemes: Set(plugins.router.claims.map(\.scheme))).load(path: configPath)
        for problem in loaded.problems { logger.log(level: problem.severity == .error ? .error : .warning, "\(problem.description)") }
        guard var cfg = loaded.config else {
            throw Refusal(message: "The config has errors; nothing to monitor. Fix them (see `streampulse validate \(configPath)`).", exitCode: 3)
        }
        let fileSettings = cfg.settings
        if let site {
            let all = cfg.streams.count
            cfg = cfg.restricted(toSite: site)
            if cfg.streams.isEmpty {
                let known = loaded.config?.sites ?? []
                logger.warning("site \(site): no stream in \(configPath) has this site (\(known.isEmpty ? "no stream names a site" : "sites there: " + known.joined(separator: ", "))); nothing to probe until the config gives it streams")
            } else {
                logger.info("site \(site): probing \(cfg.streams.count) of the \(all) streams in \(configPath)")
            }
        }
        if let dataDirectory { cfg.settings.dataDir = dataDirectory }
        if let listen { cfg.settings.listen = listen }
        scrubber.replace(with: cfg.credentials.values.map(\.password) + cfg.streams.compactMap { $0.inlineCredentials?.password }
                         + cfg.notify.channels.flatMap(\.secrets) + [cfg.postgres?.password].compactMap { $0 })
        try FileManager.default.createDirectory(atPath: cfg.settings.dataDir, withIntermediateDirectories: true)
        chmod(cfg.settings.dataDir, 0o700)  // the database holds accounts and the one-time password file
        let address = try parseListen(cfg.settings.listen)
        logger.info("Monitoring \(cfg.streams.filter(\.enabled).count) streams from \(configPath) with \(plugins.plugins.count) plugins; data in \(cfg.settings.dataDir); API on http://\(address.host):\(address.port)")

        let settings = LiveSettings(cfg.settings)
        let sinks = SinkChain()
        let sinkManager = SinkManager(chain: sinks, logger: logger)
        // A dashboard reads every history from PostgreSQL: its own database records nothing.
        let store = await openHistory(cfg, settings: settings, sinkManager: sinkManager, records: dashboardRequest == nil, logger: logger)
        await sinkManager.setLocation(dataDirectory: cfg.settings.dataDir, timeZone: TimeZone(identifier: cfg.settings.timezone) ?? .gmt)
        await sinkManager.apply(cfg.sinks)
        let offset = ClockOffset()
        // The PostgreSQL of a site deployment: --postgres URL, else the config's storage.postgres.
        var agent = agentRequest, dashboard = dashboardRequest
        if var wanted = agent {
            if wanted.target == nil { wanted.target = cfg.postgres }
            agent = wanted.target == nil ? nil : wanted
        }
        if var wanted = dashboard {
            wanted.target = wanted.target ?? cfg.postgres
            guard wanted.target != nil else {
                throw Refusal(message: "--no-probe shows what site agents write to PostgreSQL: give it with --postgres URL or storage.postgres in \(configPath)", exitCode: 2)
            }
            dashboard = wanted
        }
        if agent == nil, dashboard == nil, cfg.postgres != nil {
            logger.notice("storage.postgres is used by site agents (serve --site NAME) and dashboards (serve --no-probe); this monitor keeps its history in SQLite")
        }
        // An agent starts with no stream: it probes the ones its first lease round gives it.
        var startingConfig = cfg
        var agentServices: [any Service] = []
        var siteAgent: SiteAgent?
        var postgresClient: PostgresClient?
        if let agent, let target = agent.target {
            guard let site else { throw Refusal(message: "--postgres (an agent sharing a site) needs --site NAME", exitCode: 2) }
            startingConfig.streams = []
            let client = PostgresClient(configuration: try target.clientConfiguration(holdLocksAtMost: agent.leasePeriod / 2), backgroundLogger: logger)
            let leases = StreamLeases(client: client, period: agent.leasePeriod, logger: logger)
            let history = PostgresHistory(client: client, logger: logger)
            let book = LeaseBook(clock: { offset.now() })
            await sinkManager.addBuiltIn(PostgresSink(history: history, leases: leases, book: book, site: site, agent: agent.name, logger: logger,
                                                      settings: settings))
            logger.notice("site \(site): agent \(agent.name) shares the site through leases of \(agent.leasePeriod) in \(target)")
            siteAgent = SiteAgent(site: site, agent: agent.name, leases: leases, history: history, book: book, config: nil, logger: logger)
            agentServices = [PostgresClientService(client: client)]
            postgresClient = client
        }
        var feed: SiteFeed?
        if let dashboard, let target = dashboard.target {
            guard agent == nil else { throw Refusal(message: "a --no-probe dashboard is not an agent", exitCode: 2) }
            let client = PostgresClient(configuration: try target.clientConfiguration(holdLocksAtMost: dashboard.leasePeriod / 2),
                                        backgroundLogger: logger)
            logger.notice("dashboard: probing nothing; showing what the agents write to \(target)")
            agentServices = [PostgresClientService(client: client)]
            postgresClient = client
            feed = SiteFeed(history: PostgresHistory(client: client, logger: logger),
                            leases: StreamLeases(client: client, period: dashboard.leasePeriod, logger: logger), engine: nil, logger: logger)
        }
        // One reader of PostgreSQL's shared tables for what follows (incident evidence, accounts' migrations, the
        // dashboard's history).
        let postgresHistory = postgresClient.map { PostgresHistory(client: $0, logger: logger) }
        // Before the engine: its first event is the stream list, which the incident service needs.
        // In a site deployment the dashboards tell (one of them, elected; incidents in PostgreSQL): an agent sees
        // only the streams it holds and cannot tell a dead site from dead cameras.
        var incidents: IncidentService?
        if let client = postgresClient, dashboard != nil {
            let election = NotifierElection(client: client, logger: logger)
            incidents = IncidentService(config: cfg, store: store, storage: PostgresIncidents(client: client, logger: logger),
                                        pictures: postgresHistory, election: election, logger: logger)
            agentServices.append(NotifierElectionService(election: election))
        } else if agent != nil {
            logger.info("site \(site ?? ""): incidents and notifications come from the dashboards (serve --no-probe), which see every site")
        } else if store != nil {
            incidents = IncidentService(config: cfg, store: store, logger: logger)
        }
        if let incidents { await sinkManager.addBuiltIn(incidents, capacity: 20_000) }
        let engine = Engine(config: startingConfig, plugins: plugins, logger: logger, sinks: sinks, clock: offset, observing: dashboard != nil)
        if let feed {
            await feed.attach(engine)
            agentServices.append(SiteFeedService(feed: feed))
        }
        if let store {
            do { await engine.restoreBaselines(try await store.baselines()) } catch {
                logger.error("picture baselines could not be read (streams learn their profile and reference again): \(error)")
            }
        }
        let config = ConfigService(path: configPath, initial: cfg, fileSettings: fileSettings, settings: settings,
                                   initialProblems: loaded.problems, engine: engine, plugins: plugins, scrubber: scrubber, logger: logger,
                                   environment: environment, site: site, leased: agent == nil ? nil : [])
        if let siteAgent {
            await siteAgent.attach(config)
            agentServices.append(SiteAgentService(agent: siteAgent))
        }
        await config.setSinks(sinkManager)
        let time = cfg.settings.ntpServers.isEmpty ? nil
            : TimeService(servers: cfg.settings.ntpServers, interval: cfg.settings.ntpInterval, logger: logger, offset: offset)
        let secretsPath = cfg.settings.secretsFile.hasPrefix("/") ? cfg.settings.secretsFile
            : ((configPath as NSString).deletingLastPathComponent as NSString).appendingPathComponent(cfg.settings.secretsFile)
        // Accounts: in PostgreSQL when this monitor uses one (every dashboard and agent of the deployment shares
        // them), else in the embedded database.
        var accounts: Accounts?
        if let client = postgresClient {
            let shared = Accounts(storage: PostgresAccounts(client: client, logger: logger), bcryptCost: bcryptCost)
            agentServices.insert(AccountsBootstrapService(history: PostgresHistory(client: client, logger: logger), accounts: shared,
                                                          dataDirectory: cfg.settings.dataDir, environment: environment, logger: logger), at: 1)
            logger.info("Dashboard accounts in PostgreSQL (shared by every dashboard and agent using it)")
            accounts = shared
        } else {
            accounts = await openAccounts(store, dataDirectory: cfg.settings.dataDir, environment: environment, bcryptCost: bcryptCost,
                                          logger: logger)
        }
        // A dashboard reads the history, uptime and report from PostgreSQL (every agent's, also from before it started).
        let sharedHistory = dashboard == nil ? nil : postgresHistory
        let live = LiveHub()
        await sinkManager.addBuiltIn(live, capacity: 20_000)
        if let incidents { await config.setIncidents(incidents) }
        let web = WebServices(engine: engine, config: config, plugins: plugins, time: time, store: store, sinks: sinks, accounts: accounts,
                              live: live, previews: PreviewHub(engine: engine, settings: settings), settings: settings, logger: logger,
                              incidents: incidents, history: sharedHistory, availability: sharedHistory)

        // Shutdown runs in reverse order: the engine stops first, then the sinks write what is queued.
        // An agent's PostgreSQL client and lease rounds come first: they stop last, after the sinks have written
        // what they hold under the leases.
        var services: [any Service] = agentServices + [SinkService(manager: sinkManager), EngineService(engine: engine),
                                       ConfigWatchService(config: config, secretsPath: secretsPath)]
        services += [PreviewService(previews: web.previews), FleetPictureService(listing: web.listing)]
        if let time { services.append(TimeSyncService(time: time)) }
        services.append(MemoryTrimService())
        var httpLogger = logger
        httpLogger.logLevel = verbose ? .debug : .warning
        return Monitor(engine: engine, config: config, web: web, sinkManager: sinkManager, services: services,
                       address: address, httpLogger: httpLogger)
    }

    /// How an agent shares its site with others (`serve --site NAME --postgres URL`, or `--site NAME` with
    /// `storage.postgres` in the config).
    public struct AgentOptions: Sendable {
        /// Nil: the config's `storage.postgres`; with neither, the monitor is no agent (one monitor for the site).
        public var target: PostgresTarget?
        /// This agent's name in the leases (unique per running process).
        public var name: String
        /// How long a lease holds without renewal; others take an agent's streams within two of these.
        public var leasePeriod: Duration

        public init(target: PostgresTarget?, name: String, leasePeriod: Duration) {
            self.target = target
            self.name = name
            self.leasePeriod = leasePeriod
        }
    }

    /// A dashboard that probes nothing and shows what the site agents write to PostgreSQL (`serve --no-probe`).
    public struct DashboardOptions: Sendable {
        /// Nil: the config's `storage.postgres`.
        public var target: PostgresTarget?
        /// The agents' lease period: a site none of whose agents reported for this long is shown unreachable.
        public var leasePeriod: Duration

        public init(target: PostgresTarget?, leasePeriod: Duration) {
            self.target = target
            self.leasePeriod = leasePeriod
        }
    }

    /// Runs until SIGTERM/SIGINT (graceful shutdown) or a service fails.
    public func run() async throws {
        let settings = web.settings.current
        let connections = FileLimits.webConnections(wanted: settings.maxConnections, logger: web.logger)
        let perAddress = ConnectionsByAddress(limit: min(settings.maxConnectionsPerAddress, connections), exempt: settings.trustedProxies)
        let app = Application(
            router: APIServer.router(web),
            server: .http1(configuration: .init(
                additionalChannelHandlers: [PerAddressLimitHandler(perAddress)],
                idleTimeout: .milliseconds(Int64(settings.idleTimeout.milliseconds)))),
            configuration: .init(address: .hostname(address.host, port: address.port), serverName: "StreamPulse",
                                 availableConnectionsDelegate: .maximum(connections, logger: httpLogger)),
            services: services,
            logger: httpLogger)
        try await app.runService()
    }

    /// History in SQLite in the data folder. A database that cannot be opened is logged and monitoring
    /// carries on without history.
    static func openHistory(_ cfg: Config, settings: LiveSettings, sinkManager: SinkManager, records: Bool = true, logger: Logger) async -> SQLiteStore? {
        let path = (cfg.settings.dataDir as NSString).appendingPathComponent("streampulse.db")
        do {
            let store = try SQLiteStore(path: path)
            guard records else { return store }
            await sinkManager.addBuiltIn(SQLiteSink(store: store, settings: settings, logger: logger))
            logger.info("History in \(path)")
            return store
        } catch {
            logger.error("Cannot open the history database \(path): \(error). Monitoring continues without history.")
            return nil
        }
    }

    /// Dashboard accounts live in the history database. No default password: the first start creates
    /// `admin` with STREAMPULSE_ADMIN_PASSWORD or a random password that must be changed at first sign-in.
    static func openAccounts(_ store: SQLiteStore?, dataDirectory: String, environment: [String: String], bcryptCost: UInt8,
                             logger: Logger) async -> Accounts? {
        guard let store else {
            logger.error("The dashboard and API need the history database for accounts; only /healthz answers.")
            return nil
        }
        let accounts = Accounts(store: store, bcryptCost: bcryptCost)
        await bootstrap(accounts, dataDirectory: dataDirectory, environment: environment, logger: logger)
        return accounts
    }

    /// The first start: creates `admin` (see `Accounts.bootstrap`) and says what happened, never the password
    /// from the environment.
    static func bootstrap(_ accounts: Accounts, dataDirectory: String, environment: [String: String], logger: Logger) async {
        do {
            let existed = try await accounts.userCount() > 0
            let fromEnvironment = environment["STREAMPULSE_ADMIN_PASSWORD"].map { !$0.isEmpty } ?? false
            if let generated = try await accounts.bootstrap(dataDirectory: dataDirectory, environment: environment) {
                logger.notice("Created dashboard user 'admin' with the one-time password \(generated.password) (also in \(generated.file), mode 0600); it must be changed at first sign-in.")
            } else if !existed, fromEnvironment {
                logger.notice("Created dashboard user 'admin' with the password from STREAMPULSE_ADMIN_PASSWORD.")
            } else if existed, fromEnvironment {
                logger.info("Dashboard users exist; STREAMPULSE_ADMIN_PASSWORD is only used on the first start.")
            }
        } catch Accounts.Failure.duplicate {
            logger.info("Dashboard users exist (another dashboard or agent sharing PostgreSQL made the first one at the same moment).")
        } catch {
            logger.error("Cannot create the first dashboard user: \(error)")
        }
    }

    static func parseListen(_ text: String) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw Refusal(message: "settings.listen must be HOST:PORT, got '\(text)'", exitCode: 3)
        }
        return (String(text[..<colon]), port)
    }
}
