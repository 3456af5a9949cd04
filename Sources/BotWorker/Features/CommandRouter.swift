import FoundationEssentials
import IPC
import Logging

/// An interaction as a handler sees it: a slash command (type 2), a component press (type 3) or
/// a modal submitted (type 5).
struct Interaction: Sendable {
    var id: InteractionID
    var token: String
    var type: Int
    var applicationID: ApplicationID
    var guild: GuildID?
    var channel: ChannelID?
    var user: UserID
    var memberRoles: Set<RoleID>
    /// The member's permissions in the channel, a bitset.
    var memberPermissions: UInt64
    /// Slash command: its name and options (`[{name, type, value}]`, sub-commands nested).
    var commandName: String?
    var options: [JSONValue]
    /// Component or modal: its `custom_id`.
    var customID: String?
    /// Modal submitted: its text inputs' values by `custom_id`.
    var fields: [String: String] = [:]
    /// Still in Discord's membership screening (`member.pending`).
    var memberPending = false
    /// When the member joined the guild (`member.joined_at`).
    var memberJoinedAt: Date?
    /// Slash command: the objects its options refer to (`data.resolved`: attachments, users…).
    var resolved: JSONValue = .null

    init?(_ json: JSONValue) {
        guard let id = json["id"]?.stringValue.flatMap(InteractionID.init), let token = json["token"]?.stringValue,
              let type = json["type"]?.intValue, let application = json["application_id"]?.stringValue.flatMap(ApplicationID.init),
              let user = (json["member"]?["user"]?["id"] ?? json["user"]?["id"])?.stringValue.flatMap(UserID.init)
        else { return nil }
        self.id = id
        self.token = token
        self.type = type
        applicationID = application
        guild = json["guild_id"]?.stringValue.flatMap(GuildID.init)
        channel = json["channel_id"]?.stringValue.flatMap(ChannelID.init)
        self.user = user
        if case .array(let roles)? = json["member"]?["roles"] {
            memberRoles = Set(roles.compactMap { $0.stringValue.flatMap(RoleID.init) })
        } else {
            memberRoles = []
        }
        memberPermissions = json["member"]?["permissions"]?.stringValue.flatMap(UInt64.init) ?? 0
        commandName = json["data"]?["name"]?.stringValue
        if case .array(let options)? = json["data"]?["options"] { self.options = options } else { options = [] }
        customID = json["data"]?["custom_id"]?.stringValue
        memberPending = json["member"]?["pending"] == .bool(true)
        memberJoinedAt = json["member"]?["joined_at"]?.stringValue.flatMap(Timestamp.parse)
        if type == 5 { fields = Self.submittedFields(json["data"]?["components"] ?? .null) }
        resolved = json["data"]?["resolved"] ?? .null
    }

    /// A file a member attached to option `name` (an ATTACHMENT option, type 11).
    struct Attachment: Sendable, Equatable {
        var filename: String
        var size: Int
        var url: String
    }

    func attachment(_ name: String) -> Attachment? {
        guard let id = option(name)?.stringValue, let object = resolved["attachments"]?[id],
              let url = object["url"]?.stringValue else { return nil }
        return Attachment(filename: object["filename"]?.stringValue ?? "file", size: object["size"]?.intValue ?? 0, url: url)
    }

    /// The value a member typed into the modal's text input `customID`.
    func field(_ customID: String) -> String? { fields[customID] }

    /// MODAL_SUBMIT's `data.components`: action rows of text inputs (`{custom_id, value}`), or
    /// labels holding one `component`.
    static func submittedFields(_ components: JSONValue) -> [String: String] {
        var found: [String: String] = [:]
        func walk(_ value: JSONValue) {
            guard case .array(let items) = value else { return }
            for item in items {
                if let id = item["custom_id"]?.stringValue, let text = item["value"]?.stringValue { found[id] = text }
                walk(item["components"] ?? .null)
                if let inner = item["component"] { walk(.array([inner])) }
            }
        }
        walk(components)
        return found
    }

    /// The value of option `name`, looking into sub-commands.
    func option(_ name: String) -> JSONValue? {
        func find(_ options: [JSONValue]) -> JSONValue? {
            for option in options {
                if option["name"]?.stringValue == name { return option["value"] }
                if case .array(let nested)? = option["options"], let value = find(nested) { return value }
            }
            return nil
        }
        return find(options)
    }

    /// The sub-command invoked (`/verification setup` → "setup").
    var subcommand: String? {
        options.first { $0["type"]?.intValue == 1 }?["name"]?.stringValue
    }
}

/// What a handler answers: a message (ephemeral when only the member should see it), or a modal
/// (to a command or a component press, never to a modal submitted).
struct InteractionReply: Sendable, Equatable {
    var content: String
    var ephemeral: Bool
    var components: JSONValue?
    /// Files attached to the message (an export, say).
    var files: [DiscordREST.Upload] = []

    static func ephemeral(_ content: String) -> InteractionReply { .init(content: content, ephemeral: true, components: nil) }
    static func visible(_ content: String) -> InteractionReply { .init(content: content, ephemeral: false, components: nil) }

    /// A modal: callback type 9 with `{custom_id, title, components}` (action rows of text
    /// inputs) as its data. It cannot follow a deferral, so its route must answer within 3 s
    /// (`register(componentPrefix:feature:opensModals: true)`).
    var modal: JSONValue?

    static func modal(_ data: JSONValue) -> InteractionReply {
        var reply = InteractionReply(content: "", ephemeral: true, components: nil)
        reply.modal = data
        return reply
    }

    var message: JSONValue {
        var object: [String: JSONValue] = [
            "content": .string(String(content.prefix(2000))),
            "allowed_mentions": .object(["parse": .array([])]),
        ]
        if ephemeral { object["flags"] = .integer(64) }
        if let components { object["components"] = components }
        if !files.isEmpty {
            object["attachments"] = .array(files.enumerated().map { .object(["id": .string(String($0.offset)), "filename": .string($0.element.filename)]) })
        }
        return .object(object)
    }
}

/// A failure a handler reports to the member in plain words (ephemeral); not counted as a bug.
struct CommandRefusal: Error, CustomStringConvertible {
    var description: String
}

/// Routes interactions to the features that registered them, and registers the features' slash
/// commands in every guild (one bulk overwrite per guild on start).
///
/// Every interaction is answered within Discord's 3 s: a handler that takes longer than
/// `deferAfter` gets a deferred answer ("thinking…") and its result as the follow-up. A modal
/// cannot follow a deferral: routes that may answer with one (`opensModals`) are deferred only
/// after `modalDeferAfter`, as late as Discord's 3 s allow, and a modal that comes later still is
/// replaced by a message asking to try again. A handler that throws is answered ephemerally in plain words and counted as failed; its error is logged
/// with the command, guild and user.
actor CommandRouter {
    typealias Handler = @Sendable (Interaction) async throws -> InteractionReply

    private var commands: [String: (feature: String, definition: JSONValue, handler: Handler)] = [:]
    private var components: [(prefix: String, feature: String, opensModals: Bool, handler: Handler)] = []
    private var modals: [(prefix: String, feature: String, handler: Handler)] = []
    private var rest: DiscordREST?
    private let logger: Logger
    private let audit: Logger
    private let deferAfter: Duration
    private let modalDeferAfter: Duration
    /// The worker's test-only faults, given at start (`command-throws` wraps every handler).
    private let faults: WorkerFaults
    private(set) var succeeded = 0
    private(set) var failed = 0

    init(logger: Logger, audit: Logger, deferAfter: Duration = .milliseconds(2000), modalDeferAfter: Duration = .milliseconds(2600), faults: WorkerFaults = .none) {
        self.logger = logger
        self.audit = audit
        self.deferAfter = deferAfter
        self.modalDeferAfter = max(deferAfter, modalDeferAfter)
        self.faults = faults
    }

    /// A slash command: `definition` is Discord's application command JSON (name, description,
    /// options, `default_member_permissions`).
    func register(command definition: JSONValue, feature: String, _ handler: @escaping Handler) {
        guard let name = definition["name"]?.stringValue else { return }
        commands[name] = (feature, definition, handler)
    }

    /// Component presses whose `custom_id` starts with `prefix` (e.g. "verification:"). With
    /// `opensModals` the handler may answer with a modal, and must do so quickly (see above).
    func register(componentPrefix prefix: String, feature: String, opensModals: Bool = false, _ handler: @escaping Handler) {
        components.append((prefix, feature, opensModals, handler))
    }

    /// Modals submitted (interaction type 5) whose `custom_id` starts with `prefix`; the handler
    /// reads the values with `interaction.field(_:)`.
    func register(modalPrefix prefix: String, feature: String, _ handler: @escaping Handler) {
        modals.append((prefix, feature, handler))
    }

    var definitions: [JSONValue] { commands.keys.sorted().compactMap { commands[$0]?.definition } }

    func attach(_ rest: DiscordREST) {
        self.rest = rest
    }

    /// Bulk-overwrites the guild's commands with the registered ones; true once Discord took them.
    @discardableResult
    func synchronize(application: ApplicationID, guild: GuildID) async -> Bool {
        guard let rest else { return false }
        do {
            try await rest.overwriteGuildCommands(application: application, guild: guild, .array(definitions))
            logger.info("slash commands registered", metadata: ["guild_id": "\(guild)", "commands": "\(commands.count)"])
            return true
        } catch {
            logger.error("slash commands could not be registered", metadata: ["guild_id": "\(guild)", "error": "\(error)"])
            return false
        }
    }

    /// A fingerprint of the registered commands (FNV-1a of their JSON with sorted keys): a guild
    /// whose commands were synchronized with the same fingerprint needs no new overwrite.
    var definitionsFingerprint: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let bytes = (try? encoder.encode(definitions)) ?? Data()
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return String(hash, radix: 16)
    }

    func handle(_ json: JSONValue) async {
        guard let rest else { return }
        guard let interaction = Interaction(json) else {
            logger.warning("interaction skipped: it did not decode")
            return
        }
        let route: (name: String, feature: String, handler: Handler)?
        var opensModals = false
        switch interaction.type {
        case 2: route = interaction.commandName.flatMap { name in commands[name].map { (name, $0.feature, $0.handler) } }
        case 3:
            let component = interaction.customID.flatMap { id in components.first { id.hasPrefix($0.prefix) } }
            opensModals = component?.opensModals ?? false
            route = component.map { (interaction.customID ?? "", $0.feature, $0.handler) }
        case 5: route = interaction.customID.flatMap { id in modals.first { id.hasPrefix($0.prefix) }.map { (id, $0.feature, $0.handler) } }
        default: route = nil
        }
        var context: Logger.Metadata = [
            "guild_id": "\(interaction.guild?.description ?? "-")", "user_id": "\(interaction.user)",
            "command": "\(route?.name ?? interaction.commandName ?? interaction.customID ?? "?")",
        ]
        guard let route else {
            logger.warning("interaction for nothing this bot handles", metadata: context)
            try? await rest.respond(to: interaction.id, token: interaction.token, Self.callback(.ephemeral("This command is not available right now.")))
            return
        }
        context["feature"] = "\(route.feature)"
        let handler = faults.command(route.handler)
        let (outcome, deferred) = await run(handler, interaction, deferAfter: opensModals ? modalDeferAfter : deferAfter, rest: rest)
        var reply: InteractionReply
        switch outcome {
        case .success(let value)?:
            succeeded += 1
            reply = value
        case .failure(let refusal as CommandRefusal)?:
            succeeded += 1
            reply = .ephemeral(refusal.description)
        case .failure(let error)?:
            failed += 1
            logger.error("command failed", metadata: context.merging(["error": "\(error)", "error_type": "\(type(of: error))"]) { $1 })
            reply = .ephemeral("Something went wrong while doing that; it was logged for the bot's operator. Please try again later.")
        case nil:
            failed += 1
            reply = .ephemeral("Something went wrong while doing that. Please try again later.")
        }
        if reply.modal != nil, deferred || interaction.type == 5 {
            // A modal can only be the first answer, and never to a modal submitted.
            logger.error("modal not shown", metadata: context.merging(["why": "\(deferred ? "deferred first" : "answers a modal")"]) { $1 })
            reply = .ephemeral("That took too long to open; please try again.")
        }
        do {
            if deferred {
                try await rest.followUp(application: interaction.applicationID, token: interaction.token, reply.message, files: reply.files)
            } else {
                try await rest.respond(to: interaction.id, token: interaction.token, Self.callback(reply), files: reply.files)
            }
        } catch {
            logger.error("could not answer the interaction", metadata: context.merging(["error": "\(error)"]) { $1 })
        }
    }

    /// What a child of `run`'s group reports: the handler's result, or that the deferral is due.
    private enum Progress: Sendable {
        case finished(Result<InteractionReply, any Error>)
        case deferNow
        case timerCancelled
    }

    /// Runs the handler and the deferral timer as children of one group: the first to report
    /// decides (the timer sends the deferred answer), and neither outlives the interaction.
    private func run(_ handler: @escaping Handler, _ interaction: Interaction, deferAfter: Duration, rest: DiscordREST) async -> (Result<InteractionReply, any Error>?, deferred: Bool) {
        return await withTaskGroup(of: Progress.self) { group in
            group.addTask {
                do {
                    return .finished(.success(try await handler(interaction)))
                } catch {
                    return .finished(.failure(error))
                }
            }
            group.addTask {
                guard (try? await Task.sleep(for: deferAfter)) != nil else { return .timerCancelled }
                return .deferNow
            }
            var deferred = false
            while let progress = await group.next() {
                switch progress {
                case .deferNow:
                    deferred = true
                    try? await rest.respond(to: interaction.id, token: interaction.token, .object([
                        "type": .integer(5), "data": .object(["flags": .integer(64)]),
                    ]))
                case .finished(let result):
                    group.cancelAll()
                    return (result, deferred)
                case .timerCancelled:
                    continue
                }
            }
            return (nil, deferred)
        }
    }

    static func callback(_ reply: InteractionReply) -> JSONValue {
        if let modal = reply.modal { return .object(["type": .integer(9), "data": modal]) }
        return .object(["type": .integer(4), "data": reply.message])
    }
}
