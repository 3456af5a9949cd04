import BotData
import FoundationEssentials
import IPC

/// Every decision the supervisor makes about the data, as one state-by-event table: which
/// operation runs and which waits, what a start-up check, a damage report or a restore leads to,
/// which backup locations are usable, what each outcome tells the operator. No I/O and no clock
/// of its own: `DataKeeper` feeds it events with the time they happened and performs the actions
/// it returns, the blocking ones on the `BlockingPool`.
///
/// One operation at a time (`running`): a backup, a verification, a periodic check, or
/// maintenance (the worker is stopped: a start-up check, a repair, a restore), which may take
/// several steps (inspect → restore → snapshot). Requests that arrive meanwhile wait in order;
/// equal ones wait together and get the same answer. A periodic check asked for while something
/// else looks at the file is answered at once (`skipped`): the file is being looked at already.
struct DataSafetyMachine: Sendable {
    typealias RequestID = Int

    struct Settings: Sendable, Equatable {
        var journalEnabled: Bool
        var locations: [String]
    }

    enum Job: Sendable, Equatable {
        case backup(BackupManifest.Reason)
        case verify
        case periodicCheck
        case maintenance(MaintenanceTask)

        var name: String {
            switch self {
            case .backup(let reason): "backup (\(reason.rawValue))"
            case .verify: "verify"
            case .periodicCheck: "periodic check"
            case .maintenance(let task): task.summary
            }
        }
    }

    enum Reply: Sendable, Equatable {
        case backup(Result<BackupEngine.Report, ErrorBody>)
        case verify(VerifyReport)
        case periodic(PeriodicOutcome)
        case maintenance(MaintenanceOutcome)
    }

    /// Blocking work the executor performs and reports back as an event.
    enum Work: Sendable, Equatable {
        /// statvfs and a directory read of each location, each with its own deadline.
        case probe(locations: [String])
        /// The live file: quick_check (a read-write look at a copy when a -wal lacks its -shm),
        /// whether a healthy database was ever seen here, and whether its timeline has a snapshot.
        case inspect
        case backup(BackupManifest.Reason, locations: [String], phasePrefix: String?)
        case restore(RestoreEngine.Target, reason: String, locations: [String], journalLocations: [String])
        case verify(locations: [String])
        /// quick_check while the worker runs, and which locations lost their backups.
        case periodicCheck(locations: [String])
    }

    enum Action: Sendable, Equatable {
        case perform(Work, step: Int)
        case reply([RequestID], Reply)
        case alert(AlertSeverity, String)
        /// A snapshot was taken: the worker starts a new journal segment after it.
        case snapshotTaken(JournalPosition)
        /// A maintenance task finished (the supervision loop and an operator's restore wait for it).
        case maintenanceFinished(MaintenanceTask, MaintenanceOutcome)
        /// The operation that runs now changed (nil: none), for the status snapshot.
        case operationChanged(String?)
        case lastCheck(DatabaseStatus.Check)
    }

    /// What each step of work reported.
    enum Event: Sendable, Equatable {
        case requested(RequestID, Job)
        case probed([String: LocationProbe])
        case inspected(LiveFacts)
        case backedUp(Result<BackupEngine.Report, ErrorBody>)
        case restored(RestoreResult)
        case verified(VerifyReport)
        case periodicChecked(PeriodicFacts)
        /// A step did not finish within its deadline; its late result will be ignored.
        case stepTimedOut(step: Int, after: Duration)
        /// A step's result, tagged with the step it belongs to (results of abandoned steps are dropped).
        indirect case stepResult(step: Int, Event)
    }

    enum LocationProbe: Sendable, Equatable {
        case ok
        case failed(String)
        case hung(Duration)
    }

    enum LocationHealth: Sendable, Equatable {
        case ok
        case failed(String)
        case hung
    }

    struct LiveFacts: Sendable, Equatable {
        var inspection: DatabaseInspection
        /// A healthy database was seen here before: a missing file is a loss, not a new install.
        var seenBefore: Bool
        /// Verified backups there are to restore from.
        var candidates: Int
        /// A verified snapshot of the live journal timeline exists.
        var timelineHasSnapshot: Bool
    }

    struct PeriodicFacts: Sendable, Equatable {
        var inspection: DatabaseInspection
        var seenBefore: Bool
        /// Locations whose backups (that the catalog had) are all gone.
        var lostLocations: [String]
    }

    enum RestoreResult: Sendable, Equatable {
        case restored(RestoreEngine.Report, reportedJournal: JournalReport?)
        case noCandidates
        case failed(String)
    }

    struct VerifyReport: Codable, Sendable, Equatable {
        struct Item: Codable, Sendable, Equatable {
            var name: String
            var ok: Bool
            var detail: String
        }
        var live: Item
        var backups: [Item]
        var ok: Bool { live.ok && backups.allSatisfy(\.ok) }
    }

    enum PeriodicOutcome: Sendable, Equatable {
        case healthy(criticalRows: [String: Int])
        case damaged(String)
        case unreadable(String)
        /// Something else was looking at the file: no second look now.
        case skipped
    }

    /// Where a running operation is.
    enum Stage: Sendable, Equatable {
        case probing
        case inspecting
        case backingUp(final: Bool)
        case restoring(RestoreEngine.Target, reason: String, keepLiveIfNoBackup: Bool)
        /// The snapshot after a restore; the restore's alert text waits for it.
        case snapshotAfterRestore(message: String)
        /// The snapshot of a live timeline that had none, before the worker starts.
        case snapshotBeforeStart(MaintenanceOutcome)
        case verifying
        case checking
    }

    struct Operation: Sendable, Equatable {
        var job: Job
        var requests: [RequestID]
        var stage: Stage
        var step: Int
    }

    let settings: Settings
    private(set) var running: Operation?
    private(set) var queue: [(job: Job, requests: [RequestID])] = []
    private(set) var locations: [String: LocationHealth] = [:]
    /// Critical tables' row counts at the last check, to notice a large unexplained drop.
    private(set) var criticalBaseline: [String: Int]?
    private var nextStep = 0
    /// The time of the event being handled (the wall clock, injected).
    private var now = Date(timeIntervalSince1970: 0)

    init(settings: Settings) {
        self.settings = settings
        for location in settings.locations { locations[location] = .ok }
    }

    /// The locations work may touch: not hung. (A failed one is tried again: it may be back.)
    var usableLocations: [String] {
        settings.locations.filter { locations[$0] != .hung }
    }

    var isBusy: Bool { running != nil }

    // MARK: - Events

    mutating func handle(_ event: Event, at now: Date) -> [Action] {
        self.now = now
        switch event {
        case .requested(let id, let job):
            return request(id, job)
        case .stepResult(let step, let result):
            guard let running, running.step == step else { return [] }  // a step given up on
            return advance(running, with: result)
        case .stepTimedOut(let step, let after):
            guard let running, running.step == step else { return [] }
            return timedOut(running, after: after)
        default:
            // Results arrive wrapped in `stepResult`; a bare one belongs to no step.
            return []
        }
    }

    private mutating func request(_ id: RequestID, _ job: Job) -> [Action] {
        if job == .periodicCheck, running != nil || !queue.isEmpty {
            return [.reply([id], .periodic(.skipped))]
        }
        if running == nil {
            return start(job, requests: [id])
        }
        if let index = queue.firstIndex(where: { $0.job == job && Self.joinable(job) }) {
            queue[index].requests.append(id)
        } else {
            queue.append((job, [id]))
        }
        return []
    }

    /// Equal requests waiting together get one answer; a maintenance task (a restore) is never
    /// merged with another: each was asked for by someone who waits for its own outcome.
    private static func joinable(_ job: Job) -> Bool {
        if case .maintenance = job { return false }
        return true
    }

    private mutating func start(_ job: Job, requests: [RequestID]) -> [Action] {
        running = Operation(job: job, requests: requests, stage: .probing, step: 0)
        var actions: [Action] = [.operationChanged(job.name)]
        actions += perform(.probe(locations: settings.locations), stage: .probing)
        return actions
    }

    private mutating func perform(_ work: Work, stage: Stage) -> [Action] {
        nextStep += 1
        running?.stage = stage
        running?.step = nextStep
        return [.perform(work, step: nextStep)]
    }

    /// Ends the running operation with `reply` and starts the next one waiting.
    private mutating func finish(_ reply: Reply, extra: [Action] = []) -> [Action] {
        guard let done = running else { return extra }
        var actions = extra
        if case .maintenance(let task) = done.job, case .maintenance(let outcome) = reply {
            actions.append(.maintenanceFinished(task, outcome))
        }
        actions.append(.reply(done.requests, reply))
        running = nil
        if queue.isEmpty {
            actions.append(.operationChanged(nil))
        } else {
            let next = queue.removeFirst()
            actions += start(next.job, requests: next.requests)
        }
        return actions
    }

    // MARK: - Steps

    private mutating func advance(_ operation: Operation, with result: Event) -> [Action] {
        switch (operation.stage, result) {
        case (.probing, .probed(let probes)):
            var actions = noteProbes(probes)
            actions += afterProbe(operation.job)
            return actions
        case (.inspecting, .inspected(let facts)):
            return decide(operation.job, facts)
        case (.backingUp(let final), .backedUp(let result)):
            let (reply, actions) = backupFinished(result, reason: operation.job)
            if final { return finish(.backup(reply), extra: actions) }
            return actions
        case (.snapshotBeforeStart(let outcome), .backedUp(let result)):
            let (_, actions) = backupFinished(result, reason: operation.job)
            return finish(.maintenance(outcome), extra: actions)
        case (.snapshotAfterRestore(var message), .backedUp(let result)):
            var (_, actions) = backupFinished(result, reason: operation.job)
            if case .failure(let error) = result {
                message += "; the snapshot of the restored database failed (\(error.message)): until the next backup, a restore cannot replay what the worker writes now"
            }
            actions.append(.alert(.critical, message))
            return finish(.maintenance(MaintenanceOutcome(startWorker: true, succeeded: true, message: message)), extra: actions)
        case (.restoring(let target, let reason, let keepLive), .restored(let result)):
            return restoreFinished(result, target: target, reason: reason, job: operation.job, keepLiveIfNoBackup: keepLive)
        case (.verifying, .verified(let report)):
            var actions: [Action] = [.lastCheck(.init(at: Timestamp.string(now), result: report.live.ok ? "ok" : report.live.detail))]
            for item in report.backups where !item.ok {
                actions.append(.alert(.warning, "backup \(item.name) no longer verifies: \(item.detail)"))
            }
            return finish(.verify(report), extra: actions)
        case (.checking, .periodicChecked(let facts)):
            return periodicFinished(facts)
        default:
            return []
        }
    }

    private mutating func noteProbes(_ probes: [String: LocationProbe]) -> [Action] {
        var actions: [Action] = []
        for location in settings.locations {
            guard let probe = probes[location] else { continue }
            let before = locations[location] ?? .ok
            let now: LocationHealth = switch probe {
            case .ok: .ok
            case .failed(let message): .failed(message)
            case .hung: .hung
            }
            locations[location] = now
            guard before != now else { continue }
            switch (before, probe) {
            case (_, .hung(let after)):
                actions.append(.alert(.critical, "backup location \(location) does not answer (no reply within \(Self.seconds(after)): a hung disk or network mount?); backups and restores leave it out until it answers again"))
            case (.hung, .ok), (.failed, .ok):
                actions.append(.alert(.info, "backup location \(location) answers again"))
            case (_, .failed(let message)):
                actions.append(.alert(.warning, "backup location \(location) cannot be used: \(message)"))
            default:
                break
            }
        }
        return actions
    }

    private mutating func afterProbe(_ job: Job) -> [Action] {
        switch job {
        case .backup(let reason):
            return perform(.backup(reason, locations: usableLocations, phasePrefix: nil), stage: .backingUp(final: true))
        case .verify:
            return perform(.verify(locations: usableLocations), stage: .verifying)
        case .periodicCheck:
            return perform(.periodicCheck(locations: usableLocations), stage: .checking)
        case .maintenance(.startupCheck), .maintenance(.repair):
            return perform(.inspect, stage: .inspecting)
        case .maintenance(.restore(let target, let requester)):
            return restore(target, reason: "restore requested by \(requester)", keepLiveIfNoBackup: true)
        }
    }

    /// - Parameter keepLiveIfNoBackup: an operator's restore that finds no usable backup leaves the
    ///   working database and starts the worker on it; a damaged database never gets the worker.
    private mutating func restore(_ target: RestoreEngine.Target, reason: String, keepLiveIfNoBackup: Bool) -> [Action] {
        // With the journal off there is nothing after the backup to replay: the alert must not
        // claim everything came back.
        let work = Work.restore(target, reason: reason, locations: usableLocations, journalLocations: settings.journalEnabled ? usableLocations : [])
        return perform(work, stage: .restoring(target, reason: reason, keepLiveIfNoBackup: keepLiveIfNoBackup))
    }

    /// The start-up check's and the repair's decision, from what the inspection found.
    private mutating func decide(_ job: Job, _ facts: LiveFacts) -> [Action] {
        let reason: String? = if case .maintenance(.repair(let reason)) = job { reason } else { nil }
        let inspection = facts.inspection
        var actions: [Action] = [.lastCheck(.init(at: Timestamp.string(now), result: inspection.isHealthy ? "ok" : inspection.problems.joined(separator: "; ")))]
        if inspection.isMissing {
            if !facts.seenBefore, facts.candidates == 0 {
                let message = "no database yet: the worker creates it"
                actions.append(.lastCheck(.init(at: Timestamp.string(now), result: message)))
                return finish(.maintenance(MaintenanceOutcome(startWorker: true, succeeded: true, message: message)), extra: actions)
            }
            return actions + restore(.latest, reason: "the database file \(inspection.path) is missing", keepLiveIfNoBackup: false)
        }
        if inspection.isHealthy {
            criticalBaseline = inspection.criticalRows
            if let reason {
                actions.append(.alert(.warning, "\(reason); but the database passes its checks with the worker stopped, so it was not restored"))
            }
            let outcome = MaintenanceOutcome(startWorker: true, succeeded: true, message: "the database passes its checks")
            // A live timeline without a snapshot (a supervisor stopped between a restore and its
            // snapshot, a journal turned on) gets one before the worker starts: its journal
            // entries need a base to be replayed onto.
            if settings.journalEnabled, inspection.journal != nil, !facts.timelineHasSnapshot {
                return actions + perform(.backup(.journal, locations: usableLocations, phasePrefix: nil), stage: .snapshotBeforeStart(outcome))
            }
            return finish(.maintenance(outcome), extra: actions)
        }
        if !inspection.isDamaged {
            // Unreadable but not damaged (permissions, locks): a restore would not help and would lose data.
            let message = "the database cannot be read: \(inspection.problems.joined(separator: "; ")); fix the cause (permissions, disk), then `bot-supervisor restart-worker`"
            actions.append(.alert(.critical, message))
            return finish(.maintenance(MaintenanceOutcome(startWorker: false, succeeded: false, message: message)), extra: actions)
        }
        let why = (reason.map { $0 + "; " } ?? "") + inspection.problems.joined(separator: "; ")
        return actions + restore(.latest, reason: "the database is damaged: \(why)", keepLiveIfNoBackup: false)
    }

    private mutating func restoreFinished(_ result: RestoreResult, target: RestoreEngine.Target, reason: String, job: Job, keepLiveIfNoBackup: Bool) -> [Action] {
        switch result {
        case .restored(let report, let reported):
            criticalBaseline = nil
            let message = RestoreMessages.describe(report, target: target, reason: reason, reported: reported)
            var actions: [Action] = [.lastCheck(.init(at: Timestamp.string(now), result: "ok (restored from \(report.backupID))"))]
            // The restored file is the base of its new timeline: snapshot it before the worker
            // writes anything, so that its journal can be replayed if it is lost again.
            if report.timeline != nil, settings.journalEnabled {
                return actions + perform(.backup(.postRestore, locations: usableLocations, phasePrefix: "taking a snapshot of the restored database"), stage: .snapshotAfterRestore(message: message))
            }
            actions.append(.alert(.critical, message))
            return finish(.maintenance(MaintenanceOutcome(startWorker: true, succeeded: true, message: message)), extra: actions)
        case .noCandidates:
            let message: String = switch target {
            case .backup(let id, _) where keepLiveIfNoBackup:
                "there is no backup \(id); `bot-supervisor backups` lists them. The database was not touched."
            case .pointInTime(let date) where keepLiveIfNoBackup:
                "there is no verified backup from before \(Timestamp.string(date)) to start from; `bot-supervisor backups` lists them. The database was not touched."
            default:
                "there is no verified backup to restore from"
            }
            if keepLiveIfNoBackup, target != .latest {
                return finish(.maintenance(MaintenanceOutcome(startWorker: true, succeeded: false, message: message)))
            }
            return restoreFailed(message, reason: reason, keepLiveIfNoBackup: keepLiveIfNoBackup)
        case .failed(let error):
            return restoreFailed(error, reason: reason, keepLiveIfNoBackup: keepLiveIfNoBackup)
        }
    }

    private mutating func restoreFailed(_ error: String, reason: String, keepLiveIfNoBackup: Bool) -> [Action] {
        if keepLiveIfNoBackup {
            let message = "restore failed (\(reason)): \(error); the database was not touched"
            return finish(.maintenance(MaintenanceOutcome(startWorker: true, succeeded: false, message: message)), extra: [.alert(.warning, message)])
        }
        let message = "\(reason); no restore was possible: \(error). The bot stays stopped so that it never starts on an empty database over a damaged one. Restore one by hand with `bot-supervisor restore --backup ID`, or move the damaged file away to start afresh."
        return finish(.maintenance(MaintenanceOutcome(startWorker: false, succeeded: false, message: message)), extra: [.alert(.critical, message)])
    }

    /// A backup's alerts and reply. Partial failures are warnings; failing everywhere is critical.
    private func backupFinished(_ result: Result<BackupEngine.Report, ErrorBody>, reason job: Job) -> (Result<BackupEngine.Report, ErrorBody>, [Action]) {
        switch result {
        case .success(let report):
            var actions: [Action] = report.failures.map {
                .alert(report.succeeded ? .warning : .critical, "backup \(report.id) failed in \($0.location): \($0.message)")
            }
            guard report.succeeded else {
                return (.failure(ErrorBody(code: "backup-failed", message: "backup \(report.id) failed in every location: \(report.failures.map(\.message).joined(separator: "; "))")), actions)
            }
            if let position = report.journal { actions.append(.snapshotTaken(position)) }
            return (.success(report), actions)
        case .failure(let error):
            return (.failure(error), [.alert(.critical, "\(Self.backupName(job)) failed: \(error.message)")])
        }
    }

    private static func backupName(_ job: Job) -> String {
        if case .backup(let reason) = job { return "backup (\(reason.rawValue))" }
        return "the snapshot for \(job.name)"
    }

    private mutating func periodicFinished(_ facts: PeriodicFacts) -> [Action] {
        let inspection = facts.inspection
        var actions: [Action] = [.lastCheck(.init(at: Timestamp.string(now), result: inspection.isHealthy ? "ok" : inspection.problems.joined(separator: "; ")))]
        if inspection.isDamaged {
            return finish(.periodic(.damaged(inspection.problems.joined(separator: "; "))), extra: actions)
        }
        // Deleted under the running worker (which goes on writing to the unlinked file): a loss
        // to repair, once a healthy database had been seen here.
        if inspection.isMissing, facts.seenBefore {
            return finish(.periodic(.damaged("the database file \(inspection.path) was deleted")), extra: actions)
        }
        if !inspection.isHealthy {
            return finish(.periodic(.unreadable(inspection.problems.joined(separator: "; "))), extra: actions)
        }
        for drop in CriticalDataCheck.drops(from: criticalBaseline, to: inspection.criticalRows) {
            actions.append(.alert(.critical, drop))
        }
        criticalBaseline = inspection.criticalRows
        actions += finish(.periodic(.healthy(criticalRows: inspection.criticalRows)))
        // A location that disappeared (deleted, unmounted) took its backups and its copy of the
        // journal with it. A backup at once makes it again, with a new base for the journal there.
        if !facts.lostLocations.isEmpty {
            for location in facts.lostLocations {
                actions.append(.alert(.critical, "backup location \(location) is gone or empty (deleted or unmounted?): its backups and its copy of the journal are lost; taking a new backup to make it again"))
            }
            actions += request(Self.internalRequest, .backup(.journal))
        }
        return actions
    }

    /// The id of requests the machine makes itself (their replies go to no one).
    static let internalRequest: RequestID = -1

    private mutating func timedOut(_ operation: Operation, after: Duration) -> [Action] {
        let what = "\(operation.job.name) did not finish within \(Self.seconds(after)) (a hung disk or mount?); it was given up on, and what it does late is ignored"
        let alert = Action.alert(.critical, what)
        switch operation.job {
        case .backup:
            return finish(.backup(.failure(ErrorBody(code: "backup-failed", message: what))), extra: [alert])
        case .verify:
            let report = VerifyReport(live: .init(name: "live database", ok: false, detail: what), backups: [])
            return finish(.verify(report), extra: [alert])
        case .periodicCheck:
            return finish(.periodic(.unreadable(what)), extra: [alert])
        case .maintenance:
            switch operation.stage {
            case .snapshotBeforeStart(let outcome):
                return finish(.maintenance(outcome), extra: [alert])
            case .snapshotAfterRestore(let message):
                return finish(.maintenance(MaintenanceOutcome(startWorker: true, succeeded: true, message: message + "; " + what)), extra: [.alert(.critical, message + "; " + what)])
            default:
                // Whether the live file is sound is unknown: the worker does not start on it.
                return finish(.maintenance(MaintenanceOutcome(startWorker: false, succeeded: false, message: what)), extra: [alert])
            }
        }
    }

    static func seconds(_ duration: Duration) -> String {
        WorkerStateMachine.seconds(duration)
    }
}

/// A large unexplained drop in the critical tables' rows: a pure comparison.
enum CriticalDataCheck {
    /// A table that lost more than a fifth of its rows, and at least 10, since the last check.
    static func drops(from previous: [String: Int]?, to current: [String: Int]) -> [String] {
        guard let previous else { return [] }
        return previous.keys.sorted().compactMap { table in
            let before = previous[table] ?? 0
            let now = current[table] ?? 0
            let lost = before - now
            guard lost >= 10, Double(lost) > Double(before) * 0.2 else { return nil }
            return "critical data dropped: \(table) has \(now) rows, \(before) at the last check; if no one deleted them on purpose, `bot-supervisor restore` brings back the last backup"
        }
    }
}
