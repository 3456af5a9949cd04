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
    /// Where each worker's announced log systems go, for `WorkerOutput`.
    let logSystems: WorkerLogSystems
    let status: StatusStore
    let events: @Sendable (WorkerStateMachine.Event) -> Void
    let group: any EventLoopGroup
    let logger: Logger
    /// Where the worker's answers to relayed XP imports and exports go.
    let xpTransfers: XPTransferRelay

    func run() async throws {
        xpTransfers.use(link)
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
                do {
                    try await serveRequests(pid: pid, frames: &frames, outbound: outbound)
                } catch {
                    await link.detach(pid: pid)
                    xpTransfers.workerGone()
                    throw error
                }
                await link.detach(pid: pid)
                xpTransfers.workerGone()
            }
        } catch {
            logger.debug("worker connection ended", metadata: [LogKey.error: "\(error)"])
        }
    }

    /// The worker's messages after its hello, until it closes the connection or sends bad input.
    /// Backups run as children of a discarding group, so heartbeats keep flowing during one; they
    /// end with the connection.
    private func serveRequests(
        pid: Int32,
        frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws {
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
                    events(.heartbeat(pid: pid, healthy: beat.healthy, detail: beat.detail, rssBytes: beat.rssBytes.map(Int64.init)))
                    await status.record(report: beat, from: pid)
                case .success(.fatal(let message)): events(.fatalReported(pid: pid, message: message))
                case .success(.corruption(let detail)):
                    logger.critical("the worker reports a damaged database", metadata: [LogKey.pid: "\(pid)", LogKey.error: "\(detail)"])
                    events(.maintenanceRequested(.repair(reason: "the worker reported a damaged database (\(detail))")))
                case .success(.alert(let severity, let message)):
                    await status.raise(severity, message)
                case .success(.xpTransferReply(let reply)):
                    if !xpTransfers.deliver(reply) {
                        logger.warning("an XP transfer reply names no waiting command", metadata: [LogKey.pid: "\(pid)", "request": "\(reply.id)"])
                    }
                case .success(.backupRequest(let request)):
                    requests.addTask {
                        logger.info("the worker asks for a backup", metadata: [
                            LogKey.pid: "\(pid)", LogKey.reason: "\(request.reason.rawValue)", "request": "\(request.id)",
                            "pending": "\(request.migrations.joined(separator: ","))", "detail": "\(request.detail ?? "")",
                        ])
                        await self.backup(for: pid, request)
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

    /// Reads and checks the hello; answers welcome and returns the worker's pid, or rejects.
    private func greet(
        _ peer: PeerCredentials,
        frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws -> Int32? {
        guard let frame = try await frames.next() else { return nil }
        // The version first: a worker of another version may not even decode as a hello of this one.
        if let refusal = Self.versionRefusal(frame) {
            try await reject(refusal, outbound, pid: peer.pid)
            return nil
        }
        guard case .success(.hello(let hello)) = Self.decode(frame) else {
            let error: ErrorBody = switch Self.decode(frame) {
            case .failure(let error): error
            default: .badRequest("the first message must be hello")
            }
            try await reject(error, outbound, pid: peer.pid)
            return nil
        }
        guard hello.pid == peer.pid, ProcessStats.parentPid(of: peer.pid) == getpid() else {
            try await reject(
                ErrorBody(code: "unknown-worker", message: "pid \(peer.pid) is not a worker this supervisor started"),
                outbound, pid: peer.pid
            )
            return nil
        }
        // Before the welcome: the worker's features log only once welcomed.
        if let refusal = logSystems.admit(hello) {
            try await reject(refusal, outbound, pid: peer.pid)
            return nil
        }
        let intervalMs = Int(StatusStore.milliseconds(heartbeatInterval))
        try await outbound.writeLine(SupervisorMessage.welcome(.init(heartbeatIntervalMs: intervalMs, databasePath: databasePath, discord: discord, journal: journal)))
        logger.info("worker connected", metadata: [LogKey.pid: "\(hello.pid)", "version": "\(hello.version)", "logSystems": "\(hello.logSystems.joined(separator: ","))"])
        return hello.pid
    }

    /// Takes a backup the worker waits for, and answers it with the `backupReply` naming its id.
    private func backup(for pid: Int32, _ request: BackupRequest) async {
        let reply = switch await keeper.backup(reason: BackupManifest.Reason(request.reason)) {
        case .success(let report): BackupReply(id: request.id, ok: true, message: "backup \(report.id) taken")
        case .failure(let error): BackupReply(id: request.id, ok: false, message: error.message)
        }
        _ = await link.send(.backupReply(reply), to: pid)
    }

    /// The refusal of a first message of another protocol version than this supervisor's, naming
    /// both; nil when it is of this version (or not a hello at all: that is refused as such).
    static func versionRefusal(_ frame: Frame) -> ErrorBody? {
        guard case .line(let line) = frame, let probe = try? JSONLine.decode(WorkerProtocol.VersionProbe.self, from: line),
              probe.type == "hello", probe.protocolVersion != WorkerProtocol.version
        else { return nil }
        return ErrorBody(code: "protocol-version", message: WorkerProtocol.versionMismatch(own: "supervisor", peer: "worker", peerVersion: probe.protocolVersion))
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

extension BackupManifest.Reason {
    /// The manifest's reason for a backup the worker asked for: one case each, checked by the
    /// compiler rather than by comparing strings on both sides.
    init(_ reason: BackupReason) {
        switch reason {
        case .preMigration: self = .preMigration
        case .postMigration: self = .postMigration
        case .journal: self = .journal
        }
    }
}
