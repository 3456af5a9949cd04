import CSystemd
import FoundationEssentials

/// sd_notify(3) through libsystemd. Without NOTIFY_SOCKET (not started by systemd) it does nothing.
struct SystemdNotifier: Sendable {
    let isEnabled: Bool
    /// Half of WATCHDOG_USEC when systemd's watchdog is on for this process, else nil.
    let watchdogInterval: Duration?

    init() {
        isEnabled = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil
        var usec: UInt64 = 0
        // Also checks WATCHDOG_PID against our pid.
        if sd_watchdog_enabled(0, &usec) > 0, usec > 0 {
            watchdogInterval = .microseconds(Int64(usec / 2))
        } else {
            watchdogInterval = nil
        }
    }

    func ready(status: String) { send("READY=1\nSTATUS=\(Self.oneLine(status))") }
    func status(_ text: String) { send("STATUS=\(Self.oneLine(text))") }
    func watchdog() { send("WATCHDOG=1") }
    func stopping(status: String) { send("STOPPING=1\nSTATUS=\(Self.oneLine(status))") }
    /// Before the first READY=1 only, systemd's start timeout (TimeoutStartSec) is extended by
    /// `duration`; later it is a no-op, which is harmless.
    func extendTimeout(_ duration: Duration) {
        let usec = duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
        send("EXTEND_TIMEOUT_USEC=\(usec)")
    }

    private func send(_ assignments: String) {
        guard isEnabled else { return }
        _ = sd_notify(0, assignments)
    }

    private static func oneLine(_ text: String) -> String {
        text.replacing("\n", with: " ")
    }
}
