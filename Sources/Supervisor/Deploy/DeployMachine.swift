import FoundationEssentials
import IPC

/// Every decision of a deploy and a rollback, as one state-by-event table: which step comes
/// next, when the new release has failed, what a rollback must undo. No I/O and no clock of its
/// own: `DeployManager` performs the steps it asks for and feeds back what they found, the
/// worker's state as the supervision loop publishes it, and the deadlines it set.
///
/// A deploy: check the release's binaries → `pre-deploy` backup → migrations on a copy of it →
/// rehearsal on another copy → switch `current` → the worker restarted on the new release (or
/// the supervisor re-executes itself on it) → ready within `readyTimeout` → probation: no
/// failure of the worker for `probation`, then one health run without a critical check → kept.
/// A failure before the switch refuses the deploy and changes nothing; after it, rolls back.
struct DeployMachine: Sendable {
    typealias RequestID = Int

    struct Settings: Sendable, Equatable {
        var readyTimeout: Duration
        var probation: Duration
    }

    /// The deploy's record in `<dataDir>/deploy.json`, so that a supervisor that re-executed
    /// itself (or was restarted by systemd) goes on with the probation, or the rollback.
    struct Record: Codable, Sendable, Equatable {
        enum Phase: String, Codable, Sendable {
            case probation, done
            case rolledBack = "rolled-back"
        }

        var phase: Phase
        var previous: String
        var next: String
        var backupID: String?
        /// The database's migrations before the deploy: a rollback restores the backup only if
        /// the new release changed them.
        var schemaBefore: String?
        var startedAt: String
        var requester: String
        var outcome: String?
        /// The rollback's alert, kept here for a supervisor that re-executes itself before it
        /// could raise it (alerts live in memory); nil once raised.
        var pendingAlert: String?
    }

    enum Step: Sendable, Equatable {
        case checkRelease(String, rehearseOnly: Bool)
        case backup
        case dryRun(release: String, copy: String)
        case rehearse(release: String, copy: String)
        /// Install the release, switch `current` and `previous`, and save the record.
        case switchRelease(release: String, backupID: String, requester: String)
        case restartWorker(reason: String)
        /// Stop and re-execute from `current`, once the service group has stopped.
        case reexec
        case runHealth
        /// Point `current` back at `record.previous`, save the record.
        case switchBack(Record, reason: String)
        /// The pre-deploy backup and the old release's journal after it.
        case restore(backupID: String)
        case save(Record)
    }

    enum Timer: Sendable, Equatable {
        case ready
        case probation
    }

    enum Event: Sendable, Equatable {
        case deployRequested(RequestID, release: String, rehearseOnly: Bool, requester: String)
        case rollbackRequested(RequestID, requester: String, record: Record?)
        /// At supervisor start: the record of a deploy still on probation, if any.
        case resumed(Record)
        case checked
        case backedUp(id: String, copy: String)
        case dryRunPassed
        case rehearsed(ok: Bool, summary: String)
        case switched(Record, supervisorDiffers: Bool)
        /// The worker as the supervision loop published it.
        case worker(state: WorkerState, pid: Int32?, restarts: Int, lastExit: String?)
        case healthChecked(critical: String?)
        /// `current` points back at the previous release; what the rollback must do next.
        case switchedBack(Record, schemaChanged: Bool, supervisorDiffers: Bool)
        case restored(ok: Bool, message: String)
        case stepFailed(String)
        /// A step that reports nothing (a restart asked for, the record saved).
        case stepDone
        case timerFired(Timer, generation: Int)
    }

    enum Action: Sendable, Equatable {
        case perform(Step)
        case startTimer(Timer, generation: Int, after: Duration)
        case audit(String, [String: String] = [:])
        case alert(AlertSeverity, String)
        case reply(RequestID, Result<ActionResult, ErrorBody>)
    }

    enum Phase: Sendable, Equatable {
        case idle
        case checking
        case backingUp
        case dryRun(backupID: String, copy: String)
        case rehearsing(backupID: String, copy: String)
        case switching(rehearsal: String)
        case waitingReady(Record, rehearsal: String, oldPid: Int32?)
        case probation(Record, restartsAtStart: Int?)
        case checkingHealth(Record)
        case rollingBack(Record, reason: String)
        case restoring(Record, reason: String)
    }

    let settings: Settings
    private(set) var phase: Phase = .idle
    private var request: (id: RequestID, release: String, rehearseOnly: Bool, requester: String)?
    private var rollbackRequest: RequestID?
    private var worker: (state: WorkerState, pid: Int32?, restarts: Int, lastExit: String?) = (.stopped, nil, 0, nil)
    private var generation = 0

    init(settings: Settings) {
        self.settings = settings
    }

    var isBusy: Bool { phase != .idle }

    mutating func handle(_ event: Event) -> [Action] {
        switch (phase, event) {
        case (_, .worker(let state, let pid, let restarts, let lastExit)):
            worker = (state, pid, restarts, lastExit)
            return workerChanged()

        case (.idle, .deployRequested(let id, let release, let rehearseOnly, let requester)):
            request = (id, release, rehearseOnly, requester)
            phase = .checking
            return [.audit("requested", ["release": release, "by": requester]), .perform(.checkRelease(release, rehearseOnly: rehearseOnly))]
        case (_, .deployRequested(let id, _, _, _)):
            let busy = isProbation ? "the last deploy is still on probation; wait for its outcome (`bot-supervisor status`), or roll it back" : "a deploy or rollback is already running"
            return [.reply(id, .failure(ErrorBody(code: "busy", message: busy)))]
        case (_, .rollbackRequested(let id, _, _)) where phase != .idle && !isProbation:
            return [.reply(id, .failure(ErrorBody(code: "busy", message: "a deploy or rollback is already running")))]

        case (.checking, .checked):
            phase = .backingUp
            return [.perform(.backup)]
        case (.backingUp, .backedUp(let id, let copy)):
            phase = .dryRun(backupID: id, copy: copy)
            return [.audit("pre-deploy backup taken", ["backup": id]), .perform(.dryRun(release: request?.release ?? "", copy: copy))]
        case (.dryRun(let id, let copy), .dryRunPassed):
            phase = .rehearsing(backupID: id, copy: copy)
            return [.audit("migrations pass a dry run on a copy of the database"), .perform(.rehearse(release: request?.release ?? "", copy: copy))]
        case (.rehearsing(let id, _), .rehearsed(let ok, let summary)):
            var actions: [Action] = [.audit("rehearsal " + (ok ? "passed" : "failed"), ["report": summary])]
            guard let request else { return actions }
            if request.rehearseOnly {
                actions.append(.reply(request.id, ok ? .success(ActionResult(message: summary)) : .failure(ErrorBody(code: "rehearsal-failed", message: summary))))
                return actions + end()
            }
            guard ok else { return actions + refuse(summary + "\nThe deploy is refused; nothing was changed") }
            phase = .switching(rehearsal: summary)
            return actions + [.perform(.switchRelease(release: request.release, backupID: id, requester: request.requester))]
        case (.switching(let rehearsal), .switched(let record, let supervisorDiffers)):
            var actions: [Action] = [.audit("current switched", ["from": record.previous, "to": record.next])]
            let version = ReleaseLinks.version(of: record.next)
            if supervisorDiffers {
                actions.append(.audit("the supervisor binary changed: it re-executes itself on the new release"))
                if let request {
                    actions.append(.reply(request.id, .success(ActionResult(message: rehearsal + "\ndeployed \(version); the supervisor restarts itself on it, then watches it for \(Self.seconds(settings.probation)) (`bot-supervisor status` shows the outcome)"))))
                }
                self.request = nil
                phase = .idle
                return actions + [.perform(.reexec)]
            }
            phase = .waitingReady(record, rehearsal: rehearsal, oldPid: worker.pid)
            return actions + [.perform(.restartWorker(reason: "deploy of \(version)"))] + timer(.ready, after: settings.readyTimeout)

        case (.idle, .resumed(let record)) where record.phase == .probation:
            // The supervisor restarted on the new release: it must be ready in time, then pass probation.
            phase = .waitingReady(record, rehearsal: "", oldPid: nil)
            return timer(.ready, after: settings.readyTimeout) + workerChanged()

        case (.probation(let record, _), .timerFired(.probation, let generation)) where generation == self.generation:
            phase = .checkingHealth(record)
            return [.perform(.runHealth)]
        case (.waitingReady(let record, _, _), .timerFired(.ready, let generation)) where generation == self.generation:
            return rollBack(record, reason: "the new release was not ready within \(Self.seconds(settings.readyTimeout))")
        case (.checkingHealth(let record), .healthChecked(let critical)):
            if let critical {
                return rollBack(record, reason: "a health check is critical at the end of the probation (\(critical))")
            }
            var done = record
            done.phase = .done
            done.outcome = "kept after \(Self.seconds(settings.probation)) of probation"
            phase = .idle
            return [
                .perform(.save(done)), .audit("probation passed; the release is kept", ["release": record.next]),
                .alert(.info, "deploy of \(ReleaseLinks.version(of: record.next)) passed its probation and is kept"),
            ]

        case (.idle, .rollbackRequested(let id, let requester, let record)), (.probation, .rollbackRequested(let id, let requester, let record)):
            guard let record else {
                return [.reply(id, .failure(ErrorBody(code: "rollback-failed", message: "there is no previous release to go back to")))]
            }
            rollbackRequest = id
            return rollBack(record, reason: "requested by \(requester)")
        case (.rollingBack(_, let reason), .switchedBack(let record, let schemaChanged, let supervisorDiffers)):
            let restoring = schemaChanged ? record.backupID : nil
            if let backupID = restoring {
                phase = .restoring(record, reason: reason)
                return [.perform(.restore(backupID: backupID))]
            }
            return rolledBack(record, reason: reason, restored: "the database was left as it is (the new release did not migrate it)", then: supervisorDiffers ? .reexec : .restartWorker)
        case (.restoring(let record, let reason), .restored(let ok, let message)):
            let backupID = record.backupID ?? "?"
            let restored = ok
                ? "the pre-deploy backup \(backupID) was restored (the new release had migrated the database)"
                : "the pre-deploy backup \(backupID) could not be restored: \(message)"
            // The restore stopped the worker and started it again on the old release.
            return rolledBack(record, reason: reason, restored: restored, then: .nothing)

        case (.checking, .stepFailed(let why)), (.backingUp, .stepFailed(let why)), (.dryRun, .stepFailed(let why)),
             (.rehearsing, .stepFailed(let why)), (.switching, .stepFailed(let why)):
            return refuse(why)
        case (.rollingBack(let record, let reason), .stepFailed(let why)):
            let message = "rollback of \(ReleaseLinks.version(of: record.next)) failed: \(why); \(reason)"
            var actions: [Action] = [.alert(.critical, message)]
            if let id = rollbackRequest ?? request?.id { actions.append(.reply(id, .failure(ErrorBody(code: "rollback-failed", message: message)))) }
            rollbackRequest = nil
            return actions + end()
        default:
            return []
        }
    }

    private var isProbation: Bool {
        if case .probation = phase { return true }
        return false
    }

    /// The worker changed: ready in time starts the probation; a failure on probation rolls back.
    private mutating func workerChanged() -> [Action] {
        switch phase {
        case .waitingReady(let record, let rehearsal, let oldPid):
            if worker.state == .ready, let pid = worker.pid, pid != oldPid {
                phase = .probation(record, restartsAtStart: worker.restarts)
                var actions: [Action] = [.audit("the worker is ready on the new release", ["pid": "\(pid)"])]
                if let request {
                    actions.append(.reply(request.id, .success(ActionResult(
                        message: (rehearsal.isEmpty ? "" : rehearsal + "\nrehearsal passed; ") + "deployed \(ReleaseLinks.version(of: record.next)): worker pid \(pid) ready; on probation for \(Self.seconds(settings.probation)) (`bot-supervisor status` shows the outcome)",
                        workerPid: pid
                    ))))
                    self.request = nil
                }
                return actions + timer(.probation, after: settings.probation)
            }
            return []
        case .probation(let record, let restartsAtStart):
            switch worker.state {
            case .crashLoop, .failed, .backoff:
                return rollBack(record, reason: "the worker is \(worker.state.rawValue) on the new release (\(worker.lastExit ?? "no exit recorded"))")
            default:
                if let restartsAtStart, worker.restarts > restartsAtStart {
                    return rollBack(record, reason: "the worker failed on the new release (\(worker.lastExit ?? "restarted"))")
                }
                return []
            }
        default:
            return []
        }
    }

    private mutating func timer(_ timer: Timer, after: Duration) -> [Action] {
        generation += 1
        return [.startTimer(timer, generation: generation, after: after)]
    }

    /// Refused before `current` was switched: nothing changed.
    private mutating func refuse(_ why: String) -> [Action] {
        var actions: [Action] = [.audit("refused", ["error": why])]
        if let request {
            actions.append(.reply(request.id, .failure(ErrorBody(code: "deploy-refused", message: why))))
        }
        return actions + end()
    }

    private mutating func rollBack(_ record: Record, reason: String) -> [Action] {
        generation += 1  // the probation's and the ready timers no longer count
        phase = .rollingBack(record, reason: reason)
        // A deploy whose worker never got ready keeps its caller waiting for the rollback's outcome.
        return [.audit("rolling back", ["from": record.next, "to": record.previous, "reason": reason]), .perform(.switchBack(record, reason: reason))]
    }

    private enum AfterRollback { case restartWorker, reexec, nothing }

    private mutating func rolledBack(_ record: Record, reason: String, restored: String, then next: AfterRollback) -> [Action] {
        let message = "deploy of \(ReleaseLinks.version(of: record.next)) rolled back to \(ReleaseLinks.version(of: record.previous)): \(reason); \(restored)"
        var done = record
        done.phase = .rolledBack
        done.outcome = reason
        var actions: [Action] = [.audit("rolled back", ["outcome": message])]
        if let request {
            actions.append(.reply(request.id, .failure(ErrorBody(code: "rolled-back", message: "\(reason); \(message)"))))
            self.request = nil
        }
        if next == .reexec {
            // The old release's supervisor raises the alert once it runs.
            done.pendingAlert = message
            actions += [.perform(.save(done))]
            if let id = rollbackRequest { actions.append(.reply(id, .success(ActionResult(message: message)))) }
            rollbackRequest = nil
            phase = .idle
            return actions + [.perform(.reexec)]
        }
        actions += [.perform(.save(done)), .alert(.critical, message)]
        if next == .restartWorker {
            actions.append(.perform(.restartWorker(reason: "rollback")))
        }
        if let id = rollbackRequest { actions.append(.reply(id, .success(ActionResult(message: message, workerPid: worker.pid)))) }
        rollbackRequest = nil
        return actions + end()
    }

    private mutating func end() -> [Action] {
        phase = .idle
        request = nil
        generation += 1
        return []
    }

    static func seconds(_ duration: Duration) -> String { WorkerStateMachine.seconds(duration) }
}
