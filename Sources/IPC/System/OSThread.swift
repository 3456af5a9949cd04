import CSupport

#if canImport(Glibc)
import Glibc
#endif

/// A detached POSIX thread, for the few blocking calls that must not occupy one of Swift
/// concurrency's cooperative threads (one per core: a thread blocked in a syscall there stalls
/// every task scheduled behind it).
///
/// Every such thread has a `Purpose`, and the purposes are listed here and nowhere else: a new
/// kind of dedicated thread is a new case, with the reason it cannot be a task.
public enum OSThread {
    /// Why a thread of its own is needed; its raw value names the thread (`ps -L`, `top -H`,
    /// backtraces), at most 15 bytes as Linux allows.
    public enum Purpose: String, Sendable, CaseIterable {
        /// Spawns a child, then blocks in waitpid(2) until it ends, one thread per child: the
        /// kernel reports the death at once and nothing polls. Spawning from this thread matters
        /// for the worker: Linux sends PR_SET_PDEATHSIG when the *thread* that forked the child
        /// exits, and this one lives exactly as long as the child.
        case childWaiter = "child-waiter"
        /// Blocks in read(2) on a child's stdout or stderr pipe until the child writes or ends.
        case outputReader = "child-output"
        /// Sends sd_notify(3) messages, which block while systemd's receive queue is full.
        case notify = "sd-notify"
        /// Blocking work that has no asynchronous form: file copies and fsyncs, SQLite checks of
        /// a large file, a synchronous socket exchange.
        case blockingWork = "blocking-work"
        /// A backup's copy, its integrity_check and its SHA-256: blocking work that runs for
        /// seconds on a large database, at a lower CPU priority (nice +10) than the rest, so that
        /// on a busy machine the worker's commits do not queue behind it for a core.
        case backupWork = "backup-work"

        /// How many nice steps below the process a thread of this purpose runs.
        var niceIncrement: CInt { self == .backupWork ? 10 : 0 }
    }

    private final class Box {
        let name: String
        let niceIncrement: CInt
        let body: () -> Void
        init(_ name: String, _ niceIncrement: CInt, _ body: @escaping () -> Void) {
            self.name = name
            self.niceIncrement = niceIncrement
            self.body = body
        }
    }

    /// Starts `body` on a new thread named after `purpose`; false when the system refuses one
    /// (thread or memory limit).
    public static func detach(_ purpose: Purpose, _ body: @escaping @Sendable () -> Void) -> Bool {
        let box = Unmanaged.passRetained(Box(purpose.rawValue, purpose.niceIncrement, body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            _ = csupport_set_thread_name(box.name)  // refused past 15 bytes: the names are shorter
            if box.niceIncrement > 0 {
                _ = csupport_lower_thread_priority(box.niceIncrement)  // best effort: it only yields
            }
            box.body()
            return nil
        }, box)
        guard result == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            return false
        }
        pthread_detach(thread)
        return true
    }
}
