import CSupport

#if canImport(Glibc)
import Glibc
#endif

extension ChildProcess {
    /// The one posix_spawn(3) call, with the attributes every child gets (see `ChildProcess`).
    struct Spawner: Sendable {
        struct Spawned: Sendable {
            var pid: pid_t
            var stdin: Int32?
            var stdout: Int32?
            var stderr: Int32?
        }

        let executable: String
        let arguments: [String]
        let environment: [String: String]
        let stdin: Input
        let stdout: Output
        let stderr: Output

        func spawn() throws(SpawnError) -> Spawned {
            guard access(executable, X_OK) == 0 else { throw .notExecutable(path: executable, errno: errno) }
            // Every pipe end is O_CLOEXEC: the child gets only the dup2'd copies, and a child
            // spawned later by another thread never holds a pipe of this one open.
            var opened: [Int32] = []
            func pipe() throws(SpawnError) -> (read: Int32, write: Int32) {
                var ends: [Int32] = [0, 0]
                guard csupport_pipe_cloexec(&ends) == 0 else { throw .pipe(errno: errno) }
                opened += ends
                return (ends[0], ends[1])
            }
            let input: (read: Int32, write: Int32)?
            let output: (read: Int32, write: Int32)?
            let errors: (read: Int32, write: Int32)?
            do {
                input = stdin == .pipe ? try pipe() : nil
                output = stdout == .pipe ? try pipe() : nil
                errors = stderr == .pipe ? try pipe() : nil
            } catch {
                for fd in opened { close(fd) }
                throw error
            }
            // Ours are kept (closed here only if the spawn fails); the child's copies are closed
            // here once the child has them.
            let parentEnds = [input?.write, output?.read, errors?.read].compactMap { $0 }
            let childEnds = [input?.read, output?.write, errors?.write].compactMap { $0 }
            defer { for fd in childEnds { close(fd) } }

            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            if let input {
                posix_spawn_file_actions_adddup2(&actions, input.read, 0)
            } else {
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            }
            if let output { posix_spawn_file_actions_adddup2(&actions, output.write, 1) }
            if let errors {
                posix_spawn_file_actions_adddup2(&actions, errors.write, 2)
            } else if stderr == .merged {
                posix_spawn_file_actions_adddup2(&actions, 1, 2)
            }

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

            var pid: pid_t = 0
            let argv = [executable] + arguments
            let envp = environment.map { "\($0.key)=\($0.value)" }
            let result = withCStrings(argv) { argv in
                withCStrings(envp) { envp in posix_spawn(&pid, executable, &actions, &attributes, argv, envp) }
            }
            guard result == 0 else {
                for fd in parentEnds { close(fd) }
                throw .spawn(path: executable, errno: result)
            }
            return Spawned(pid: pid, stdin: input?.write, stdout: output?.read, stderr: errors?.read)
        }
    }
}
