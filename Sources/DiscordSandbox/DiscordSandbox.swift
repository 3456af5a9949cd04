import ArgumentParser
import IPC
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// A local Discord: Gateway v10 and REST v10 on loopback with one simulated guild (and, with
/// `--guilds N`, N-1 light ones, served over as many shards as the bot opens). The worker
/// starts it in `sandbox` mode and reads the `listening` line from stdout; tests and benchmarks
/// drive it through `/sandbox`.
@main
struct DiscordSandbox: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "discord-sandbox",
        abstract: "A local Discord (Gateway and REST v10) with one simulated guild."
    )

    @Option var host = "127.0.0.1"
    @Option var port = 0
    @Option(help: "The bot token clients must present (else $SANDBOX_TOKEN, else sandbox-token).") var token: String?
    @Option var members = 40
    @Option var activityPerMinute = 30.0
    @Option(name: .customLong("heartbeat-interval-ms")) var heartbeatIntervalMilliseconds = 41_250
    @Option(help: "Intent bits whose Identify is closed with 4014.") var disallowedIntents = 0
    @Option var seed: UInt64 = 1
    @Option(help: "How long a Gateway session stays resumable after its connection drops (Discord: a few minutes).") var sessionExpirySeconds = 120.0
    @Option(help: "Guilds the bot is in: guild 0 is the simulated one, the others are light guilds (1…100000).") var guilds = 1
    @Option(help: "The most guilds one shard may hold; an Identify over it is closed with 4011 (Discord: 2500).") var guildsPerShardLimit = 2500
    @Option(help: "session_start_limit.max_concurrency: Identifies with shard_id % M may start once per window per key.") var maxConcurrency = 1
    @Option(name: .customLong("identify-window-ms"), help: "The Identify rate-limit window per key, in milliseconds (Discord: 5000).") var identifyWindowMilliseconds = 5000
    @Flag(help: "Exit when stdin reaches end of file (the parent died).") var exitOnStdinEof = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535") }
        guard members >= 0, members <= 100_000 else { throw ValidationError("--members must be 0…100000") }
        guard heartbeatIntervalMilliseconds > 0 else { throw ValidationError("--heartbeat-interval-ms must be positive") }
        guard activityPerMinute >= 0 else { throw ValidationError("--activity-per-minute must not be negative") }
        guard sessionExpirySeconds > 0 else { throw ValidationError("--session-expiry-seconds must be positive") }
        guard (1...100_000).contains(guilds) else { throw ValidationError("--guilds must be 1…100000") }
        guard guildsPerShardLimit >= 1 else { throw ValidationError("--guilds-per-shard-limit must be positive") }
        guard maxConcurrency >= 1 else { throw ValidationError("--max-concurrency must be positive") }
        guard identifyWindowMilliseconds >= 0 else { throw ValidationError("--identify-window-ms must not be negative") }
    }

    func run() async throws {
        signal(SIGTERM) { _ in _exit(0) }
        signal(SIGINT) { _ in _exit(0) }
        signal(SIGPIPE, SIG_IGN)
        let environment = getenv("SANDBOX_TOKEN").map { String(cString: $0) }
        var configuration = SandboxConfiguration(
            host: host, port: port, token: token ?? environment ?? "sandbox-token", members: members,
            activityPerMinute: activityPerMinute, heartbeatIntervalMilliseconds: heartbeatIntervalMilliseconds,
            disallowedIntents: disallowedIntents, seed: seed, sessionExpirySeconds: sessionExpirySeconds
        )
        configuration.guilds = guilds
        configuration.guildsPerShardLimit = guildsPerShardLimit
        configuration.maxConcurrency = maxConcurrency
        configuration.identifyWindowMilliseconds = UInt64(identifyWindowMilliseconds)
        let sandbox = Sandbox(configuration: configuration)
        let channel = try await SandboxServer(sandbox: sandbox).bind()
        announce(sandbox)
        sandbox.log("sandbox listening", ["port": .integer(sandbox.port), "members": .integer(members), "guilds": .integer(guilds)])

        await withDiscardingTaskGroup { group in
            group.addTask { await Activity(sandbox: sandbox).run() }
            if exitOnStdinEof {
                group.addTask {
                    try? await NIOThreadPool.singleton.runIfActive { Self.readUntilEndOfFile() }
                    sandbox.log("stdin closed, exiting")
                    Glibc.exit(0)
                }
            }
            group.addTask { try? await channel.closeFuture.get() }
        }
    }

    /// The one stdout line the worker waits for.
    private func announce(_ sandbox: Sandbox) {
        let (guildID, applicationID, guildCount) = sandbox.withWorld { ($0.guild.id, $0.applicationID, $0.guildCount) }
        // Written by hand to keep the documented key order.
        let line = "{\"event\":\"listening\",\"port\":\(sandbox.port),\"gatewayURL\":\"\(sandbox.gatewayURL)\","
            + "\"apiBaseURL\":\"\(sandbox.apiBaseURL)\",\"guildID\":\"\(guildID)\",\"applicationID\":\"\(applicationID)\",\"guilds\":\(guildCount)}"
        var text = line + "\n"
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(1, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }

    private static func readUntilEndOfFile() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(0, &buffer, buffer.count)
            if count == 0 { return }
            if count < 0 && errno != EINTR { return }
        }
    }
}
