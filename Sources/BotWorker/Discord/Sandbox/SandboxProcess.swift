import FoundationEssentials
import Glibc
import IPC
import Logging

/// The local Discord sandbox (`discord-sandbox`, built beside `bot-worker`), started by the
/// worker in `sandbox` mode. It speaks the real Gateway and REST protocols on loopback; the worker
/// talks to it with the same clients it uses for Discord.
///
/// The sandbox reads its stdin until EOF: the worker holds the other end of that pipe, so the
/// sandbox ends with the worker however the worker ends (even `kill -9`). It runs in a process
/// group of its own: the signals the supervisor sends the worker's group (SIGTERM to stop,
/// SIGKILL to kill) are the worker's to act on; the sandbox ends with the lifeline.
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

    let process: ChildProcess
    var pid: pid_t { process.pid }
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

    /// Starts the sandbox and waits (up to `timeout`) for it to listen. `onExit` is called, from
    /// the thread that waits for the sandbox, with its wait status if it exits after that.
    static func start(
        members: Int, guilds: Int = 1, activityPerMinute: Int, timeout: Duration = .seconds(15), logger: Logger,
        onExit: @escaping @Sendable (Int32) -> Void
    ) async throws -> SandboxProcess {
        let executable = Self.executable()
        guard access(executable, X_OK) == 0 else {
            throw StartError(description: "the Discord sandbox \(executable) is missing (\(String(cString: strerror(errno)))); build it with `swift build`, or set discord.mode to \"discord\" with a token")
        }
        let token = Secret("sandbox-" + (0..<4).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 36) }.joined())
        var arguments = ["--port", "0", "--members", "\(members)", "--activity-per-minute", "\(activityPerMinute)", "--exit-on-stdin-eof"]
        if guilds > 1 { arguments += ["--guilds", "\(guilds)"] }
        var environment = ProcessInfo.processInfo.environment
        environment["SANDBOX_TOKEN"] = token.reveal()
        let process: ChildProcess
        do {
            // stderr is the worker's own, which the supervisor copies into bot.log.
            process = try await ChildProcess.spawn(executable, arguments: arguments, environment: environment, stdin: .pipe, stdout: .pipe, stderr: .inherit)
        } catch {
            throw StartError(description: error.description)
        }
        let lifeline = process.stdin!

        // The first line of its stdout says where it listens. A sandbox that never says is killed,
        // which ends the read with end of file.
        let readEnd = process.stdout!
        let line = await withDeadline(timeout, onExpiry: { process.signal(SIGKILL) }) {
            await OutputReader.firstLine(from: readEnd)
        }
        guard let line, let listening = try? JSONLine.decode(Listening.self, from: line) else {
            await process.terminate(grace: .zero)
            close(lifeline)
            throw StartError(description: "the Discord sandbox did not start (it said: \(line?.prefix(300) ?? "nothing")); see bot.log and sandbox.log")
        }
        process.whenExited { status in onExit(status.waitStatus) }
        logger.info("Discord sandbox started", metadata: ["pid": "\(process.pid)", "port": "\(listening.port)", "guild_id": "\(listening.guildID)"])
        return SandboxProcess(process: process, listening: listening, token: token, lifeline: lifeline)
    }

    /// Stops the sandbox: its stdin closes and it exits.
    func stop() {
        close(lifeline)
    }
}
