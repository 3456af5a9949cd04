import BotData
import FoundationEssentials
import IPC
import Testing

@testable import Supervisor

/// The data-safety decisions alone: no file, no thread, an injected clock.
@Suite struct DataSafetyMachineTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let settings = DataSafetyMachine.Settings(journalEnabled: true, locations: ["/b1", "/b2"])
    typealias M = DataSafetyMachine

    func inspection(_ change: (inout DatabaseInspection) -> Void = { _ in }) -> DatabaseInspection {
        var inspection = DatabaseInspector.inspect(path: "/nonexistent-for-tests/bot.sqlite", check: .none)
        inspection.isMissing = false
        inspection.problems = []
        inspection.criticalRows = ["xp_members": 100]
        inspection.journal = JournalPosition(timeline: "t1", sequence: 10, committedAtMs: 1)
        change(&inspection)
        return inspection
    }

    func report(_ id: String, ok: [Bool] = [true, true]) -> BackupEngine.Report {
        BackupEngine.Report(
            id: id, createdAt: "2027-01-15T08:00:00.000Z", reason: "manual", sizeBytes: 1, durationMs: 1, phasesMs: [:],
            results: zip(["/b1", "/b2"], ok).map { .init(location: $0.0, ok: $0.1, message: $0.1 ? "ok" : "disk full") },
            journal: JournalPosition(timeline: "t1", sequence: 10, committedAtMs: 1)
        )
    }

    /// The step number of the work the actions ask for.
    func step(_ actions: [M.Action]) -> Int? {
        actions.compactMap { if case .perform(_, let step) = $0 { step } else { nil } }.first
    }

    func work(_ actions: [M.Action]) -> M.Work? {
        actions.compactMap { if case .perform(let work, _) = $0 { work } else { nil } }.first
    }

    func probedOK(_ m: inout M, _ actions: [M.Action]) -> [M.Action] {
        m.handle(.stepResult(step: step(actions)!, .probed(["/b1": .ok, "/b2": .ok])), at: now)
    }

    func alerts(_ actions: [M.Action]) -> [(AlertSeverity, String)] {
        actions.compactMap { if case .alert(let s, let m) = $0 { (s, m) } else { nil } }
    }

    func replies(_ actions: [M.Action]) -> [([Int], M.Reply)] {
        actions.compactMap { if case .reply(let ids, let r) = $0 { (ids, r) } else { nil } }
    }

    @Test func aBackupProbesThenBacksUpThenReplies() {
        var m = M(settings: settings)
        let first = m.handle(.requested(1, .backup(.manual)), at: now)
        #expect(first.first == .operationChanged("backup (manual)"))
        #expect(work(first) == .probe(locations: ["/b1", "/b2"]))
        let backing = probedOK(&m, first)
        #expect(work(backing) == .backup(.manual, locations: ["/b1", "/b2"], phasePrefix: nil))
        let done = m.handle(.stepResult(step: step(backing)!, .backedUp(.success(report("b-1")))), at: now)
        #expect(done.contains(.snapshotTaken(JournalPosition(timeline: "t1", sequence: 10, committedAtMs: 1))))
        #expect(replies(done).map(\.0) == [[1]])
        #expect(done.last == .operationChanged(nil))
        #expect(!m.isBusy)
    }

    @Test func aBackupFailingInOneLocationWarnsAndInAllIsCritical() {
        var m = M(settings: settings)
        let backing = probedOK(&m, m.handle(.requested(1, .backup(.manual)), at: now))
        let partial = m.handle(.stepResult(step: step(backing)!, .backedUp(.success(report("b-1", ok: [true, false])))), at: now)
        #expect(alerts(partial).map(\.0) == [.warning])
        let again = probedOK(&m, m.handle(.requested(2, .backup(.manual)), at: now))
        let failed = m.handle(.stepResult(step: step(again)!, .backedUp(.success(report("b-2", ok: [false, false])))), at: now)
        #expect(alerts(failed).map(\.0) == [.critical, .critical])
        guard case .backup(.failure(let error)) = replies(failed).first?.1 else { Issue.record("no failure reply"); return }
        #expect(error.message.contains("failed in every location"))
    }

    @Test func backupsAskedForDuringARestoreWaitAndShareOneAnswer() {
        var m = M(settings: settings)
        let probing = m.handle(.requested(1, .maintenance(.restore(.latest, requestedBy: "uid 0"))), at: now)
        let restoring = probedOK(&m, probing)
        guard case .restore(.latest, _, ["/b1", "/b2"], ["/b1", "/b2"]) = work(restoring) else { Issue.record("no restore: \(restoring)"); return }
        // Two backups asked for while the restore runs: nothing starts; a periodic check is skipped.
        #expect(m.handle(.requested(2, .backup(.manual)), at: now) == [])
        #expect(m.handle(.requested(3, .backup(.manual)), at: now) == [])
        #expect(m.handle(.requested(4, .periodicCheck), at: now) == [.reply([4], .periodic(.skipped))])
        #expect(m.queue.count == 1)
        // The restore brings a new timeline: its snapshot comes before the restore's answer.
        let restored = RestoreEngine.Report(backupID: "b-0", backupCreatedAt: "2027-01-15T08:00:00.000Z", location: "/b1", quarantinedTo: "/q", rejected: [], replay: nil, timeline: "t2")
        let snapshotting = m.handle(.stepResult(step: step(restoring)!, .restored(.restored(restored, reportedJournal: nil))), at: now)
        #expect(work(snapshotting) == .backup(.postRestore, locations: ["/b1", "/b2"], phasePrefix: "taking a snapshot of the restored database"))
        #expect(replies(snapshotting).isEmpty)
        let finished = m.handle(.stepResult(step: step(snapshotting)!, .backedUp(.success(report("b-1")))), at: now)
        #expect(alerts(finished).contains { $0.0 == .critical && $0.1.hasPrefix("database restored from backup b-0") })
        guard case .maintenance(let outcome) = replies(finished).first?.1 else { Issue.record("no restore reply"); return }
        #expect(outcome.startWorker && outcome.succeeded)
        #expect(finished.contains { if case .maintenanceFinished(.restore, _) = $0 { true } else { false } })
        // Then the waiting backups run, once, for both.
        #expect(work(finished) == .probe(locations: ["/b1", "/b2"]))
        let backing = probedOK(&m, finished)
        let done = m.handle(.stepResult(step: step(backing)!, .backedUp(.success(report("b-2")))), at: now)
        #expect(replies(done).map(\.0) == [[2, 3]])
    }

    func startupCheck(_ facts: M.LiveFacts, reason: String? = nil) -> (M, [M.Action]) {
        var m = M(settings: settings)
        let task: MaintenanceTask = reason.map { .repair(reason: $0) } ?? .startupCheck
        let inspecting = probedOK(&m, m.handle(.requested(1, .maintenance(task)), at: now))
        #expect(work(inspecting) == .inspect)
        let actions = m.handle(.stepResult(step: step(inspecting)!, .inspected(facts)), at: now)
        return (m, actions)
    }

    func outcome(_ actions: [M.Action]) -> MaintenanceOutcome? {
        replies(actions).compactMap { if case .maintenance(let o) = $0.1 { o } else { nil } }.first
    }

    @Test func aNewInstallationStartsWithoutARestore() {
        let (_, actions) = startupCheck(.init(inspection: inspection { $0.isMissing = true; $0.problems = ["missing"] }, seenBefore: false, candidates: 0, timelineHasSnapshot: true))
        #expect(outcome(actions) == MaintenanceOutcome(startWorker: true, succeeded: true, message: "no database yet: the worker creates it"))
        #expect(alerts(actions).isEmpty)
    }

    @Test func aMissingFileOnceSeenIsRestored() {
        let (_, actions) = startupCheck(.init(inspection: inspection { $0.isMissing = true; $0.problems = ["missing"] }, seenBefore: true, candidates: 0, timelineHasSnapshot: true))
        guard case .restore(.latest, let reason, _, _) = work(actions) else { Issue.record("no restore"); return }
        #expect(reason.contains("is missing"))
    }

    @Test func aDamagedFileIsRestoredAndWithoutABackupTheWorkerStaysStopped() {
        var (m, actions) = startupCheck(.init(inspection: inspection { $0.isDamaged = true; $0.problems = ["page 3 is corrupt"] }, seenBefore: true, candidates: 0, timelineHasSnapshot: true))
        guard case .restore(.latest, let reason, _, _) = work(actions) else { Issue.record("no restore"); return }
        #expect(reason == "the database is damaged: page 3 is corrupt")
        let failed = m.handle(.stepResult(step: step(actions)!, .restored(.noCandidates)), at: now)
        #expect(outcome(failed)?.startWorker == false)
        #expect(alerts(failed).first?.0 == .critical)
        #expect(alerts(failed).first?.1.contains("The bot stays stopped") == true)
    }

    @Test func anUnreadableFileIsNeverRestored() {
        let (_, actions) = startupCheck(.init(inspection: inspection { $0.problems = ["permission denied"] }, seenBefore: true, candidates: 3, timelineHasSnapshot: true))
        #expect(work(actions) == nil)
        #expect(outcome(actions)?.startWorker == false)
        #expect(alerts(actions).first?.0 == .critical)
    }

    @Test func aHealthyTimelineWithoutASnapshotGetsOneBeforeTheWorkerStarts() {
        var (m, actions) = startupCheck(.init(inspection: inspection(), seenBefore: true, candidates: 1, timelineHasSnapshot: false))
        #expect(work(actions) == .backup(.journal, locations: ["/b1", "/b2"], phasePrefix: nil))
        #expect(outcome(actions) == nil)
        let started = m.handle(.stepResult(step: step(actions)!, .backedUp(.success(report("b-1")))), at: now)
        #expect(outcome(started)?.startWorker == true)
        #expect(m.criticalBaseline == ["xp_members": 100])
    }

    @Test func aRepairOfAHealthyFileWarnsAndRestoresNothing() {
        let (_, actions) = startupCheck(.init(inspection: inspection(), seenBefore: true, candidates: 1, timelineHasSnapshot: true), reason: "the worker reported corruption")
        #expect(outcome(actions)?.startWorker == true)
        #expect(alerts(actions).map(\.0) == [.warning])
        #expect(work(actions) == nil)
    }

    @Test func anOperatorRestoreOfAnUnknownBackupTouchesNothing() {
        var m = M(settings: settings)
        let restoring = probedOK(&m, m.handle(.requested(1, .maintenance(.restore(.backup(id: "nope", rollForward: false), requestedBy: "uid 0"))), at: now))
        let done = m.handle(.stepResult(step: step(restoring)!, .restored(.noCandidates)), at: now)
        #expect(outcome(done) == MaintenanceOutcome(startWorker: true, succeeded: false, message: "there is no backup nope; `bot-supervisor backups` lists them. The database was not touched."))
        #expect(alerts(done).isEmpty)
    }

    @Test func aHungLocationIsLeftOutUntilItAnswers() {
        var m = M(settings: settings)
        let probing = m.handle(.requested(1, .backup(.manual)), at: now)
        let backing = m.handle(.stepResult(step: step(probing)!, .probed(["/b1": .ok, "/b2": .hung(.seconds(5))])), at: now)
        #expect(alerts(backing).count == 1)
        #expect(alerts(backing).first?.1.contains("backup location /b2 does not answer") == true)
        #expect(work(backing) == .backup(.manual, locations: ["/b1"], phasePrefix: nil))
        _ = m.handle(.stepResult(step: step(backing)!, .backedUp(.success(report("b-1", ok: [true])))), at: now)
        // Still hung: no second alert. Back: an info alert and it is used again.
        let again = m.handle(.requested(2, .verify), at: now)
        let verifying = m.handle(.stepResult(step: step(again)!, .probed(["/b1": .ok, "/b2": .hung(.seconds(5))])), at: now)
        #expect(alerts(verifying).isEmpty)
        #expect(work(verifying) == .verify(locations: ["/b1"]))
        _ = m.handle(.stepResult(step: step(verifying)!, .verified(.init(live: .init(name: "live", ok: true, detail: "ok"), backups: []))), at: now)
        let third = m.handle(.requested(3, .backup(.manual)), at: now)
        let back = probedOK(&m, third)
        #expect(alerts(back).map(\.0) == [.info])
        #expect(work(back) == .backup(.manual, locations: ["/b1", "/b2"], phasePrefix: nil))
    }

    @Test func aStepPastItsDeadlineIsGivenUpAndItsLateResultIgnored() {
        var m = M(settings: settings)
        let backing = probedOK(&m, m.handle(.requested(1, .backup(.daily)), at: now))
        #expect(m.handle(.requested(2, .verify), at: now) == [])
        let late = step(backing)!
        let timedOut = m.handle(.stepTimedOut(step: late, after: .seconds(60)), at: now)
        #expect(alerts(timedOut).first?.1.hasPrefix("backup (daily) did not finish within 60 s") == true)
        guard case .backup(.failure) = replies(timedOut).first?.1 else { Issue.record("no failure reply"); return }
        // The verification waiting behind it starts; the backup's late answer changes nothing.
        #expect(work(timedOut) == .probe(locations: ["/b1", "/b2"]))
        #expect(m.handle(.stepResult(step: late, .backedUp(.success(report("late")))), at: now) == [])
        #expect(m.running?.job == .verify)
    }

    @Test func aTimedOutStartupCheckKeepsTheWorkerStopped() {
        var m = M(settings: settings)
        let inspecting = probedOK(&m, m.handle(.requested(1, .maintenance(.startupCheck)), at: now))
        let done = m.handle(.stepTimedOut(step: step(inspecting)!, after: .seconds(60)), at: now)
        #expect(outcome(done)?.startWorker == false)
    }

    @Test func aPeriodicCheckFindsDropsAndLostLocations() {
        var m = M(settings: settings)
        // Seed the baseline through a first healthy check.
        let first = probedOK(&m, m.handle(.requested(1, .periodicCheck), at: now))
        _ = m.handle(.stepResult(step: step(first)!, .periodicChecked(.init(inspection: inspection(), seenBefore: true, lostLocations: []))), at: now)
        let second = probedOK(&m, m.handle(.requested(2, .periodicCheck), at: now))
        let dropped = inspection { $0.criticalRows = ["xp_members": 10] }
        let actions = m.handle(.stepResult(step: step(second)!, .periodicChecked(.init(inspection: dropped, seenBefore: true, lostLocations: ["/b2"]))), at: now)
        #expect(alerts(actions).contains { $0.0 == .critical && $0.1.hasPrefix("critical data dropped: xp_members has 10 rows, 100") })
        #expect(alerts(actions).contains { $0.0 == .critical && $0.1.hasPrefix("backup location /b2 is gone or empty") })
        #expect(replies(actions).first?.1 == .periodic(.healthy(criticalRows: ["xp_members": 10])))
        // The location is made again by a backup the machine asks for itself.
        #expect(m.running?.job == .backup(.journal))
    }

    @Test func aDeletedLiveFileIsDamageWhileTheWorkerRuns() {
        var m = M(settings: settings)
        let checking = probedOK(&m, m.handle(.requested(1, .periodicCheck), at: now))
        let missing = inspection { $0.isMissing = true; $0.problems = ["missing"] }
        let actions = m.handle(.stepResult(step: step(checking)!, .periodicChecked(.init(inspection: missing, seenBefore: true, lostLocations: []))), at: now)
        guard case .periodic(.damaged(let detail)) = replies(actions).first?.1 else { Issue.record("not damaged"); return }
        #expect(detail.contains("was deleted"))
    }
}
