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

    /// Downloads every object under `prefix` into the local folder `directory`, several at a
    /// time (a segment's journal is many small objects).
    /// With `including`, only the subfolders of `prefix` of those names.
    func downloadFolder(_ prefix: String, to directory: String, including folders: [String]? = nil) async throws {
        let filters = (folders ?? []).flatMap { ["--include", "/" + $0 + "/**"] }
        _ = try await run("copy", [path(prefix), directory, "--transfers", "16", "--checkers", "16"] + filters, target: prefix)
    }

    /// Every object under `prefix`, with its size.
    func list(_ prefix: String = "") async throws -> [Entry] {
        let location = prefix.isEmpty ? remote : path(prefix)
        let output = try await run("lsjson", ["-R", "--files-only", "--no-mimetype", "--no-modtime", location], target: location, notFoundIsEmpty: true)
        do {
            return try JSONDecoder().decode([Entry].self, from: Data(output.utf8))
        } catch {
            throw ReplicaError.remote(operation: "lsjson", target: location, detail: "unreadable listing: \(output.prefix(300))")
        }
    }

    func delete(_ object: String) async throws {
        _ = try await run("deletefile", [path(object)], target: object)
    }

    /// Runs `rclone <command> <arguments>` as a `ChildProcess` (stopped, TERM then KILL of its
    /// group, after `timeout`); returns its stdout. With `notFoundIsEmpty`, rclone's exit status 3
    /// (directory not found: nothing was ever written there) is an empty JSON list.
    func run(_ command: String, _ arguments: [String], target: String, notFoundIsEmpty: Bool = false) async throws -> String {
        var options = [command]
        if let configFile { options += ["--config", configFile] }
        // Fail fast on a remote that is down: the replicator retries with its own backoff.
        options += ["--contimeout", "5s", "--timeout", "30s", "--retries", "1", "--low-level-retries", "2", "-q"]
        let process: ChildProcess
        do {
            process = try await ChildProcess.spawn(executable, arguments: options + arguments, environment: WorkerProcess.environment(extra: [:]), stdout: .pipe, stderr: .pipe)
        } catch {
            throw ReplicaError.remote(operation: command, target: remote, detail: "cannot run \(executable): \(error)")
        }
        let stdout = OutputReader.Capture(process.stdout!, limit: 64 << 20)
        let stderr = OutputReader.Capture(process.stderr!, limit: 64 << 10)
        let (status, output, errors) = await withDeadline(timeout, onExpiry: { await process.terminate(grace: .seconds(5)) }) {
            let output = await stdout.output()
            let errors = await stderr.output()
            return (await process.waitIgnoringCancellation(), output, errors)
        }
        if notFoundIsEmpty, status == .exited(code: 3) { return "[]" }
        guard status == .exited(code: 0) else {
            let detail = String(decoding: errors, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw ReplicaError.remote(operation: command, target: target, detail: detail.isEmpty ? "\(status)" : String(detail.prefix(300)))
        }
        return String(decoding: output, as: UTF8.self)
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
