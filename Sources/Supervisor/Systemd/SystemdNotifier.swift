import CSystemd
import FoundationEssentials
import IPC
import Glibc
import Synchronization

/// sd_notify(3) through libsystemd. Without NOTIFY_SOCKET (not started by systemd) it does nothing.
///
/// Messages go out from a thread of their own, in order: sd_notify blocks while the receiver's
/// queue is full (10 datagrams by default), and the supervisor must never stall on it. Status
/// lines still waiting when a newer one arrives are replaced by it.
final class SystemdNotifier: @unchecked Sendable {  // the semaphore is thread-safe; the rest is a Mutex
    let isEnabled: Bool
    /// Half of WATCHDOG_USEC when systemd's watchdog is on for this process, else nil.
    let watchdogInterval: Duration?
    private let pending = Mutex<[String]>([])
    private let wakeUp = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init() {
        isEnabled = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil
        var usec: UInt64 = 0
        // Also checks WATCHDOG_PID against our pid.
        if sd_watchdog_enabled(0, &usec) > 0, usec > 0 {
            watchdogInterval = .microseconds(Int64(usec / 2))
        } else {
            watchdogInterval = nil
        }
        sem_init(wakeUp, 0, 0)
        if isEnabled {
            // Lives as long as the process, like the notifier itself.
            _ = OSThread.detach(.notify) { [self] in
                while true {
                    while sem_wait(wakeUp) != 0 {}
                    for message in pending.withLock({ queued in defer { queued.removeAll() }; return queued }) {
                        _ = sd_notify(0, message)
                    }
                }
            }
        }
    }

    func ready(status: String) { send("READY=1\nSTATUS=\(Self.oneLine(status))") }
    func status(_ text: String) { send("STATUS=\(Self.oneLine(text))") }
    func watchdog() { send("WATCHDOG=1") }
    func stopping(status: String) { send("STOPPING=1\nSTATUS=\(Self.oneLine(status))") }
    /// Before the first READY=1, systemd's start timeout (TimeoutStartSec) is extended by
    /// `duration`; later it extends the runtime limit, if any, which is harmless.
    func extendTimeout(_ duration: Duration) {
        let usec = duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
        send("EXTEND_TIMEOUT_USEC=\(usec)")
    }

    private func send(_ assignments: String) {
        guard isEnabled else { return }
        pending.withLock { queued in
            if assignments.hasPrefix("STATUS="), let last = queued.last, last.hasPrefix("STATUS=") {
                queued[queued.count - 1] = assignments
            } else {
                queued.append(assignments)
            }
        }
        sem_post(wakeUp)
    }

    private static func oneLine(_ text: String) -> String {
        text.replacing("\n", with: " ")
    }
}
