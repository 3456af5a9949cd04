import IPC
import Synchronization

/// Relays the status socket's `xp-import` and `xp-export` to the worker, and its answers back.
/// The worker runs them because it is the only process that may write the live database while
/// it runs (SQLite's WAL-reset bug: two writing processes can corrupt it).
///
/// Requests carry ids of their own; the worker's `xpTransferReply` names one and `deliver` hands
/// it to the command waiting for it. When the worker goes away, every waiting command is told.
/// `RunCommand` makes one and gives it to the `ControlCommands` and the `WorkerLinkServer`.
final class XPTransferRelay: Sendable {
    /// How long a command waits for the worker's answer: a 50 MB import takes seconds.
    static let timeout = Duration.seconds(300)

    private struct State {
        var link: WorkerLink?
        var nextID = 1
        var waiting: [RequestID: AsyncStream<XPTransferReply>.Continuation] = [:]
    }

    private let state = Mutex(State())

    /// The link to the worker (`WorkerLinkServer` sets it when it starts).
    func use(_ link: WorkerLink) {
        state.withLock { $0.link = link }
    }

    /// A reply from the worker; false when no command waits for its id.
    @discardableResult
    func deliver(_ reply: XPTransferReply) -> Bool {
        guard let waiter = state.withLock({ $0.waiting.removeValue(forKey: reply.id) }) else { return false }
        waiter.yield(reply)
        waiter.finish()
        return true
    }

    /// The worker's connection closed: no waiting request will be answered.
    func workerGone() {
        let waiting = state.withLock { state in
            defer { state.waiting = [:] }
            return state.waiting
        }
        for (id, waiter) in waiting {
            waiter.yield(XPTransferReply(id: id, error: ErrorBody(
                code: "worker-gone",
                message: "the worker stopped before it answered; an import is one transaction, so it either committed whole or not at all: `bot-worker xp export` shows which"
            )))
            waiter.finish()
        }
    }

    /// Sends the request to the connected worker and waits for its answer.
    func relay(_ action: XPTransferRequest.Action, guild: String, format: String? = nil, dryRun: Bool = false, content: String? = nil) async -> Result<XPTransferResult, ErrorBody> {
        let (stream, continuation) = AsyncStream.makeStream(of: XPTransferReply.self)
        let (id, link) = state.withLock { state in
            let id = RequestID(state.nextID)
            state.nextID += 1
            state.waiting[id] = continuation
            return (id, state.link)
        }
        let request = XPTransferRequest(id: id, action: action, guild: guild, format: format, dryRun: dryRun, content: content)
        guard let link, await link.sendToCurrent(.xpTransfer(request)) else {
            state.withLock { _ = $0.waiting.removeValue(forKey: id) }
            return .failure(Self.notRunning)
        }
        let reply = await withTaskGroup(of: XPTransferReply?.self) { group in
            group.addTask {
                for await reply in stream { return reply }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: Self.timeout)
                return nil
            }
            defer { group.cancelAll() }
            return await group.next() ?? nil
        }
        state.withLock { _ = $0.waiting.removeValue(forKey: id) }
        guard let reply else {
            return .failure(ErrorBody(code: "timeout", message: "the worker did not answer within \(Self.timeout.components.seconds) s; see `bot-supervisor status` and bot.log"))
        }
        if reply.ok, let result = reply.result { return .success(result) }
        return .failure(reply.error ?? ErrorBody(code: "failed", message: "the worker gave no reason"))
    }

    static let notRunning = ErrorBody(
        code: "worker-not-running",
        message: "the worker is not running, and only it may write the live database while the supervisor runs: wait until `bot-supervisor status` shows it ready, or stop the supervisor and run the import on the stopped bot"
    )
}
