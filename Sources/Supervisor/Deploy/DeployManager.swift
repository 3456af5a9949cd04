import BotData
import FoundationEssentials
import Glibc
import IPC
import Logging
import Synchronization

/// `bot-supervisor deploy RELEASE_DIR` and `rollback`, performed by the supervisor itself.
///
/// Deploy: the release's binaries must run and its migrations must pass a dry run on a copy of
/// the database (the `pre-deploy` backup, taken first); any failure refuses the deploy and
/// changes nothing. Then `current` is switched, the worker restarted on the new release (the
/// supervisor re-executes itself first when its own binary changed) and watched: not ready within
/// `deploy.readyTimeoutSeconds`, crash-looping, failed, or a critical health check before
/// `deploy.probationSeconds` are over → automatic rollback. Every step goes to `audit.log`.
///
/// Rollback (automatic, or on request): `current` back to the previous release, the `pre-deploy`
/// backup restored if the new release migrated the database, the old worker started, and a
/// critical alert saying why.
///
/// The deploy's state lives in `<dataDir>/deploy.json`, so that a supervisor that re-executed
/// itself (or was restarted by systemd) goes on with the probation, or the rollback.
actor DeployManager {
    struct State: Codable, Sendable, Equatable {
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

    private let config: SupervisorConfig
    private let keeper: DataKeeper
    private let supervisor: WorkerSupervisor
    private let store: StatusStore
    private let health: HealthMonitor
    private let audit: Logger
    private let logger: Logger
    private var busy = false
    private var probationTask: Task<Void, Never>?
    /// Set when the supervisor must re-execute itself from `current` once it has stopped.
    nonisolated static let reexec = ReexecFlag()

    init(config: SupervisorConfig, keeper: DataKeeper, supervisor: WorkerSupervisor, store: StatusStore, health: HealthMonitor, audit: Logger, logger: Logger) {
        self.config = config
        self.keeper = keeper
        self.supervisor = supervisor
        self.store = store
        self.health = health
        self.audit = audit
        self.logger = logger
    }

    private var stateFile: String { config.dataDir + "/deploy.json" }

    func state() -> State? {
        guard let data = FileManager.default.contents(atPath: stateFile) else { return nil }
        return try? JSONLine.decode(State.self, from: data)
    }

    private func save(_ state: State) {
        guard let data = try? JSONEncoder().encode(state) else { return }
        try? DurableFile.write(data, to: stateFile)
    }

    private func links() throws -> ReleaseLinks {
        guard let root = config.deploy.root else {
            throw DeployError("this supervisor does not run from an installed release (no deploy.root): install with deploy/install.sh, or set deploy.root to the directory holding releases/ and current")
        }
        return ReleaseLinks(root: root)
    }

    private func step(_ message: String, _ metadata: Logger.Metadata = [:]) {
        audit.info("deploy: \(message)", metadata: metadata)
    }

    // MARK: - Deploy

    func deploy(_ releaseDir: String, requester: String, rehearseOnly: Bool = false) async -> Result<ActionResult, ErrorBody> {
        guard !busy else { return .failure(ErrorBody(code: "busy", message: "a deploy or rollback is already running")) }
        busy = true
        defer { busy = false }
        do {
            let links = try links()
            let release = URL(fileURLWithPath: releaseDir).standardizedFileURL.path
            step("requested", ["release": "\(release)", "by": "\(requester)"])
            let resolved = URL(fileURLWithPath: release).resolvingSymlinksInPath().path
            if !rehearseOnly, let current = links.target(of: links.current), URL(fileURLWithPath: current).resolvingSymlinksInPath().path == resolved {
                throw DeployError("\(release) is already the current release. Nothing was changed")
            }
            try await check(release)
            guard case .success(let backup) = await keeper.backup(reason: .preDeploy) else {
                throw DeployError("the pre-deploy backup failed; see `bot-supervisor backups` and supervisor.log. Nothing was changed")
            }
            step("pre-deploy backup taken", ["backup": "\(backup.id)"])
            guard let copy = BackupCatalog.scan(config.backup.locations).candidates(for: backup.id).first?.file else {
                throw DeployError("the pre-deploy backup has no readable copy to test the release on. Nothing was changed")
            }
            let dryRun = try await Program.run(release + "/bin/bot-worker", ["migrate", "--dry-run", "--database", copy, "--json"], timeout: .seconds(600))
            guard dryRun.succeeded else {
                throw DeployError("the new release's migrations fail on a copy of the database: \(dryRun.output.suffix(600)). Nothing was changed")
            }
            step("migrations pass a dry run on a copy of the database")
            // The staging rehearsal: the new release on a copy of production, in the sandbox.
            let rehearsal = await Rehearsal(
                release: release, database: copy, scratch: config.dataDir + "/rehearsal",
                readyTimeout: config.deploy.readyTimeout, duration: config.deploy.rehearsal, logger: logger
            ).run()
            step("rehearsal " + (rehearsal.ok ? "passed" : "failed"), ["report": "\(rehearsal.summary)"])
            if rehearseOnly {
                return rehearsal.ok
                    ? .success(ActionResult(message: rehearsal.summary))
                    : .failure(ErrorBody(code: "rehearsal-failed", message: rehearsal.summary))
            }
            guard rehearsal.ok else {
                throw DeployError(rehearsal.summary + "\nThe deploy is refused; nothing was changed")
            }
            let installed = try links.install(release)
            let previous = links.target(of: links.current) ?? ""
            guard installed != previous else { throw DeployError("\(installed) is already the current release") }
            let schemaBefore = DatabaseInspector.inspect(path: config.dataDir + "/" + BotDatabase.fileName, check: .none, readOnly: true).schemaVersion
            try links.point(links.current, at: installed)
            if !previous.isEmpty { try links.point(links.previous, at: previous) }
            let state = State(phase: .probation, previous: previous, next: installed, backupID: backup.id, schemaBefore: schemaBefore,
                              startedAt: Timestamp.string(), requester: requester, outcome: nil)
            save(state)
            step("current switched", ["from": "\(previous)", "to": "\(installed)"])

            if ReleaseLinks.supervisorDiffers(in: installed) {
                step("the supervisor binary changed: it re-executes itself on the new release")
                Self.reexec.request(links.current + "/bin/bot-supervisor")
                supervisor.send(.shutdownRequested)
                return .success(ActionResult(message: rehearsal.summary + "\ndeployed \(ReleaseLinks.version(of: installed)); the supervisor restarts itself on it, then watches it for \(WorkerStateMachine.seconds(config.deploy.probation)) (`bot-supervisor status` shows the outcome)"))
            }
            let old = await store.workerPid
            supervisor.send(.restartRequested(by: "deploy of \(ReleaseLinks.version(of: installed))"))
            guard let pid = await store.waitForReady(excluding: old, timeout: config.deploy.readyTimeout) else {
                let reason = "the new release was not ready within \(WorkerStateMachine.seconds(config.deploy.readyTimeout))"
                let rolled = await rollBack(state, reason: reason)
                return .failure(ErrorBody(code: "rolled-back", message: "\(reason); \(rolled)"))
            }
            step("the worker is ready on the new release", ["pid": "\(pid)"])
            startProbation(state, restartsAtStart: await store.snapshot().worker.restarts)
            return .success(ActionResult(
                message: rehearsal.summary + "\nrehearsal passed; deployed \(ReleaseLinks.version(of: installed)): worker pid \(pid) ready; on probation for \(WorkerStateMachine.seconds(config.deploy.probation)) (`bot-supervisor status` shows the outcome)",
                workerPid: pid
            ))
        } catch {
            step("refused", ["error": "\(error)"])
            return .failure(ErrorBody(code: "deploy-refused", message: "\(error)"))
        }
    }

    /// The release's binaries exist and run.
    private func check(_ release: String) async throws {
        for binary in ["bot-supervisor", "bot-worker"] {
            let path = release + "/bin/" + binary
            guard access(path, X_OK) == 0 else { throw DeployError("\(path) is missing or not executable: is \(release) a release directory (bin/bot-supervisor, bin/bot-worker)? Nothing was changed") }
        }
        let supervisorRuns = try await Program.run(release + "/bin/bot-supervisor", ["--help"], timeout: .seconds(30))
        let workerRuns = try await Program.run(release + "/bin/bot-worker", ["migrate", "--help"], timeout: .seconds(30))
        guard supervisorRuns.succeeded, workerRuns.succeeded else {
            throw DeployError("the release's binaries do not run here (\(supervisorRuns.succeeded ? "bot-worker" : "bot-supervisor"): \((supervisorRuns.succeeded ? workerRuns : supervisorRuns).output.suffix(300))). Nothing was changed")
        }
        step("the release's binaries run", ["release": "\(release)"])
    }

    // MARK: - Probation

    /// At start: a deploy still on probation (the supervisor re-executed itself, or systemd
    /// restarted it) is watched again from here.
    func resume() async {
        if var state = state(), let alert = state.pendingAlert {
            await store.raise(.critical, alert)
            state.pendingAlert = nil
            save(state)
        }
        guard let state = state(), state.phase == .probation else { return }
        logger.info("a deploy is on probation; watching it", metadata: ["release": "\(state.next)"])
        guard await store.waitForReady(excluding: nil, timeout: config.deploy.readyTimeout) != nil else {
            _ = await rollBack(state, reason: "the new release was not ready within \(WorkerStateMachine.seconds(config.deploy.readyTimeout)) after the supervisor restarted on it")
            return
        }
        startProbation(state, restartsAtStart: await store.snapshot().worker.restarts)
    }

    private func startProbation(_ state: State, restartsAtStart: Int) {
        probationTask?.cancel()
        probationTask = Task { await self.watch(state, restartsAtStart: restartsAtStart) }
    }

    private func watch(_ state: State, restartsAtStart: Int) async {
        let deadline = ContinuousClock.now + config.deploy.probation
        while ContinuousClock.now < deadline {
            guard (try? await Task.sleep(for: .milliseconds(250))) != nil else { return }
            let worker = await store.snapshot().worker
            switch worker.state {
            case .crashLoop, .failed, .backoff:
                _ = await rollBack(state, reason: "the worker is \(worker.state.rawValue) on the new release (\(worker.lastExit?.reason ?? "no exit recorded"))")
                return
            default:
                if worker.restarts > restartsAtStart {
                    _ = await rollBack(state, reason: "the worker failed on the new release (\(worker.lastExit?.reason ?? "restarted"))")
                    return
                }
            }
        }
        let result = await health.run()
        if result.status == .critical {
            let failing = result.checks.filter { $0.status == .critical }.map { "\($0.name): \($0.detail)" }.joined(separator: "; ")
            _ = await rollBack(state, reason: "a health check is critical at the end of the probation (\(failing))")
            return
        }
        var done = state
        done.phase = .done
        done.outcome = "kept after \(WorkerStateMachine.seconds(config.deploy.probation)) of probation"
        save(done)
        step("probation passed; the release is kept", ["release": "\(state.next)"])
        await store.raise(.info, "deploy of \(ReleaseLinks.version(of: state.next)) passed its probation and is kept")
    }

    // MARK: - Rollback

    func rollback(requester: String) async -> Result<ActionResult, ErrorBody> {
        guard !busy else { return .failure(ErrorBody(code: "busy", message: "a deploy or rollback is already running")) }
        busy = true
        defer { busy = false }
        do {
            let links = try links()
            let current = links.target(of: links.current) ?? ""
            let state = state().flatMap { $0.next == current ? $0 : nil }
            guard let previous = state?.previous ?? links.target(of: links.previous), !previous.isEmpty, previous != current else {
                throw DeployError("there is no previous release to go back to")
            }
            let known = state ?? State(phase: .done, previous: previous, next: current, backupID: nil, schemaBefore: nil,
                                       startedAt: Timestamp.string(), requester: requester, outcome: nil)
            let message = await rollBack(known, reason: "requested by \(requester)")
            return .success(ActionResult(message: message, workerPid: await store.workerPid))
        } catch {
            return .failure(ErrorBody(code: "rollback-failed", message: "\(error)"))
        }
    }

    /// Back to `state.previous`; returns what was done.
    private func rollBack(_ state: State, reason: String) async -> String {
        probationTask?.cancel()
        step("rolling back", ["from": "\(state.next)", "to": "\(state.previous)", "reason": "\(reason)"])
        do {
            let links = try links()
            try links.point(links.current, at: state.previous)
            try? links.point(links.previous, at: state.next)
        } catch {
            let message = "rollback of \(ReleaseLinks.version(of: state.next)) failed: \(error); \(reason)"
            await store.raise(.critical, message)
            return message
        }
        var done = state
        done.phase = .rolledBack
        done.outcome = reason
        save(done)
        var reexecuting = false
        let schemaNow = DatabaseInspector.inspect(path: config.dataDir + "/" + BotDatabase.fileName, check: .none, readOnly: true).schemaVersion
        var restored = "the database was left as it is (the new release did not migrate it)"
        if let backupID = state.backupID, let before = state.schemaBefore, before != schemaNow {
            let outcomes = await keeper.nextRestoreOutcome()
            // The pre-deploy backup and the journal of its timeline after it: what the old release
            // wrote until the new one migrated comes back too.
            supervisor.send(.maintenanceRequested(.restore(.backup(id: backupID, rollForward: true), requestedBy: "rollback")))
            for await outcome in outcomes {
                restored = outcome.succeeded
                    ? "the pre-deploy backup \(backupID) was restored (the new release had migrated the database)"
                    : "the pre-deploy backup \(backupID) could not be restored: \(outcome.message)"
                break
            }
        } else if ReleaseLinks.supervisorDiffers(in: state.previous) {
            reexecuting = true
        } else {
            supervisor.send(.restartRequested(by: "rollback"))
        }
        let message = "deploy of \(ReleaseLinks.version(of: state.next)) rolled back to \(ReleaseLinks.version(of: state.previous)): \(reason); \(restored)"
        step("rolled back", ["outcome": "\(message)"])
        if reexecuting {
            // The old release's supervisor raises it once it runs.
            done.pendingAlert = message
            save(done)
            Self.reexec.request(ReleaseLinks(root: config.deploy.root ?? "").current + "/bin/bot-supervisor")
            supervisor.send(.shutdownRequested)
        } else {
            await store.raise(.critical, message)
        }
        return message
    }
}

/// Whether the supervisor should re-execute itself (and from which binary) once it has stopped.
final class ReexecFlag: Sendable {
    private let target = Mutex<String?>(nil)

    func request(_ binary: String) {
        target.withLock { $0 = binary }
    }

    var requested: String? { target.withLock { $0 } }
}
