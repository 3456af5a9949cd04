import FoundationEssentials
import IPC
import Synchronization

/// The long operation running now and how far it got, readable from any thread: the blocking
/// work updates it, the status snapshot shows it.
final class OperationTracker: Sendable {
    private let current = Mutex<OperationStatus?>(nil)

    var status: OperationStatus? { current.withLock { $0 } }

    func begin(_ name: String) {
        current.withLock { $0 = OperationStatus(name: name, startedAt: Timestamp.string(), phase: "starting", progress: 0) }
    }

    func update(_ phase: String, _ progress: Double) {
        current.withLock { status in
            status?.phase = phase
            status?.progress = min(max(progress, 0), 1)
        }
    }

    func end() {
        current.withLock { $0 = nil }
    }
}
