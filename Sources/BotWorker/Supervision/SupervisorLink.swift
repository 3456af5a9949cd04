import FoundationEssentials
import Glibc
import IPC
import Logging
import NIOCore

/// The worker's end of its connection to the supervisor.
struct SupervisorLink: Sendable {
    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let logger: Logger

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
        case .shutdown: throw Refused(description: "the supervisor asked to shut down before its welcome")
        }
    }

    /// Reads what the supervisor sends until it says `shutdown` or the connection closes: either
    /// way the worker must stop, because a worker never runs without its supervisor.
    func waitForShutdown(_ frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator) async throws {
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
