import FoundationEssentials
import IPC
import Glibc

/// Starting the worker: a `ChildProcess` (its own process group, signal dispositions and mask
/// reset, spawned from the thread that waits for it, which PR_SET_PDEATHSIG needs), with the
/// supervisor's environment less what belongs to the supervisor alone, stdin on /dev/null, and
/// stdout and stderr on pipes that the supervisor copies into the log.
enum WorkerProcess {
    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    /// Variables the worker must not inherit: the notify socket and watchdog belong to the
    /// supervisor (systemd hears only the main pid under NotifyAccess=main).
    /// systemd's variables are the supervisor's alone; the secrets reach the worker through its
    /// welcome, never its environment (readable in /proc by any process of the same user).
    static let withheldEnvironment: Set<String> = [
        "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
        "DISCORD_TOKEN", "ALERTS_WEBHOOK_URL", "ALERTS_HEARTBEAT_URL",
    ]

    /// Spawns the worker; its stdout and stderr are the read ends of its pipes. With `threads`,
    /// from the thread that reaped the last worker when it still waits (a restart's spawn).
    static func spawn(
        executable: String, arguments: [String] = [], environment: [String: String], reusing threads: ChildProcess.WaiterThreads? = nil
    ) async throws(SpawnError) -> ChildProcess {
        do {
            return try await ChildProcess.spawn(executable, arguments: arguments, environment: environment, reusing: threads)
        } catch .notExecutable(let path, let errno) {
            throw SpawnError(description: "\(path) is not an executable file (\(String(cString: strerror(errno)))); set worker.executable or rebuild with `swift build`")
        } catch .noThread {
            throw SpawnError(description: "no thread could be started to run the worker (system thread limit?)")
        } catch {
            throw SpawnError(description: error.description)
        }
    }

    /// The worker's environment: the supervisor's own, less the withheld variables, plus `extra`.
    static func environment(extra: [String: String]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { !withheldEnvironment.contains($0.key) }
        environment.merge(extra) { $1 }
        return environment
    }
}
