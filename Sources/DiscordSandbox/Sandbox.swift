import IPC
import Synchronization

/// How the sandbox was started (the command-line options).
struct SandboxConfiguration: Sendable {
    var host = "127.0.0.1"
    var port = 0
    /// Compared with what clients send; never logged.
    var token = "sandbox-token"
    var members = 40
    var activityPerMinute = 30.0
    var heartbeatIntervalMilliseconds = 41_250
    var disallowedIntents = 0
    var seed: UInt64 = 1
    /// How long a Gateway session stays resumable after its connection dropped.
    var sessionExpirySeconds = 120.0
    /// How long an interaction waits for its initial answer (Discord: 3 s). Unit tests that are
    /// not about that deadline raise it, so that a loaded machine does not fail them.
    var interactionAnswerMilliseconds: UInt64 = InteractionRecord.answerWithin
    /// Stderr log lines; off in tests that start many sandboxes.
    var logging = true
    /// Guilds the bot is in: guild 0 (the simulated one) and `guilds - 1` light ones.
    var guilds = 1
    /// The most guilds one shard may hold (Discord: 2,500); an Identify over it is closed with 4011.
    var guildsPerShardLimit = 2500
    /// `session_start_limit.max_concurrency`.
    var maxConcurrency = 1
    /// One Identify per rate-limit key (`shard_id % max_concurrency`) per this many milliseconds.
    var identifyWindowMilliseconds: UInt64 = 5000
}

/// The simulated Discord: the configuration and one `SandboxWorld` behind one lock, shared by
/// the Gateway connections, the REST and control routes and the activity loop.
///
/// Everything that changes the world and the events it causes happens in one `withWorld` call, so
/// events reach every session in one order.
final class Sandbox: Sendable {
    let configuration: SandboxConfiguration
    private let world: Mutex<SandboxWorld>

    init(configuration: SandboxConfiguration) {
        self.configuration = configuration
        world = Mutex(SandboxWorld(configuration: configuration, now: DiscordTime.nowMilliseconds()))
    }

    func withWorld<Result: Sendable>(_ body: (inout SandboxWorld) -> Result) -> Result {
        world.withLock { world in body(&world) }
    }

    /// The port the server bound, for the URLs the sandbox hands out.
    func bound(port: Int) {
        withWorld { $0.port = port }
    }

    var port: Int { withWorld { $0.port } }
    var gatewayURL: String { "ws://\(configuration.host):\(port)/gateway" }
    var apiBaseURL: String { "http://\(configuration.host):\(port)/api/v10" }

    /// One INFO line on stderr (never one per message: the flood must stay cheap).
    func log(_ message: String, _ fields: [String: JSONValue] = [:], level: String = "INFO") {
        guard configuration.logging else { return }
        StandardError.write(LogLine.render(level: level, system: "sandbox", message: message, fields: fields))
    }

    // MARK: - Gateway

    func identify(connection: GatewayConnection, intents: Int, shard: [Int]?) -> SandboxWorld.IdentifyOutcome {
        let outcome = withWorld { world in
            world.identify(connection: connection, intents: intents, shard: shard, resumeURL: "ws://\(configuration.host):\(world.port)/gateway-resume")
        }
        var fields: [String: JSONValue] = ["connection": .integer(connection.id), "intents": .integer(intents)]
        if let shard { fields["shard"] = .array(shard.map(JSONValue.integer)) }
        switch outcome {
        case .ready(let sessionID, let guilds):
            fields["session_id"] = .string(sessionID)
            if shard != nil || guilds != 1 { fields["guilds"] = .integer(guilds) }
            log("gateway identified", fields)
        case .shardingRequired(let guilds):
            fields["guilds"] = .integer(guilds)
            log("gateway identify needs more shards", fields)
        case .rateLimited:
            log("gateway identify over max_concurrency", fields)
        }
        return outcome
    }

    /// Whether the session was resumed (false: the client gets op 9 `false`).
    func resume(connection: GatewayConnection, sessionID: String, sequence: Int) -> Bool {
        let outcome = withWorld { world in
            world.gateway.resume(sessionID: sessionID, sequence: sequence, connection: connection, at: DiscordTime.nowMilliseconds())
        }
        switch outcome {
        case .resumed(let replayed):
            log("gateway resumed", ["connection": .integer(connection.id), "session_id": .string(sessionID), "replayed": .integer(replayed)])
            return true
        case .invalid:
            log("gateway resume refused", ["connection": .integer(connection.id), "session_id": .string(sessionID), "seq": .integer(sequence)])
            return false
        }
    }

    /// The connection's channel closed: its session stays resumable unless the close ended it
    /// (the client closed with 1000/1001, or the sandbox closed with a code that ends sessions).
    func gatewayClosed(_ connection: GatewayConnection) {
        let ended: Set<UInt16> = [1000, 1001, 4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014]
        let code = connection.closingCode.flatMap { $0 == 0 ? nil : $0 } ?? connection.clientCloseCode
        let keep = code.map { !ended.contains($0) } ?? true
        let session = withWorld { world in
            world.connections[connection.id] = nil
            return world.gateway.disconnected(connection, keep: keep, at: DiscordTime.nowMilliseconds())
        }
        var fields: [String: JSONValue] = ["connection": .integer(connection.id), "session_kept": .bool(keep && session != nil)]
        if let code { fields["code"] = .integer(Int(code)) }
        if let session { fields["session_id"] = .string(session) }
        log("gateway connection closed", fields)
    }

    func hasSession(_ connection: GatewayConnection) -> Bool {
        withWorld { $0.gateway.session(of: connection) != nil }
    }

    /// Op 8: one GUILD_MEMBERS_CHUNK with the members asked for (all of them with an empty query).
    func requestGuildMembers(_ d: JSONValue, connection: GatewayConnection) {
        withWorld { world in world.requestGuildMembers(d, connection: connection) }
    }
}
