import FoundationEssentials
import GRDB
import IPC
import Logging

/// Role connections: rules that give a role while conditions hold (has or lacks a role, XP level,
/// verified, account age, time in the server) and take it when they stop holding.
///
/// A member is evaluated when they join or change, reach a level, get verified, when a rule
/// changes, when a guild becomes available, and in a sweep over every member every
/// `sweepInterval`. The plan is computed from the member's roles as they are, so the
/// GUILD_MEMBER_UPDATE the bot's own change causes plans nothing once the rules agree. Rules that
/// could flip roles back and forth, or name a role the bot cannot give, are refused when added;
/// a server has at most `RuleLimit.perGuild` rules. What still loops (rules the check cannot
/// see through, another bot undoing a change) stops at `RuleChains.maxDepth` changes in a row,
/// with an alert in the supervisor naming the chain. Every change a rule makes is kept, with its
/// reason, for `/roleconnection history` (`RoleChangeHistory`).
struct RoleConnectionsFeature: Feature {
    static let name = "role_connections"
    static let sweepInterval = Duration.seconds(600)

    /// An evaluation running for a member, and what arrived for them meanwhile.
    struct Running: Sendable {
        var pending: RuleChains.Trigger?
    }

    let context: FeatureContext
    let rules = Locked<[GuildID: [RoleRule]]>([:])
    /// The members being evaluated now (`evaluate(_:_:)`, in RoleConnectionsFeature+Evaluation.swift).
    let evaluating = Locked<[RuleChains.MemberKey: Running]>([:])
    /// The changes rules made in a row for each member, stopped at `RuleChains.maxDepth`.
    let chains = Locked(RuleChains())
    /// Whether the periodic sweep runs (in the core's background group, which stops it).
    let sweeping = Locked(false)

    init(context: FeatureContext) { self.context = context }

    static func registerMigrations(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("role_connections-v1") { db in
            try db.create(table: "role_rules") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("guild_id", .text).notNull().indexed()
                t.column("target_role_id", .text).notNull()
                t.column("combinator", .text).notNull()
                t.column("conditions", .text).notNull()  // JSON
                t.column("created_at", .text).notNull()
                t.column("created_by", .text).notNull()
            }
            // What the other features announced: levels and verifications, by event.
            try db.create(table: "role_member_facts", options: .withoutRowID) { t in
                t.column("guild_id", .text).notNull()
                t.column("user_id", .text).notNull()
                t.column("level", .integer).notNull().defaults(to: 0)
                t.column("verified", .boolean).notNull().defaults(to: false)
                t.primaryKey(["guild_id", "user_id"])
            }
            try AppDatabase.registerTable(db, name: "role_rules", feature: name, critical: true)
            try AppDatabase.registerTable(db, name: "role_member_facts", feature: name, critical: false)
        }
        migrator.registerMigration("role_connections-v2") { db in
            // The role changes the rules made, and why: /roleconnection history.
            try db.create(table: "role_rule_changes") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("guild_id", .text).notNull()
                t.column("user_id", .text).notNull()
                t.column("role_id", .text).notNull()
                t.column("added", .boolean).notNull()
                t.column("rule_id", .integer).notNull()
                t.column("reason", .text).notNull()
                t.column("at", .text).notNull().indexed()
            }
            try db.create(index: "role_rule_changes_member", on: "role_rule_changes", columns: ["guild_id", "user_id", "id"])
            try AppDatabase.registerTable(db, name: "role_rule_changes", feature: name, critical: false)
        }
    }

    // MARK: - Commands

    static let command: JSONValue = {
        func option(_ type: Int, _ name: String, _ description: String, required: Bool = false, extra: [String: JSONValue] = [:]) -> JSONValue {
            .object(["type": .integer(type), "name": .string(name), "description": .string(description), "required": .bool(required)].merging(extra) { $1 })
        }
        return .object([
            "name": .string("roleconnection"), "type": .integer(1), "contexts": .array([.integer(0)]),
            "description": .string("Roles given while conditions hold"),
            "default_member_permissions": .string(String(DiscordAccess.manageRoles)),
            "options": .array([
                .object(["type": .integer(1), "name": .string("add"), "description": .string("Add a rule"), "options": .array([
                    option(8, "role", "The role to give while the conditions hold", required: true),
                    option(3, "mode", "all: every condition; any: at least one", extra: ["choices": .array([
                        .object(["name": .string("all"), "value": .string("all")]), .object(["name": .string("any"), "value": .string("any")]),
                    ])]),
                    option(8, "has_role", "Condition: has this role"),
                    option(8, "lacks_role", "Condition: lacks this role"),
                    option(3, "has_any_of", "Condition: has any of these roles (mention them)"),
                    option(4, "min_level", "Condition: XP level at least", extra: ["min_value": .integer(1)]),
                    option(5, "verified", "Condition: verified"),
                    option(4, "min_account_age_days", "Condition: account at least this many days old", extra: ["min_value": .integer(1)]),
                    option(4, "min_member_days", "Condition: member for at least this many days", extra: ["min_value": .integer(1)]),
                ])]),
                .object(["type": .integer(1), "name": .string("remove"), "description": .string("Remove a rule"), "options": .array([
                    option(4, "rule", "The rule's number (see list)", required: true),
                ])]),
                .object(["type": .integer(1), "name": .string("list"), "description": .string("List the rules")]),
                .object(["type": .integer(1), "name": .string("test"), "description": .string("Which rules match a member, changing nothing"), "options": .array([
                    option(6, "member", "The member to test", required: true),
                ])]),
                .object(["type": .integer(1), "name": .string("history"), "description": .string("The last role changes the rules made for a member, and why"), "options": .array([
                    option(6, "member", "The member", required: true),
                ])]),
            ]),
        ])
    }()

    func setup() async throws {
        let feature = self
        await context.commands.register(command: Self.command, feature: Self.name) { interaction in
            guard let guild = interaction.guild else { throw CommandRefusal(description: "Role connections exist only in a server.") }
            switch interaction.subcommand {
            case "add": return try await feature.add(interaction, guild: guild)
            case "remove": return try await feature.remove(interaction, guild: guild)
            case "list": return feature.list(guild: guild)
            case "test": return try await feature.test(interaction, guild: guild)
            case "history": return try await feature.history(interaction, guild: guild)
            default: throw CommandRefusal(description: "Unknown sub-command.")
            }
        }
        await context.events.subscribe([.guildAvailable, .memberJoined, .memberUpdated, .levelReached, .memberVerified], feature: Self.name) { event in
            switch event {
            case .guildAvailable(_, let members):
                for member in members { await feature.evaluate(member, .other) }
                feature.startSweeping()
            case .memberJoined(let member):
                await feature.evaluate(member, .other)
            case .memberUpdated(let member):
                await feature.evaluate(member, .memberUpdate)
            case .levelReached(let guild, let user, let level):
                try await feature.storeFact(guild: guild, user: user, level: level)
                await feature.evaluate(user: user, in: guild)
            case .memberVerified(let guild, let user):
                try await feature.storeFact(guild: guild, user: user, verified: true)
                await feature.evaluate(user: user, in: guild)
            default:
                break
            }
        }
    }

    static func conditions(of interaction: Interaction) -> [RoleRule.Condition] {
        var conditions: [RoleRule.Condition] = []
        if let role = interaction.option("has_role")?.stringValue.flatMap(RoleID.init) { conditions.append(.hasRole(role)) }
        if let role = interaction.option("lacks_role")?.stringValue.flatMap(RoleID.init) { conditions.append(.lacksRole(role)) }
        if let text = interaction.option("has_any_of")?.stringValue {
            let roles = text.split(whereSeparator: { !$0.isNumber }).compactMap { RoleID(String($0)) }
            if !roles.isEmpty { conditions.append(.hasAnyRole(roles)) }
        }
        if let level = interaction.option("min_level")?.intValue { conditions.append(.levelAtLeast(level)) }
        if interaction.option("verified") == .bool(true) { conditions.append(.verified) }
        if let days = interaction.option("min_account_age_days")?.intValue { conditions.append(.accountAgeAtLeast(days: days)) }
        if let days = interaction.option("min_member_days")?.intValue { conditions.append(.memberForAtLeast(days: days)) }
        return conditions
    }

    private func add(_ interaction: Interaction, guild: GuildID) async throws -> InteractionReply {
        guard let target = interaction.option("role")?.stringValue.flatMap(RoleID.init) else {
            throw CommandRefusal(description: "Name the role the rule gives.")
        }
        let conditions = Self.conditions(of: interaction)
        guard !conditions.isEmpty else { throw CommandRefusal(description: "Give at least one condition (has_role, lacks_role, has_any_of, min_level, verified, min_account_age_days, min_member_days).") }
        let combinator = RoleRule.Combinator(rawValue: interaction.option("mode")?.stringValue ?? "all") ?? .all
        if let why = await context.discord.cannotManage(target, in: guild) {
            throw CommandRefusal(description: "The rule was not added: \(why).")
        }
        var rule = RoleRule(id: nil, guild: guild, target: target, combinator: combinator, conditions: conditions)
        let existing = rules.withLock { $0[guild] ?? [] }
        if let refusal = RuleLimit.refusal(existing: existing.count) { throw CommandRefusal(description: refusal) }
        if let why = RuleEngine.oscillation(adding: rule, to: existing) {
            throw CommandRefusal(description: "The rule was not added: \(why).")
        }
        let json = String(decoding: try JSONEncoder().encode(conditions), as: UTF8.self)
        let by = interaction.user.description
        // Counted again in the transaction: two adds at once cannot both take the last place.
        let inserted = try await context.database.write("role_connections.add-rule") { db -> Result<Int64, CommandRefusal> in
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM role_rules WHERE guild_id = ?", arguments: [guild.description]) ?? 0
            if let refusal = RuleLimit.refusal(existing: count) { return .failure(CommandRefusal(description: refusal)) }
            try db.execute(sql: "INSERT INTO role_rules (guild_id, target_role_id, combinator, conditions, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [guild.description, target.description, combinator.rawValue, json, Timestamp.string(), by])
            return .success(db.lastInsertedRowID)
        }.value
        let id = try inserted.get()
        rule.id = id
        rules.withLock { $0[guild, default: []].append(rule) }
        context.audit.info("role rule added", metadata: ["guild_id": "\(guild)", "user_id": "\(interaction.user)", "command": "roleconnection add", "rule": "\(id)", "target_role_id": "\(target)"])
        context.logger.info("rule added; sweeping the guild", metadata: ["guild_id": "\(guild)", "rule": "\(id)"])
        sweepSoon(guild)
        return .ephemeral("Rule #\(id) added: \(rule.description). Members are being updated.")
    }

    private func remove(_ interaction: Interaction, guild: GuildID) async throws -> InteractionReply {
        guard let id = interaction.option("rule")?.intValue.map(Int64.init) else { throw CommandRefusal(description: "Give the rule's number.") }
        let removed = try await context.database.write("role_connections.remove-rule") { db -> Int in
            try db.execute(sql: "DELETE FROM role_rules WHERE id = ? AND guild_id = ?", arguments: [id, guild.description])
            return db.changesCount
        }.value
        guard removed == 1 else { throw CommandRefusal(description: "There is no rule #\(id) in this server (see /roleconnection list).") }
        rules.withLock { $0[guild]?.removeAll { $0.id == id } }
        context.audit.info("role rule removed", metadata: ["guild_id": "\(guild)", "user_id": "\(interaction.user)", "command": "roleconnection remove", "rule": "\(id)"])
        sweepSoon(guild)
        return .ephemeral("Rule #\(id) removed. Roles it gave are taken back from members no other rule gives them to.")
    }

    private func list(guild: GuildID) -> InteractionReply {
        let current = rules.withLock { $0[guild] ?? [] }
        guard !current.isEmpty else { return .ephemeral("No role connections yet: add one with /roleconnection add.") }
        // A message holds 2000 characters: up to 100 rules may not fit.
        var text = ""
        for (shown, rule) in current.enumerated() {
            let line = "#\(rule.id ?? 0): \(rule.description)\n"
            guard text.count + line.count <= 1900 else {
                text += "… and \(current.count - shown) more (\(current.count) of \(RuleLimit.perGuild) rules)."
                break
            }
            text += line
        }
        return .ephemeral(text)
    }

    private func test(_ interaction: Interaction, guild: GuildID) async throws -> InteractionReply {
        guard let user = interaction.option("member")?.stringValue.flatMap(UserID.init) else { throw CommandRefusal(description: "Name a member.") }
        guard let member = try await context.discord.member(user, of: guild) else { throw CommandRefusal(description: "<@\(user)> is not in this server.") }
        let facts = try await self.facts(for: member)
        let current = rules.withLock { $0[guild] ?? [] }
        let now = Date()
        let lines = current.map { rule in "#\(rule.id ?? 0) \(RuleEngine.holds(rule, for: facts, now: now) ? "matches" : "does not match"): \(rule.description)" }
        let plan = RuleEngine.plan(current, for: facts, now: now)
        let change = plan.isEmpty ? "nothing would change" : "would give " + plan.add.map { "<@&\($0)>" }.joined(separator: ", ")
            + (plan.remove.isEmpty ? "" : "; would take " + plan.remove.map { "<@&\($0)>" }.joined(separator: ", "))
        return .ephemeral((lines.isEmpty ? ["No rules."] : lines).joined(separator: "\n") + "\n→ " + change)
    }

    private func history(_ interaction: Interaction, guild: GuildID) async throws -> InteractionReply {
        guard let user = interaction.option("member")?.stringValue.flatMap(UserID.init) else { throw CommandRefusal(description: "Name a member.") }
        let lines = try await context.database.read("role_connections.history") { db in
            try RoleChangeHistory.recent(db, guild: guild, user: user)
        }
        guard !lines.isEmpty else { return .ephemeral("The rules have not changed <@\(user)>'s roles (the last \(RoleChangeHistory.keptDays) days are kept).") }
        return .ephemeral("The last \(lines.count) role changes the rules made for <@\(user)>, oldest first:\n" + lines.joined(separator: "\n"))
    }

    func verifyDatabase(_ db: Database) throws -> [String] {
        try ["role_rules", "role_member_facts", "role_rule_changes"].filter { try !db.tableExists($0) }.map { "table \($0) is missing" }
    }

    func loadSettings() async throws {
        let loaded = try await context.database.read("role_connections.load-rules") { db in
            try Row.fetchAll(db, sql: "SELECT id, guild_id, target_role_id, combinator, conditions FROM role_rules ORDER BY id").map { row in
                (id: row["id"] as Int64, guild: row["guild_id"] as String, target: row["target_role_id"] as String,
                 combinator: row["combinator"] as String, conditions: row["conditions"] as String)
            }
        }
        var byGuild: [GuildID: [RoleRule]] = [:]
        for row in loaded {
            guard let guild = GuildID(row.guild), let target = RoleID(row.target),
                  let conditions = try? JSONLine.decode([RoleRule.Condition].self, from: Data(row.conditions.utf8))
            else {
                context.logger.error("a stored rule does not decode; it is skipped", metadata: ["rule": "\(row.id)"])
                continue
            }
            byGuild[guild, default: []].append(RoleRule(
                id: row.id, guild: guild, target: target,
                combinator: RoleRule.Combinator(rawValue: row.combinator) ?? .all, conditions: conditions
            ))
        }
        rules.withLock { $0 = byGuild }
    }

    func cleanup() async {
        // The periodic sweep is a child of the core's background group, cancelled with it.
    }
}
