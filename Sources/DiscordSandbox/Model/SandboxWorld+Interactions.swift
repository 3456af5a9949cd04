import IPC

/// What an interaction went through: the INTERACTION_CREATE sent, the bot's one initial answer
/// (within 3 s, as on Discord) and its follow-ups with the token (for 15 minutes).
struct InteractionRecord: Sendable {
    var id: UInt64
    var token: String
    var type: Int
    var channelID: UInt64
    var data: JSONValue
    var createdAt: UInt64
    var responses: [JSONValue] = []
    var followUps: [JSONValue] = []

    /// Discord's: the initial answer within 3 s (`SandboxConfiguration.interactionAnswerMilliseconds`).
    static let answerWithin: UInt64 = 3000
    static let tokenValidFor: UInt64 = 15 * 60 * 1000

    var json: JSONValue {
        .object([
            "id": .id(id), "token": .string(token), "type": .integer(type), "channel_id": .id(channelID), "data": data,
            "responses": .array(responses), "followUps": .array(followUps),
        ])
    }
}

extension SandboxWorld {
    enum InteractionKind: String, Sendable {
        case command
        case button
    }

    /// A member uses a slash command or presses a button: INTERACTION_CREATE to every session.
    mutating func createInteraction(
        user: UInt64, kind: InteractionKind, name: String?, options: JSONValue?, customID: String?,
        channel: UInt64?, message: UInt64?
    ) throws(DiscordError) -> InteractionRecord {
        guard let member = guild.members[user] else { throw .unknownMember }
        let channelID = channel ?? guild.channel(named: kind == .button ? "verify" : "general").id
        guard let channelObject = guild.channel(channelID) else { throw .unknownChannel }
        let id = nextID()
        let token = "aW50ZXJhY3Rpb246" + random.hex(60)
        var payload: [String: JSONValue] = [:]
        let data: JSONValue
        switch kind {
        case .command:
            let commandName = name ?? "verification"
            let known = commands.array?.first { $0["name"]?.stringValue == commandName }
            var fields: [String: JSONValue] = [
                "id": known?["id"] ?? .id(nextID()), "name": .string(commandName), "type": .integer(1), "guild_id": .id(guild.id),
            ]
            if let options, options != .null { fields["options"] = options }
            data = .object(fields)
        case .button:
            let stored = messages.last { stored in
                if let message { return stored.id == message }
                return stored.authorID == guild.bot.id && (customID.map(stored.customIDs.contains) ?? !stored.customIDs.isEmpty)
            }
            let custom = customID ?? stored?.customIDs.first ?? "verify"
            data = .object(["custom_id": .string(custom), "component_type": .integer(2)])
            payload["message"] = stored?.json ?? .object([
                "id": .id(message ?? nextID()), "channel_id": .id(channelID), "author": SandboxGuild.json(guild.bot),
                "content": .string(""), "components": .array([]), "type": .integer(0), "flags": .integer(0),
            ])
        }
        var memberJSON = SandboxGuild.json(member)
        memberJSON = memberJSON.merging(["permissions": .string(String(guild.permissions(of: member)))])
        let botMember = guild.members[guild.bot.id]
        payload.merge([
            "id": .id(id), "application_id": .id(applicationID), "type": .integer(kind == .command ? 2 : 3), "data": data,
            "guild_id": .id(guild.id), "guild": .object(["id": .id(guild.id), "locale": .string("en-US"), "features": .array([])]),
            "channel_id": .id(channelID), "channel": guild.json(channelObject), "member": memberJSON, "token": .string(token),
            "version": .integer(1), "app_permissions": .string(String(botMember.map(guild.permissions(of:)) ?? 0)),
            "locale": .string("en-US"), "guild_locale": .string("en-US"), "entitlements": .array([]),
            "authorizing_integration_owners": .object(["0": .id(guild.id)]), "context": .integer(0),
            "attachment_size_limit": .integer(10_485_760),
        ]) { $1 }
        let record = InteractionRecord(
            id: id, token: token, type: kind == .command ? 2 : 3, channelID: channelID, data: data,
            createdAt: Snowflake.unixMilliseconds(of: id)
        )
        interactions[id] = record
        interactionOrder.append(id)
        if interactionOrder.count > Self.keptRecords { interactions[interactionOrder.removeFirst()] = nil }
        gateway.dispatch("INTERACTION_CREATE", .object(payload), to: .all)
        return record
    }

    /// POST /interactions/{id}/{token}/callback: the one initial answer.
    mutating func answerInteraction(id: UInt64, token: String, body: JSONValue) throws(DiscordError) {
        guard var record = interactions[id], record.token == token,
              DiscordTime.nowMilliseconds() - record.createdAt <= answerWithin || !record.responses.isEmpty
        else { throw .unknownInteraction }
        guard record.responses.isEmpty else { throw .alreadyAcknowledged }
        guard let type = body["type"]?.int, [1, 4, 5, 6, 7, 8, 9, 10, 12].contains(type) else {
            throw .invalidForm(field: "type", code: "BASE_TYPE_CHOICES", message: "Value must be one of {1, 4, 5, 6, 7, 8, 9, 10, 12}.")
        }
        record.responses.append(body)
        interactions[id] = record
        if type == 4 { try postAnswerMessage(record, body: body["data"] ?? .object([:])) }
    }

    /// POST /webhooks/{application}/{token} with an interaction's token: a follow-up message.
    mutating func followUp(token: String, body: JSONValue) throws(DiscordError) -> JSONValue {
        let record = try tokenInteraction(token)
        let message = try postAnswerMessage(record, body: body)
        interactions[record.id]?.followUps.append(.object(["kind": .string("followup"), "body": body, "message": message]))
        return message
    }

    /// PATCH /webhooks/{application}/{token}/messages/@original: edits the first answer.
    mutating func editOriginal(token: String, body: JSONValue) throws(DiscordError) -> JSONValue {
        let record = try tokenInteraction(token)
        let message = JSONValue.object([
            "id": .id(record.id), "channel_id": .id(record.channelID), "guild_id": .id(guild.id), "author": SandboxGuild.json(guild.bot),
            "content": body["content"] ?? .string(""), "embeds": body["embeds"] ?? .array([]), "components": body["components"] ?? .array([]),
            "timestamp": .string(DiscordTime.iso(record.createdAt)), "edited_timestamp": .string(DiscordTime.iso(DiscordTime.nowMilliseconds())),
            "type": .integer(20), "flags": body["flags"] ?? .integer(0), "webhook_id": .id(applicationID),
        ])
        interactions[record.id]?.followUps.append(.object(["kind": .string("edit_original"), "body": body, "message": message]))
        return message
    }

    private func tokenInteraction(_ token: String) throws(DiscordError) -> InteractionRecord {
        guard let record = interactions.values.first(where: { $0.token == token }) else { throw .unknownWebhook }
        guard DiscordTime.nowMilliseconds() - record.createdAt < InteractionRecord.tokenValidFor else { throw .invalidWebhookToken }
        guard !record.responses.isEmpty else { throw .unknownWebhook }
        return record
    }

    /// The message an answer makes in the channel; ephemeral ones (flag 64) reach only the user.
    @discardableResult
    private mutating func postAnswerMessage(_ record: InteractionRecord, body: JSONValue) throws(DiscordError) -> JSONValue {
        let flags = body["flags"]?.int ?? 0
        let extra: [String: JSONValue] = [
            "webhook_id": .id(applicationID), "application_id": .id(applicationID),
            "interaction_metadata": .object([
                "id": .id(record.id), "type": .integer(record.type),
                // A guild install's interaction: owned by the guild (key 0, GUILD_INSTALL).
                "authorizing_integration_owners": .object(["0": .id(guild.id)]),
            ]),
        ]
        let content = body["content"]?.stringValue ?? ""
        if flags & 64 != 0 {
            guard content.count <= 2000 else {
                throw .invalidForm(field: "content", code: "BASE_TYPE_MAX_LENGTH", message: "Must be 2000 or fewer in length.")
            }
            return JSONValue.object([
                "id": .id(nextID()), "channel_id": .id(record.channelID), "author": SandboxGuild.json(guild.bot),
                "content": .string(content), "embeds": body["embeds"] ?? .array([]), "components": body["components"] ?? .array([]),
                "flags": .integer(flags), "type": .integer(0), "attachments": .array([]), "mentions": .array([]),
                "mention_roles": .array([]), "mention_everyone": .bool(false), "pinned": .bool(false), "tts": .bool(false),
                "timestamp": .string(DiscordTime.iso(DiscordTime.nowMilliseconds())), "edited_timestamp": .null,
            ]).merging(extra)
        }
        return try postMessage(
            channel: record.channelID, author: guild.bot, content: content, components: body["components"] ?? .array([]),
            embeds: body["embeds"] ?? .array([]), flags: flags, extra: extra
        )
    }
}
