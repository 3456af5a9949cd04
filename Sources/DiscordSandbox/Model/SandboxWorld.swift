import IPC
import NIOCore

/// Everything the simulated Discord knows, as one value under the `Sandbox` lock: the guild, the
/// Gateway sessions, what the bot did (messages, interaction answers, commands, role changes) and
/// the REST counters. Its methods change the world and dispatch the events Discord would.
struct SandboxWorld: Sendable {
    struct RoleChange: Sendable {
        var guild: UInt64
        var user: UInt64
        var role: UInt64
        var added: Bool
        var reason: String?
        var at: UInt64

        var json: JSONValue {
            .object([
                "guild": .id(guild), "user": .id(user), "role": .id(role), "added": .bool(added),
                "reason": reason.map(JSONValue.string) ?? .null, "at": .string(DiscordTime.iso(at)),
            ])
        }
    }

    struct StoredMessage: Sendable {
        var id: UInt64
        var channelID: UInt64
        var authorID: UInt64
        var json: JSONValue
        /// The `custom_id`s of its buttons, for simulated presses.
        var customIDs: [String]
    }

    struct RESTStats: Sendable {
        var requests = 0
        var invalidRequests = 0
        var byRoute: [String: Int] = [:]
    }

    static let keptMessages = 500
    static let keptRecords = 1000

    /// Guild 0, the fully simulated one.
    var guild: SandboxGuild
    /// Guilds 1…N-1 (`--guilds N`).
    var lightGuilds: LightGuilds
    var ids = SnowflakeGenerator()
    var random: SeededRandom
    var gateway = GatewaySessions()
    var rateLimits = RateLimits()
    var rest = RESTStats()
    var activityPerMinute: Double
    /// How long an interaction waits for its initial answer.
    var answerWithin: UInt64
    var port = 0

    var messages: [StoredMessage] = []
    var interactions: [UInt64: InteractionRecord] = [:]
    var interactionOrder: [UInt64] = []
    var commands: JSONValue = .array([])
    var webhookMessages: [JSONValue] = []
    var roleChanges: [RoleChange] = []
    /// Files uploaded with messages or through the control API, served at `/attachments/{id}/{name}`.
    var attachments: [UInt64: StoredAttachment] = [:]
    var attachmentOrder: [UInt64] = []
    /// Members who left, by user: `POST /sandbox/join {"user"}` brings one back.
    var formerMembers: [UInt64: SandboxGuild.Member] = [:]
    /// Every open Gateway connection, identified or not, by id.
    var connections: [Int: GatewayConnection] = [:]
    private var connectionCounter = 0

    init(configuration: SandboxConfiguration, now: UInt64) {
        guild = SandboxGuild(seed: configuration.seed, memberCount: configuration.members, now: now)
        lightGuilds = LightGuilds(
            base: guild.createdAt, bot: guild.bot, owner: guild.members[guild.ownerID]?.user ?? guild.bot,
            total: configuration.guilds
        )
        random = SeededRandom(seed: configuration.seed &+ 0x5eed)
        activityPerMinute = configuration.activityPerMinute
        answerWithin = configuration.interactionAnswerMilliseconds
        gateway.keepAfterDrop = UInt64(configuration.sessionExpirySeconds * 1000)
        gateway.guildsPerShardLimit = configuration.guildsPerShardLimit
        gateway.maxConcurrency = configuration.maxConcurrency
        gateway.concurrencyWindow = configuration.identifyWindowMilliseconds
    }

    var applicationID: UInt64 { guild.bot.id }

    mutating func nextID() -> UInt64 { ids.next(at: DiscordTime.nowMilliseconds()) }

    mutating func nextConnectionID() -> Int {
        connectionCounter += 1
        gateway.connectionsOpened += 1
        return connectionCounter
    }

    /// Sends a non-dispatch payload (op 7, op 9) to every connection with a session.
    func sendToSessions(_ text: String) -> Int {
        let connected = gateway.connected
        for connection in connected { connection.send(ByteBuffer(string: text)) }
        return connected.count
    }

    // MARK: - Gateway sessions

    enum IdentifyOutcome: Sendable, Equatable {
        case ready(sessionID: String, guilds: Int)
        /// The shard would hold more guilds than allowed: close 4011.
        case shardingRequired(guilds: Int)
        /// Over `max_concurrency` for its rate-limit key: op 9 `false`, the connection stays.
        case rateLimited
    }

    /// Starts a session: READY listing the guilds of its shard (all without `shard`), then one
    /// GUILD_CREATE per guild with what the intents allow.
    mutating func identify(connection: GatewayConnection, intents: Int, shard: [Int]?, resumeURL: String) -> IdentifyOutcome {
        let now = DiscordTime.nowMilliseconds()
        let shardValue = shard.map { GatewaySessions.Shard(id: $0[0], count: $0[1]) }
        let (shardID, shardCount) = (shardValue?.id ?? 0, shardValue?.count ?? 1)
        let held = guildCount(inShard: shardID, of: shardCount)
        guard held <= gateway.guildsPerShardLimit else { return .shardingRequired(guilds: held) }
        guard gateway.admitIdentify(shard: shardValue, at: now) else { return .rateLimited }
        let guildIDs = guildIDs(inShard: shardID, of: shardCount)
        let sessionID = random.hex(32)
        gateway.identify(sessionID: sessionID, intents: intents, shard: shardValue, connection: connection, at: now)
        var ready: [String: JSONValue] = [
            "v": .integer(10),
            "user": SandboxGuild.json(guild.bot).merging(["verified": .bool(true), "mfa_enabled": .bool(false), "flags": .integer(0)]),
            "guilds": .array(guildIDs.map { .object(["id": .id($0), "unavailable": .bool(true)]) }),
            "session_id": .string(sessionID),
            "resume_gateway_url": .string(resumeURL),
            "session_type": .string("normal"),
            "private_channels": .array([]),
            "relationships": .array([]),
            "presences": .array([]),
            "guild_join_requests": .array([]),
            "application": .object(["id": .id(applicationID), "flags": .integer(0)]),
        ]
        if let shard { ready["shard"] = .array(shard.map(JSONValue.integer)) }
        gateway.send("READY", .object(ready), toSession: sessionID)
        let allMembers = intents & GatewaySessions.Intent.guildMembers != 0
        for id in guildIDs {
            if id == guild.id {
                gateway.send("GUILD_CREATE", guild.createEventJSON(allMembers: allMembers), toSession: sessionID)
            } else if let index = lightGuilds.index(of: id) {
                var body = lightGuilds.createEvent(index: index, allMembers: allMembers)
                gateway.send("GUILD_CREATE", body: &body, toSession: sessionID)
            }
        }
        return .ready(sessionID: sessionID, guilds: guildIDs.count)
    }

    mutating func requestGuildMembers(_ d: JSONValue, connection: GatewayConnection) {
        guard let sessionID = gateway.session(of: connection), let intents = gateway.intents(ofSession: sessionID)
        else { return }
        let query = d["query"]?.stringValue ?? ""
        let wanted = Set((d["user_ids"]?.array ?? []).compactMap(\.snowflake))
        let limit = d["limit"]?.int ?? 0
        // Guild 0 unless `guild_id` names a light guild (the sandbox always answered for guild 0).
        let target = d["guild_id"]?.snowflake.flatMap { self.guild(withID: $0) } ?? guild
        var found = target.members.values.sorted { $0.user.id < $1.user.id }.filter { member in
            if !wanted.isEmpty { return wanted.contains(member.user.id) }
            return query.isEmpty ? intents & GatewaySessions.Intent.guildMembers != 0 : member.user.username.hasPrefix(query)
        }
        if limit > 0 { found = Array(found.prefix(limit)) }
        var chunk: [String: JSONValue] = [
            "guild_id": .id(target.id), "members": .array(found.map { SandboxGuild.json($0) }),
            "chunk_index": .integer(0), "chunk_count": .integer(1),
        ]
        if let nonce = d["nonce"] { chunk["nonce"] = nonce }
        gateway.send("GUILD_MEMBERS_CHUNK", .object(chunk), toSession: sessionID)
    }

    // MARK: - Records

    mutating func store(_ message: StoredMessage) {
        messages.append(message)
        if messages.count > Self.keptMessages { messages.removeFirst(messages.count - Self.keptMessages) }
    }

    mutating func recordWebhookMessage(_ message: JSONValue) {
        webhookMessages.append(message)
        if webhookMessages.count > Self.keptRecords { webhookMessages.removeFirst() }
    }
}

extension JSONValue {
    /// This object with `fields` added or replaced.
    func merging(_ fields: [String: JSONValue]) -> JSONValue {
        guard case .object(var object) = self else { return self }
        object.merge(fields) { $1 }
        return .object(object)
    }
}
