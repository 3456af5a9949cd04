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
    let supervisor: WorkerSupervisor
    let restartTimeout: Duration
    let audit: Logger
    let ownUid: UInt32 = getuid()

    /// Returns the response line, newline included.
    func handle(_ request: ControlRequest, from peer: PeerCredentials) async -> String {
        let auditMetadata: Logger.Metadata = [LogKey.command: "\(request.cmd.rawValue)", LogKey.uid: "\(peer.uid)", LogKey.pid: "\(peer.pid)"]
        if !request.cmd.isReadOnly {
            guard peer.uid == 0 || peer.uid == ownUid else {
                audit.warning("command refused", metadata: auditMetadata.merging([LogKey.outcome: "refused"]) { $1 })
                return Self.line(ControlResponse<Ignored>.failure(ErrorBody(
                    code: "permission-denied",
                    message: "`\(request.cmd.rawValue)` changes the bot and is allowed only to root or the supervisor's user (uid \(ownUid)); you are uid \(peer.uid). Run it with sudo or as that user."
                )))
            }
            audit.info("command accepted", metadata: auditMetadata.merging([LogKey.outcome: "accepted"]) { $1 })
        }
        let response: String
        switch request.cmd {
        case .status:
            response = Self.line(ControlResponse.success(await store.snapshot()))
        case .restartWorker:
            response = await restartWorker(requester: "uid \(peer.uid) pid \(peer.pid)")
        case .health, .backup, .backups, .verify, .restore, .deploy, .rollback:
            response = Self.line(ControlResponse<Ignored>.failure(ErrorBody(
                code: "not-available",
                message: "`\(request.cmd.rawValue)` is not available in bot-supervisor \(BotVersion.current) yet"
            )))
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

    static func line(_ value: some Encodable) -> String {
        (try? JSONLine.encode(value)) ?? "{\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":\"could not encode the response\"}}\n"
    }
}
