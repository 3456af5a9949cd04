import FoundationEssentials
import Glibc
import IPC
import Logging
import NIOCore
import Synchronization

/// The worker's end of its connection to the supervisor.
final class SupervisorLink: Sendable {
    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let logger: Logger
    /// The one request that waits for an answer: the pre-migration backup.
    private let backupReply = Mutex<AsyncStream<(ok: Bool, message: String)>.Continuation?>(nil)
    /// Told of every backup the supervisor takes (the journal starts a new segment).
    private let snapshotListener = Mutex<(@Sendable (Int64) -> Void)?>(nil)

    init(outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, logger: Logger) {
        self.outbound = outbound
        self.logger = logger
    }

    func send(_ message: WorkerMessage) async throws {
        try await outbound.writeLine(message)
    }

    /// Says hello and waits for the supervisor's welcome.
    func greet(_ frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator) async throws -> SupervisorMessage.Welcome {
        try await send(.hello(.init(pid: getpid(), version: BotVersion.current)))
        guard let frame = try await frames.next() else {
            throw Refused(description: "the supervisor closed the connection before its welcome")
        }
        guard case .line(let line) = frame else {
            throw Refused(description: "unreadable answer from the supervisor")
        }
        switch try JSONLine.decode(SupervisorMessage.self, from: line) {
        case .welcome(let welcome): return welcome
        case .error(let body): throw Refused(description: "the supervisor refused this worker: \(body)")
        default: throw Refused(description: "the supervisor answered the hello with something else than a welcome")
        }
    }

    /// Asks the supervisor for a `pre-migration` backup and waits for its answer.
    func requestMigrationBackup(pending: [String]) async throws -> (ok: Bool, message: String) {
        try await requestBackup(.migrationsPending(identifiers: pending))
    }

    /// Asks the supervisor for a backup the journal can build on, and waits for its answer.
    func requestSnapshot(reason: String) async throws -> (ok: Bool, message: String) {
        try await requestBackup(.snapshotNeeded(reason: reason))
    }

    /// Sends a message the supervisor answers with `migrationBackup`, and waits for the answer.
    private func requestBackup(_ request: WorkerMessage) async throws -> (ok: Bool, message: String) {
        let (replies, continuation) = AsyncStream.makeStream(of: (ok: Bool, message: String).self)
        backupReply.withLock { $0 = continuation }
        try await send(request)
        for await reply in replies { return reply }
        return (false, "the connection to the supervisor closed before its answer")
    }

    func onSnapshotTaken(_ listener: @escaping @Sendable (Int64) -> Void) {
        snapshotListener.withLock { $0 = listener }
    }

    private func deliverBackupReply(ok: Bool, message: String) {
        backupReply.withLock { pending in
            pending?.yield((ok, message))
            pending?.finish()
            pending = nil
        }
    }

    /// Reads what the supervisor sends until it says `shutdown` or the connection closes: either
    /// way the worker must stop, because a worker never runs without its supervisor.
    func waitForShutdown(_ frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator) async throws {
        defer { deliverBackupReply(ok: false, message: "the connection to the supervisor closed") }
        while let frame = try await frames.next() {
            switch frame {
            case .failure(let error):
                logger.error("unreadable message from the supervisor", metadata: ["error": "\(error)"])
                return
            case .line(let line):
                switch try? JSONLine.decode(SupervisorMessage.self, from: line) {
                case .shutdown(let reason):
                    logger.info("shutdown requested by the supervisor", metadata: ["reason": "\(reason)"])
                    return
                case .migrationBackup(let ok, let message):
                    deliverBackupReply(ok: ok, message: message)
                case .snapshotTaken(let sequence):
                    snapshotListener.withLock { $0 }?(sequence)
                case .error(let body):
                    logger.warning("the supervisor reported an error", metadata: ["error": "\(body)"])
                case .welcome, nil:
                    logger.debug("ignored a message from the supervisor", metadata: ["line": "\(line.prefix(200))"])
                }
            }
        }
        if !Task.isCancelled {
            logger.warning("the supervisor closed the connection; shutting down")
        }
    }
}
