import CSupport
import FoundationEssentials
import IPC
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Starting the worker and learning of its death.
///
/// The worker runs in its own process group (so that a signal reaches everything it started),
/// with the supervisor's environment less what belongs to the supervisor alone (NOTIFY_SOCKET,
/// WATCHDOG_*), signal dispositions reset to their defaults (swift-service-lifecycle ignores
/// SIGTERM and SIGINT in the supervisor, and ignored signals survive exec), and its stdout and
/// stderr on pipes that the supervisor copies into the log.
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
        "DISCORD_TOKEN", "ALERTS_WEBHOOK_URL",
    ]

    struct Running: Sendable {
        var pid: Int32
        /// Read ends of the worker's stdout and stderr.
        var stdout: Int32
        var stderr: Int32
    }

    /// Spawns `executable` from a thread of its own, which then waits in waitpid(2) for the child's
    /// end and calls `onExit`: the kernel tells of the death at once, nothing polls.
    ///
    /// The thread matters: Linux delivers the worker's PR_SET_PDEATHSIG when the *thread* that
    /// forked it exits, not the process. Swift concurrency's threads come and go (even the main
    /// thread exits under dispatch_main), so the forking thread is one that lives exactly as long
    /// as the worker.
    static func spawn(
        executable: String,
        arguments: [String] = [],
        environment: [String: String],
        onExit: @escaping @Sendable (_ pid: Int32, ExitStatus) -> Void
    ) async throws -> Running {
        try await withCheckedThrowingContinuation { continuation in
            let started = OSThread.detach {
                let running: Running
                do {
                    running = try spawnHere(executable: executable, arguments: arguments, environment: environment)
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                continuation.resume(returning: running)
                var status: Int32 = 0
                while waitpid(running.pid, &status, 0) < 0 {
                    if errno != EINTR {
                        onExit(running.pid, .signaled(signal: SIGKILL))
                        return
                    }
                }
                onExit(running.pid, ExitStatus(waitStatus: status))
            }
            if !started {
                continuation.resume(throwing: SpawnError(description: "no thread could be started to run the worker (system thread limit?)"))
            }
        }
    }

    private static func spawnHere(executable: String, arguments: [String], environment: [String: String]) throws -> Running {
        guard access(executable, X_OK) == 0 else {
            throw SpawnError(description: "\(executable) is not an executable file (\(String(cString: strerror(errno)))); set worker.executable or rebuild with `swift build`")
        }
        var outPipe: [Int32] = [0, 0]
        var errPipe: [Int32] = [0, 0]
        guard csupport_pipe_cloexec(&outPipe) == 0 else { throw SpawnError(description: "pipe2: \(String(cString: strerror(errno)))") }
        guard csupport_pipe_cloexec(&errPipe) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            throw SpawnError(description: "pipe2: \(String(cString: strerror(errno)))")
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv = [executable] + arguments
        let envp = environment.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let result = withCStrings(argv) { argvPointers in
            withCStrings(envp) { envPointers in
                posix_spawn(&pid, executable, &actions, &attributes, argvPointers, envPointers)
            }
        }
        close(outPipe[1])
        close(errPipe[1])
        guard result == 0 else {
            close(outPipe[0]); close(errPipe[0])
            throw SpawnError(description: "posix_spawn \(executable): \(String(cString: strerror(result)))")
        }
        return Running(pid: pid, stdout: outPipe[0], stderr: errPipe[0])
    }

    /// The worker's environment: the supervisor's own, less the withheld variables, plus `extra`.
    static func environment(extra: [String: String]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { !withheldEnvironment.contains($0.key) }
        environment.merge(extra) { $1 }
        return environment
    }

    /// Copies lines from `fd` to `onLine` on a dedicated thread until end of file, then closes `fd`.
    /// Returns false (and closes `fd`) when no thread can be started.
    @discardableResult
    static func readLines(from fd: Int32, onLine: @escaping @Sendable (String) -> Void, onEnd: @escaping @Sendable () -> Void = {}) -> Bool {
        let started = OSThread.detach {
            var pending = [UInt8]()
            var chunk = [UInt8](repeating: 0, count: 16 * 1024)
            while true {
                let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                if count <= 0 { break }
                pending.append(contentsOf: chunk[..<count])
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    onLine(String(decoding: pending[..<newline], as: UTF8.self))
                    pending.removeSubrange(...newline)
                }
                if pending.count > 64 * 1024 {
                    onLine(String(decoding: pending, as: UTF8.self))
                    pending.removeAll()
                }
            }
            if !pending.isEmpty { onLine(String(decoding: pending, as: UTF8.self)) }
            close(fd)
            onEnd()
        }
        if !started { close(fd) }
        return started
    }

    /// Sends `signal` to the worker's whole process group.
    static func signalGroup(_ pid: Int32, _ signal: Int32) {
        if kill(-pid, signal) != 0, errno == ESRCH {
            kill(pid, signal)
        }
    }
}
