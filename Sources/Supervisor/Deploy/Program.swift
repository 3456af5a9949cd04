import CSupport
import FoundationEssentials
import Glibc
import IPC

/// Runs a program of a release being checked (its `--help`, its migration dry-run) and returns
/// its exit status and output; killed after `timeout`.
enum Program {
    struct Result: Sendable {
        var status: ExitStatus
        var output: String
        var succeeded: Bool { status == .exited(code: 0) }
    }

    /// A program started and not waited for yet.
    struct Running: Sendable {
        let pid: pid_t
        let finished: Task<Result, any Error>
    }

    static func run(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(60)) async throws -> Result {
        let running = try start(executable, arguments)
        let killer = Task {
            try await Task.sleep(for: timeout)
            kill(running.pid, SIGKILL)
        }
        defer { killer.cancel() }
        return try await running.finished.value
    }

    /// Starts `executable` in a process group of its own; `finished` gives its status and output
    /// (the first MiB) once it has exited.
    static func start(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:]) throws -> Running {
        guard access(executable, X_OK) == 0 else {
            throw DeployError("\(executable) is missing or not executable")
        }
        var pipe: [Int32] = [0, 0]
        guard csupport_pipe_cloexec(&pipe) == 0 else { throw DeployError("pipe2: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 2)
        var environment = ProcessInfo.processInfo.environment.filter { !WorkerProcess.withheldEnvironment.contains($0.key) }
        environment["SWIFT_BACKTRACE"] = "enable=no"
        environment.merge(extra) { $1 }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        var spawned: pid_t = 0
        let result = withCStrings([executable] + arguments) { argv in
            withCStrings(environment.map { "\($0.key)=\($0.value)" }) { envp in posix_spawn(&spawned, executable, &actions, &attributes, argv, envp) }
        }
        close(pipe[1])
        guard result == 0 else {
            close(pipe[0])
            throw DeployError("cannot run \(executable): \(String(cString: strerror(result)))")
        }
        let pid = spawned
        let readEnd = pipe[0]
        return Running(pid: pid, finished: Task { try await onOwnThread {
            var output: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 16 * 1024)
            while true {
                let count = read(readEnd, &chunk, chunk.count)
                if count < 0, errno == EINTR { continue }
                if count <= 0 { break }
                if output.count < 1 << 20 { output += chunk[0..<count] }
            }
            close(readEnd)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
            return Result(status: ExitStatus(waitStatus: status), output: String(decoding: output, as: UTF8.self))
        } })
    }
}
