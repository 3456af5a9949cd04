import Synchronization

/// A value behind a lock that a struct can hold (a `Mutex` itself cannot be copied): a feature's
/// cached settings, read on every event and changed by an admin command.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) {
        mutex = Mutex(value)
    }

    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        try mutex.withLock { try body(&$0) }
    }
}
