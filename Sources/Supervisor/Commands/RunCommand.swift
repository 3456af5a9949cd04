import ArgumentParser
import BotData
import CSupport
import FoundationEssentials
import Glibc
import IPC
import Logging
import NIOPosix
import ServiceLifecycle

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the supervisor daemon (the default): spawn and watch bot-worker, serve the status socket."
    )

    @Option(name: .long, help: "The JSON config file (every key optional; environment variables override it).")
    var config: String?

    @Flag(name: .long, help: "Start a new empty database even though a replica holds data (otherwise `run` refuses, naming the restore command).")
    var initEmpty = false

    func run() async throws {
        // malloc: buffers of 128 KiB and more get mappings of their own, unmapped when freed
        // (glibc would otherwise raise this threshold after the first large free and keep a
        // backup's 4 MiB buffers in its heap), and two arenas rather than one per thread.
        csupport_tune_allocator(128 << 10, 2)
        // Test-only faults, parsed once before anything starts: a value this build does not know
        // is refused rather than ignored.
        let faults: SupervisorFaults
        do {
            faults = try SupervisorFaults.fromEnvironment.get()
        } catch {
            StandardError.write("bot-supervisor: \(error)\n")
            throw ExitCode(2)
        }
        let loaded = try await ConfigLoader.load(file: config)
        let config = loaded.config
        // Replicas: their key must be there before anything is shipped (exit 2 naming the file).
        let replicaKey = config.replicas.targets.isEmpty ? nil : try ReplicaKey.load(config.replicas.keyFile)

        // The dashboard's token: made at first start, and kept out of every log line.
        var dashboardToken: (token: String, widened: Bool)?
        if config.dashboardListen != nil {
            try FileManager.default.createDirectory(atPath: config.dataDir, withIntermediateDirectories: true)
            dashboardToken = try DashboardAccess.loadOrCreateToken(config.dashboardTokenFile)
        }

        let files: LogFiles
        do {
            files = try LogFiles(
                directory: config.logs.dir, keepDays: config.logs.keepDays,
                secrets: [config.discord.token?.reveal(), config.alertsWebhookURL?.reveal(), config.alertsHeartbeatURL?.reveal(), dashboardToken?.token].compactMap { $0 }, maxBytes: config.logs.maxBytes
            )
        } catch {
            throw ConfigError(description: "logs.dir \(config.logs.dir) cannot be created: \(error)")
        }
        let echo = isatty(STDERR_FILENO) == 1 || ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
        // Errors of both processes are counted from the first line.
        let errors = ErrorTracker()
        LoggingSystem.bootstrap { label in
            JSONLogHandler(system: label, files: files, echo: echo, errors: errors)
        }
        let logger = Logger(label: "supervisor")
        if dashboardToken?.widened == true {
            logger.warning("dashboard token file was readable by others; narrowed to 0600", metadata: [LogKey.path: "\(config.dashboardTokenFile)"])
        }
        for warning in loaded.warnings { logger.warning("config warning", metadata: [LogKey.reason: "\(warning)"]) }

        let sockets = [config.statusSocket, config.workerSocket]
        let runtime: RuntimeDirectory
        do {
            runtime = try RuntimeDirectory(path: config.runtimeDir, lockFile: config.lockFile, sockets: sockets)
        } catch {
            logger.critical("cannot start", metadata: [LogKey.error: "\(error)"])
            StandardError.write("bot-supervisor: \(error)\n")
            throw ExitCode(1)
        }
        defer { runtime.removeSockets(sockets) }

        // A data dir with no database and no local backup, on a host whose replicas hold data, is
        // a lost server being set up again: a new empty database would hide that data.
        if !config.replicas.targets.isEmpty, !initEmpty, Self.hasNoData(config) {
            let found = await ReplicaPresence.check(config)
            if !found.isEmpty {
                let configArgument = self.config.map { " --config \($0)" } ?? ""
                let message = "\(config.dataDir) has no database and no backup, but \(found.joined(separator: "; ")). "
                    + "To bring that data back: bot-supervisor restore --from-replica \(config.replicas.targets[0].name)\(configArgument). "
                    + "To start a new empty database instead: bot-supervisor run --init-empty\(configArgument)"
                logger.critical("refusing to start a new empty database", metadata: [LogKey.reason: "\(message)"])
                StandardError.write("bot-supervisor: \(message)\n")
                throw ExitCode(2)
            }
        }

        let notifier = SystemdNotifier()
        let store = StatusStore(notifier: notifier, logger: logger)
        let webhook = config.alertsWebhookURL.map { WebhookAlerts(url: $0, logger: logger) }
        if let webhook {
            await store.deliverAlerts { alert in webhook.offer(alert) }
        }
        errors.onRepeat { repeated in
            store.post(.warning, "the same error repeats: \(repeated.count) times in 5 min: \(repeated.fingerprint) (\(repeated.example.prefix(300)))")
        }
        let link = WorkerLink()
        let output = WorkerOutput(files: files, echo: echo, fallback: Logger(label: "bot"), errors: errors)
        let keeper = DataKeeper(config: config, store: store, logger: Logger(label: "supervisor"), tracker: OperationTracker(stepDelay: faults.maintenanceStepDelay))
        // Every snapshot starts a new journal segment in the worker.
        keeper.onSnapshot { [link] position in
            _ = await link.sendToCurrent(.snapshotTaken(sequence: position.sequence))
        }
        let supervisor = WorkerSupervisor(
            config: config, link: link, store: store, keeper: keeper, notifier: notifier,
            logger: logger, output: output
        )
        let heartbeat = config.alertsHeartbeatURL.map { HeartbeatPinger(url: $0, logger: logger) }
        let health = HealthMonitor(config: config, keeper: keeper, supervisor: supervisor, store: store, errors: errors, logger: logger, heartbeat: heartbeat)
        let deploys = DeployManager(config: config, keeper: keeper, supervisor: supervisor, store: store, health: health, audit: Logger(label: "audit"), logger: logger)
        let drills = replicaKey.map { ReplicaDrills(config: config, key: $0, store: store, logger: logger) }
        let group = MultiThreadedEventLoopGroup.singleton
        let dashboardAccess = dashboardToken.map { DashboardAccess(token: $0.token) }
        let xpTransfers = XPTransferRelay()
        let commands = ControlCommands(
                store: store,
                keeper: keeper,
                supervisor: supervisor,
                health: health,
                deploys: deploys,
                drills: drills,
                restartTimeout: config.worker.stopGrace + config.worker.heartbeatTimeout + .seconds(30),
                audit: Logger(label: "audit"),
                dashboard: dashboardAccess,
                dashboardListen: config.dashboardListen,
                xpTransfers: xpTransfers
        )
        let controlServer = ControlServer(path: config.statusSocket, readTimeout: config.controlReadTimeout, commands: commands, group: group, logger: logger)
        let linkServer = WorkerLinkServer(
            path: config.workerSocket,
            heartbeatInterval: config.worker.heartbeatInterval,
            readTimeout: config.worker.heartbeatTimeout,
            databasePath: config.dataDir + "/" + BotDatabase.fileName,
            discord: config.discord.settings,
            journal: config.journalSettings,
            link: link,
            keeper: keeper,
            logSystems: output.systems,
            status: store,
            events: { [supervisor] in supervisor.send($0) },
            group: group,
            logger: logger,
            xpTransfers: xpTransfers
        )
        let dailyAt = config.backup.dailyAt.split(separator: ":").compactMap { Int($0) }
        // First in the list, last to be told of a graceful shutdown: the data keeper serves the
        // worker's stop and the other services' requests until they are done.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: store),
            .init(service: keeper),
            .init(service: deploys),
            .init(service: controlServer),
            .init(service: linkServer),
            .init(service: BackupScheduler(dailyAt: (dailyAt[0], dailyAt[1]), keeper: keeper, store: store, logger: logger)),
            .init(service: HealthService(interval: config.health.interval, monitor: health, store: store)),
            // The pages in use are learned over one turn of the health loop at least (its checks
            // run the most code of the idle supervisor), 10 minutes at most.
            .init(service: MappedFilePages.Tidy(learning: min(max(.seconds(60), config.health.interval + .seconds(15)), .seconds(600)))),
        ]
        if let replicaKey {
            for (order, target) in config.replicas.targets.enumerated() {
                services.append(.init(service: Replicator(target: target, order: order, config: config, key: replicaKey, store: store, logger: logger)))
            }
        }
        if let drills { services.append(.init(service: drills)) }
        if let listen = config.metricsListen, let address = MetricsServer.parse(listen) {
            services.append(.init(service: MetricsServer(host: address.host, port: address.port, render: {
                var snapshot = await store.snapshot()
                snapshot.database = keeper.databaseStatus()
                snapshot.backups = keeper.backupsStatus()
                return MetricsText.render(snapshot)
            }, logger: logger)))
        }
        if let dashboardAccess, let listen = config.dashboardListen, let address = MetricsServer.parse(listen) {
            let sampler = DashboardSampler(store: store)
            let dashboardLogs = DashboardLogs(directory: config.logs.dir)
            files.tap(dashboardLogs.offer)
            services.append(.init(service: sampler))
            services.append(.init(service: DashboardServer(host: address.host, port: address.port, access: dashboardAccess, parts: .init(
                store: store, keeper: keeper, commands: commands, samples: sampler, logs: dashboardLogs,
                databasePath: config.dataDir + "/" + BotDatabase.fileName
            ), logger: Logger(label: "supervisor"))))
        }
        if let webhook { services.append(.init(service: webhook)) }
        if let heartbeat { services.append(.init(service: heartbeat)) }
        if let interval = notifier.watchdogInterval {
            services.append(.init(service: WatchdogService(interval: interval, supervisor: supervisor, notifier: notifier, logger: logger)))
        }
        // Last in the list, first to be told of a graceful shutdown: the worker stops while the
        // sockets still serve.
        services.append(.init(service: supervisor, successTerminationBehavior: .gracefullyShutdownGroup))

        var groupConfiguration = ServiceGroupConfiguration(services: services, logger: logger)
        groupConfiguration.gracefulShutdownSignals = [.sigterm, .sigint]
        let serviceGroup = ServiceGroup(configuration: groupConfiguration)

        logger.info("supervisor starting", metadata: [
            LogKey.pid: "\(getpid())", "version": "\(BotVersion.current)", "dataDir": "\(config.dataDir)",
            "statusSocket": "\(config.statusSocket)", "worker": "\(config.worker.executable)",
        ])
        await store.setSupervisorState("running")
        do {
            try await serviceGroup.run()
        } catch {
            logger.critical("supervisor stopped on an error", metadata: [LogKey.error: "\(error)"])
            throw ExitCode(1)
        }
        if let binary = deploys.reexecBinary {
            logger.info("supervisor re-executing itself on the new release", metadata: [LogKey.path: "\(binary)"])
            runtime.removeSockets(sockets)
            let arguments = CommandLine.arguments
            _ = withCStrings([binary] + arguments.dropFirst()) { argv in execv(binary, argv) }
            logger.critical("re-executing failed; exiting for systemd to restart the service", metadata: [LogKey.error: "\(String(cString: strerror(errno)))"])
            throw ExitCode(1)
        }
        logger.info("supervisor stopped")
    }

    /// No live database, and no verified backup in any location to restore one from.
    static func hasNoData(_ config: SupervisorConfig) -> Bool {
        let live = config.dataDir + "/" + BotDatabase.fileName
        return !FileManager.default.fileExists(atPath: live) && BackupCatalog.scan(config.backup.locations).candidates(for: nil).isEmpty
    }
}
