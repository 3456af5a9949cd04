import BotData
import FoundationEssentials
import Glibc
import IPC
import Logging
import ServiceLifecycle
import Synchronization

/// `bot-supervisor deploy RELEASE_DIR` and `rollback`, performed by the supervisor itself: the
/// executor of `DeployMachine`. One loop owns the machine; requests, the steps' results, the
/// worker's state (as the supervision loop publishes it) and timers arrive on one stream, and
/// each step runs as a child task while the loop goes on. Every step goes to `audit.log`.
final class DeployManager: Service, Sendable {
    typealias State = DeployMachine.Record

    private enum Input: Sendable {
        case deploy(String, requester: String, rehearseOnly: Bool, CheckedContinuation<Result<ActionResult, ErrorBody>, Never>)
        case rollback(requester: String, CheckedContinuation<Result<ActionResult, ErrorBody>, Never>)
        case event(DeployMachine.Event)
    }

    private let config: SupervisorConfig
    private let keeper: DataKeeper
    private let supervisor: WorkerSupervisor
    private let store: StatusStore
    private let health: HealthMonitor
    private let audit: Logger
    private let logger: Logger
    private let inputs: AsyncStream<Input>
    private let continuation: AsyncStream<Input>.Continuation
    private let reexecTarget = Mutex<String?>(nil)

    init(config: SupervisorConfig, keeper: DataKeeper, supervisor: WorkerSupervisor, store: StatusStore, health: HealthMonitor, audit: Logger, logger: Logger) {
        self.config = config
        self.keeper = keeper
        self.supervisor = supervisor
        self.store = store
        self.health = health
        self.audit = audit
        self.logger = logger
        (inputs, continuation) = AsyncStream.makeStream(of: Input.self)
    }

    /// The binary the supervisor must re-execute once its services have stopped (a deploy or a
    /// rollback changed the supervisor itself), or nil.
    var reexecBinary: String? { reexecTarget.withLock { $0 } }

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

    // MARK: - Requests

    func deploy(_ releaseDir: String, requester: String, rehearseOnly: Bool = false) async -> Result<ActionResult, ErrorBody> {
        await withCheckedContinuation { waiter in
            if case .terminated = continuation.yield(.deploy(releaseDir, requester: requester, rehearseOnly: rehearseOnly, waiter)) {
                waiter.resume(returning: .failure(Self.stopping))
            }
        }
    }

    func rollback(requester: String) async -> Result<ActionResult, ErrorBody> {
        await withCheckedContinuation { waiter in
            if case .terminated = continuation.yield(.rollback(requester: requester, waiter)) {
                waiter.resume(returning: .failure(Self.stopping))
            }
        }
    }

    private static let stopping = ErrorBody(code: "stopping", message: "the supervisor is stopping; nothing was done")

    // MARK: - The loop

    func run() async throws {
        var machine = DeployMachine(settings: .init(readyTimeout: config.deploy.readyTimeout, probation: config.deploy.probation))
        var waiters: [DeployMachine.RequestID: CheckedContinuation<Result<ActionResult, ErrorBody>, Never>] = [:]
        var nextID = 0
        let continuation = self.continuation
        await withDiscardingTaskGroup { children in
            // The worker's state, as the supervision loop publishes it.
            let changes = await store.workerChanges()
            children.addTask {
                for await worker in changes {
                    continuation.yield(.event(.worker(state: worker.state, pid: worker.pid, restarts: worker.restarts, lastExit: worker.lastExit?.reason)))
                }
            }
            if var record = state(), let alert = record.pendingAlert {
                await store.raise(.critical, alert)
                record.pendingAlert = nil
                save(record)
            }
            if let record = state(), record.phase == .probation {
                logger.info("a deploy is on probation; watching it", metadata: ["release": "\(record.next)"])
                continuation.yield(.event(.resumed(record)))
            }
            await withGracefulShutdownHandler {
                for await input in inputs {
                    let event: DeployMachine.Event
                    switch input {
                    case .deploy(let release, let requester, let rehearseOnly, let waiter):
                        nextID += 1
                        waiters[nextID] = waiter
                        event = .deployRequested(nextID, release: URL(fileURLWithPath: release).standardizedFileURL.path, rehearseOnly: rehearseOnly, requester: requester)
                    case .rollback(let requester, let waiter):
                        nextID += 1
                        waiters[nextID] = waiter
                        event = .rollbackRequested(nextID, requester: requester, record: rollbackRecord(requester: requester))
                    case .event(let received):
                        event = received
                    }
                    for action in machine.handle(event) {
                        switch action {
                        case .perform(let step):
                            children.addTask { continuation.yield(.event(await self.perform(step))) }
                        case .startTimer(let timer, let generation, let delay):
                            children.addTask {
                                guard (try? await Task.sleep(for: delay)) != nil else { return }
                                continuation.yield(.event(.timerFired(timer, generation: generation)))
                            }
                        case .audit(let message, let metadata):
                            audit.info("deploy: \(message)", metadata: metadata.mapValues { .string($0) })
                        case .alert(let severity, let message):
                            await store.raise(severity, message)
                        case .reply(let id, let result):
                            waiters.removeValue(forKey: id)?.resume(returning: result)
                        }
                    }
                }
            } onGracefulShutdown: {
                continuation.finish()
            }
            for waiter in waiters.values { waiter.resume(returning: .failure(Self.stopping)) }
            children.cancelAll()
        }
    }

    /// What a rollback goes back from and to: the deploy's record if it is about the current
    /// release, else the `previous` link; nil when there is nothing to go back to.
    private func rollbackRecord(requester: String) -> State? {
        guard let links = try? links() else { return nil }
        let current = links.target(of: links.current) ?? ""
        let record = state().flatMap { $0.next == current ? $0 : nil }
        guard let previous = record?.previous ?? links.target(of: links.previous), !previous.isEmpty, previous != current else { return nil }
        return record ?? State(phase: .done, previous: previous, next: current, backupID: nil, schemaBefore: nil,
                               startedAt: Timestamp.string(), requester: requester, outcome: nil)
    }

    // MARK: - Steps

    private func perform(_ step: DeployMachine.Step) async -> DeployMachine.Event {
        do {
            switch step {
            case .checkRelease(let release, let rehearseOnly):
                try await check(release, rehearseOnly: rehearseOnly)
                return .checked
            case .backup:
                guard case .success(let backup) = await keeper.backup(reason: .preDeploy) else {
                    throw DeployError("the pre-deploy backup failed; see `bot-supervisor backups` and supervisor.log. Nothing was changed")
                }
                let locations = config.backup.locations
                let copy = try await BlockingPool.shared.run("finding the pre-deploy backup", deadline: .seconds(60)) {
                    BackupCatalog.scan(locations).candidates(for: backup.id).first?.file
                }
                guard let copy else { throw DeployError("the pre-deploy backup has no readable copy to test the release on. Nothing was changed") }
                return .backedUp(id: backup.id, copy: copy)
            case .dryRun(let release, let copy):
                let dryRun = try await Program.run(release + "/bin/bot-worker", ["migrate", "--dry-run", "--database", copy, "--json"], timeout: .seconds(600))
                guard dryRun.succeeded else {
                    throw DeployError("the new release's migrations fail on a copy of the database: \(dryRun.output.suffix(600)). Nothing was changed")
                }
                return .dryRunPassed
            case .rehearse(let release, let copy):
                let rehearsal = await Rehearsal(
                    release: release, database: copy, scratch: config.dataDir + "/rehearsal",
                    readyTimeout: config.deploy.readyTimeout, duration: config.deploy.rehearsal, logger: logger
                ).run()
                return .rehearsed(ok: rehearsal.ok, summary: rehearsal.summary)
            case .switchRelease(let release, let backupID, let requester):
                let links = try links()
                let installed = try links.install(release)
                let previous = links.target(of: links.current) ?? ""
                guard installed != previous else { throw DeployError("\(installed) is already the current release") }
                let schemaBefore = try await schemaVersion()
                try links.point(links.current, at: installed)
                if !previous.isEmpty { try links.point(links.previous, at: previous) }
                let record = State(phase: .probation, previous: previous, next: installed, backupID: backupID, schemaBefore: schemaBefore,
                                   startedAt: Timestamp.string(), requester: requester, outcome: nil)
                save(record)
                return .switched(record, supervisorDiffers: ReleaseLinks.supervisorDiffers(in: installed))
            case .restartWorker(let reason):
                supervisor.send(.restartRequested(by: reason))
                return .stepDone
            case .reexec:
                reexecTarget.withLock { $0 = ReleaseLinks(root: config.deploy.root ?? "").current + "/bin/bot-supervisor" }
                supervisor.send(.shutdownRequested)
                return .stepDone
            case .runHealth:
                let result = await health.run()
                let failing = result.checks.filter { $0.status == .critical }.map { "\($0.name): \($0.detail)" }.joined(separator: "; ")
                return .healthChecked(critical: result.status == .critical ? failing : nil)
            case .switchBack(let record, let reason):
                let links = try links()
                try links.point(links.current, at: record.previous)
                try? links.point(links.previous, at: record.next)
                var done = record
                done.phase = .rolledBack
                done.outcome = reason
                save(done)
                let schemaNow = try await schemaVersion()
                let changed = record.backupID != nil && record.schemaBefore != nil && record.schemaBefore != schemaNow
                return .switchedBack(done, schemaChanged: changed, supervisorDiffers: ReleaseLinks.supervisorDiffers(in: record.previous))
            case .restore(let backupID):
                let outcomes = keeper.nextRestoreOutcome()
                // The pre-deploy backup and the journal of its timeline after it: what the old
                // release wrote until the new one migrated comes back too.
                supervisor.send(.maintenanceRequested(.restore(.backup(id: backupID, rollForward: true), requestedBy: "rollback")))
                for await outcome in outcomes { return .restored(ok: outcome.succeeded, message: outcome.message) }
                return .restored(ok: false, message: "the restore did not report back")
            case .save(let record):
                save(record)
                return .stepDone
            }
        } catch {
            return .stepFailed("\(error)")
        }
    }

    private func schemaVersion() async throws -> String? {
        let path = config.dataDir + "/" + BotDatabase.fileName
        return try await BlockingPool.shared.run("reading the schema version", deadline: .seconds(60)) {
            DatabaseInspector.inspect(path: path, check: .none, readOnly: true).schemaVersion
        }
    }

    /// A deploy root exists, the release is not the current one already, its binaries exist and run.
    private func check(_ releaseDir: String, rehearseOnly: Bool) async throws {
        let links = try links()
        let release = URL(fileURLWithPath: releaseDir).standardizedFileURL.path
        let resolved = URL(fileURLWithPath: release).resolvingSymlinksInPath().path
        if !rehearseOnly, let current = links.target(of: links.current), URL(fileURLWithPath: current).resolvingSymlinksInPath().path == resolved {
            throw DeployError("\(release) is already the current release. Nothing was changed")
        }
        for binary in ["bot-supervisor", "bot-worker"] {
            let path = release + "/bin/" + binary
            guard access(path, X_OK) == 0 else { throw DeployError("\(path) is missing or not executable: is \(release) a release directory (bin/bot-supervisor, bin/bot-worker)? Nothing was changed") }
        }
        let supervisorRuns = try await Program.run(release + "/bin/bot-supervisor", ["--help"], timeout: .seconds(30))
        let workerRuns = try await Program.run(release + "/bin/bot-worker", ["migrate", "--help"], timeout: .seconds(30))
        guard supervisorRuns.succeeded, workerRuns.succeeded else {
            throw DeployError("the release's binaries do not run here (\(supervisorRuns.succeeded ? "bot-worker" : "bot-supervisor"): \((supervisorRuns.succeeded ? workerRuns : supervisorRuns).output.suffix(300))). Nothing was changed")
        }
        audit.info("deploy: the release's binaries run", metadata: ["release": "\(release)"])
    }
}
