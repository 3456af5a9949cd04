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
        guard let target = guild(ofChannel: channelID) else { throw .unknownChannel }
        guard content.count <= 2000 else {
            throw .invalidForm(field: "content", code: "BASE_TYPE_MAX_LENGTH", message: "Must be 2000 or fewer in length.")
        }
        let id = nextID()
        let mentioned = Self.mentionedIDs(in: content)
        var object: [String: JSONValue] = [
            "id": .id(id), "channel_id": .id(channelID), "guild_id": .id(target.id), "author": SandboxGuild.json(author),
            "content": .string(content), "timestamp": .string(DiscordTime.iso(Snowflake.unixMilliseconds(of: id))),
            "edited_timestamp": .null, "tts": .bool(false), "mention_everyone": .bool(false),
            "mentions": .array(mentioned.compactMap { target.members[$0].map { SandboxGuild.json($0.user) } }),
            "mention_roles": .array([]), "attachments": .array([]), "embeds": embeds, "components": components,
            "pinned": .bool(false), "type": .integer(0), "flags": .integer(flags),
        ]
        if let nonce { object["nonce"] = nonce }
        object.merge(extra) { $1 }
        let message = JSONValue.object(object)
        store(StoredMessage(id: id, channelID: channelID, authorID: author.id, json: message, customIDs: Self.customIDs(in: components)))

        var event = object
        if let member = target.members[author.id] {
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
        if author.id != guild.bot.id, gateway.reachesLiveSession(guild: target.id, at: DiscordTime.nowMilliseconds()) { gateway.memberMessages += 1 }
        gateway.dispatch("MESSAGE_CREATE", .object(event), to: .messages(blanked: seesContent ? nil : .object(blanked)), guild: target.id)
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

    /// Where a flood's messages go: one channel, or each guild's text channel in turn.
    struct FloodTarget: Sendable {
        var guildID: UInt64
        var channelID: UInt64
        var authors: [FloodAuthor]
    }

    var floodAuthors: [FloodAuthor] { Self.floodAuthors(of: guild) }

    /// The guild's human members (not the bot, not the owner).
    static func floodAuthors(of target: SandboxGuild) -> [FloodAuthor] {
        target.humans.map { member in
            FloodAuthor(
                id: String(member.user.id), username: member.user.username,
                roles: member.roles.map { "\"\($0)\"" }.joined(separator: ","), joinedAt: DiscordTime.iso(member.joinedAt)
            )
        }
    }

    /// The flood target of guild number `index` (0 is guild 0, whose authors are given), for
    /// `"guilds": "all"`: its first text channel ("general").
    func floodTarget(guildIndex index: Int, guild0: FloodTarget) -> FloodTarget {
        guard index > 0 else { return guild0 }
        let light = lightGuilds[index]
        let channel = light.channels.first { $0.type == 0 } ?? light.channels[0]
        return FloodTarget(guildID: light.id, channelID: channel.id, authors: Self.floodAuthors(of: light))
    }

    /// Numbers and queues `count` MESSAGE_CREATE events from random members on every session that
    /// takes messages and whose shard owns the message's guild: the `d` is written by hand (no
    /// `JSONEncoder`) once per message, twice when a session must get it blanked. The messages go to
    /// `target`, or with `allGuilds` round-robin over every guild from guild number `cursor` on.
    /// Returns how many sessions take messages at all, how many got some, how many messages reached
    /// one, and what was queued, per connection.
    /// Sessions whose connection dropped are numbered and kept too (their Resume replays them);
    /// only the connected ones get frames queued.
    mutating func floodBatch(
        count: Int, target: FloodTarget, allGuilds: Bool = false, cursor: inout Int
    ) -> (sessions: Int, reached: Int, delivered: Int, queued: [(GatewayConnection, EventLoopFuture<Void>, first: Int, last: Int)]) {
        let sessions = gateway.liveRecipients(at: DiscordTime.nowMilliseconds())
            .filter { $0.intents & GatewaySessions.Intent.guildMessages != 0 }
        guard !sessions.isEmpty else { return (0, 0, 0, []) }
        let needsBlank = sessions.contains { $0.intents & GatewaySessions.Intent.messageContent == 0 }
        let needsFull = sessions.contains { $0.intents & GatewaySessions.Intent.messageContent != 0 }
        var bodies = [[ByteBuffer]](repeating: [], count: sessions.count)
        var delivered = 0
        var current = target
        var currentGuild = ""
        var currentChannel = ""
        for _ in 0..<count {
            if allGuilds {
                current = floodTarget(guildIndex: cursor % guildCount, guild0: target)
                cursor += 1
            }
            let recipients = sessions.indices.filter { sessions[$0].owns(guild: current.guildID) }
            guard !current.authors.isEmpty, !recipients.isEmpty else { continue }
            delivered += 1
            if currentGuild.isEmpty || allGuilds {
                currentGuild = String(current.guildID)
                currentChannel = String(current.channelID)
            }
            let author = current.authors[Int(random.next() % UInt64(current.authors.count))]
            let id = nextID()
            let timestamp = DiscordTime.iso(Snowflake.unixMilliseconds(of: id))
            var content = ""
            for index in 0..<(4 + Int(random.next() % 14)) {
                if index > 0 { content += " " }
                content += Self.words[Int(random.next() % UInt64(Self.words.count))]
            }
            let nonce = String(random.next() >> 2)
            let full = needsFull ? Self.floodBody(id: id, channel: currentChannel, guild: currentGuild, author: author, content: content, timestamp: timestamp, nonce: nonce) : nil
            let blank = needsBlank ? Self.floodBody(id: id, channel: currentChannel, guild: currentGuild, author: author, content: "", timestamp: timestamp, nonce: nonce) : nil
            for index in recipients {
                bodies[index].append((sessions[index].intents & GatewaySessions.Intent.messageContent != 0 ? full : blank)!)
            }
        }
        gateway.memberMessages += delivered
        let queued: [(GatewayConnection, EventLoopFuture<Void>, first: Int, last: Int)] = sessions.indices.compactMap { index in
            guard !bodies[index].isEmpty,
                  let (maybeConnection, frames, first) = gateway.number("MESSAGE_CREATE", bodies: bodies[index], forSession: sessions[index].id),
                  let connection = maybeConnection
            else { return nil }
            return (connection, connection.send(batch: frames), first, first + frames.count - 1)
        }
        return (sessions.count, bodies.count(where: { !$0.isEmpty }), delivered, queued)
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
