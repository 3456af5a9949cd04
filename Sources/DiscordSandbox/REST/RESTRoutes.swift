import IPC
import NIOHTTP1

/// What each REST route does, once the router has let the request through.
extension SandboxWorld {
    mutating func handle(
        _ route: RESTRouter.Route, _ parameters: [String: String], query: [String: String], body: JSONValue?,
        reason: String?, gatewayURL: String
    ) throws(DiscordError) -> HTTPReply {
        func id(_ name: String) throws(DiscordError) -> UInt64 {
            guard let value = parameters[name].flatMap(UInt64.init) else {
                throw .invalidForm(field: name, code: "NUMBER_TYPE_COERCE", message: "Value is not snowflake.")
            }
            return value
        }
        /// The guild of the path: guild 0 or a light guild, else 404 Unknown Guild.
        func pathGuild() throws(DiscordError) -> SandboxGuild {
            try existingGuild(try id("guild"))
        }

        switch (route.method, route.template) {
        case (.GET, "/gateway"):
            return .json(.ok, .object(["url": .string(gatewayURL)]))

        case (.GET, "/gateway/bot"):
            let limit = gateway.sessionStartLimit(at: DiscordTime.nowMilliseconds())
            return .json(.ok, .object([
                "url": .string(gatewayURL), "shards": .integer(recommendedShards),
                "session_start_limit": .object([
                    "total": .integer(GatewaySessions.sessionStartTotal), "remaining": .integer(limit.remaining),
                    "reset_after": .integer(Int(limit.resetAfter)), "max_concurrency": .integer(gateway.maxConcurrency),
                ]),
            ]))

        case (.GET, "/users/@me"):
            return .json(.ok, SandboxGuild.json(guild.bot).merging(["verified": .bool(true), "flags": .integer(0), "mfa_enabled": .bool(false)]))

        case (.GET, "/guilds/{guild}"):
            let guild = try pathGuild()
            return .json(.ok, guild.json.merging([
                "approximate_member_count": .integer(guild.members.count), "approximate_presence_count": .integer(0),
            ]))

        case (.GET, "/guilds/{guild}/roles"):
            return .json(.ok, try pathGuild().rolesJSON)

        case (.GET, "/guilds/{guild}/channels"):
            return .json(.ok, try pathGuild().channelsJSON)

        case (.GET, "/guilds/{guild}/members"):
            let guild = try pathGuild()
            let limit = query["limit"].map { Int($0) ?? 0 } ?? 1
            guard (1...1000).contains(limit) else {
                throw .invalidForm(field: "limit", code: "NUMBER_TYPE_MAX", message: "Int value should be between 1 and 1000.")
            }
            let after = query["after"].flatMap(UInt64.init) ?? 0
            let page = guild.members.values.filter { $0.user.id > after }.sorted { $0.user.id < $1.user.id }.prefix(limit)
            return .json(.ok, .array(page.map { SandboxGuild.json($0) }))

        case (.GET, "/guilds/{guild}/members/{user}"):
            return .json(.ok, SandboxGuild.json(try member(guild: try id("guild"), user: try id("user"))))

        case (.PATCH, "/guilds/{guild}/members/{user}"):
            let guildID = try id("guild"), user = try id("user")
            var member = try member(guild: guildID, user: user)
            if let roles = body?["roles"] {
                guard let list = roles.array?.compactMap(\.snowflake), list.count == roles.array?.count else {
                    throw .invalidForm(field: "roles", code: "BASE_TYPE_BAD_ARRAY", message: "Must be an array of snowflakes.")
                }
                member = try setRoles(guild: guildID, user: user, roles: list, reason: reason)
            }
            return .json(.ok, SandboxGuild.json(member))

        case (.PUT, "/guilds/{guild}/members/{user}/roles/{role}"), (.DELETE, "/guilds/{guild}/members/{user}/roles/{role}"):
            try changeRole(guild: try id("guild"), user: try id("user"), role: try id("role"), add: route.method == .PUT, reason: reason)
            return .noContent

        case (.POST, "/channels/{channel}/messages"):
            let channel = try id("channel")
            guard guild(ofChannel: channel) != nil else { throw .unknownChannel }
            let message = Self.numberingComponents(body ?? .object([:]))
            let content = message["content"]?.stringValue ?? ""
            let components = message["components"] ?? .array([])
            let embeds = message["embeds"] ?? .array([])
            if content.isEmpty && (components.array ?? []).isEmpty && (embeds.array ?? []).isEmpty && message["sticker_ids"] == nil {
                throw DiscordError(status: 400, code: 50006, message: "Cannot send an empty message")
            }
            if (embeds.array?.count ?? 0) > 10 {
                throw .invalidForm(field: "embeds", code: "BASE_TYPE_MAX_LENGTH", message: "Must be 10 or fewer in length.")
            }
            let posted = try postMessage(
                channel: channel, author: guild.bot, content: content, components: components, embeds: embeds,
                flags: message["flags"]?.int ?? 0, nonce: message["nonce"]
            )
            return .json(.ok, posted)

        case (.GET, "/channels/{channel}/messages/{message}"):
            let channel = try id("channel"), messageID = try id("message")
            guard guild(ofChannel: channel) != nil else { throw .unknownChannel }
            guard let stored = messages.last(where: { $0.id == messageID && $0.channelID == channel }) else { throw .unknownMessage }
            return .json(.ok, stored.json)

        case (.POST, "/interactions/{interaction}/{token}/callback"):
            var callback = try object(body)
            if let data = callback["data"] { callback = callback.merging(["data": Self.numberingComponents(data)]) }
            try answerInteraction(id: try id("interaction"), token: parameters["token"] ?? "", body: callback)
            return .noContent

        case (.POST, "/webhooks/{webhook}/{token}"):
            let webhook = try id("webhook"), token = parameters["token"] ?? ""
            let message = Self.numberingComponents(try object(body))
            if webhook == applicationID {
                return .json(.ok, try followUp(token: token, body: message))
            }
            return try executeWebhook(id: webhook, body: message, wait: query["wait"] == "true")

        case (.PATCH, "/webhooks/{webhook}/{token}/messages/@original"):
            guard try id("webhook") == applicationID else { throw .unknownWebhook }
            return .json(.ok, try editOriginal(token: parameters["token"] ?? "", body: Self.numberingComponents(try object(body))))

        case (.GET, "/applications/{application}/guilds/{guild}/commands"):
            let guildID = try pathGuild().id
            return .json(.ok, guildID == guild.id ? commands : lightGuilds.commands[guildID] ?? .array([]))

        case (.PUT, "/applications/{application}/guilds/{guild}/commands"):
            let guildID = try pathGuild().id
            guard try id("application") == applicationID else { throw .missingPermissions }
            return .json(.ok, try overwriteCommands(body, guild: guildID))

        default:
            throw .notFound
        }
    }

    /// The message with an `id` on each of its components, as Discord stores it: those the client
    /// gave are kept, the others numbered from 1 in tree order (a row before its buttons),
    /// skipping the ids taken.
    static func numberingComponents(_ message: JSONValue) -> JSONValue {
        guard let components = message["components"], case .array = components else { return message }
        var taken = Set<Int>()
        func collect(_ value: JSONValue) {
            for component in value.arrayValue {
                if let id = component["id"]?.int { taken.insert(id) }
                collect(component["components"] ?? .null)
            }
        }
        collect(components)
        var next = 0
        func number(_ value: JSONValue) -> JSONValue {
            .array(value.arrayValue.map { component in
                guard case .object(var object) = component else { return component }
                if object["id"]?.int == nil {
                    repeat { next += 1 } while taken.contains(next)
                    object["id"] = .integer(next)
                }
                if let children = object["components"] { object["components"] = number(children) }
                return .object(object)
            })
        }
        return message.merging(["components": number(components)])
    }

    private func object(_ body: JSONValue?) throws(DiscordError) -> JSONValue {
        guard let body, case .object = body else {
            throw .invalidForm(field: "_", code: "DICT_TYPE_CONVERT", message: "Only dictionaries may be used in a DictType")
        }
        return body
    }

    /// Bulk overwrite: the list replaces the guild's commands; ids kept for names already known.
    private mutating func overwriteCommands(_ body: JSONValue?, guild guildID: UInt64) throws(DiscordError) -> JSONValue {
        let commands = guildID == guild.id ? self.commands : lightGuilds.commands[guildID] ?? .array([])
        guard let list = body?.array else {
            throw .invalidForm(field: "_", code: "BASE_TYPE_BAD_ARRAY", message: "Must be an array.")
        }
        var result: [JSONValue] = []
        for (index, command) in list.enumerated() {
            guard case .object = command, let name = command["name"]?.stringValue, (1...32).contains(name.count) else {
                throw .invalidForm(field: "\(index).name", code: "BASE_TYPE_BAD_LENGTH", message: "Must be between 1 and 32 in length.")
            }
            let type = command["type"]?.int ?? 1
            let description = command["description"]?.stringValue ?? ""
            if type == 1 && !(1...100).contains(description.count) {
                throw .invalidForm(field: "\(index).description", code: "BASE_TYPE_BAD_LENGTH", message: "Must be between 1 and 100 in length.")
            }
            let existing = commands.array?.first { $0["name"]?.stringValue == name }
            result.append(command.merging([
                "id": existing?["id"] ?? .id(nextID()), "application_id": .id(applicationID), "guild_id": .id(guildID),
                "version": .id(nextID()), "type": .integer(type), "description": .string(description),
                "default_member_permissions": command["default_member_permissions"] ?? .null, "nsfw": .bool(false),
            ]))
        }
        if guildID == guild.id { self.commands = .array(result) } else { lightGuilds.commands[guildID] = .array(result) }
        return .array(result)
    }

    /// Any other webhook: the message is kept in `webhookMessages` (alerts go this way).
    private mutating func executeWebhook(id webhook: UInt64, body: JSONValue, wait: Bool) throws(DiscordError) -> HTTPReply {
        let content = body["content"]?.stringValue ?? ""
        let embeds = body["embeds"] ?? .array([])
        if content.isEmpty && (embeds.array ?? []).isEmpty {
            throw DiscordError(status: 400, code: 50006, message: "Cannot send an empty message")
        }
        guard content.count <= 2000 else {
            throw .invalidForm(field: "content", code: "BASE_TYPE_MAX_LENGTH", message: "Must be 2000 or fewer in length.")
        }
        let id = nextID()
        let message = JSONValue.object([
            "id": .id(id), "channel_id": .id(guild.channel(named: "bot-log").id), "guild_id": .id(guild.id),
            "author": .object([
                "id": .id(webhook), "username": body["username"] ?? .string("Sandbox Webhook"), "avatar": .null,
                "discriminator": .string("0000"), "bot": .bool(true), "global_name": .null, "public_flags": .integer(0),
                "flags": .integer(0), "primary_guild": .null,
            ]),
            "content": .string(content), "embeds": embeds, "components": .array([]), "attachments": .array([]),
            "timestamp": .string(DiscordTime.iso(Snowflake.unixMilliseconds(of: id))), "edited_timestamp": .null,
            "tts": .bool(false), "mention_everyone": .bool(false), "mentions": .array([]), "mention_roles": .array([]),
            "pinned": .bool(false), "type": .integer(0), "flags": .integer(0), "webhook_id": .id(webhook),
        ])
        recordWebhookMessage(message)
        return wait ? .json(.ok, message) : .noContent
    }
}
