import CSupport

#if canImport(Glibc)
import Glibc
#endif

/// A child process: the worker, the sandbox, a release's programs. The one place that spawns.
///
/// Every child starts in a process group of its own (so that a signal reaches everything it
/// starts), with every signal disposition at its default and an empty signal mask:
/// swift-service-lifecycle ignores SIGTERM and SIGINT in our processes, and both ignored signals
/// and the mask survive exec, so without the reset a child could not be stopped by SIGTERM.
///
/// The child is spawned from a thread of its own that then waits for it in waitpid(2), retried on
/// EINTR: the kernel reports the death at once and nothing polls. The same thread is what gives
/// the worker's PR_SET_PDEATHSIG its meaning, since Linux sends it when the *thread* that forked
/// the child exits, and Swift concurrency's threads come and go (even the main thread exits under
/// dispatch_main); this one lives exactly as long as the child. A caller that spawns the same
/// child again and again (the worker) may let the thread that reaped the last one spawn the next
/// (`WaiterThreads`): it lives as long as the new child just the same.
///
/// The read ends of `.pipe` outputs and the write end of a `.pipe` stdin belong to the caller,
/// who closes them (`OutputReader` closes what it reads at end of file).
public struct ChildProcess: Sendable {
    public enum Input: Sendable {
        /// /dev/null: the child reads end of file at once.
        case null
        /// A pipe whose write end is `stdin`; closing it is the child's end of file.
        case pipe
    }

    public enum Output: Sendable {
        /// Ours: the child writes where we write.
        case inherit
        /// A pipe whose read end is `stdout` or `stderr`.
        case pipe
        /// For stderr only: the same destination as stdout (one pipe for both when it is `.pipe`).
        case merged
    }

    public let pid: pid_t
    /// The write end of the child's stdin with `Input.pipe`, else nil.
    public let stdin: Int32?
    /// The read end of the child's stdout with `Output.pipe` (both outputs with `.merged`).
    public let stdout: Int32?
    /// The read end of the child's stderr with `Output.pipe`.
    public let stderr: Int32?
    private let exit: OneShot<ExitStatus>

    /// Spawns `executable` (argv[0] is its path) with exactly `environment`; from a thread of
    /// `threads` that waits for a child to spawn, when one does (see `WaiterThreads`).
    public static func spawn(
        _ executable: String,
        arguments: [String] = [],
        environment: [String: String],
        stdin: Input = .null,
        stdout: Output = .pipe,
        stderr: Output = .pipe,
        reusing threads: WaiterThreads? = nil
    ) async throws(SpawnError) -> ChildProcess {
        precondition(stdout != .merged, "only stderr can be merged into stdout")
        let exit = OneShot<ExitStatus>()
        let request = Spawner(
            executable: executable, arguments: arguments, environment: environment,
            stdin: stdin, stdout: stdout, stderr: stderr
        )
        let spawned: Result<Spawner.Spawned, SpawnError> = await withCheckedContinuation { continuation in
            let job: @Sendable () -> Void = {
                let spawned: Spawner.Spawned
                do throws(SpawnError) {
                    spawned = try request.spawn()
                } catch {
                    continuation.resume(returning: .failure(error))
                    return
                }
                continuation.resume(returning: .success(spawned))
                exit.set(waitForExit(spawned.pid))
            }
            let started = threads?.run(job) ?? OSThread.detach(.childWaiter, job)
            if !started { continuation.resume(returning: .failure(.noThread)) }
        }
        let child = try spawned.get()
        return ChildProcess(pid: child.pid, stdin: child.stdin, stdout: child.stdout, stderr: child.stderr, exit: exit)
    }

    /// How the child ended, or nil while it runs (or is not reaped yet).
    public var exitStatus: ExitStatus? { exit.value }

    /// Waits for the child's end. Throws `CancellationError` when the waiting task is cancelled;
    /// the child runs on.
    public func wait() async throws(CancellationError) -> ExitStatus {
        guard let status = await exit.wait() else { throw CancellationError() }
        return status
    }

    /// Waits for the child's end, cancelled or not: for a wait that must end with the status, as
    /// after a kill or when the caller stops the child by other means (closing its stdin).
    public func waitIgnoringCancellation() async -> ExitStatus {
        await exit.waitIgnoringCancellation()
    }

    /// Calls `handler` once the child has ended, on the thread that reaped it (at once when it
    /// already has): keep it short, yield to a stream.
    public func whenExited(_ handler: @escaping @Sendable (ExitStatus) -> Void) {
        exit.whenSet(handler)
    }

    /// Stops the child and its whole process group, staged: SIGTERM (and SIGCONT, for a stopped
    /// one) to the group, then SIGKILL to the group once `grace` has passed without the child
    /// ending. Whatever is left of the group when the child has ended is killed then too: a
    /// grandchild never outlives the stop. Returns how the child ended. A cancelled caller skips
    /// the rest of the grace.
    @discardableResult
    public func terminate(grace: Duration) async -> ExitStatus {
        signal(SIGTERM)
        signal(SIGCONT)
        let exit = self.exit
        let status = await withDeadline(grace, onExpiry: { signal(SIGKILL) }) {
            await exit.waitIgnoringCancellation()
        }
        Self.signalGroup(pid, SIGKILL, orChild: false)
        return status
    }

    /// Sends `signal` to the child's process group; to the child alone only when the group is
    /// gone (ESRCH: it left it with setsid/setpgid) while the child has not been reaped.
    public func signal(_ signal: Int32) {
        Self.signalGroup(pid, signal, orChild: exit.value == nil)
    }

    /// Sends `signal` to the process group led by `pid`, else (ESRCH) to `pid` alone: for code
    /// that holds only the pid of a running child.
    public static func signalGroup(_ pid: pid_t, _ signal: Int32) {
        signalGroup(pid, signal, orChild: true)
    }

    private static func signalGroup(_ pid: pid_t, _ signal: Int32, orChild: Bool) {
        guard pid > 0 else { return }  // 0 would signal our own group, a negative pid some other process
        if kill(-pid, signal) != 0, errno == ESRCH, orChild {
            kill(pid, signal)
        }
    }

    /// Blocks until `pid` ends. waitpid is retried when a signal handler interrupts it (EINTR);
    /// any other failure (ECHILD: someone else reaped it, or SIGCHLD is ignored) counts as a
    /// death by SIGKILL, the one status that restarts the worker without a doubt.
    static func waitForExit(_ pid: pid_t) -> ExitStatus {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return .signaled(signal: SIGKILL) }
        }
        return ExitStatus(waitStatus: status)
    }
}
