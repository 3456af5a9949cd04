import Synchronization

/// A value that arrives once, from a thread of ours (a child's exit status, a pipe's output at
/// end of file), and that any number of tasks wait for without polling.
///
/// Waiting is cancellable: a cancelled waiter gets nil at once and the value still goes to the
/// others. Handlers registered with `whenSet` run on the thread that sets the value (or at once,
/// on the caller's, when it is already set), so they must be quick: yield to a stream, no more.
final class OneShot<Value: Sendable>: Sendable {
    private struct Waiting {
        var continuations: [Int: CheckedContinuation<Value?, Never>] = [:]
        var handlers: [@Sendable (Value) -> Void] = []
        var nextID = 0
    }

    private enum State {
        case waiting(Waiting)
        case set(Value)
    }

    private let state = Mutex(State.waiting(Waiting()))

    /// The value, or nil while it has not arrived.
    var value: Value? {
        state.withLock { state in
            if case .set(let value) = state { value } else { nil }
        }
    }

    /// Sets the value (the first call only) and wakes every waiter.
    func set(_ value: Value) {
        let woken: Waiting? = state.withLock { state in
            guard case .waiting(let waiting) = state else { return nil }
            state = .set(value)
            return waiting
        }
        guard let woken else { return }
        for continuation in woken.continuations.values { continuation.resume(returning: value) }
        for handler in woken.handlers { handler(value) }
    }

    /// Calls `handler` with the value once it is set.
    func whenSet(_ handler: @escaping @Sendable (Value) -> Void) {
        let current: Value? = state.withLock { state in
            switch state {
            case .set(let value):
                return value
            case .waiting(var waiting):
                waiting.handlers.append(handler)
                state = .waiting(waiting)
                return nil
            }
        }
        if let current { handler(current) }
    }

    /// The value once it is set; nil when the waiting task is cancelled first.
    func wait() async -> Value? {
        let id = state.withLock { state -> Int in
            guard case .waiting(var waiting) = state else { return -1 }
            defer { state = .waiting(waiting) }
            waiting.nextID += 1
            return waiting.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                // Task.isCancelled is set before the cancellation handler runs: either this sees
                // it, or the handler finds the continuation registered.
                let immediate: Value?? = state.withLock { state in
                    switch state {
                    case .set(let value):
                        return .some(value)
                    case .waiting(var waiting):
                        if Task.isCancelled { return .some(nil) }
                        waiting.continuations[id] = continuation
                        state = .waiting(waiting)
                        return nil
                    }
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let cancelled: CheckedContinuation<Value?, Never>? = state.withLock { state in
                guard case .waiting(var waiting) = state else { return nil }
                defer { state = .waiting(waiting) }
                return waiting.continuations.removeValue(forKey: id)
            }
            cancelled?.resume(returning: nil)
        }
    }

    /// The value once it is set, cancellation or not: for waits that must not be cut short
    /// (a child already sent SIGKILL ends promptly).
    func waitIgnoringCancellation() async -> Value {
        await withCheckedContinuation { continuation in
            whenSet { continuation.resume(returning: $0) }
        }
    }
}
