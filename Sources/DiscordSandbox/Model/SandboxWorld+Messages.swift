import IPC
import NIOCore

/// Messages: created by the bot over REST, by simulated members, or by the thousand in a flood,
/// each dispatched as MESSAGE_CREATE with `content` blanked for sessions without MESSAGE_CONTENT
/// unless the message is the bot's own or mentions it.
extension SandboxWorld {
    /// Creates, stores and dispatches a message; returns it as REST shows it.
    mutating func postMessage(
        channel channelID: UInt64, author: SandboxGuild.User, content: String, components: JSONValue = .array([]),
        embeds: JSONValue = .array([]), flags: Int = 0, nonce: JSONValue? = nil, extra: [String: JSONValue] = [:]
    ) throws(DiscordError) -> JSONValue {
        guard guild.channel(channelID) != nil else { throw .unknownChannel }
        guard content.count <= 2000 else {
            throw .invalidForm(field: "content", code: "BASE_TYPE_MAX_LENGTH", message: "Must be 2000 or fewer in length.")
        }
        let id = nextID()
        let mentioned = Self.mentionedIDs(in: content)
        var object: [String: JSONValue] = [
            "id": .id(id), "channel_id": .id(channelID), "guild_id": .id(guild.id), "author": SandboxGuild.json(author),
            "content": .string(content), "timestamp": .string(DiscordTime.iso(Snowflake.unixMilliseconds(of: id))),
            "edited_timestamp": .null, "tts": .bool(false), "mention_everyone": .bool(false),
            "mentions": .array(mentioned.compactMap { guild.members[$0].map { SandboxGuild.json($0.user) } }),
            "mention_roles": .array([]), "attachments": .array([]), "embeds": embeds, "components": components,
            "pinned": .bool(false), "type": .integer(0), "flags": .integer(flags),
        ]
        if let nonce { object["nonce"] = nonce }
        object.merge(extra) { $1 }
        let message = JSONValue.object(object)
        store(StoredMessage(id: id, channelID: channelID, authorID: author.id, json: message, customIDs: Self.customIDs(in: components)))

        var event = object
        if let member = guild.members[author.id] {
            var partial = SandboxGuild.json(member)
            if case .object(var fields) = partial {
                fields["user"] = nil
                partial = .object(fields)
            }
            event["member"] = partial
        }
        let seesContent = author.id == guild.bot.id || mentioned.contains(guild.bot.id)
        var blanked = event
        for key in ["content"] { blanked[key] = .string("") }
        for key in ["embeds", "attachments", "components"] { blanked[key] = .array([]) }
        if author.id != guild.bot.id, !gateway.liveSessionIDs(at: DiscordTime.nowMilliseconds()).isEmpty { gateway.memberMessages += 1 }
        gateway.dispatch("MESSAGE_CREATE", .object(event), to: .messages(blanked: seesContent ? nil : .object(blanked)))
        return message
    }

    /// The user ids in `<@id>` and `<@!id>` mentions.
    static func mentionedIDs(in content: String) -> [UInt64] {
        guard content.contains("<@") else { return [] }
        return content.split(separator: "<@").dropFirst().compactMap { part in
            let digits = part.drop { $0 == "!" }.prefix { $0.isNumber }
            return UInt64(digits)
        }
    }

    /// Every `custom_id` among the components (action rows and their buttons).
    static func customIDs(in components: JSONValue) -> [String] {
        switch components {
        case .array(let items): items.flatMap(customIDs)
        case .object(let object): (object["custom_id"]?.stringValue.map { [$0] } ?? []) + customIDs(in: object["components"] ?? .null)
        default: []
        }
    }

    // MARK: - The flood

    /// A member's fields as the flood writes them, looked up once per flood.
    struct FloodAuthor: Sendable {
        var id: String
        var username: String
        var roles: String
        var joinedAt: String
    }

    static let words = ["hey", "anyone", "know", "how", "the", "levels", "work", "here", "lol", "nice", "thanks", "for",
                        "the", "help", "just", "joined", "this", "server", "looks", "great", "what", "time", "is", "event",
                        "tonight", "gg", "that", "was", "fun", "see", "you", "all", "tomorrow", "good", "morning", "everyone"]

    var floodAuthors: [FloodAuthor] {
        guild.humans.map { member in
            FloodAuthor(
                id: String(member.user.id), username: member.user.username,
                roles: member.roles.map { "\"\($0)\"" }.joined(separator: ","), joinedAt: DiscordTime.iso(member.joinedAt)
            )
        }
    }

    /// Numbers and queues `count` MESSAGE_CREATE events from random members on every session that
    /// takes messages: the `d` is written by hand (no `JSONEncoder`) once per message, twice when a
    /// session must get it blanked. Returns what was queued, per connection.
    /// Sessions whose connection dropped are numbered and kept too (their Resume replays them);
    /// only the connected ones get frames queued.
    mutating func floodBatch(count: Int, channel: UInt64, authors: [FloodAuthor]) -> (sessions: Int, queued: [(GatewayConnection, EventLoopFuture<Void>, first: Int, last: Int)]) {
        let sessions = gateway.liveSessionIDs(at: DiscordTime.nowMilliseconds()).compactMap { id in gateway.intents(ofSession: id).map { (id, $0) } }
            .filter { $0.1 & GatewaySessions.Intent.guildMessages != 0 }
        guard !sessions.isEmpty, !authors.isEmpty else { return (0, []) }
        gateway.memberMessages += count
        let needsBlank = sessions.contains { $0.1 & GatewaySessions.Intent.messageContent == 0 }
        let needsFull = sessions.contains { $0.1 & GatewaySessions.Intent.messageContent != 0 }
        var full: [ByteBuffer] = []
        var blank: [ByteBuffer] = []
        let guildID = String(guild.id), channelID = String(channel)
        for _ in 0..<count {
            let author = authors[Int(random.next() % UInt64(authors.count))]
            let id = nextID()
            let timestamp = DiscordTime.iso(Snowflake.unixMilliseconds(of: id))
            var content = ""
            for index in 0..<(4 + Int(random.next() % 14)) {
                if index > 0 { content += " " }
                content += Self.words[Int(random.next() % UInt64(Self.words.count))]
            }
            let nonce = String(random.next() >> 2)
            if needsFull { full.append(Self.floodBody(id: id, channel: channelID, guild: guildID, author: author, content: content, timestamp: timestamp, nonce: nonce)) }
            if needsBlank { blank.append(Self.floodBody(id: id, channel: channelID, guild: guildID, author: author, content: "", timestamp: timestamp, nonce: nonce)) }
        }
        let queued: [(GatewayConnection, EventLoopFuture<Void>, first: Int, last: Int)] = sessions.compactMap { id, intents in
            let bodies = intents & GatewaySessions.Intent.messageContent != 0 ? full : blank
            guard let (maybeConnection, frames, first) = gateway.number("MESSAGE_CREATE", bodies: bodies, forSession: id), let connection = maybeConnection else { return nil }
            return (connection, connection.send(batch: frames), first, first + frames.count - 1)
        }
        return (sessions.count, queued)
    }

    static func floodBody(id: UInt64, channel: String, guild: String, author: FloodAuthor, content: String, timestamp: String, nonce: String) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(900)
        out.writeStaticString("{\"type\":0,\"tts\":false,\"timestamp\":\"")
        out.writeString(timestamp)
        out.writeStaticString("\",\"pinned\":false,\"nonce\":\"")
        out.writeString(nonce)
        out.writeStaticString("\",\"mentions\":[],\"mention_roles\":[],\"mention_everyone\":false,\"member\":{\"roles\":[")
        out.writeString(author.roles)
        out.writeStaticString("],\"premium_since\":null,\"pending\":false,\"nick\":null,\"mute\":false,\"joined_at\":\"")
        out.writeString(author.joinedAt)
        out.writeStaticString("\",\"flags\":0,\"deaf\":false,\"communication_disabled_until\":null,\"avatar\":null},\"id\":\"")
        out.writeString(String(id))
        out.writeStaticString("\",\"flags\":0,\"embeds\":[],\"edited_timestamp\":null,\"content\":")
        out.writeJSONString(content)
        out.writeStaticString(",\"components\":[],\"channel_type\":0,\"channel_id\":\"")
        out.writeString(channel)
        out.writeStaticString("\",\"author\":{\"username\":\"")
        out.writeString(author.username)
        out.writeStaticString("\",\"public_flags\":0,\"id\":\"")
        out.writeString(author.id)
        out.writeStaticString("\",\"global_name\":null,\"discriminator\":\"0\",\"avatar_decoration_data\":null,\"avatar\":null},\"attachments\":[],\"guild_id\":\"")
        out.writeString(guild)
        out.writeStaticString("\"}")
        return out
    }
}
