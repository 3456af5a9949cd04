import FoundationEssentials
import IPC
import Testing

@testable import Supervisor

/// A deploy's and a rollback's decisions alone: steps and timers are events, no process runs.
@Suite struct DeployMachineTests {
    typealias M = DeployMachine
    let settings = M.Settings(readyTimeout: .seconds(60), probation: .seconds(120))

    func record(backup: String? = "b-1", schemaBefore: String? = "v3") -> M.Record {
        M.Record(phase: .probation, previous: "/r/releases/v1", next: "/r/releases/v2", backupID: backup, schemaBefore: schemaBefore,
                 startedAt: "2027-01-15T08:00:00.000Z", requester: "uid 0", outcome: nil)
    }

    func steps(_ actions: [M.Action]) -> [M.Step] {
        actions.compactMap { if case .perform(let step) = $0 { step } else { nil } }
    }

    func replies(_ actions: [M.Action]) -> [(Int, Result<ActionResult, ErrorBody>)] {
        actions.compactMap { if case .reply(let id, let r) = $0 { (id, r) } else { nil } }
    }

    func timers(_ actions: [M.Action]) -> [(M.Timer, Int, Duration)] {
        actions.compactMap { if case .startTimer(let t, let g, let d) = $0 { (t, g, d) } else { nil } }
    }

    /// Drives a deploy to the point where the worker is asked to restart on the new release.
    func switched(_ m: inout M, record: M.Record) -> [M.Action] {
        _ = m.handle(.worker(state: .ready, pid: 10, restarts: 0, lastExit: nil))
        #expect(steps(m.handle(.deployRequested(1, release: "/r/releases/v2", rehearseOnly: false, requester: "uid 0"))) == [.checkRelease("/r/releases/v2", rehearseOnly: false)])
        #expect(steps(m.handle(.checked)) == [.backup])
        #expect(steps(m.handle(.backedUp(id: "b-1", copy: "/b/b-1.sqlite"))) == [.dryRun(release: "/r/releases/v2", copy: "/b/b-1.sqlite")])
        #expect(steps(m.handle(.dryRunPassed)) == [.rehearse(release: "/r/releases/v2", copy: "/b/b-1.sqlite")])
        #expect(steps(m.handle(.rehearsed(ok: true, summary: "rehearsal passed"))) == [.switchRelease(release: "/r/releases/v2", backupID: "b-1", requester: "uid 0")])
        return m.handle(.switched(record, supervisorDiffers: false))
    }

    @Test func aGoodReleaseIsReadyThenPassesProbation() {
        var m = M(settings: settings)
        let restart = switched(&m, record: record())
        #expect(steps(restart) == [.restartWorker(reason: "deploy of v2")])
        #expect(timers(restart).map(\.0) == [.ready])
        // The old worker's publications do not count; the new one's ready does.
        #expect(m.handle(.worker(state: .stopping, pid: 10, restarts: 0, lastExit: nil)).isEmpty)
        let ready = m.handle(.worker(state: .ready, pid: 11, restarts: 0, lastExit: nil))
        guard case .success(let result) = replies(ready).first?.1 else { Issue.record("no success reply"); return }
        #expect(result.workerPid == 11)
        let probation = timers(ready)
        #expect(probation.map(\.0) == [.probation] && probation.first?.2 == .seconds(120))
        // The ready timer, stale now, changes nothing.
        #expect(m.handle(.timerFired(.ready, generation: timers(restart)[0].1)).isEmpty)
        #expect(steps(m.handle(.timerFired(.probation, generation: probation[0].1))) == [.runHealth])
        let kept = m.handle(.healthChecked(critical: nil))
        guard case .save(let saved) = steps(kept).first else { Issue.record("not saved"); return }
        #expect(saved.phase == .done)
        #expect(kept.contains(.alert(.info, "deploy of v2 passed its probation and is kept")))
        #expect(!m.isBusy)
    }

    @Test func aFailureBeforeTheSwitchRefusesAndChangesNothing() {
        var m = M(settings: settings)
        _ = m.handle(.deployRequested(1, release: "/r/releases/v2", rehearseOnly: false, requester: "uid 0"))
        _ = m.handle(.checked)
        let refused = m.handle(.stepFailed("the pre-deploy backup failed"))
        #expect(steps(refused).isEmpty)
        guard case .failure(let error) = replies(refused).first?.1 else { Issue.record("no failure"); return }
        #expect(error.code == "deploy-refused")
        #expect(!m.isBusy)
    }

    @Test func aRehearsalThatFailsRefusesTheDeploy() {
        var m = M(settings: settings)
        _ = m.handle(.deployRequested(1, release: "/r/v2", rehearseOnly: false, requester: "uid 0"))
        _ = m.handle(.checked)
        _ = m.handle(.backedUp(id: "b-1", copy: "/c"))
        _ = m.handle(.dryRunPassed)
        let refused = m.handle(.rehearsed(ok: false, summary: "rehearsal FAILED"))
        guard case .failure(let error) = replies(refused).first?.1 else { Issue.record("no failure"); return }
        #expect(error.message.hasPrefix("rehearsal FAILED\nThe deploy is refused"))
        #expect(steps(refused).isEmpty)
    }

    @Test func aReleaseNeverReadyIsRolledBackAndTheMigratedDatabaseRestored() {
        var m = M(settings: settings)
        let restart = switched(&m, record: record())
        let rolling = m.handle(.timerFired(.ready, generation: timers(restart)[0].1))
        #expect(replies(rolling).isEmpty)  // the caller waits for the rollback's outcome
        guard case .switchBack(_, let reason) = steps(rolling).first else { Issue.record("no switch back"); return }
        #expect(reason == "the new release was not ready within 60 s")
        var back = record()
        back.phase = .rolledBack
        #expect(steps(m.handle(.switchedBack(back, schemaChanged: true, supervisorDiffers: false))) == [.restore(backupID: "b-1")])
        let done = m.handle(.restored(ok: true, message: "restored"))
        guard case .failure(let error) = replies(done).first?.1 else { Issue.record("no failure reply"); return }
        #expect(error.code == "rolled-back" && error.message.contains("rolled back to v1"))
        #expect(done.contains { if case .alert(.critical, let text) = $0 { text.hasPrefix("deploy of v2 rolled back to v1: the new release was not ready") && text.contains("b-1 was restored") } else { false } })
        // The restore restarted the worker already: no second restart.
        #expect(!steps(done).contains(.restartWorker(reason: "rollback")))
        #expect(!m.isBusy)
    }

    @Test func aCrashOnProbationRollsBackWithoutARestoreWhenNothingMigrated() {
        var m = M(settings: settings)
        _ = switched(&m, record: record())
        _ = m.handle(.worker(state: .ready, pid: 11, restarts: 0, lastExit: nil))
        let rolling = m.handle(.worker(state: .ready, pid: 12, restarts: 1, lastExit: "killed by signal 11"))
        guard case .switchBack(_, let reason) = steps(rolling).first else { Issue.record("no rollback"); return }
        #expect(reason == "the worker failed on the new release (killed by signal 11)")
        let done = m.handle(.switchedBack(record(), schemaChanged: false, supervisorDiffers: false))
        #expect(steps(done).contains(.restartWorker(reason: "rollback")))
    }

    @Test func aCriticalHealthCheckAtTheEndOfProbationRollsBack() {
        var m = M(settings: settings)
        _ = switched(&m, record: record())
        let ready = m.handle(.worker(state: .ready, pid: 11, restarts: 0, lastExit: nil))
        _ = m.handle(.timerFired(.probation, generation: timers(ready)[0].1))
        let rolling = m.handle(.healthChecked(critical: "errors: 60 errors in 5 min"))
        guard case .switchBack(_, let reason) = steps(rolling).first else { Issue.record("no rollback"); return }
        #expect(reason.contains("errors: 60 errors"))
    }

    @Test func aNewSupervisorBinaryReexecutesAndTheResumedOneWatches() {
        var m = M(settings: settings)
        _ = m.handle(.deployRequested(1, release: "/r/v2", rehearseOnly: false, requester: "uid 0"))
        _ = m.handle(.checked)
        _ = m.handle(.backedUp(id: "b-1", copy: "/c"))
        _ = m.handle(.dryRunPassed)
        _ = m.handle(.rehearsed(ok: true, summary: "ok"))
        let actions = m.handle(.switched(record(), supervisorDiffers: true))
        #expect(steps(actions) == [.reexec])
        #expect(replies(actions).count == 1)
        // The supervisor on the new release resumes the probation from the record.
        var resumed = M(settings: settings)
        let watching = resumed.handle(.resumed(record()))
        #expect(timers(watching).map(\.0) == [.ready])
        let ready = resumed.handle(.worker(state: .ready, pid: 20, restarts: 0, lastExit: nil))
        #expect(timers(ready).map(\.0) == [.probation])
    }

    @Test func requestsWhileBusyAreRefusedAndARollbackOnProbationIsAllowed() {
        var m = M(settings: settings)
        _ = switched(&m, record: record())
        guard case .failure(let busy) = replies(m.handle(.deployRequested(2, release: "/r/v3", rehearseOnly: false, requester: "uid 0"))).first?.1 else { Issue.record("not refused"); return }
        #expect(busy.code == "busy")
        _ = m.handle(.worker(state: .ready, pid: 11, restarts: 0, lastExit: nil))
        let rolling = m.handle(.rollbackRequested(3, requester: "uid 0", record: record()))
        guard case .switchBack(_, let reason) = steps(rolling).first else { Issue.record("no rollback"); return }
        #expect(reason == "requested by uid 0")
        let done = m.handle(.switchedBack(record(), schemaChanged: false, supervisorDiffers: false))
        #expect(replies(done).map(\.0) == [3])
    }

    @Test func aRollbackWithNothingToGoBackToIsRefused() {
        var m = M(settings: settings)
        guard case .failure(let error) = replies(m.handle(.rollbackRequested(1, requester: "uid 0", record: nil))).first?.1 else { Issue.record("not refused"); return }
        #expect(error.message == "there is no previous release to go back to")
    }
}
