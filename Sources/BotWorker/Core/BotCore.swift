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
/// backup), starts the features, connects to Discord (or the sandbox) and reports ready once the
/// Gateway session is up (or after `connectTimeout`, unhealthy), then runs until shutdown, when
/// the features stop, the queued writes commit and the database is checkpointed and closed.
actor BotCore: Service {
    struct HealthReport: Sendable {
        var healthy: Bool
        var detail: String?
        var rssBytes: Int?
        var discord: DiscordReport?
        var events: EventReport?
        var journal: JournalReport?
        var sessions: SessionReport?
    }

    private let link: SupervisorLink
    /// Asks for a heartbeat now, not at the next interval: a change the supervisor must not miss
    /// (a session resumed or opened, a reconciliation) even if this worker is killed a second later.
    nonisolated let reportRequests: AsyncStream<Void>
    nonisolated let reportNow: AsyncStream<Void>.Continuation
    private let databasePath: String
    private let discordSettings: DiscordSettings
    private let journalSettings: JournalSettings
    private let logger: Logger
    private let databaseLogger: Logger
    private let faults: WorkerFaults
    /// The features' (and the core's) work started by events and commands: children of the
    /// group `run` owns.
    private let background = BackgroundWork()
    private(set) var database: SafeDatabase?
    private var features: [any Feature] = []
    private var events: EventBus?
    private var writes: WriteBatcher?
    private var commands: CommandRouter?
    private var discord: DiscordConnection?

    /// How long the worker waits for the Gateway's READY before it reports ready anyway (and
    /// unhealthy): a Discord outage must not hold the whole service in `starting`.
    static let connectTimeout = Duration.seconds(20)

    init(link: SupervisorLink, databasePath: String, discord: DiscordSettings, journal: JournalSettings, faults: WorkerFaults, logger: Logger, databaseLogger: Logger) {
        (reportRequests, reportNow) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.link = link
        self.faults = faults
        journalSettings = journal
        self.databasePath = databasePath
        discordSettings = discord
        self.logger = logger
        self.databaseLogger = databaseLogger
    }

    func run() async throws {
        let background = self.background
        try await withThrowingDiscardingTaskGroup { work in
            work.addTask { await background.run() }
            // The features stop the background work before they clean up; on a failure before
            // they started, it is cancelled here.
            defer { work.cancelAll() }
            try await runFeatures()
        }
    }

    private func runFeatures() async throws {
        let database = try await openDatabase()
        self.database = database
        serveXPTransfers(database)
        let events = EventBus(logger: logger)
        let writes = WriteBatcher(database: database, logger: databaseLogger)
        let commands = CommandRouter(logger: logger, audit: Logger(label: "audit"), faults: faults)
        let access = DiscordAccess()
        self.events = events
        self.writes = writes
        self.commands = commands
        try await startFeatures(database, events: events, writes: writes, commands: commands, discord: access)
        try await verifyStartup(database)
        let discord = DiscordConnection(
            settings: discordSettings, needsMessageContent: FeatureCatalog.all.contains { $0.needsMessageContent },
            database: database, events: events, writes: writes, commands: commands, access: access,
            sessionChanged: reportNow, logger: logger
        )
        self.discord = discord
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await cancelWhenGracefulShutdown { try await discord.run() }
                    } catch where Task.isShuttingDownGracefully {
                        // Stopping: whatever the connection said on its way down is not a failure.
                    }
                }
                let link = self.link
                let featureCount = features.count
                let logger = self.logger
                let faults = self.faults
                group.addTask {
                    let connected = await discord.waitUntilConnected(timeout: Self.connectTimeout)
                    try Task.checkCancellation()
                    if !connected {
                        logger.warning("no Gateway session yet; reporting ready and retrying in the background")
                    }
                    try await link.send(.ready)
                    logger.info("worker ready", metadata: ["pid": "\(getpid())", "features": "\(featureCount)", "gateway": "\(connected ? "connected" : "not connected")"])
                    faults.afterReady(logger: logger)
                }
                // The first failure (Discord refusing the token, say) ends the wait for ready too.
                while let _ = try await group.next() {}
            }
        } catch let fatal as DiscordConnection.Fatal {
            logger.critical("Discord refused the configuration; the worker stops and must not be restarted", metadata: ["error": "\(fatal.description)"])
            try? await link.send(.fatal(message: fatal.description))
            await stopFeatures(writes)
            throw WorkerExit(code: WorkerExitCode.fatalConfiguration, description: fatal.description)
        } catch let ended as DiscordConnection.SandboxEnded {
            await stopFeatures(writes)
            throw WorkerExit(code: 1, description: ended.description)
        }
        await stopFeatures(writes)
    }

    /// XP imports and exports relayed by the supervisor run in the background group, each an
    /// import in one transaction (`XPTransfer.serve`), and are answered over the link.
    private func serveXPTransfers(_ database: SafeDatabase) {
        let link = self.link
        let background = self.background
        let logger = self.logger
        link.onXPTransfer { request in
            background.submit {
                let reply = await XPTransfer.serve(request, database: database)
                logger.info("xp transfer", metadata: [
                    "action": "\(request.action.rawValue)", "guild_id": "\(request.guild)", "dry_run": "\(request.dryRun)",
                    "outcome": "\(reply.ok ? "ok" : reply.error?.code ?? "failed")",
                ])
                try? await link.send(.xpTransferReply(reply))
            }
        }
    }

    /// The checks before ready, reported to the supervisor (`worker.startup` in the status); a
    /// critical one stops the worker with what to do.
    private func verifyStartup(_ database: SafeDatabase) async throws {
        var checks: [HealthStatus.Check] = []
        let (tables, missing) = try await database.read("core.startup-tables") { db -> (Int, [String]) in
            let registered = try String.fetchAll(db, sql: "SELECT name FROM \(BotDatabase.tablesTable) ORDER BY name")
            return (registered.count, try registered.filter { try !db.tableExists($0) })
        }
        checks.append(missing.isEmpty
            ? .init(name: "tables", status: .ok, detail: "all \(tables) registered tables exist")
            : .init(name: "tables", status: .critical, detail: "missing: \(missing.joined(separator: ", ")); restore a backup (`bot-supervisor restore`)"))
        do {
            // A write that is rolled back: the file, its directory and the disk take writes.
            try await database.writer.writeWithoutTransaction { db in
                try db.inTransaction {
                    try db.execute(sql: "CREATE TABLE startup_probe (x TEXT NOT NULL)")
                    try db.execute(sql: "INSERT INTO startup_probe (x) VALUES ('probe')")
                    _ = try String.fetchOne(db, sql: "SELECT x FROM startup_probe")
                    return .rollback
                }
            }
            checks.append(.init(name: "database-write", status: .ok, detail: "a write to a scratch table succeeded and was rolled back"))
        } catch {
            checks.append(.init(name: "database-write", status: .critical, detail: "the database takes no writes (\(DatabaseInspector.describe(error))): is the disk full or read-only?"))
        }
        switch discordSettings.mode {
        case .sandbox:
            checks.append(.init(name: "discord-settings", status: .ok, detail: "sandbox mode: the local Discord, no token needed"))
        case .discord:
            checks.append(discordSettings.token == nil
                ? .init(name: "discord-settings", status: .critical, detail: "discord mode without a token: put it in DISCORD_TOKEN")
                : .init(name: "discord-settings", status: .ok, detail: "discord mode with a token; " + (discordSettings.guildIDs.isEmpty ? "serving every guild the bot is in" : "serving \(discordSettings.guildIDs.count) guild(s)")))
        }
        checks.append(.init(name: "features", status: .ok, detail: "\(features.count) loaded, tables verified: " + FeatureCatalog.all.map { $0.name }.joined(separator: ", ")))
        let report = StartupReport(at: Timestamp.string(), checks: checks)
        try await link.send(.startupReport(report))
        let failed = checks.filter { $0.status == .critical }
        logger.log(level: failed.isEmpty ? .info : .critical, "start-up checks", metadata: [
            "outcome": "\(failed.isEmpty ? "ok" : "failed")", "problems": "\(failed.map { "\($0.name): \($0.detail)" }.joined(separator: "; "))",
        ])
        if !failed.isEmpty {
            throw WorkerExit(code: 1, description: "start-up checks failed: " + failed.map { "\($0.name): \($0.detail)" }.joined(separator: "; "))
        }
    }

    /// The background work is stopped first; features clean up in reverse order; every queued write is committed before the exit, and
    /// the database closed.
    private func stopFeatures(_ writes: WriteBatcher) async {
        await background.stop()
        for feature in features.reversed() {
            await feature.cleanup()
        }
        await writes.drain()
        database?.close()
    }

    /// Each feature of the catalog: set up, its database checked, its settings loaded.
    private func startFeatures(_ database: SafeDatabase, events: EventBus, writes: WriteBatcher, commands: CommandRouter, discord: DiscordAccess) async throws {
        let link = self.link
        let alerts = FeatureAlerts { severity, message in
            do {
                try await link.send(.alert(severity: severity, message: message))
            } catch {
                link.logger.warning("alert not delivered to the supervisor", metadata: ["alert": "\(message)", "error": "\(error)"])
            }
        }
        for type in FeatureCatalog.all {
            let feature = type.init(context: FeatureContext(
                database: database, logger: Logger(label: type.logSystem), audit: Logger(label: "audit"), events: events,
                writes: writes, commands: commands, discord: discord, background: background, alerts: alerts
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
            let migrator = AppDatabase.migrator()
            let plan = try AppDatabase.plan(migrator, pool, path: path)
            if !plan.pending.isEmpty {
                if !plan.isFresh {
                    logger.info("migrations pending; asking the supervisor for a pre-migration backup", metadata: ["pending": "\(plan.pending.joined(separator: ","))"])
                    let reply = try await link.backup(.preMigration, migrations: plan.pending)
                    guard reply.ok else {
                        throw WorkerExit(code: 1, description: "no pre-migration backup, so no migration: \(reply.message)")
                    }
                }
                let started = ContinuousClock.now
                try await Self.migrate(migrator, pool)
                databaseLogger.info("migrations applied", metadata: [
                    "applied": "\(plan.pending.joined(separator: ","))", "duration": "\(ContinuousClock.now - started)",
                ])
            }
            let journal = try await openJournal(pool, migrated: !plan.pending.isEmpty)
            let database = SafeDatabase(writer: pool, logger: databaseLogger, journal: journal) { detail in
                try? await link.send(.corruption(detail: detail))
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

    /// Off this actor (`@concurrent`), so that heartbeats go on during a long migration.
    @concurrent
    private static func migrate(_ migrator: DatabaseMigrator, _ pool: DatabasePool) async throws {
        try AppDatabase.migrate(migrator, pool)
        // Journal entries are replayed only onto a snapshot of the schema they were
        // recorded on: a migration starts a new timeline, and a snapshot of it follows.
        try await pool.write { db in _ = try JournalState.startTimeline(db) }
    }

    /// The change journal after the database's current position, in every backup location.
    /// After migrations, waits for the supervisor's snapshot of the new timeline: until one
    /// exists, its entries would have nothing to be replayed onto.
    private func openJournal(_ pool: DatabasePool, migrated: Bool) async throws -> JournalWriter? {
        guard journalSettings.enabled else {
            logger.warning("the change journal is off (journal.enabled = false): a restore loses what was written after its backup")
            return nil
        }
        let (position, databaseID, uncovered) = try await pool.read { db in
            (try JournalState.read(db), try String.fetchOne(db, sql: "SELECT value FROM \(BotDatabase.metaTable) WHERE key = 'database_id'"), try JournalCoverage.tablesWithoutPrimaryKey(db))
        }
        guard let position, let databaseID else {
            throw WorkerExit(code: 1, description: "the database has no journal_state row or database_id: restore a backup (`bot-supervisor restore`)")
        }
        guard uncovered.isEmpty else {
            throw WorkerExit(code: 1, description: "tables without a PRIMARY KEY escape the change journal: \(uncovered.joined(separator: ", ")); give them one in a migration")
        }
        let link = self.link
        let logger = self.logger
        let background = self.background
        // Called on the writer's queue: the request goes out (and its answer is awaited) in the
        // background group, never holding up a commit.
        let journal = JournalWriter(settings: journalSettings, databaseID: databaseID, position: position, logger: databaseLogger) { detail in
            background.submit {
                logger.info("asking the supervisor for a snapshot", metadata: ["reason": "\(BackupReason.journal.rawValue)", "detail": "\(detail)"])
                do {
                    let reply = try await link.backup(.journal, detail: detail)
                    if !reply.ok {
                        logger.error("no snapshot for the journal yet; until the next backup, a restore cannot replay it", metadata: ["error": "\(reply.message)"])
                    }
                } catch {
                    logger.error("could not ask the supervisor for a snapshot", metadata: ["error": "\(error)"])
                }
            }
        }
        link.onSnapshotTaken { _ in journal.snapshotTaken() }
        if migrated {
            let reply = try await link.backup(.postMigration)
            if !reply.ok {
                logger.error("no snapshot of the migrated database yet; until the next backup, a restore cannot replay the journal", metadata: ["error": "\(reply.message)"])
            }
        }
        return journal
    }

    func healthReport() async -> HealthReport {
        var report = HealthReport(healthy: true, detail: nil, rssBytes: ProcessStats.residentBytes())
        report.journal = database?.journal?.report()
        if let discord {
            let connection = await discord.report()
            report.discord = connection.report
            report.sessions = await discord.sessionReport()
            report.healthy = connection.healthy
            report.detail = connection.detail
        }
        if let writes {
            let percentiles = await writes.latencyPercentiles
            report.events = EventReport(
                received: await discord?.received ?? 0,
                failed: await (events?.failures ?? 0) + writes.failed,
                writesCommitted: await writes.committed,
                writeLatencyP50Ms: percentiles.map { ($0.p50 * 100).rounded() / 100 },
                writeLatencyP99Ms: percentiles.map { ($0.p99 * 100).rounded() / 100 },
                commandsSucceeded: await commands?.succeeded ?? 0,
                commandsFailed: await commands?.failed ?? 0
            )
        }
        return report
    }
}
