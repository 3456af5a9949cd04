import Glibc
import IPC
import Synchronization

/// The long operation running now and how far it got, readable from any thread: the blocking
/// work updates it, the status snapshot shows it.
final class OperationTracker: Sendable {
    private let current = Mutex<OperationStatus?>(nil)
    /// Test hook, never set in production (`SupervisorFaults.maintenanceStepDelay`): each step of
    /// a backup or restore takes this much longer, so that the fault-injection suite
    /// (Tests/Fault) can kill the supervisor in the middle of one, at a phase it chooses.
    let stepDelayMicroseconds: UInt32?

    init(stepDelay: Duration? = nil) {
        stepDelayMicroseconds = stepDelay.map { UInt32(clamping: $0.components.seconds * 1_000_000 + $0.components.attoseconds / 1_000_000_000_000) }
    }

    var status: OperationStatus? { current.withLock { $0 } }

    func begin(_ name: String) {
        current.withLock { $0 = OperationStatus(name: name, startedAt: Timestamp.string(), phase: "starting", progress: 0) }
    }

    /// A new phase forgets the byte counts of the one before; `bytes` sets this phase's.
    func update(_ phase: String, _ progress: Double, bytes: (done: Int64, total: Int64)? = nil) {
        current.withLock { status in
            if status?.phase != phase {
                status?.bytesDone = nil
                status?.bytesTotal = nil
            }
            status?.phase = phase
            status?.progress = min(max(progress, 0), 1)
            if let bytes {
                status?.bytesDone = bytes.done
                status?.bytesTotal = bytes.total
            }
        }
    }

    /// The bytes done and in all of the current phase (a copy, a verification).
    func bytes(_ done: Int64, of total: Int64) {
        current.withLock { status in
            status?.bytesDone = min(done, total)
            status?.bytesTotal = total
        }
    }

    /// `update`, from the blocking thread of a backup or restore: there the injected delay applies.
    func step(_ phase: String, _ progress: Double) {
        update(phase, progress)
        if let delay = stepDelayMicroseconds { usleep(delay) }
    }

    func end() {
        current.withLock { $0 = nil }
    }
}
