import FoundationEssentials
import Glibc
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

    /// Test hook, never set in production: `BOT_SUPERVISOR_FAULT=slow-maintenance:MS` makes each
    /// step of a backup or restore take MS milliseconds longer, so that the fault-injection suite
    /// (Tests/Fault) can kill the supervisor in the middle of one, at a phase it chooses.
    static let injectedStepDelay: UInt32? = {
        guard let fault = ProcessInfo.processInfo.environment["BOT_SUPERVISOR_FAULT"], fault.hasPrefix("slow-maintenance:") else { return nil }
        return UInt32(fault.dropFirst("slow-maintenance:".count)).map { $0 * 1000 }
    }()

    /// `update`, from the blocking thread of a backup or restore: there the injected delay applies.
    func step(_ phase: String, _ progress: Double) {
        update(phase, progress)
        if let delay = Self.injectedStepDelay { usleep(delay) }
    }

    func end() {
        current.withLock { $0 = nil }
    }
}
