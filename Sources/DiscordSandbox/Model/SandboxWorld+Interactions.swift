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
    /// Who used it (a modal can be submitted only by whom it was shown to).
    var userID: UInt64 = 0
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
        /// A modal the bot showed this member, submitted with `fields` (MODAL_SUBMIT).
        case modal

        var type: Int {
            switch self {
            case .command: 2
            case .button: 3
            case .modal: 5
            }
        }
    }

    /// A member uses a slash command, presses a button or submits a modal the bot showed them:
    /// INTERACTION_CREATE to every session.
    mutating func createInteraction(
        user: UInt64, kind: InteractionKind, name: String?, options: JSONValue?, customID: String?,
        channel: UInt64?, message: UInt64?, fields: [String: String]? = nil
    ) throws(DiscordError) -> InteractionRecord {
        guard let member = guild.members[user] else { throw .unknownMember }
        let shown = kind == .modal ? try shownModal(to: user, customID: customID) : nil
        let channelID = channel ?? shown?.channelID ?? guild.channel(named: kind == .button ? "verify" : "general").id
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
            if let resolved = resolvedAttachments(in: options) { fields["resolved"] = .object(["attachments": resolved]) }
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
        case .modal:
            data = try Self.modalSubmitData(shown?.modal ?? .null, fields: fields ?? [:])
        }
        var memberJSON = SandboxGuild.json(member)
        memberJSON = memberJSON.merging(["permissions": .string(String(guild.permissions(of: member)))])
        let botMember = guild.members[guild.bot.id]
        payload.merge([
            "id": .id(id), "application_id": .id(applicationID), "type": .integer(kind.type), "data": data,
            "guild_id": .id(guild.id), "guild": .object(["id": .id(guild.id), "locale": .string("en-US"), "features": .array([])]),
            "channel_id": .id(channelID), "channel": guild.json(channelObject), "member": memberJSON, "token": .string(token),
            "version": .integer(1), "app_permissions": .string(String(botMember.map(guild.permissions(of:)) ?? 0)),
            "locale": .string("en-US"), "guild_locale": .string("en-US"), "entitlements": .array([]),
            "authorizing_integration_owners": .object(["0": .id(guild.id)]), "context": .integer(0),
            "attachment_size_limit": .integer(10_485_760),
        ]) { $1 }
        let record = InteractionRecord(
            id: id, token: token, type: kind.type, channelID: channelID, data: data,
            createdAt: Snowflake.unixMilliseconds(of: id), userID: user
        )
        interactions[id] = record
        interactionOrder.append(id)
        if interactionOrder.count > Self.keptRecords { interactions[interactionOrder.removeFirst()] = nil }
        gateway.dispatch("INTERACTION_CREATE", .object(payload), to: .all, guild: guild.id)
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
        if type == 9 {
            // MODAL: to a command or a component only, and only a well-formed modal.
            // (Discord documents the rule, not its error: a form error on `type` stands in.)
            guard record.type == 2 || record.type == 3 else {
                throw .invalidForm(field: "type", code: "BASE_TYPE_CHOICES", message: "A modal answers only a command or a component.")
            }
            try Self.checkModal(body["data"] ?? .null)
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
            "attachments": body["attachments"] ?? .array([]), "mentions": .array([]), "mention_roles": .array([]),
            "mention_everyone": .bool(false), "pinned": .bool(false), "tts": .bool(false),
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

// MARK: - Modals

extension SandboxWorld {
    /// The modal last shown to `user` (a type-9 answer), with `customID` when given.
    func shownModal(to user: UInt64, customID: String?) throws(DiscordError) -> (modal: JSONValue, channelID: UInt64) {
        for id in interactionOrder.reversed() {
            guard let record = interactions[id], record.userID == user,
                  let response = record.responses.first, response["type"]?.int == 9, let modal = response["data"] else { continue }
            if let customID, modal["custom_id"]?.stringValue != customID { continue }
            return (modal, record.channelID)
        }
        throw .invalidForm(field: "customID", code: "MODAL_NOT_SHOWN", message: "The bot showed this member no such modal.")
    }

    /// MODAL_SUBMIT's `data`: the modal's rows, each text input with its `value` (empty when the
    /// member left an optional one blank). Refused as Discord's client would: an unknown field,
    /// a required one empty, a value outside the input's lengths.
    static func modalSubmitData(_ modal: JSONValue, fields: [String: String]) throws(DiscordError) -> JSONValue {
        var known = Set<String>()
        var rows: [JSONValue] = []
        for row in modal["components"]?.array ?? [] {
            var inputs: [JSONValue] = []
            for input in row["components"]?.array ?? (row["component"].map { [$0] } ?? []) where input["type"]?.int == 4 {
                guard let customID = input["custom_id"]?.stringValue else { continue }
                known.insert(customID)
                let value = fields[customID] ?? input["value"]?.stringValue ?? ""
                let required = input["required"]?.bool ?? true
                if required && value.isEmpty {
                    throw .invalidForm(field: "fields", code: "BASE_TYPE_REQUIRED", message: "\(customID) is required.")
                }
                if !value.isEmpty, value.count < (input["min_length"]?.int ?? 0) || value.count > (input["max_length"]?.int ?? 4000) {
                    throw .invalidForm(field: "fields", code: "BASE_TYPE_BAD_LENGTH", message: "\(customID) must be between \(input["min_length"]?.int ?? 0) and \(input["max_length"]?.int ?? 4000) in length.")
                }
                inputs.append(.object([
                    "type": .integer(4), "id": input["id"] ?? .integer(0), "custom_id": .string(customID), "value": .string(value),
                ]))
            }
            rows.append(.object(["type": .integer(1), "id": row["id"] ?? .integer(0), "components": .array(inputs)]))
        }
        if let unknown = fields.keys.sorted().first(where: { !known.contains($0) }) {
            throw .invalidForm(field: "fields", code: "UNKNOWN_FIELD", message: "The modal has no text input \(unknown).")
        }
        return .object(["custom_id": modal["custom_id"] ?? .string(""), "components": .array(rows)])
    }

    /// Discord's checks of a MODAL callback's `data` (developers/interactions/receiving-and-responding,
    /// "Modal"; developers/components/reference, "Text Input"): a `custom_id` of 1–100 characters,
    /// a `title` of 1–45, 1–5 action rows each holding one text input with a `custom_id`, a style
    /// of 1 or 2, a label of 1–45 characters and lengths within 0–4000. A failure is the 400
    /// `Invalid Form Body` naming the field, as Discord gives it.
    static func checkModal(_ data: JSONValue) throws(DiscordError) {
        func fail(_ path: [String], _ code: String, _ message: String) -> DiscordError {
            var errors: JSONValue = .object(["_errors": .array([.object(["code": .string(code), "message": .string(message)])])])
            for key in path.reversed() { errors = .object([key: errors]) }
            return DiscordError(status: 400, code: 50035, message: "Invalid Form Body", errors: errors)
        }
        func text(_ value: JSONValue?, _ path: [String], min: Int, max: Int, required: Bool = true) throws(DiscordError) {
            guard let value, value != .null else {
                if required { throw fail(path, "BASE_TYPE_REQUIRED", "This field is required") }
                return
            }
            guard let string = value.stringValue else { throw fail(path, "BASE_TYPE_STRING", "Must be a string.") }
            if string.count < min || string.count > max {
                throw fail(path, "BASE_TYPE_BAD_LENGTH", "Must be between \(min) and \(max) in length.")
            }
        }
        try text(data["custom_id"], ["data", "custom_id"], min: 1, max: 100)
        try text(data["title"], ["data", "title"], min: 1, max: 45)
        guard let rows = data["components"]?.array, (1...5).contains(rows.count) else {
            throw fail(["data", "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
        }
        for (r, row) in rows.enumerated() {
            let rowPath = ["data", "components", String(r)]
            let inputs: [JSONValue]
            switch row["type"]?.int {
            case 1: inputs = row["components"]?.array ?? []
            case 18: inputs = row["component"].map { [$0] } ?? []  // a label around one component
            default: throw fail(rowPath + ["type"], "COMPONENT_TYPE_INVALID", "Modals take action rows or labels.")
            }
            guard inputs.count == 1 else {
                throw fail(rowPath + ["components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 1 in length.")
            }
            let input = inputs[0]
            let path = row["type"]?.int == 18 ? rowPath + ["component"] : rowPath + ["components", "0"]
            guard input["type"]?.int == 4 else { throw fail(path + ["type"], "COMPONENT_TYPE_INVALID", "A modal's action row holds a text input.") }
            try text(input["custom_id"], path + ["custom_id"], min: 1, max: 100)
            guard let style = input["style"]?.int, style == 1 || style == 2 else {
                throw fail(path + ["style"], "BASE_TYPE_CHOICES", "Value must be one of {1, 2}.")
            }
            try text(input["label"], path + ["label"], min: 1, max: 45, required: row["type"]?.int == 1)
            try text(input["placeholder"], path + ["placeholder"], min: 0, max: 100, required: false)
            try text(input["value"], path + ["value"], min: 0, max: 4000, required: false)
            for (key, low) in [("min_length", 0), ("max_length", 1)] {
                if let length = input[key], length != .null, !(length.int.map { (low...4000).contains($0) } ?? false) {
                    throw fail(path + [key], "NUMBER_TYPE_MAX", "Must be between \(low) and 4000.")
                }
            }
        }
    }
}
