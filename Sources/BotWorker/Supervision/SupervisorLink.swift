import FoundationEssentials
import Glibc
import IPC
import Logging
import NIOCore
import Synchronization

/// The worker's end of its connection to the supervisor.
///
/// Requests that wait for an answer (`backup(_:)`) carry an id; the supervisor's reply names it
/// and `receive` hands it to that request, so any number may be outstanding at once.
final class SupervisorLink: Sendable {
    /// The supervisor cannot be worked with: it refused this worker, or speaks another protocol.
    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    /// What `receive` made of one message.
    enum Received: Equatable {
        case goOn
        case shutdown(reason: String)
    }

    private let sendLine: @Sendable (WorkerMessage) async throws -> Void
    let logger: Logger
    private let pending = PendingRequests<BackupReply>()
    /// Told of every backup the supervisor takes (the journal starts a new segment).
    private let snapshotListener = Mutex<(@Sendable (Int64) -> Void)?>(nil)
    /// Runs the XP imports and exports the supervisor relays (set once the database is open).
    private let xpTransferHandler = Mutex<(@Sendable (XPTransferRequest) -> Void)?>(nil)

    init(send: @escaping @Sendable (WorkerMessage) async throws -> Void, logger: Logger) {
        sendLine = send
        self.logger = logger
    }

    convenience init(outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, logger: Logger) {
        self.init(send: { try await outbound.writeLine($0) }, logger: logger)
    }

    func send(_ message: WorkerMessage) async throws {
        try await sendLine(message)
    }

    /// Says hello (with the features' log systems) and waits for the supervisor's welcome.
    func greet(_ frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator, logSystems: [String]) async throws -> SupervisorMessage.Welcome {
        try await send(.hello(.init(pid: getpid(), version: BotVersion.current, logSystems: logSystems)))
        guard let frame = try await frames.next() else {
            throw Refused(description: "the supervisor closed the connection before its welcome")
        }
        guard case .line(let line) = frame else {
            throw Refused(description: "unreadable answer from the supervisor")
        }
        return try Self.welcome(from: line)
    }

    /// The supervisor's answer to the hello: its welcome when it speaks this worker's protocol.
    static func welcome(from line: String) throws -> SupervisorMessage.Welcome {
        // The version first: a welcome of another version may not decode as one of this version.
        if let probe = try? JSONLine.decode(WorkerProtocol.VersionProbe.self, from: line), probe.type == "welcome",
           probe.protocolVersion != WorkerProtocol.version {
            throw Refused(description: WorkerProtocol.versionMismatch(own: "worker", peer: "supervisor", peerVersion: probe.protocolVersion))
        }
        switch try JSONLine.decode(SupervisorMessage.self, from: line) {
        case .welcome(let welcome): return welcome
        case .error(let body): throw Refused(description: "the supervisor refused this worker: \(body.message) (\(body.code))")
        default: throw Refused(description: "the supervisor answered the hello with something else than a welcome")
        }
    }

    /// Asks the supervisor for a backup and waits for the reply naming this request.
    /// - Parameters:
    ///   - migrations: `preMigration`: the migrations about to be applied.
    ///   - detail: why, in words, for the supervisor's log.
    func backup(_ reason: BackupReason, migrations: [String] = [], detail: String? = nil) async throws -> BackupReply {
        let (id, replies) = pending.register()
        try await send(.backupRequest(.init(id: id, reason: reason, migrations: migrations, detail: detail)))
        for await reply in replies { return reply }
        return BackupReply(id: id, ok: false, message: "the connection to the supervisor closed before its answer")
    }

    func onSnapshotTaken(_ listener: @escaping @Sendable (Int64) -> Void) {
        snapshotListener.withLock { $0 = listener }
    }

    /// `handler` starts the work of each `xpTransfer` request (and answers it): it must not block.
    func onXPTransfer(_ handler: @escaping @Sendable (XPTransferRequest) -> Void) {
        xpTransferHandler.withLock { $0 = handler }
    }

    /// One message from the supervisor after its welcome.
    func receive(_ message: SupervisorMessage) -> Received {
        switch message {
        case .shutdown(let reason):
            return .shutdown(reason: reason)
        case .backupReply(let reply):
            if !pending.deliver(reply, to: reply.id) {
                logger.warning("a reply from the supervisor names no waiting request", metadata: ["request": "\(reply.id)"])
            }
        case .snapshotTaken(let sequence):
            snapshotListener.withLock { $0 }?(sequence)
        case .xpTransfer(let request):
            if let handler = xpTransferHandler.withLock({ $0 }) {
                handler(request)
            } else {
                // The supervisor relays only to a ready worker, whose database is open.
                logger.warning("an XP transfer arrived before the database opened; not answered", metadata: ["request": "\(request.id)"])
            }
        case .error(let body):
            logger.warning("the supervisor reported an error", metadata: ["error": "\(body)"])
        case .welcome:
            logger.debug("ignored a second welcome from the supervisor")
        }
        return .goOn
    }

    /// The connection is gone: every waiting request is answered "not taken".
    func closed() {
        pending.closeAll(with: BackupReply(id: RequestID(0), ok: false, message: "the connection to the supervisor closed"))
    }

    /// Reads what the supervisor sends until it says `shutdown` or the connection closes: either
    /// way the worker must stop, because a worker never runs without its supervisor.
    func waitForShutdown(_ frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator) async throws {
        defer { closed() }
        while let frame = try await frames.next() {
            switch frame {
            case .failure(let error):
                logger.error("unreadable message from the supervisor", metadata: ["error": "\(error)"])
                return
            case .line(let line):
                guard let message = try? JSONLine.decode(SupervisorMessage.self, from: line) else {
                    logger.debug("ignored a message from the supervisor", metadata: ["line": "\(line.prefix(200))"])
                    continue
                }
                if case .shutdown(let reason) = receive(message) {
                    logger.info("shutdown requested by the supervisor", metadata: ["reason": "\(reason)"])
                    return
                }
            }
        }
        if !Task.isCancelled {
            logger.warning("the supervisor closed the connection; shutting down")
        }
    }
}
