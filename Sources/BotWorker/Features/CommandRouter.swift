import FoundationEssentials
import IPC
import Logging

/// An interaction as a handler sees it: a slash command (type 2) or a component press (type 3).
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
    /// Component: its `custom_id`.
    var customID: String?

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

/// What a handler answers: a message (ephemeral when only the member should see it).
struct InteractionReply: Sendable, Equatable {
    var content: String
    var ephemeral: Bool
    var components: JSONValue?

    static func ephemeral(_ content: String) -> InteractionReply { .init(content: content, ephemeral: true, components: nil) }
    static func visible(_ content: String) -> InteractionReply { .init(content: content, ephemeral: false, components: nil) }

    var message: JSONValue {
        var object: [String: JSONValue] = [
            "content": .string(String(content.prefix(2000))),
            "allowed_mentions": .object(["parse": .array([])]),
        ]
        if ephemeral { object["flags"] = .integer(64) }
        if let components { object["components"] = components }
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
/// `deferAfter` gets a deferred answer ("thinking…") and its result as the follow-up. A handler
/// that throws is answered ephemerally in plain words and counted as failed; its error is logged
/// with the command, guild and user.
actor CommandRouter {
    typealias Handler = @Sendable (Interaction) async throws -> InteractionReply

    private var commands: [String: (feature: String, definition: JSONValue, handler: Handler)] = [:]
    private var components: [(prefix: String, feature: String, handler: Handler)] = []
    private var rest: DiscordREST?
    private let logger: Logger
    private let audit: Logger
    private let deferAfter: Duration
    /// The worker's test-only faults, given at start (`command-throws` wraps every handler).
    private let faults: WorkerFaults
    private(set) var succeeded = 0
    private(set) var failed = 0

    init(logger: Logger, audit: Logger, deferAfter: Duration = .milliseconds(2000), faults: WorkerFaults = .none) {
        self.logger = logger
        self.audit = audit
        self.deferAfter = deferAfter
        self.faults = faults
    }

    /// A slash command: `definition` is Discord's application command JSON (name, description,
    /// options, `default_member_permissions`).
    func register(command definition: JSONValue, feature: String, _ handler: @escaping Handler) {
        guard let name = definition["name"]?.stringValue else { return }
        commands[name] = (feature, definition, handler)
    }

    /// Component presses whose `custom_id` starts with `prefix` (e.g. "verification:").
    func register(componentPrefix prefix: String, feature: String, _ handler: @escaping Handler) {
        components.append((prefix, feature, handler))
    }

    var definitions: [JSONValue] { commands.keys.sorted().compactMap { commands[$0]?.definition } }

    func attach(_ rest: DiscordREST) {
        self.rest = rest
    }

    /// Bulk-overwrites the guild's commands with the registered ones.
    func synchronize(application: ApplicationID, guild: GuildID) async {
        guard let rest else { return }
        do {
            try await rest.overwriteGuildCommands(application: application, guild: guild, .array(definitions))
            logger.info("slash commands registered", metadata: ["guild_id": "\(guild)", "commands": "\(commands.count)"])
        } catch {
            logger.error("slash commands could not be registered", metadata: ["guild_id": "\(guild)", "error": "\(error)"])
        }
    }

    func handle(_ json: JSONValue) async {
        guard let rest else { return }
        guard let interaction = Interaction(json) else {
            logger.warning("interaction skipped: it did not decode")
            return
        }
        let route: (name: String, feature: String, handler: Handler)?
        switch interaction.type {
        case 2: route = interaction.commandName.flatMap { name in commands[name].map { (name, $0.feature, $0.handler) } }
        case 3: route = interaction.customID.flatMap { id in components.first { id.hasPrefix($0.prefix) }.map { (id, $0.feature, $0.handler) } }
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
        let (outcome, deferred) = await run(handler, interaction, rest: rest)
        let reply: InteractionReply
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
        do {
            if deferred {
                try await rest.followUp(application: interaction.applicationID, token: interaction.token, reply.message)
            } else {
                try await rest.respond(to: interaction.id, token: interaction.token, Self.callback(reply))
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
    private func run(_ handler: @escaping Handler, _ interaction: Interaction, rest: DiscordREST) async -> (Result<InteractionReply, any Error>?, deferred: Bool) {
        let deferAfter = self.deferAfter
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
        .object(["type": .integer(4), "data": reply.message])
    }
}
