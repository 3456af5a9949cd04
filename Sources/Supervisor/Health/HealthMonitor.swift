import FoundationEssentials
import Glibc
import IPC
import Logging
import ServiceLifecycle
import Synchronization

/// The health loop: every `health.intervalSeconds` (and on `bot-supervisor health`) each check
/// runs, with a deadline so that one that hangs (a stuck disk) times out instead of stalling the
/// loop; the results go into the status snapshot, and a check that changes state raises one
/// alert (and one recovery when it is back to ok).
///
/// The database check is the supervisor's periodic `quick_check` of the live file: damage it finds
/// asks the supervision loop for a repair (stop, check, restore), as before.
actor HealthMonitor {
    private let config: SupervisorConfig
    private let keeper: DataKeeper
    private let supervisor: WorkerSupervisor
    private let store: StatusStore
    private let errors: ErrorTracker
    private let logger: Logger
    private let checkTimeout: Duration
    /// The outside heartbeat (`alerts.heartbeatURL`), handed each result.
    private let heartbeat: HeartbeatPinger?
    private var previous: [String: CheckStatus] = [:]
    private let startedAt = Date()
    /// Command counts of the worker at the last run, to judge the commands since.
    private var lastCommands: (pid: Int32?, succeeded: Int, failed: Int)?

    init(config: SupervisorConfig, keeper: DataKeeper, supervisor: WorkerSupervisor, store: StatusStore, errors: ErrorTracker, logger: Logger, checkTimeout: Duration = .seconds(10), heartbeat: HeartbeatPinger? = nil) {
        self.heartbeat = heartbeat
        self.config = config
        self.keeper = keeper
        self.supervisor = supervisor
        self.store = store
        self.errors = errors
        self.logger = logger
        self.checkTimeout = checkTimeout
    }

    /// Runs every check now and publishes the result.
    @discardableResult
    func run() async -> HealthStatus {
        let snapshot = await store.snapshot()
        var checks: [HealthStatus.Check] = []
        // The database and backups checks have deadlines of their own (the data keeper's and
        // the blocking pool's); the disk checks get the check timeout.
        checks.append(await databaseCheck(workerState: snapshot.worker.state))
        checks.append(HealthRules.worker(
            state: snapshot.worker.state, heartbeatAgeMs: snapshot.worker.lastHeartbeatAgeMs,
            heartbeatTimeoutMs: StatusStore.milliseconds(config.worker.heartbeatTimeout), discord: snapshot.worker.discord
        ))
        checks.append(HealthRules.discordLimits(snapshot.worker.discord))
        checks.append(HealthRules.sessions(snapshot.worker.sessions, now: Date()))
        checks.append(HealthRules.memory(worker: snapshot.worker.rssBytes, supervisor: snapshot.supervisor.rssBytes))
        _ = await keeper.backupList()
        checks.append(HealthRules.backupAge(newest: keeper.newestVerifiedBackupDate(), now: Date()))
        var places = [("disk-data", config.dataDir)]
        for (index, location) in config.backup.locations.enumerated() {
            places.append((config.backup.locations.count == 1 ? "disk-backups" : "disk-backups-\(index + 1)", location))
        }
        for (name, path) in places {
            do {
                let space = try await space(path)
                checks.append(HealthRules.disk(name: name, path: path, free: space?.free, total: space?.total))
            } catch {
                checks.append(.init(name: name, status: .critical, detail: "the check did not finish within \(checkTimeout) (a hung disk or mount?)"))
            }
        }
        checks.append(HealthRules.errorRate(errors: errors.count(), window: errors.window, threshold: errors.threshold))
        checks.append(commandsCheck(snapshot.worker))
        if !config.replicas.targets.isEmpty {
            checks.append(HealthRules.replicas(snapshot.replicas, maxLagSeconds: config.replicas.maxLagSeconds, now: Date()))
            checks.append(HealthRules.drills(snapshot.replicas, intervalHours: config.replicas.drillIntervalHours, runningFor: Date().timeIntervalSince(startedAt), now: Date()))
        }
        if let heartbeat { checks.append(Self.heartbeatCheck(heartbeat.lastOutcome)) }

        let status = HealthStatus(status: HealthRules.overall(checks), lastRunAt: Timestamp.string(), checks: checks)
        await store.publish(health: status)
        heartbeat?.offer(status)
        await announceTransitions(checks)
        logger.log(level: status.status == .ok ? .info : .warning, "health checked", metadata: [
            LogKey.outcome: "\(status.status.rawValue)",
            "failing": "\(checks.filter { $0.status != .ok }.map(\.name).joined(separator: ","))",
        ])
        return status
    }

    private func databaseCheck(workerState: WorkerState) async -> HealthStatus.Check {
        guard workerState == .ready || workerState == .unhealthy else {
            let last = keeper.databaseStatus().lastCheck
            return .init(name: "database", status: .ok, detail: "checked before the last start" + (last.map { ": \($0.result) at \($0.at)" } ?? ""))
        }
        switch await keeper.periodicCheck() {
        case .skipped:
            let last = keeper.databaseStatus().lastCheck
            return .init(name: "database", status: .ok, detail: "another operation is looking at the file now" + (last.map { "; last check: \($0.result) at \($0.at)" } ?? ""))
        case .healthy(let rows):
            let summary = rows.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            return .init(name: "database", status: .ok, detail: "quick_check ok" + (summary.isEmpty ? "" : "; critical rows: " + summary))
        case .damaged(let detail):
            logger.critical("the periodic check found the database damaged", metadata: [LogKey.error: "\(detail)"])
            supervisor.send(.maintenanceRequested(.repair(reason: "the periodic check found damage (\(detail))")))
            return .init(name: "database", status: .critical, detail: "damaged (\(detail)); the supervisor is restoring it")
        case .unreadable(let detail):
            logger.warning("the periodic database check could not read the file", metadata: [LogKey.error: "\(detail)"])
            return .init(name: "database", status: .warn, detail: "could not be checked: \(detail)")
        }
    }

    /// The outside heartbeat's last ping: a warning when it did not get through (the service on
    /// the other side will raise its own alarm when pings stop).
    static func heartbeatCheck(_ last: HeartbeatPinger.Outcome?) -> HealthStatus.Check {
        guard let last else { return .init(name: "heartbeat", status: .ok, detail: "alerts.heartbeatURL: first ping after this run") }
        return .init(name: "heartbeat", status: last.ok ? .ok : .warn, detail: "alerts.heartbeatURL: last ping at \(last.at): \(last.detail)")
    }

    private func commandsCheck(_ worker: WorkerStatus) -> HealthStatus.Check {
        guard let events = worker.events else { return HealthRules.commands(succeeded: 0, failed: 0) }
        var succeeded = events.commandsSucceeded
        var failed = events.commandsFailed
        if let last = lastCommands, last.pid == worker.pid {
            succeeded -= last.succeeded
            failed -= last.failed
        }
        lastCommands = (worker.pid, events.commandsSucceeded, events.commandsFailed)
        return HealthRules.commands(succeeded: max(0, succeeded), failed: max(0, failed))
    }

    /// One alert per change of a check's state, and one when it recovers.
    private func announceTransitions(_ checks: [HealthStatus.Check]) async {
        for check in checks {
            let before = previous[check.name] ?? .ok
            previous[check.name] = check.status
            guard before != check.status else { continue }
            switch check.status {
            case .ok: await store.raise(.info, "health check \(check.name) recovered: \(check.detail)")
            case .warn: await store.raise(.warning, "health check \(check.name) is warn: \(check.detail)")
            case .critical: await store.raise(.critical, "health check \(check.name) is critical: \(check.detail)")
            }
        }
    }

    /// Free and total bytes of the filesystem holding `path`, on the blocking pool with the
    /// check's deadline: statvfs on a dead network mount blocks, and the loop does not wait for
    /// it (the stuck call is left behind, its late answer dropped).
    private func space(_ path: String) async throws -> (free: Int64, total: Int64)? {
        try await BlockingPool.shared.run("statvfs \(path)", deadline: checkTimeout) {
            var stats = statvfs()
            guard statvfs(path, &stats) == 0 else { return nil }
            return (Int64(stats.f_bavail) * Int64(stats.f_frsize), Int64(stats.f_blocks) * Int64(stats.f_frsize))
        }
    }
}

/// Runs the health loop: a first time a minute after the worker is first ready (once the first
/// backup had time to be taken), then every `interval`, on the monotonic clock.
struct HealthService: Service {
    let interval: Duration
    let monitor: HealthMonitor
    let store: StatusStore
    var firstRunDelay = Duration.seconds(60)

    func run() async throws {
        await cancelWhenGracefulShutdown {
            _ = await store.waitForReady(excluding: nil, timeout: interval)
            guard (try? await Task.sleep(for: min(firstRunDelay, interval))) != nil else { return }
            await monitor.run()
            while !Task.isCancelled {
                guard (try? await Task.sleep(for: interval)) != nil else { return }
                await monitor.run()
            }
        }
    }
}
