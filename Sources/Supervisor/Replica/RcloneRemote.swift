import CSupport
import FoundationEssentials
import Glibc
import IPC

/// One replica's destination: `rclone` run as a child process with a deadline, with the
/// operator's rclone config. Objects are named relative to `remote` (`name:path`).
///
/// Errors carry the first 300 characters of rclone's stderr. Nothing secret is passed on the
/// command line: the credentials stay in the rclone config file, the key in this process.
struct RcloneRemote: Sendable {
    struct Entry: Decodable, Sendable, Equatable {
        var Path: String
        var Size: Int
    }

    let executable: String
    let configFile: String?
    let remote: String
    let timeout: Duration

    init(remote: String, configFile: String?, executable: String = RcloneRemote.findExecutable(), timeout: Duration = .seconds(600)) {
        self.remote = remote.hasSuffix("/") ? String(remote.dropLast()) : remote
        self.configFile = configFile
        self.executable = executable
        self.timeout = timeout
    }

    func path(_ object: String) -> String { remote + "/" + object }

    /// Uploads a local file as `object`.
    func upload(_ file: String, as object: String) async throws {
        _ = try await run("copyto", [file, path(object)], target: object)
    }

    /// Downloads `object` into a new local file.
    func download(_ object: String, to file: String) async throws {
        unlink(file)
        _ = try await run("copyto", [path(object), file], target: object)
        // rclone copies a missing object as an empty directory would be: nothing, and exit 0.
        guard access(file, F_OK) == 0 else {
            throw ReplicaError.remote(operation: "copyto", target: object, detail: "there is no such object on \(remote)")
        }
    }

    /// Every object under `prefix`, with its size.
    func list(_ prefix: String = "") async throws -> [Entry] {
        let location = prefix.isEmpty ? remote : path(prefix)
        let output = try await run("lsjson", ["-R", "--files-only", "--no-mimetype", "--no-modtime", location], target: location)
        do {
            return try JSONDecoder().decode([Entry].self, from: Data(output.utf8))
        } catch {
            throw ReplicaError.remote(operation: "lsjson", target: location, detail: "unreadable listing: \(output.prefix(300))")
        }
    }

    func delete(_ object: String) async throws {
        _ = try await run("deletefile", [path(object)], target: object)
    }

    /// Runs `rclone <command> <arguments>`, killed after `timeout`; returns its stdout.
    func run(_ command: String, _ arguments: [String], target: String) async throws -> String {
        var options = [command]
        if let configFile { options += ["--config", configFile] }
        // Fail fast on a remote that is down: the replicator retries with its own backoff.
        options += ["--contimeout", "5s", "--timeout", "30s", "--retries", "1", "--low-level-retries", "2", "-q"]
        let (pid, output) = try spawn(options + arguments)
        let killer = Task {
            try await Task.sleep(for: timeout)
            kill(-pid, SIGKILL)
        }
        defer { killer.cancel() }
        let result = try await onOwnThread { () -> (Int32, String, String) in
            let stderr = ConcurrentResult { Self.readAll(output.stderr, limit: 64 << 10) }
            let stdout = Self.readAll(output.stdout, limit: 64 << 20)
            let errors = try stderr.value()
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
            return (status, stdout, errors)
        }
        guard result.0 == 0 else {
            let exit = ExitStatus(waitStatus: result.0)
            let detail = result.2.trimmingCharacters(in: .whitespacesAndNewlines)
            throw ReplicaError.remote(operation: command, target: target, detail: detail.isEmpty ? "\(exit)" : String(detail.prefix(300)))
        }
        return result.1
    }

    private func spawn(_ arguments: [String]) throws -> (pid_t, (stdout: Int32, stderr: Int32)) {
        var out: [Int32] = [0, 0]
        var err: [Int32] = [0, 0]
        guard csupport_pipe_cloexec(&out) == 0 else { throw ReplicaError.io("pipe2: \(String(cString: strerror(errno)))") }
        guard csupport_pipe_cloexec(&err) == 0 else {
            close(out[0]); close(out[1])
            throw ReplicaError.io("pipe2: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        let environment = ProcessInfo.processInfo.environment.filter { !WorkerProcess.withheldEnvironment.contains($0.key) }
        var pid: pid_t = 0
        let result = withCStrings([executable] + arguments) { argv in
            withCStrings(environment.map { "\($0.key)=\($0.value)" }) { envp in posix_spawn(&pid, executable, &actions, &attributes, argv, envp) }
        }
        close(out[1])
        close(err[1])
        guard result == 0 else {
            close(out[0]); close(err[0])
            throw ReplicaError.remote(operation: arguments.first ?? "", target: remote, detail: "cannot run \(executable): \(String(cString: strerror(result)))")
        }
        return (pid, (out[0], err[0]))
    }

    /// Reads `fd` to its end, keeping the first `limit` bytes, and closes it.
    private static func readAll(_ fd: Int32, limit: Int) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count < 0, errno == EINTR { continue }
            if count <= 0 { break }
            if bytes.count < limit { bytes += chunk[0..<count] }
        }
        close(fd)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `rclone` on the PATH (`/usr/bin/rclone` when it is not there).
    static func findExecutable(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        for directory in (environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = String(directory) + "/rclone"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return "/usr/bin/rclone"
    }
}
