import IPC
import Synchronization

/// The worker's requests waiting for the supervisor's answer, by id. Each answer goes to the
/// request it names, whatever the order the supervisor's work finishes in (a journal snapshot
/// may be answered before the pre-migration backup asked earlier).
final class PendingRequests<Reply: Sendable>: Sendable {
    private struct State {
        var nextID = 1
        var waiting: [RequestID: AsyncStream<Reply>.Continuation] = [:]
        /// Set once the connection is gone: a request made after that fails at once.
        var closedReply: Reply?
    }

    private let state = Mutex(State())

    /// A new id and the stream its answer arrives on (finished without one when the connection
    /// closes first).
    func register() -> (id: RequestID, reply: AsyncStream<Reply>) {
        let (stream, continuation) = AsyncStream.makeStream(of: Reply.self)
        let (id, closed): (RequestID, Reply?) = state.withLock { state in
            let id = RequestID(state.nextID)
            state.nextID += 1
            if let closed = state.closedReply { return (id, closed) }
            state.waiting[id] = continuation
            return (id, nil)
        }
        if let closed {
            continuation.yield(closed)
            continuation.finish()
        }
        return (id, stream)
    }

    /// Hands `reply` to the request `id`; false when no request of that id waits.
    @discardableResult
    func deliver(_ reply: Reply, to id: RequestID) -> Bool {
        guard let waiter = state.withLock({ $0.waiting.removeValue(forKey: id) }) else { return false }
        waiter.yield(reply)
        waiter.finish()
        return true
    }

    /// Answers every waiting request with `reply` (the connection closed), and every later one.
    func closeAll(with reply: Reply) {
        let waiting = state.withLock { state in
            state.closedReply = reply
            defer { state.waiting = [:] }
            return state.waiting
        }
        for waiter in waiting.values {
            waiter.yield(reply)
            waiter.finish()
        }
    }

    var count: Int { state.withLock { $0.waiting.count } }
}
