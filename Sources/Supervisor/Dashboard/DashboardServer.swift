import FoundationEssentials
import Glibc
import Hummingbird
import IPC
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The web dashboard (`dashboard.listen`), served by the supervisor with Hummingbird.
///
/// Every page and API needs a session (`DashboardAccess`) except the login, the static assets and
/// the public leaderboards a guild turned on. Updates reach the pages as server-sent events. An
/// address that cannot be bound (in use, not local) is logged and raised as a warning alert, and
/// the supervisor goes on without its dashboard: the bot never goes down because of it.
final class DashboardServer: Service, Sendable {
    struct Parts: Sendable {
        var store: StatusStore
        var keeper: DataKeeper
        var commands: ControlCommands
        var samples: DashboardSampler
        var logs: DashboardLogs
        var databasePath: String
    }

    let host: String
    let port: Int
    private let access: DashboardAccess
    private let parts: Parts
    private let logger: Logger
    /// Set on graceful shutdown: the event streams end, so that the server can stop.
    private let stopping = Mutex(false)

    init(host: String, port: Int, access: DashboardAccess, parts: Parts, logger: Logger) {
        self.host = host
        self.port = port
        self.access = access
        self.parts = parts
        self.logger = logger
    }

    func run() async throws {
        let router = Router(context: DashboardContext.self)
        DashboardRoutes(access: access, parts: parts, stopping: { self.stopping.withLock { $0 } }, logger: logger).add(to: router)
        var configuration = ApplicationConfiguration(address: .hostname(host, port: port), serverName: nil)
        configuration.reuseAddress = true
        let logger = self.logger
        let address = "\(host):\(port)"
        let app = Application(router: router, configuration: configuration, onServerRunning: { _ in
            logger.info("dashboard listening", metadata: ["address": "\(address)"])
            // `make run` and anyone at a terminal: where it is and how to get in.
            if isatty(STDERR_FILENO) == 1 {
                StandardError.write("dashboard: \(DashboardLink.base(listen: address))/  (a login link: bot-supervisor dashboard-url)\n")
            }
        }, logger: logger)
        do {
            try await withGracefulShutdownHandler {
                try await app.run()
            } onGracefulShutdown: {
                self.stopping.withLock { $0 = true }
                // The live tails end now; the status streams notice within a second.
                self.parts.logs.endAll()
            }
        } catch {
            guard !stopping.withLock({ $0 }) else { return }
            // Not fatal: the bot runs on without its dashboard.
            logger.warning("dashboard not started", metadata: ["address": "\(address)", LogKey.error: "\(error)"])
            await parts.store.raise(.warning, "the dashboard could not listen on \(address) (\(error)); the bot runs on without it: free the port or set dashboard.listen to another address, then restart the supervisor")
            try? await gracefulShutdown()
        }
    }
}

/// Each request's context: the router's storage, and the peer's address (for the failure limit).
struct DashboardContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let address: String

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        address = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }
}

/// The link `bot-supervisor dashboard-url` prints.
struct DashboardLink: Codable, Sendable {
    var url: String
    var expiresInSeconds: Int

    /// `http://HOST:PORT/login?code=CODE`; a wildcard listen address is shown as this host's name.
    static func url(listen: String, code: String) -> String {
        base(listen: listen) + "/login?code=" + code
    }

    static func base(listen: String) -> String {
        let address = MetricsServer.parse(listen)
        var host = address?.host ?? "127.0.0.1"
        let port = address?.port ?? 8080
        if host == "0.0.0.0" || host == "::" {
            var name = [CChar](repeating: 0, count: 256)
            host = gethostname(&name, name.count) == 0 ? String(cString: name) : "127.0.0.1"
        }
        if host.contains(":") { host = "[" + host + "]" }
        return "http://\(host):\(port)"
    }
}
