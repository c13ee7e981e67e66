import Foundation
import PostgresNIO
import ServiceLifecycle
import UnixSignals

/// Runs the engine as a service: graceful shutdown cancels probes in flight.
public struct EngineService: Service {
    public let engine: Engine
    public init(engine: Engine) { self.engine = engine }
    public func run() async throws {
        await cancelWhenGracefulShutdown { await engine.run() }
    }
}

/// Rebuilds the shared fleet picture behind `/api/streams` and `/api/summary` when it is wanted.
struct FleetPictureService: Service {
    let listing: StreamListCache
    func run() async throws {
        await cancelWhenGracefulShutdown { await listing.run() }
    }
}

/// Runs the dashboard's live preview sessions: graceful shutdown ends them.
public struct PreviewService: Service {
    public let previews: PreviewHub
    public init(previews: PreviewHub) { self.previews = previews }
    public func run() async throws {
        await cancelWhenGracefulShutdown { await previews.run() }
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

/// Returns freed heap to the kernel every 5 s (after a burst of deep probes the allocator would
/// otherwise keep its peak; the first round of a large fleet is one long burst). A trim of a 100 MB heap
/// takes about a millisecond.
public struct MemoryTrimService: Service {
    public init() {}
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
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

/// Runs the sink chain; on shutdown every sink writes what is queued, then closes.
public struct SinkService: Service {
    public let manager: SinkManager
    public init(manager: SinkManager) { self.manager = manager }
    public func run() async throws {
        async let runners: Void = manager.run()
        try? await gracefulShutdown()
        await manager.stopAll()
        await runners
    }
}

/// Runs an agent's PostgreSQL client (its connection pool) until the services after it have stopped.
struct PostgresClientService: Service {
    let client: PostgresClient
    func run() async throws {
        await cancelWhenGracefulShutdown { await client.run() }
    }
}

/// Accounts in PostgreSQL: the tables are made (migrations) and the first admin created once the client runs —
/// retried until PostgreSQL answers; sign-ins fail until then. Then it waits for the shutdown.
struct AccountsBootstrapService: Service {
    let history: PostgresHistory
    let accounts: Accounts
    let dataDirectory: String
    let environment: [String: String]
    let logger: Logger

    func run() async throws {
        var failures = 0
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                try await history.migrate()
                await Monitor.bootstrap(accounts, dataDirectory: dataDirectory, environment: environment, logger: logger)
                break
            } catch {
                failures += 1
                if failures == 1 || failures % 10 == 0 {
                    logger.error("accounts phase=migrate: PostgreSQL cannot be prepared for dashboard accounts yet (attempt \(failures)): \(String(describing: error).prefix(300)); sign-ins fail until it can")
                }
                try? await Task.sleep(for: .seconds(2))
            }
        }
        try? await gracefulShutdown()
    }
}
