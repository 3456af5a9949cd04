import CSupport
import FoundationEssentials
import Glibc
import IPC
import Logging

/// The local Discord sandbox (`discord-sandbox`, built beside `bot-worker`), started by the
/// worker in `sandbox` mode. It speaks the real Gateway and REST protocols on loopback; the worker
/// talks to it with the same clients it uses for Discord.
///
/// The sandbox reads its stdin until EOF: the worker holds the other end of that pipe, so the
/// sandbox ends with the worker however the worker ends (even `kill -9`).
struct SandboxProcess: Sendable {
    struct StartError: Error, CustomStringConvertible {
        var description: String
    }

    /// The line the sandbox prints on stdout once it listens.
    struct Listening: Decodable, Sendable {
        var port: Int
        var gatewayURL: String
        var apiBaseURL: String
        var guildID: String
        var applicationID: String
    }

    let pid: pid_t
    let listening: Listening
    let token: Secret
    /// Our end of the sandbox's stdin; closing it (or dying) stops the sandbox.
    let lifeline: Int32

    static func executable() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let own = count > 0 ? String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
        let directory = own.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        return (directory.isEmpty ? "." : directory) + "/discord-sandbox"
    }

    /// Starts the sandbox and waits (up to `timeout`) for it to listen. `onExit` is called from a
    /// thread of its own if the sandbox exits while the worker still runs.
    static func start(
        members: Int, activityPerMinute: Int, timeout: Duration = .seconds(15), logger: Logger,
        onExit: @escaping @Sendable (Int32) -> Void
    ) async throws -> SandboxProcess {
        let executable = Self.executable()
        guard access(executable, X_OK) == 0 else {
            throw StartError(description: "the Discord sandbox \(executable) is missing (\(String(cString: strerror(errno)))); build it with `swift build`, or set discord.mode to \"discord\" with a token")
        }
        let token = Secret("sandbox-" + (0..<4).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 36) }.joined())
        var input: [Int32] = [0, 0]
        var output: [Int32] = [0, 0]
        guard csupport_pipe_cloexec(&input) == 0 else { throw StartError(description: "pipe2: \(String(cString: strerror(errno)))") }
        guard csupport_pipe_cloexec(&output) == 0 else {
            close(input[0]); close(input[1])
            throw StartError(description: "pipe2: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)

        // A process group of its own: the signals the supervisor sends the worker's group (SIGTERM
        // to stop, SIGKILL to kill) are the worker's to act on; the sandbox ends with the lifeline.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))

        let arguments = [
            executable, "--port", "0", "--members", "\(members)", "--activity-per-minute", "\(activityPerMinute)",
            "--exit-on-stdin-eof",
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["SANDBOX_TOKEN"] = token.reveal()
        let envp = environment.map { "\($0.key)=\($0.value)" }
        var spawned: pid_t = 0
        let result = withCStrings(arguments) { argv in
            withCStrings(envp) { env in posix_spawn(&spawned, executable, &actions, &attributes, argv, env) }
        }
        close(input[0])
        close(output[1])
        let pid = spawned
        guard result == 0 else {
            close(input[1]); close(output[0])
            throw StartError(description: "posix_spawn \(executable): \(String(cString: strerror(result)))")
        }
        let lifeline = input[1]
        let readEnd = output[0]

        // A sandbox that never answers is killed, which ends the read below with EOF.
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            kill(pid, SIGKILL)
        }
        defer { watchdog.cancel() }
        // The first line of its stdout says where it listens; read on a thread of our own.
        let line: String? = await withCheckedContinuation { continuation in
            let started = OSThread.detach {
                var bytes: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 4096)
                while !bytes.contains(UInt8(ascii: "\n")) {
                    let count = read(readEnd, &chunk, chunk.count)
                    if count < 0, errno == EINTR { continue }
                    if count <= 0 { break }
                    bytes += chunk[0..<count]
                }
                close(readEnd)
                let first = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).first
                continuation.resume(returning: first.map { String(decoding: $0, as: UTF8.self) })
            }
            if !started { continuation.resume(returning: nil) }
        }
        guard let line, let listening = try? JSONLine.decode(Listening.self, from: line) else {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            close(lifeline)
            throw StartError(description: "the Discord sandbox did not start (it said: \(line?.prefix(300) ?? "nothing")); see bot.log and sandbox.log")
        }
        let waited = OSThread.detach {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
            onExit(status)
        }
        if !waited { logger.warning("no thread to watch the sandbox; its exit goes unnoticed") }
        logger.info("Discord sandbox started", metadata: ["pid": "\(pid)", "port": "\(listening.port)", "guild_id": "\(listening.guildID)"])
        return SandboxProcess(pid: pid, listening: listening, token: token, lifeline: lifeline)
    }

    /// Stops the sandbox: its stdin closes and it exits.
    func stop() {
        close(lifeline)
    }
}
