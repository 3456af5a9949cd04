import FoundationEssentials
import Glibc
import IPC
import Logging
import ServiceLifecycle

/// The one place the status snapshot is assembled from: the supervision loop publishes the
/// worker's state here, alerts are raised here, and the status socket reads from here.
/// Every change of the one-line summary goes to systemd as STATUS=.
actor StatusStore: Service {
    struct WorkerPublication: Sendable, Equatable {
        var pid: Int32?
        var state: WorkerState
        var restarts: Int
        var startedAt: Date?
        var lastHeartbeat: ContinuousClock.Instant?
        var lastExit: LastExit?
        var lastStartup: Duration?
        var nextStartAt: Date?
        var detail: String?
    }

    private let pid = getpid()
    private let startedAt = Date()
    private let notifier: SystemdNotifier
    private let logger: Logger
    private var supervisorState = "starting"
    private var worker = WorkerPublication(state: .stopped, restarts: 0)
    private var alerts: [Alert] = []
    private var health: HealthStatus?
    private var sink: (@Sendable (Alert) -> Void)?
    private var recent: [String: ContinuousClock.Instant] = [:]
    static let repeatWindow = Duration.seconds(600)
    /// The worker's report from its last heartbeat, and which worker sent it.
    private var report: (pid: Int32, heartbeat: WorkerMessage.Heartbeat)?
    /// The session counts of the workers before the current one.
    private var earlierSessions = SessionReport()
    /// The newest worker's last session report (added to `earlierSessions` once another reports).
    private var sessionsOf: (pid: Int32, report: SessionReport)?
    /// The start-up checks of the last worker that sent them (kept after it exits: why it failed).
    private var startup: (pid: Int32, report: StartupReport)?
    private var journal: JournalReport?
    private var replicas: [String: (order: Int, status: ReplicaStatus, caughtUpAt: Date?, maxLagSeconds: Double)] = [:]
    /// The last drill of each replica (`ReplicaDrills`), merged into its entry.
    private var drills: [String: ReplicaStatus.Drill] = [:]
    private var summary = ""
    /// The worker's exits, newest last (the dashboard's restart history).
    private var exits: [ExitRecord] = []
    static let exitLimit = 50
    private var workerWatchers: [AsyncStream<WorkerPublication>.Continuation] = []
    /// Waits that ended before they parked (their ids are removed as they park).
    private var expiredWaiters: Set<UUID> = []
    private var readyWaiters: [UUID: (excluding: Int32?, continuation: CheckedContinuation<Int32?, Never>)] = [:]

    static let alertLimit = 100
    /// Bumped by every change, so that the encoded status line can be reused until the next one.
    private var generation = 0
    private var cachedLine: (generation: Int, data: DataPart, at: ContinuousClock.Instant, line: String)?
    /// How long an encoded status line is served again when nothing changed: the ages and
    /// memory figures in it are at most this stale.
    static let statusLineReuse = Duration.milliseconds(100)

    /// What the data keeper adds to the snapshot.
    struct DataPart: Sendable, Equatable {
        var database: DatabaseStatus
        var backups: BackupsStatus
        var operation: OperationStatus?
    }
    /// Alerts posted from code that cannot wait (a log handler), raised by `run()`.
    private nonisolated let posted: (stream: AsyncStream<(AlertSeverity, String)>, continuation: AsyncStream<(AlertSeverity, String)>.Continuation) =
        AsyncStream.makeStream(of: (AlertSeverity, String).self)

    init(notifier: SystemdNotifier, logger: Logger) {
        self.notifier = notifier
        self.logger = logger
    }

    /// Raises alerts posted with `post` until the service group stops.
    func run() async throws {
        await cancelWhenGracefulShutdown {
            for await (severity, message) in self.posted.stream {
                await self.raise(severity, message)
            }
        }
    }

    /// Raises an alert soon, from any thread, without waiting.
    nonisolated func post(_ severity: AlertSeverity, _ message: String) {
        posted.continuation.yield((severity, message))
    }

    func snapshot() -> StatusSnapshot {
        let now = ContinuousClock.now
        var snapshot = StatusSnapshot(
            supervisor: SupervisorStatus(
                pid: pid,
                version: BotVersion.current,
                startedAt: Timestamp.string(startedAt),
                state: supervisorState,
                rssBytes: ProcessStats.residentBytes()
            ),
            worker: WorkerStatus(
                pid: worker.pid,
                state: worker.state,
                restarts: worker.restarts,
                startedAt: worker.startedAt.map { Timestamp.string($0) },
                lastHeartbeatAgeMs: worker.pid == nil ? nil : worker.lastHeartbeat.map { Self.milliseconds(now - $0) },
                lastExit: worker.lastExit,
                lastStartupMs: worker.lastStartup.map(Self.milliseconds),
                nextStartAt: worker.nextStartAt.map { Timestamp.string($0) },
                detail: worker.detail,
                rssBytes: currentReport?.rssBytes,
                discord: currentReport?.discord,
                events: currentReport?.events,
                startup: startup?.report,
                sessions: sessionsOf.map { earlierSessions.adding($0.report) }
            ),
            health: health,
            alerts: alerts,
            journal: journal
        )
        let lastCommit = journal?.lastCommitAt.flatMap { Timestamp.date($0) }
        snapshot.replicas = replicas.values.sorted { $0.order < $1.order }.map { entry in
            var status = entry.status
            status.lagSeconds = Self.lag(published: status.lagSeconds, caughtUpAt: entry.caughtUpAt, lastCommit: lastCommit, now: Date())
            if status.state == .ok, status.lagSeconds > entry.maxLagSeconds { status.state = .lagging }
            if var drill = drills[status.name] {
                drill.ageSeconds = drill.at.flatMap { Timestamp.date($0) }.map { (Date().timeIntervalSince($0) * 10).rounded() / 10 }
                status.drill = drill
            }
            return status
        }
        return snapshot
    }

    /// The `status` command's response line. Encoding the snapshot is most of a status request's
    /// cost, so a line is reused while nothing changed for up to `statusLineReuse`: hundreds of
    /// clients polling cost one encoding per change, not one per request.
    func statusLine(_ data: DataPart) -> String {
        let now = ContinuousClock.now
        if let cachedLine, cachedLine.generation == generation, cachedLine.data == data, now - cachedLine.at < Self.statusLineReuse {
            return cachedLine.line
        }
        var snapshot = snapshot()
        snapshot.database = data.database
        snapshot.backups = data.backups
        snapshot.operation = data.operation
        let line = ControlCommands.line(ControlResponse.success(snapshot))
        cachedLine = (generation, data, now, line)
        return line
    }

    /// The last report of the worker that runs now; nothing once it is gone.
    private var currentReport: WorkerMessage.Heartbeat? {
        guard let report, report.pid == worker.pid else { return nil }
        return report.heartbeat
    }

    /// A replicator's state, each time it changes (the replicas appear in `order`).
    /// `caughtUpAt`: when it last read the journal and found nothing it had not shipped.
    func publish(replica: ReplicaStatus, order: Int, caughtUpAt: Date? = nil, maxLagSeconds: Double = 5) {
        guard replicas[replica.name]?.status != replica || replicas[replica.name]?.caughtUpAt != caughtUpAt else { return }
        generation += 1
        replicas[replica.name] = (order, replica, caughtUpAt, maxLagSeconds)
    }

    /// A replica's lag as of now, not as of its last step: once the worker committed after the
    /// replica last had everything, the oldest entry it lacks is at most `now - caughtUpAt` old.
    /// (The published lag is exact at the moment of a step, and goes stale until the next.)
    static func lag(published: Double, caughtUpAt: Date?, lastCommit: Date?, now: Date) -> Double {
        guard let caughtUpAt, let lastCommit, lastCommit > caughtUpAt else { return published }
        return max(published, (max(0, now.timeIntervalSince(caughtUpAt)) * 10).rounded() / 10)
    }

    /// A replica's newest drill result.
    func publish(drill: ReplicaStatus.Drill, replica name: String) {
        generation += 1
        drills[name] = drill
    }

    func publish(health: HealthStatus) {
        generation += 1
        self.health = health
    }

    func record(startup report: StartupReport, from pid: Int32) {
        generation += 1
        startup = (pid, report)
    }

    func record(report heartbeat: WorkerMessage.Heartbeat, from pid: Int32) {
        generation += 1
        report = (pid, heartbeat)
        if let sessions = heartbeat.sessions {
            if let previous = sessionsOf, previous.pid != pid { earlierSessions = earlierSessions.adding(previous.report) }
            if let reconciliation = sessions.lastReconciliation, reconciliation != sessionsOf.flatMap({ $0.pid == pid ? $0.report.lastReconciliation : nil }) {
                raise(.warning, reconciliation)
            }
            sessionsOf = (pid, sessions)
        }
        if let journal = heartbeat.journal {
            noteJournal(journal)
        }
    }

    /// The journal as last reported; alerts when a location fails or recovers.
    private func noteJournal(_ journal: JournalReport) {
        let failedBefore = Set((self.journal?.locations ?? []).filter { $0.state != "ok" }.map(\.path))
        let failedNow = journal.locations.filter { $0.state != "ok" }
        for location in failedNow where !failedBefore.contains(location.path) {
            raise(.critical, "the change journal in \(location.path) failed (\(location.error ?? "unknown error")) at sequence \(location.lastSequence); the other locations go on, and a restore from this location alone would stop there")
        }
        for path in failedBefore.subtracting(failedNow.map(\.path)) where journal.locations.contains(where: { $0.path == path }) {
            raise(.info, "the change journal in \(path) takes writes again; a new snapshot is its base")
        }
        if journal.unjournaled > 0, (self.journal?.unjournaled ?? 0) == 0 {
            raise(.critical, "no backup location takes the change journal: transactions since sequence \(journal.sequence - journal.unjournaled) are protected only by the next backup")
        }
        self.journal = journal
    }

    /// The worker's last known journal position, to compare a restore's replay against.
    var journalReport: JournalReport? { journal }

    var workerState: WorkerState { worker.state }
    var workerPid: Int32? { worker.pid }

    func setSupervisorState(_ state: String) {
        generation += 1
        supervisorState = state
        publishSummary()
    }

    /// The worker's publications from now on, each time its state, pid or restart count changes
    /// (the current one first).
    func workerChanges() -> AsyncStream<WorkerPublication> {
        let (stream, continuation) = AsyncStream.makeStream(of: WorkerPublication.self, bufferingPolicy: .bufferingNewest(64))
        continuation.yield(worker)
        workerWatchers.append(continuation)
        return stream
    }

    func publish(worker publication: WorkerPublication) {
        generation += 1
        if let exit = publication.lastExit, exit != worker.lastExit {
            exits.append(ExitRecord(pid: worker.pid ?? publication.pid, exit: exit, restarts: publication.restarts))
            if exits.count > Self.exitLimit { exits.removeFirst(exits.count - Self.exitLimit) }
        }
        let changed = (publication.state, publication.pid, publication.restarts) != (worker.state, worker.pid, worker.restarts)
        worker = publication
        if changed {
            for watcher in workerWatchers { watcher.yield(publication) }
        }
        if publication.state == .ready, let pid = publication.pid {
            for (id, waiter) in readyWaiters where waiter.excluding != pid {
                readyWaiters[id] = nil
                waiter.continuation.resume(returning: pid)
            }
        }
        publishSummary()
    }

    /// One exit of a worker, for the restart history.
    struct ExitRecord: Codable, Sendable, Equatable {
        var pid: Int32?
        var exit: LastExit
        /// The restart count after it.
        var restarts: Int
    }

    /// The worker's last exits, newest first.
    func exitHistory() -> [ExitRecord] { exits.reversed() }

    /// Where alerts go besides the log, the snapshot and systemd: the webhook, when configured.
    func deliverAlerts(to sink: @escaping @Sendable (Alert) -> Void) {
        self.sink = sink
    }

    /// Records an alert (newest first), writes it to the log and hands it to the sink. The same
    /// alert again within `repeatWindow` is only logged: one broken thing, one alert.
    func raise(_ severity: AlertSeverity, _ message: String) {
        let now = ContinuousClock.now
        let key = "\(severity.rawValue) \(message)"
        recent = recent.filter { now - $0.value < Self.repeatWindow }
        if recent[key] != nil {
            logger.info("alert repeated (not raised again)", metadata: [LogKey.alert: .string(message), LogKey.severity: .string(severity.rawValue)])
            return
        }
        recent[key] = now
        generation += 1
        let alert = Alert(at: Timestamp.string(), severity: severity, message: message)
        sink?(alert)
        alerts.insert(alert, at: 0)
        if alerts.count > Self.alertLimit { alerts.removeLast(alerts.count - Self.alertLimit) }
        let level: Logger.Level = switch severity {
        case .info: .info
        case .warning: .warning
        case .critical: .critical
        }
        logger.log(level: level, "alert", metadata: [LogKey.alert: .string(message), LogKey.severity: .string(severity.rawValue)])
        publishSummary()
    }

    /// Waits until a worker other than `excluding` is ready; nil after `timeout` or when cancelled.
    func waitForReady(excluding: Int32?, timeout: Duration) async -> Int32? {
        if worker.state == .ready, let pid = worker.pid, pid != excluding { return pid }
        let id = UUID()
        let pid = await withTaskGroup(of: Int32?.self) { group in
            group.addTask { await self.parkReadyWaiter(id, excluding: excluding) }
            // Ends the wait at the deadline, or at once when the caller is cancelled.
            group.addTask {
                try? await Task.sleep(for: timeout)
                await self.expireWaiter(id)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        expiredWaiters.remove(id)
        return pid
    }

    private func parkReadyWaiter(_ id: UUID, excluding: Int32?) async -> Int32? {
        await withCheckedContinuation { continuation in
            if expiredWaiters.remove(id) != nil {
                continuation.resume(returning: nil)
            } else {
                readyWaiters[id] = (excluding, continuation)
            }
        }
    }

    /// Ends a wait; one that has not parked yet will not.
    private func expireWaiter(_ id: UUID) {
        if let waiter = readyWaiters.removeValue(forKey: id) {
            waiter.continuation.resume(returning: nil)
        } else {
            expiredWaiters.insert(id)
        }
    }

    private func publishSummary() {
        let line = Self.summary(supervisorState: supervisorState, worker: worker, newestAlert: alerts.first)
        guard line != summary else { return }
        summary = line
        notifier.status(line)
    }

    static func summary(supervisorState: String, worker: WorkerPublication, newestAlert: Alert?) -> String {
        var line: String
        switch worker.state {
        case .ready, .starting, .unhealthy, .stopping:
            line = "worker \(worker.state.rawValue)" + (worker.pid.map { " (pid \($0))" } ?? "")
        case .backoff, .crashLoop:
            line = "worker \(worker.state.rawValue)" + (worker.nextStartAt.map { ", next start at \(Timestamp.string($0))" } ?? "")
        case .failed:
            line = "worker failed: \(worker.detail ?? "see bot-supervisor status")"
        case .stopped:
            line = "worker stopped"
        }
        line += ", \(worker.restarts) restart\(worker.restarts == 1 ? "" : "s")"
        if supervisorState == "stopping" { line = "stopping: " + line }
        if let newestAlert, newestAlert.severity == .critical { line += "; alert: \(newestAlert.message)" }
        return line
    }

    static func milliseconds(_ duration: Duration) -> Int {
        duration.milliseconds
    }
}
