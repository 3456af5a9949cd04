import FoundationEssentials
import Glibc
import IPC
import Logging
import NIOCore
import ServiceLifecycle

/// Serves the worker socket: checks each connecting process is the supervisor's own worker,
/// answers its hello, and turns its messages into events for the supervision loop.
///
/// Bad input (not JSON, an unknown message, an over-long or non-UTF-8 line, a stalled peer) gets
/// an error reply and closes that connection only.
struct WorkerLinkServer: Service {
    let path: String
    let heartbeatInterval: Duration
    let readTimeout: Duration
    let databasePath: String
    let discord: DiscordSettings
    let journal: JournalSettings
    let link: WorkerLink
    let keeper: DataKeeper
    let status: StatusStore
    let events: @Sendable (WorkerStateMachine.Event) -> Void
    let group: any EventLoopGroup
    let logger: Logger

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await UnixLineServer.run(path: path, mode: 0o600, group: group, readTimeout: .init(readTimeout)) { connection in
                await self.serve(connection)
            }
        }
    }

    private func serve(_ connection: LineConnection) async {
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                var frames = inbound.makeAsyncIterator()
                guard let pid = try await self.greet(connection.peer, frames: &frames, outbound: outbound) else { return }
                await link.attach(pid: pid, writer: outbound)
                events(.connected(pid: pid))
                defer { Task { await link.detach(pid: pid) } }
                try await withThrowingDiscardingTaskGroup { requests in
                    defer { requests.cancelAll() }
                    while let frame = try await frames.next() {
                        switch Self.decode(frame) {
                        case .success(.ready): events(.ready(pid: pid))
                        case .success(.startupReport(let report)):
                            await status.record(startup: report, from: pid)
                            let failed = report.checks.filter { $0.status != .ok }
                            logger.log(level: report.ok ? (failed.isEmpty ? .info : .warning) : .error, "worker start-up checks", metadata: [
                                LogKey.pid: "\(pid)", LogKey.outcome: "\(report.ok ? "ok" : "failed")",
                                "problems": "\(failed.map { "\($0.name): \($0.detail)" }.joined(separator: "; "))",
                            ])
                        case .success(.heartbeat(let beat)):
                            events(.heartbeat(pid: pid, healthy: beat.healthy, detail: beat.detail))
                            await status.record(report: beat, from: pid)
                        case .success(.fatal(let message)): events(.fatalReported(pid: pid, message: message))
                        case .success(.corruption(let detail)):
                            logger.critical("the worker reports a damaged database", metadata: [LogKey.pid: "\(pid)", LogKey.error: "\(detail)"])
                            events(.maintenanceRequested(.repair(reason: "the worker reported a damaged database (\(detail))")))
                        case .success(.migrationsPending(let identifiers)):
                            // In a task of its own: heartbeats keep flowing during the backup.
                            requests.addTask {
                                logger.info("the worker has migrations to apply; taking a pre-migration backup", metadata: [LogKey.pid: "\(pid)", "pending": "\(identifiers.joined(separator: ","))"])
                                await self.backup(for: pid, reason: .preMigration)
                            }
                        case .success(.snapshotNeeded(let reason)):
                            // A backup the journal builds on: after migrations (a new timeline),
                            // or once a failed journal location takes writes again.
                            requests.addTask {
                                logger.info("the worker asks for a snapshot for its journal", metadata: [LogKey.pid: "\(pid)", LogKey.reason: "\(reason)"])
                                await self.backup(for: pid, reason: reason == "post-migration" ? .postMigration : .journal)
                            }
                        case .success(.hello):
                            try await reject(.badRequest("hello was already received on this connection"), outbound, pid: pid)
                            return
                        case .failure(let error):
                            try await reject(error, outbound, pid: pid)
                            return
                        }
                    }
                }
            }
        } catch {
            logger.debug("worker connection ended", metadata: [LogKey.error: "\(error)"])
        }
    }

    /// Reads and checks the hello; answers welcome and returns the worker's pid, or rejects.
    private func greet(
        _ peer: PeerCredentials,
        frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws -> Int32? {
        guard let frame = try await frames.next() else { return nil }
        guard case .success(.hello(let hello)) = Self.decode(frame) else {
            let error: ErrorBody = switch Self.decode(frame) {
            case .failure(let error): error
            default: .badRequest("the first message must be hello")
            }
            try await reject(error, outbound, pid: peer.pid)
            return nil
        }
        guard hello.protocolVersion == WorkerProtocol.version else {
            try await reject(
                ErrorBody(code: "protocol-version", message: "worker speaks protocol \(hello.protocolVersion), this supervisor speaks \(WorkerProtocol.version); deploy matching bot-supervisor and bot-worker binaries"),
                outbound, pid: peer.pid
            )
            return nil
        }
        guard hello.pid == peer.pid, ProcessStats.parentPid(of: peer.pid) == getpid() else {
            try await reject(
                ErrorBody(code: "unknown-worker", message: "pid \(peer.pid) is not a worker this supervisor started"),
                outbound, pid: peer.pid
            )
            return nil
        }
        let intervalMs = Int(StatusStore.milliseconds(heartbeatInterval))
        try await outbound.writeLine(SupervisorMessage.welcome(.init(heartbeatIntervalMs: intervalMs, databasePath: databasePath, discord: discord, journal: journal)))
        logger.info("worker connected", metadata: [LogKey.pid: "\(hello.pid)", "version": "\(hello.version)"])
        return hello.pid
    }

    /// Takes a backup the worker waits for, and answers it with `migrationBackup`.
    private func backup(for pid: Int32, reason: BackupManifest.Reason) async {
        let reply: SupervisorMessage = switch await keeper.backup(reason: reason) {
        case .success(let report): .migrationBackup(ok: true, message: "backup \(report.id) taken")
        case .failure(let error): .migrationBackup(ok: false, message: error.message)
        }
        _ = await link.send(reply, to: pid)
    }

    private func reject(_ error: ErrorBody, _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, pid: Int32) async throws {
        logger.warning("worker socket: bad input, closing the connection", metadata: [LogKey.pid: "\(pid)", LogKey.error: "\(error)"])
        try await outbound.writeLine(SupervisorMessage.error(error))
    }

    private static func decode(_ frame: Frame) -> Result<WorkerMessage, ErrorBody> {
        switch frame {
        case .failure(let error):
            return .failure(.frame(error))
        case .line(let line):
            do {
                return .success(try JSONLine.decode(WorkerMessage.self, from: line))
            } catch {
                return .failure(.badRequest(JSONLine.explain(error)))
            }
        }
    }
}
