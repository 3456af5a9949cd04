import FoundationEssentials
import Glibc
import IPC
import Logging

/// What each status-socket command does, and who may run it.
///
/// Reading commands are open to any peer that can connect. Every other command needs uid 0 or
/// the supervisor's own uid (SO_PEERCRED), and every attempt at one, allowed or not, is written
/// to `audit.log` with the peer's uid and pid.
struct ControlCommands: Sendable {
    let store: StatusStore
    let keeper: DataKeeper
    let supervisor: WorkerSupervisor
    let health: HealthMonitor
    let deploys: DeployManager
    /// Nil when no replica is configured.
    let drills: ReplicaDrills?
    let restartTimeout: Duration
    let audit: Logger
    let ownUid: UInt32 = getuid()

    /// Who sent a command: a status-socket peer (SO_PEERCRED) or a dashboard session.
    struct Requester: Sendable {
        /// Whether it may run commands that change the bot.
        var mayChange: Bool
        /// For messages and the audit: "uid 0 pid 4242", "dashboard 127.0.0.1".
        var description: String
        var audit: Logger.Metadata
        /// Why a changing command is refused (when `mayChange` is false).
        var refusal: String = ""
    }

    /// Dashboard sessions: nil when the dashboard is off.
    var dashboard: DashboardAccess? = nil
    /// The dashboard's address as configured, for its login link.
    var dashboardListen: String? = nil
    /// XP imports and exports go to the worker through it.
    let xpTransfers: XPTransferRelay

    /// Returns the response line, newline included.
    func handle(_ request: ControlRequest, from peer: PeerCredentials) async -> String {
        await handle(request, as: Requester(
            mayChange: peer.uid == 0 || peer.uid == ownUid,
            description: "uid \(peer.uid) pid \(peer.pid)",
            audit: [LogKey.uid: "\(peer.uid)", LogKey.pid: "\(peer.pid)"],
            refusal: "`\(request.cmd.rawValue)` changes the bot and is allowed only to root or the supervisor's user (uid \(ownUid)); you are uid \(peer.uid). Run it with sudo or as that user."
        ))
    }

    func handle(_ request: ControlRequest, as requester: Requester) async -> String {
        let auditMetadata: Logger.Metadata = requester.audit.merging([LogKey.command: "\(request.cmd.rawValue)"]) { $1 }
        if !request.cmd.isReadOnly {
            guard requester.mayChange else {
                audit.warning("command refused", metadata: auditMetadata.merging([LogKey.outcome: "refused"]) { $1 })
                return Self.line(ControlResponse<Ignored>.failure(ErrorBody(code: "permission-denied", message: requester.refusal)))
            }
            audit.info("command accepted", metadata: auditMetadata.merging([LogKey.outcome: "accepted"]) { $1 })
        }
        let response: String
        switch request.cmd {
        case .status:
            response = await store.statusLine(.init(database: keeper.databaseStatus(), backups: keeper.backupsStatus(), operation: keeper.tracker.status))
        case .restartWorker:
            response = await restartWorker(requester: requester.description)
        case .backup:
            response = switch await keeper.backup(reason: .manual) {
            case .success(let report): Self.line(ControlResponse.success(report))
            case .failure(let error): Self.line(ControlResponse<Ignored>.failure(error))
            }
        case .backups:
            response = Self.line(ControlResponse.success(await keeper.backupList()))
        case .verify:
            let report = await keeper.verifyAll()
            response = report.ok
                ? Self.line(ControlResponse.success(report))
                : Self.line(ControlResponse<DataKeeper.VerifyReport>(ok: false, result: report, error: ErrorBody(code: "verification-failed", message: Self.describeFailures(report))))
        case .restore:
            response = await restore(request, requester: requester.description)
        case .health:
            let status = await health.run()
            let failing = status.checks.filter { $0.status == .critical }
            response = failing.isEmpty
                ? Self.line(ControlResponse.success(status))
                : Self.line(ControlResponse(ok: false, result: status, error: ErrorBody(
                    code: "health-critical",
                    message: failing.map { "\($0.name): \($0.detail)" }.joined(separator: "; ")
                )))
        case .deploy:
            guard let release = request.release else {
                response = Self.line(ControlResponse<Ignored>.failure(.badRequest("deploy needs \"release\": the release directory")))
                break
            }
            response = switch await deploys.deploy(release, requester: requester.description, rehearseOnly: request.rehearseOnly ?? false) {
            case .success(let result): Self.line(ControlResponse.success(result))
            case .failure(let error): Self.line(ControlResponse<Ignored>.failure(error))
            }
        case .drill:
            guard let drills else {
                response = Self.line(ControlResponse<Ignored>.failure(ErrorBody(code: "no-replicas", message: "no replica is configured (replicas.targets): there is nothing to drill")))
                break
            }
            let reports = await drills.drillNow()
            let failed = reports.filter { !$0.ok }
            response = failed.isEmpty && !reports.isEmpty
                ? Self.line(ControlResponse.success(reports))
                : Self.line(ControlResponse(ok: false, result: reports, error: ErrorBody(
                    code: "drill-failed",
                    message: reports.isEmpty ? "the supervisor is stopping: no drill ran" : failed.map { "\($0.replica): \($0.detail)" }.joined(separator: "; ")
                )))
        case .dashboardURL:
            guard let dashboard, let listen = dashboardListen else {
                response = Self.line(ControlResponse<Ignored>.failure(ErrorBody(code: "dashboard-off", message: "the dashboard is off (dashboard.listen is \"\"); set it to an address such as 127.0.0.1:8080 and restart the supervisor")))
                break
            }
            response = Self.line(ControlResponse.success(DashboardLink(url: DashboardLink.url(listen: listen, code: dashboard.mintCode()), expiresInSeconds: Int(DashboardAccess.codeLifetime))))
        case .xpImport, .xpExport:
            response = await xpTransfer(request)
        case .rollback:
            response = switch await deploys.rollback(requester: requester.description) {
            case .success(let result): Self.line(ControlResponse.success(result))
            case .failure(let error): Self.line(ControlResponse<Ignored>.failure(error))
            }
        }
        if !request.cmd.isReadOnly {
            audit.info("command finished", metadata: auditMetadata.merging([LogKey.outcome: "\(response.hasPrefix("{\"ok\":true") ? "done" : "failed")"]) { $1 })
        }
        return response
    }

    private func restartWorker(requester: String) async -> String {
        let old = await store.workerPid
        supervisor.send(.restartRequested(by: requester))
        guard let pid = await store.waitForReady(excluding: old, timeout: restartTimeout) else {
            let state = await store.workerState
            return Self.line(ControlResponse<Ignored>.failure(ErrorBody(
                code: "timeout",
                message: "the worker was restarted but is not ready after \(WorkerStateMachine.seconds(restartTimeout)); its state is \(state.rawValue). See `bot-supervisor status` and bot.log"
            )))
        }
        let message = old.map { "worker restarted: pid \($0) → pid \(pid), ready" } ?? "worker started: pid \(pid), ready"
        return Self.line(ControlResponse.success(ActionResult(message: message, workerPid: pid)))
    }

    private func restore(_ request: ControlRequest, requester: String) async -> String {
        let backupID = request.backup
        var target = RestoreEngine.Target.latest
        if let at = request.at {
            guard backupID == nil else {
                return Self.line(ControlResponse<Ignored>.failure(.badRequest("restore takes either a backup or a point in time (at), not both")))
            }
            guard let date = Timestamp.parse(at) else {
                return Self.line(ControlResponse<Ignored>.failure(.badRequest("at must be an ISO 8601 time such as 2026-12-01T18:30:00Z; got \"\(at)\"")))
            }
            guard date <= Date() else {
                return Self.line(ControlResponse<Ignored>.failure(.badRequest("at \(at) is in the future; nothing was done")))
            }
            target = .pointInTime(date)
        } else if let backupID {
            target = .backup(id: backupID, rollForward: false)
        }
        let backups = await keeper.backupList()
        if let backupID, !backups.contains(where: { $0.id == backupID }) {
            // Refused before the worker is stopped.
            return Self.line(ControlResponse<Ignored>.failure(ErrorBody(code: "restore-failed", message: "there is no backup \(backupID); `bot-supervisor backups` lists them. Nothing was done.")))
        }
        if backupID == nil, !backups.contains(where: \.verified) {
            return Self.line(ControlResponse<Ignored>.failure(ErrorBody(code: "restore-failed", message: "there is no verified backup to restore. Nothing was done.")))
        }
        let outcomes = keeper.nextRestoreOutcome()
        supervisor.send(.maintenanceRequested(.restore(target, requestedBy: requester)))
        for await outcome in outcomes {
            guard outcome.succeeded else {
                return Self.line(ControlResponse<Ignored>.failure(ErrorBody(code: "restore-failed", message: outcome.message)))
            }
            let pid = await store.waitForReady(excluding: nil, timeout: restartTimeout)
            return Self.line(ControlResponse.success(ActionResult(message: outcome.message, workerPid: pid)))
        }
        return Self.line(ControlResponse<Ignored>.failure(ErrorBody(code: "restore-failed", message: "the restore did not report back")))
    }

    /// `xp-import` and `xp-export`: run by the worker (the only writer of the live database), so
    /// refused at once when it is not running.
    private func xpTransfer(_ request: ControlRequest) async -> String {
        guard let guild = request.guild, let id = UInt64(guild), id > 0 else {
            return Self.line(ControlResponse<Ignored>.failure(.badRequest("\(request.cmd.rawValue) needs \"guild\": the guild's id, e.g. \"1187654321098765432\"")))
        }
        if request.cmd == .xpImport {
            guard let content = request.content, !content.isEmpty else {
                return Self.line(ControlResponse<Ignored>.failure(.badRequest("xp-import needs \"content\": the file, base64")))
            }
            // The worker link carries lines of the same limit as this socket: leave room for the envelope.
            guard content.utf8.count <= LineFrameHandler.defaultMaximumLineLength - 4096 else {
                return Self.line(ControlResponse<Ignored>.failure(ErrorBody(code: "too-large", message: "the file is too large to relay to the worker; import it with the bot stopped (`bot-worker xp import`), or split it")))
            }
        }
        guard [.ready, .unhealthy].contains(await store.workerState) else {
            return Self.line(ControlResponse<Ignored>.failure(XPTransferRelay.notRunning))
        }
        let outcome = request.cmd == .xpImport
            ? await xpTransfers.relay(.import, guild: guild, format: request.format, dryRun: request.dryRun ?? false, content: request.content)
            : await xpTransfers.relay(.export, guild: guild)
        return switch outcome {
        case .success(let result): Self.line(ControlResponse.success(result))
        case .failure(let error): Self.line(ControlResponse<Ignored>.failure(error))
        }
    }

    private static func describeFailures(_ report: DataKeeper.VerifyReport) -> String {
        let failed = ([report.live] + report.backups).filter { !$0.ok }
        return "\(failed.count) of \(report.backups.count + 1) checks failed: " + failed.map { "\($0.name): \($0.detail)" }.joined(separator: "; ")
    }

    static func line(_ value: some Encodable) -> String {
        (try? JSONLine.encode(value)) ?? "{\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":\"could not encode the response\"}}\n"
    }
}
