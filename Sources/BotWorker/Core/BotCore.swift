import BotData
import FoundationEssentials
import GRDB
import Glibc
import IPC
import Logging
import ServiceLifecycle

/// How the worker ends when it cannot go on; `BotWorker` turns it into the exit code.
struct WorkerExit: Error, CustomStringConvertible {
    var code: Int32
    var description: String
}

/// The bot's main work: opens the database (migrating it after the supervisor's pre-migration
/// backup), then runs until shutdown. The Discord connection and the features plug in here.
actor BotCore: Service {
    struct HealthReport: Sendable {
        var healthy: Bool
        var detail: String?
        var rssBytes: Int?
    }

    private let link: SupervisorLink
    private let databasePath: String
    private let logger: Logger
    private let databaseLogger: Logger
    private(set) var database: SafeDatabase?
    private var features: [any Feature] = []

    init(link: SupervisorLink, databasePath: String, logger: Logger, databaseLogger: Logger) {
        self.link = link
        self.databasePath = databasePath
        self.logger = logger
        self.databaseLogger = databaseLogger
    }

    func run() async throws {
        let database = try await openDatabase()
        self.database = database
        try await startFeatures(database)
        try await link.send(.ready)
        logger.info("worker ready", metadata: ["pid": "\(getpid())", "features": "\(features.count)"])
        try? await gracefulShutdown()
        for feature in features.reversed() {
            await feature.cleanup()
        }
    }

    /// Each feature of the catalog: set up, its database checked, its settings loaded.
    private func startFeatures(_ database: SafeDatabase) async throws {
        let events = EventBus(logger: logger)
        for type in FeatureCatalog.all {
            let feature = type.init(context: FeatureContext(
                database: database, logger: Logger(label: type.name), audit: Logger(label: "audit"), events: events
            ))
            try await feature.setup()
            let problems = try await database.read("\(type.name).verify-database") { try feature.verifyDatabase($0) }
            guard problems.isEmpty else {
                throw WorkerExit(code: 1, description: "feature \(type.name): \(problems.joined(separator: "; "))")
            }
            try await feature.loadSettings()
            features.append(feature)
        }
    }

    private func openDatabase() async throws -> SafeDatabase {
        let link = self.link
        let path = databasePath
        do {
            let pool = try AppDatabase.openPool(path: path)
            let database = SafeDatabase(writer: pool, logger: databaseLogger) { detail in
                try? await link.send(.corruption(detail: detail))
            }
            let migrator = AppDatabase.migrator()
            let plan = try AppDatabase.plan(migrator, pool, path: path)
            if !plan.pending.isEmpty {
                if !plan.isFresh {
                    logger.info("migrations pending; asking the supervisor for a pre-migration backup", metadata: ["pending": "\(plan.pending.joined(separator: ","))"])
                    let reply = try await link.requestMigrationBackup(pending: plan.pending)
                    guard reply.ok else {
                        throw WorkerExit(code: 1, description: "no pre-migration backup, so no migration: \(reply.message)")
                    }
                }
                let started = ContinuousClock.now
                // Off this actor, so that heartbeats go on during a long migration.
                try await Task.detached { try AppDatabase.migrate(migrator, pool) }.value
                databaseLogger.info("migrations applied", metadata: [
                    "applied": "\(plan.pending.joined(separator: ","))", "duration": "\(ContinuousClock.now - started)",
                ])
            }
            let pid = Int(getpid())
            try await database.write("core.record-start") { db in
                try db.execute(
                    sql: "INSERT INTO worker_starts (started_at, pid, version) VALUES (?, ?, ?)",
                    arguments: [Timestamp.string(), pid, BotVersion.current]
                )
            }
            return database
        } catch let error as AppDatabase.OpenError {
            try? await link.send(.fatal(message: error.description))
            throw WorkerExit(code: WorkerExitCode.fatalConfiguration, description: error.description)
        } catch let error where DatabaseInspector.isCorruption(error) {
            let detail = "opening \(path): \(DatabaseInspector.describe(error))"
            try? await link.send(.corruption(detail: detail))
            throw WorkerExit(code: 1, description: "the database is damaged (\(detail)); the supervisor restores it")
        } catch let error as WorkerExit {
            throw error
        } catch {
            throw WorkerExit(code: 1, description: "cannot open the database \(path): \(DatabaseInspector.describe(error))")
        }
    }

    func healthReport() -> HealthReport {
        HealthReport(healthy: true, detail: nil, rssBytes: ProcessStats.residentBytes())
    }
}
