import BotData
import FoundationEssentials
import IPC
import Logging
import ServiceLifecycle
import Synchronization

/// Performs what `DataSafetyMachine` decides: the executor of everything the supervisor does to
/// protect the database (checks at start and in the health loop, backups, verification,
/// restores, location probes).
///
/// One loop owns the machine. Requests (`backup`, `verifyAll`, `perform`…) and the results of
/// blocking work arrive on one stream; the loop hands each to the machine and performs the
/// actions it returns: work goes to the `BlockingPool` as a child task with a deadline, replies
/// resume their callers, alerts go to the status store. What the status snapshot shows
/// (the database, the backups, the running operation) is published as it changes, so `status`
/// never waits for a data operation.
final class DataKeeper: Service, Sendable {
    typealias VerifyReport = DataSafetyMachine.VerifyReport
    typealias PeriodicOutcome = DataSafetyMachine.PeriodicOutcome

    private enum Input: Sendable {
        case request(DataSafetyMachine.Job, CheckedContinuation<DataSafetyMachine.Reply, Never>)
        case event(DataSafetyMachine.Event)
    }

    /// What the keeper shows without being asked, readable from any thread at once.
    private struct Published: Sendable {
        var lastCheck: DatabaseStatus.Check?
        var summaries: [BackupCatalog.Summary] = []
        var criticalRows: [String: Int]?
        var liveTimeline: String?
    }

    let tracker: OperationTracker
    private let config: SupervisorConfig
    private let store: StatusStore
    private let logger: Logger
    private let pool: BlockingPool
    private let work: DataWork
    private let settings: DataSafetyMachine.Settings
    /// How long a backup, a restore or a verification may take before it counts as hung.
    private let stepDeadline: Duration
    /// How long a check of the live file may take.
    private let checkDeadline: Duration
    /// How long probing a location or reading the catalog may take.
    private let probeDeadline: Duration
    private let inputs: AsyncStream<Input>
    private let continuation: AsyncStream<Input>.Continuation
    private let published = Mutex(Published())
    private let maintenanceWatchers = Mutex<[AsyncStream<MaintenanceOutcome>.Continuation]>([])
    /// Told of every snapshot taken, so that the worker starts a new journal segment.
    private let snapshotListener = Mutex<(@Sendable (JournalPosition) async -> Void)?>(nil)

    init(config: SupervisorConfig, store: StatusStore, logger: Logger, tracker: OperationTracker = OperationTracker(),
         pool: BlockingPool = .shared, stepDeadline: Duration = .seconds(3600), checkDeadline: Duration = .seconds(600), probeDeadline: Duration = .seconds(10)) {
        self.config = config
        self.store = store
        self.logger = logger
        self.pool = pool
        self.tracker = tracker
        work = DataWork(dataDir: config.dataDir, keepDays: config.backup.keepDays, tracker: tracker, logger: logger, replicaNames: config.replicas.targets.map(\.name))
        settings = .init(journalEnabled: config.journal.enabled, locations: config.backup.locations)
        self.stepDeadline = stepDeadline
        self.checkDeadline = checkDeadline
        self.probeDeadline = probeDeadline
        (inputs, continuation) = AsyncStream.makeStream(of: Input.self)
    }

    var livePath: String { work.livePath }

    func onSnapshot(_ listener: @escaping @Sendable (JournalPosition) async -> Void) {
        snapshotListener.withLock { $0 = listener }
    }

    // MARK: - Requests (each waits for its answer; none blocks the loop)

    func backup(reason: BackupManifest.Reason) async -> Result<BackupEngine.Report, ErrorBody> {
        guard case .backup(let result) = await submit(.backup(reason)) else { return .failure(Self.stopping) }
        return result
    }

    func verifyAll() async -> VerifyReport {
        guard case .verify(let report) = await submit(.verify) else {
            return VerifyReport(live: .init(name: livePath, ok: false, detail: Self.stopping.message), backups: [])
        }
        return report
    }

    /// The health loop's check while the worker runs (answered `skipped` while another operation
    /// looks at the file); a healthy check also repairs a backup location that lost its backups.
    func periodicCheck() async -> PeriodicOutcome {
        guard case .periodic(let outcome) = await submit(.periodicCheck) else { return .unreadable(Self.stopping.message) }
        return outcome
    }

    /// Work on the live database while the worker is stopped.
    func perform(_ task: MaintenanceTask) async -> MaintenanceOutcome {
        guard case .maintenance(let outcome) = await submit(.maintenance(task)) else {
            return MaintenanceOutcome(startWorker: false, succeeded: false, message: Self.stopping.message)
        }
        return outcome
    }

    /// The outcome of the next maintenance task that restores (an operator's restore, a rollback's).
    func nextRestoreOutcome() -> AsyncStream<MaintenanceOutcome> {
        let (stream, continuation) = AsyncStream.makeStream(of: MaintenanceOutcome.self)
        maintenanceWatchers.withLock { $0.append(continuation) }
        return stream
    }

    /// The backups, read afresh (a scan on the pool; it waits for no operation).
    func backupList() async -> [BackupCatalog.Summary] {
        let locations = config.backup.locations
        if let scanned = try? await pool.run("reading the backup catalog", deadline: probeDeadline, { BackupCatalog.scan(locations).summaries }) {
            published.withLock { $0.summaries = scanned }
        }
        return published.withLock { $0.summaries }
    }

    private static let stopping = ErrorBody(code: "stopping", message: "the supervisor is stopping; nothing was done")

    private func submit(_ job: DataSafetyMachine.Job) async -> DataSafetyMachine.Reply? {
        await withCheckedContinuation { (waiter: CheckedContinuation<DataSafetyMachine.Reply, Never>) in
            if case .terminated = continuation.yield(.request(job, waiter)) {
                waiter.resume(returning: .backup(.failure(Self.stopping)))
            }
        }
    }

    // MARK: - What the status shows, at once

    func databaseStatus() -> DatabaseStatus {
        DatabaseStatus(path: livePath, sizeBytes: DurableFile.size(of: livePath), lastCheck: published.withLock { $0.lastCheck })
    }

    func backupsStatus() -> BackupsStatus {
        let summaries = published.withLock { $0.summaries }
        return BackupsStatus(count: summaries.count, last: summaries.first.map {
            .init(id: $0.id, at: $0.createdAt, reason: $0.reason, verified: $0.verified, locations: $0.locations)
        })
    }

    /// Whether there is a database with data to back up (not before the worker created it).
    func isWorthBackingUp() -> Bool { FileManager.default.fileExists(atPath: livePath) }

    /// Row counts of the critical tables at the last check.
    func criticalRows() -> [String: Int]? { published.withLock { $0.criticalRows } }

    /// Age of the newest verified backup, for the scheduler and the health checks.
    func newestVerifiedBackupDate() -> Date? {
        published.withLock { $0.summaries }.first(where: \.verified).flatMap { Timestamp.date($0.createdAt) }
    }

    // MARK: - The loop

    func run() async throws {
        let locations = config.backup.locations
        let work = self.work
        if let summaries = try? await pool.run("clearing unfinished backups", deadline: stepDeadline, {
            work.removeLeftovers(in: locations)
            return BackupCatalog.scan(locations).summaries
        }) {
            published.withLock { $0.summaries = summaries }
        }
        var machine = DataSafetyMachine(settings: settings)
        var waiters: [DataSafetyMachine.RequestID: CheckedContinuation<DataSafetyMachine.Reply, Never>] = [:]
        var nextID = 0
        await withDiscardingTaskGroup { children in
            await withGracefulShutdownHandler {
                for await input in inputs {
                    let actions: [DataSafetyMachine.Action]
                    switch input {
                    case .request(let job, let waiter):
                        nextID += 1
                        waiters[nextID] = waiter
                        actions = machine.handle(.requested(nextID, job), at: Date())
                    case .event(let event):
                        actions = machine.handle(event, at: Date())
                    }
                    published.withLock { $0.criticalRows = machine.criticalBaseline ?? $0.criticalRows }
                    for action in actions {
                        await perform(action, waiters: &waiters, children: &children)
                    }
                }
            } onGracefulShutdown: {
                self.continuation.finish()
            }
            for waiter in waiters.values { waiter.resume(returning: .backup(.failure(Self.stopping))) }
            children.cancelAll()
        }
    }

    private func perform(_ action: DataSafetyMachine.Action, waiters: inout [DataSafetyMachine.RequestID: CheckedContinuation<DataSafetyMachine.Reply, Never>], children: inout DiscardingTaskGroup) async {
        switch action {
        case .perform(let job, let step):
            let continuation = self.continuation
            children.addTask {
                let event = await self.execute(job, step: step)
                continuation.yield(.event(event))
            }
        case .reply(let ids, let reply):
            for id in ids { waiters.removeValue(forKey: id)?.resume(returning: reply) }
        case .alert(let severity, let message):
            await store.raise(severity, message)
        case .snapshotTaken(let position):
            published.withLock { $0.liveTimeline = position.timeline }
            if let listener = snapshotListener.withLock({ $0 }) { await listener(position) }
        case .maintenanceFinished(let task, let outcome):
            if case .restore = task {
                let watchers = maintenanceWatchers.withLock { watchers in
                    defer { watchers = [] }
                    return watchers
                }
                for watcher in watchers {
                    watcher.yield(outcome)
                    watcher.finish()
                }
            }
        case .operationChanged(let name):
            if let name { tracker.begin(name) } else { tracker.end() }
        case .lastCheck(let check):
            published.withLock { $0.lastCheck = check }
        }
    }

    /// One step of work on the pool, with its deadline; the event it reports.
    private func execute(_ job: DataSafetyMachine.Work, step: Int) async -> DataSafetyMachine.Event {
        let work = self.work
        let deadline = switch job {
        case .inspect, .periodicCheck: checkDeadline
        default: stepDeadline
        }
        do {
            let result: DataSafetyMachine.Event
            switch job {
            case .probe(let locations):
                result = .probed(await probe(locations))
            case .inspect:
                let journalEnabled = settings.journalEnabled
                let locations = config.backup.locations
                let facts = try await pool.run("checking the database", deadline: deadline) { work.inspectLive(locations: locations, journalEnabled: journalEnabled) }
                if let timeline = facts.inspection.journal?.timeline { published.withLock { $0.liveTimeline = timeline } }
                result = .inspected(facts)
            case .backup(let reason, let locations, let prefix):
                let timeline = published.withLock { $0.liveTimeline }
                let all = config.backup.locations
                let (report, summaries) = try await pool.run("backup (\(reason.rawValue))", deadline: deadline) {
                    // The catalog is read again before anyone hears of the backup.
                    (work.backup(reason, locations: locations, phasePrefix: prefix, liveTimeline: timeline), BackupCatalog.scan(all).summaries)
                }
                published.withLock { $0.summaries = summaries }
                result = .backedUp(report)
            case .restore(let target, let reason, let locations, let journalLocations):
                let reported = await store.journalReport
                let all = config.backup.locations
                let (restored, summaries) = try await pool.run("restore", deadline: deadline) {
                    (work.restore(target, reason: reason, locations: locations, journalLocations: journalLocations, reported: reported), BackupCatalog.scan(all).summaries)
                }
                published.withLock { $0.summaries = summaries }
                if case .restored(let report, _) = restored, let timeline = report.timeline { published.withLock { $0.liveTimeline = timeline } }
                result = .restored(restored)
            case .verify(let locations):
                result = .verified(try await pool.run("verify", deadline: deadline) { work.verify(locations: locations) })
            case .periodicCheck(let locations):
                let known = published.withLock { $0.summaries }
                result = .periodicChecked(try await pool.run("the periodic database check", deadline: deadline) { work.periodicCheck(locations: locations, known: known) })
            }
            return .stepResult(step: step, result)
        } catch {
            logger.error("data operation given up on", metadata: [LogKey.error: "\(error)"])
            return .stepTimedOut(step: step, after: deadline)
        }
    }

    /// Each location on its own pool thread, with the probe deadline. A location whose probe is
    /// still stuck from before is not probed again: it stays hung, and takes no second thread.
    private func probe(_ locations: [String]) async -> [String: DataSafetyMachine.LocationProbe] {
        let deadline = probeDeadline
        return await withTaskGroup(of: (String, DataSafetyMachine.LocationProbe).self) { group in
            for location in locations {
                group.addTask {
                    guard self.stuckProbes.withLock({ $0.insert(location).inserted }) else { return (location, .hung(deadline)) }
                    do {
                        let probe = try await self.pool.run("probing \(location)", deadline: deadline) {
                            defer { _ = self.stuckProbes.withLock { $0.remove(location) } }
                            return DataWork.probe(location)
                        }
                        return (location, probe)
                    } catch {
                        return (location, .hung(deadline))
                    }
                }
            }
            var probes: [String: DataSafetyMachine.LocationProbe] = [:]
            for await (location, probe) in group { probes[location] = probe }
            return probes
        }
    }

    /// Locations with a probe running (a hung one stays here until the kernel lets it go).
    private let stuckProbes = Mutex<Set<String>>([])
}
