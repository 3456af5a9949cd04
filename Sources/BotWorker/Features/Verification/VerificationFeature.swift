import FoundationEssentials
import GRDB
import IPC
import Logging


/// Member verification: a Verify button in a channel; pressing it gives the verified role (and
/// takes the unverified one) once the account is old enough. Members still in Discord's
/// membership screening get nothing until they pass it. Every attempt is stored and logged;
/// pressing again is harmless.
struct VerificationFeature: Feature {
    static let name = "verification"
    static let buttonID = "verification:verify"

    struct Settings: Sendable, Equatable {
        var guild: GuildID
        var channel: ChannelID
        var verifiedRole: RoleID
        var unverifiedRole: RoleID?
        var minAccountAgeDays: Int
    }

    enum Outcome: String, Sendable {
        case verified, alreadyVerified = "already-verified", tooYoung = "too-young", pending, notConfigured = "not-configured", failed
    }

    let context: FeatureContext
    private let settings = Locked<[GuildID: Settings]>([:])
    /// Members seen joining while still in membership screening: the update that clears
    /// `pending` is their real arrival.
    private let screening = Locked<Set<String>>([])

    init(context: FeatureContext) { self.context = context }

    static func registerMigrations(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("verification-v1") { db in
            try db.create(table: "verification_settings") { t in
                t.primaryKey("guild_id", .text)
                t.column("channel_id", .text).notNull()
                t.column("verified_role_id", .text).notNull()
                t.column("unverified_role_id", .text)
                t.column("min_account_age_days", .integer).notNull().defaults(to: 0)
                t.column("message_id", .text)
                t.column("updated_at", .text).notNull()
                t.column("updated_by", .text).notNull()
            }
            try db.create(table: "verified_members", options: .withoutRowID) { t in
                t.column("guild_id", .text).notNull()
                t.column("user_id", .text).notNull()
                t.column("verified_at", .text).notNull()
                t.primaryKey(["guild_id", "user_id"])
            }
            try db.create(table: "verification_attempts") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("guild_id", .text).notNull()
                t.column("user_id", .text).notNull()
                t.column("at", .text).notNull()
                t.column("outcome", .text).notNull()
                t.column("detail", .text)
            }
            try db.create(index: "verification_attempts_member", on: "verification_attempts", columns: ["guild_id", "user_id"])
            try AppDatabase.registerTable(db, name: "verification_settings", feature: name, critical: true)
            try AppDatabase.registerTable(db, name: "verified_members", feature: name, critical: true)
            try AppDatabase.registerTable(db, name: "verification_attempts", feature: name, critical: false)
        }
    }

    // MARK: - Commands

    static let command: JSONValue = .object([
        "name": .string("verification"), "type": .integer(1), "contexts": .array([.integer(0)]),
        "description": .string("Member verification"),
        "default_member_permissions": .string(String(DiscordAccess.manageRoles)),
        "options": .array([
            .object([
                "type": .integer(1), "name": .string("setup"), "description": .string("Post the Verify button and set the roles"),
                "options": .array([
                    .object(["type": .integer(7), "name": .string("channel"), "description": .string("Where the button goes"), "required": .bool(true)]),
                    .object(["type": .integer(8), "name": .string("verified_role"), "description": .string("Given on verification"), "required": .bool(true)]),
                    .object(["type": .integer(8), "name": .string("unverified_role"), "description": .string("Given on join, taken on verification"), "required": .bool(false)]),
                    .object(["type": .integer(4), "name": .string("min_account_age_days"), "description": .string("Accounts younger than this are refused"), "required": .bool(false), "min_value": .integer(0), "max_value": .integer(3650)]),
                ]),
            ]),
            .object([
                "type": .integer(1), "name": .string("status"), "description": .string("Whether a member is verified"),
                "options": .array([
                    .object(["type": .integer(6), "name": .string("member"), "description": .string("Whom to look up"), "required": .bool(false)]),
                ]),
            ]),
        ]),
    ])

    func setup() async throws {
        let feature = self
        await context.commands.register(command: Self.command, feature: Self.name) { interaction in
            switch interaction.subcommand {
            case "setup": try await feature.configure(interaction)
            case "status": try await feature.status(interaction)
            default: throw CommandRefusal(description: "Unknown sub-command.")
            }
        }
        await context.commands.register(componentPrefix: Self.buttonID, feature: Self.name) { interaction in
            try await feature.press(interaction)
        }
        await context.events.subscribe([.memberJoined, .memberUpdated, .memberLeft, .membersJoinedWhileAway], feature: Self.name) { event in
            switch event {
            case .membersJoinedWhileAway(_, let members):
                for member in members where !member.isBot && !member.pending { await feature.markUnverified(member) }
            case .memberJoined(let member) where member.isBot:
                break
            case .memberJoined(let member):
                if member.pending {
                    feature.screening.withLock { _ = $0.insert("\(member.guild)/\(member.user)") }
                } else {
                    await feature.markUnverified(member)
                }
            case .memberUpdated(let member) where !member.pending:
                // Screening just passed: the member arrives now.
                if feature.screening.withLock({ $0.remove("\(member.guild)/\(member.user)") }) != nil {
                    await feature.markUnverified(member)
                }
            case .memberLeft(let guild, let user):
                _ = feature.screening.withLock { $0.remove("\(guild)/\(user)") }
            default:
                break
            }
        }
    }

    private func configure(_ interaction: Interaction) async throws -> InteractionReply {
        guard let guild = interaction.guild else { throw CommandRefusal(description: "Verification is set up in a server.") }
        guard let channel = interaction.option("channel")?.stringValue.flatMap(ChannelID.init),
              let verified = interaction.option("verified_role")?.stringValue.flatMap(RoleID.init)
        else { throw CommandRefusal(description: "Give a channel and the role to give verified members.") }
        let unverified = interaction.option("unverified_role")?.stringValue.flatMap(RoleID.init)
        let minimumAge = interaction.option("min_account_age_days")?.intValue ?? 0
        for role in [verified] + (unverified.map { [$0] } ?? []) {
            if let why = await context.discord.cannotManage(role, in: guild) {
                throw CommandRefusal(description: "The bot cannot use <@&\(role)>: \(why).")
            }
        }
        if unverified == verified { throw CommandRefusal(description: "The verified and unverified roles must differ.") }
        let messageID = try await context.discord.send(to: channel, .object([
            "content": .string("Welcome! Press **Verify** to get access to the server."),
            "components": .array([.object(["type": .integer(1), "components": .array([.object([
                "type": .integer(2), "style": .integer(3), "label": .string("Verify"), "custom_id": .string(Self.buttonID),
            ])])])]),
            "allowed_mentions": .object(["parse": .array([])]),
        ]))
        let value = Settings(guild: guild, channel: channel, verifiedRole: verified, unverifiedRole: unverified, minAccountAgeDays: minimumAge)
        let by = interaction.user.description
        try await context.database.write("verification.setup", verify: { db in
            try String.fetchOne(db, sql: "SELECT verified_role_id FROM verification_settings WHERE guild_id = ?", arguments: [guild.description]) == verified.description
        }) { db in
            try db.execute(sql: """
                INSERT INTO verification_settings (guild_id, channel_id, verified_role_id, unverified_role_id, min_account_age_days, message_id, updated_at, updated_by)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (guild_id) DO UPDATE SET channel_id = excluded.channel_id, verified_role_id = excluded.verified_role_id,
                    unverified_role_id = excluded.unverified_role_id, min_account_age_days = excluded.min_account_age_days,
                    message_id = excluded.message_id, updated_at = excluded.updated_at, updated_by = excluded.updated_by
                """, arguments: [guild.description, channel.description, verified.description, unverified?.description, minimumAge,
                                 messageID?.description, Timestamp.string(), by])
        }
        settings.withLock { $0[guild] = value }
        context.audit.info("verification set up", metadata: [
            "guild_id": "\(guild)", "user_id": "\(interaction.user)", "command": "verification setup",
            "channel_id": "\(channel)", "verified_role_id": "\(verified)", "unverified_role_id": "\(unverified?.description ?? "-")",
            "min_account_age_days": "\(minimumAge)",
        ])
        return .ephemeral("Verification is set up: the button is in <#\(channel)>; verified members get <@&\(verified)>"
            + (unverified.map { ", new members get <@&\($0)> until then" } ?? "")
            + (minimumAge > 0 ? "; accounts must be at least \(minimumAge) days old." : "."))
    }

    private func status(_ interaction: Interaction) async throws -> InteractionReply {
        guard let guild = interaction.guild else { throw CommandRefusal(description: "Verification exists only in a server.") }
        let user = interaction.option("member")?.stringValue.flatMap(UserID.init) ?? interaction.user
        let (verifiedAt, attempts) = try await context.database.read("verification.status") { db in
            (try String.fetchOne(db, sql: "SELECT verified_at FROM verified_members WHERE guild_id = ? AND user_id = ?", arguments: [guild.description, user.description]),
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM verification_attempts WHERE guild_id = ? AND user_id = ?", arguments: [guild.description, user.description]) ?? 0)
        }
        if let verifiedAt { return .ephemeral("<@\(user)> is verified since \(verifiedAt) (\(attempts) attempt\(attempts == 1 ? "" : "s")).") }
        return .ephemeral("<@\(user)> is not verified (\(attempts) attempt\(attempts == 1 ? "" : "s")).")
    }

    /// The date from which an account made at `created` may verify, or nil when it may now.
    static func eligibleFrom(created: Date, minimumDays: Int, now: Date) -> Date? {
        let from = created.addingTimeInterval(Double(minimumDays) * 86400)
        return from > now ? from : nil
    }

    private func press(_ interaction: Interaction) async throws -> InteractionReply {
        guard let guild = interaction.guild, let settings = settings.withLock({ $0[guild] }) else {
            try await record(interaction.guild, interaction.user, .notConfigured, nil)
            throw CommandRefusal(description: "Verification is not set up in this server yet; ask a moderator.")
        }
        let user = interaction.user
        if interaction.memberRoles.contains(settings.verifiedRole) {
            try await record(guild, user, .alreadyVerified, nil)
            return .ephemeral("You are already verified.")
        }
        if let from = Self.eligibleFrom(created: user.createdAt, minimumDays: settings.minAccountAgeDays, now: Date()) {
            let day = Timestamp.string(from).prefix(10)
            try await record(guild, user, .tooYoung, "eligible from \(day)")
            return .ephemeral("Your account is too new to verify here: accounts must be at least \(settings.minAccountAgeDays) days old. You can verify from \(day).")
        }
        do {
            try await context.discord.addRole(guild: guild, user: user, role: settings.verifiedRole, reason: "verification: button pressed")
            if let unverified = settings.unverifiedRole, interaction.memberRoles.contains(unverified) {
                try await context.discord.removeRole(guild: guild, user: user, role: unverified, reason: "verification: verified")
            }
        } catch {
            try await record(guild, user, .failed, "\(error)")
            throw error
        }
        try await record(guild, user, .verified, nil)
        await context.events.publish(.memberVerified(guild: guild, user: user))
        return .ephemeral("You are verified. Welcome!")
    }

    /// Stores one attempt (and the verification itself) and logs it.
    private func record(_ guild: GuildID?, _ user: UserID, _ outcome: Outcome, _ detail: String?) async throws {
        let guildID = guild?.description ?? "-"
        let now = Timestamp.string()
        try await context.database.write("verification.attempt") { db in
            try db.execute(sql: "INSERT INTO verification_attempts (guild_id, user_id, at, outcome, detail) VALUES (?, ?, ?, ?, ?)",
                           arguments: [guildID, user.description, now, outcome.rawValue, detail])
            if outcome == .verified || outcome == .alreadyVerified {
                try db.execute(sql: "INSERT OR IGNORE INTO verified_members (guild_id, user_id, verified_at) VALUES (?, ?, ?)",
                               arguments: [guildID, user.description, now])
            }
        }
        context.logger.info("verification attempt", metadata: ["guild_id": "\(guildID)", "user_id": "\(user)", "outcome": "\(outcome.rawValue)"])
    }

    /// Gives a new (or newly screened) member the unverified role, unless they are verified.
    private func markUnverified(_ member: Member) async {
        guard let settings = settings.withLock({ $0[member.guild] }), let unverified = settings.unverifiedRole,
              !member.roles.contains(unverified), !member.roles.contains(settings.verifiedRole) else { return }
        do {
            let verified = try await context.database.read("verification.is-verified") { db in
                try Bool.fetchOne(db, sql: "SELECT 1 FROM verified_members WHERE guild_id = ? AND user_id = ?", arguments: [member.guild.description, member.user.description]) ?? false
            }
            guard !verified else { return }
            try await context.discord.addRole(guild: member.guild, user: member.user, role: unverified, reason: "verification: new member")
            context.logger.info("unverified role given", metadata: ["guild_id": "\(member.guild)", "user_id": "\(member.user)"])
        } catch {
            context.logger.error("could not give the unverified role", metadata: ["guild_id": "\(member.guild)", "user_id": "\(member.user)", "error": "\(error)"])
        }
    }

    func verifyDatabase(_ db: Database) throws -> [String] {
        try ["verification_settings", "verified_members", "verification_attempts"].filter { try !db.tableExists($0) }.map { "table \($0) is missing" }
    }

    func loadSettings() async throws {
        let loaded = try await context.database.read("verification.load-settings") { db in
            try Row.fetchAll(db, sql: "SELECT guild_id, channel_id, verified_role_id, unverified_role_id, min_account_age_days FROM verification_settings")
                .compactMap { row -> Settings? in
                    guard let guild = GuildID(row["guild_id"] as String), let channel = ChannelID(row["channel_id"] as String),
                          let verified = RoleID(row["verified_role_id"] as String) else { return nil }
                    return Settings(guild: guild, channel: channel, verifiedRole: verified,
                                    unverifiedRole: (row["unverified_role_id"] as String?).flatMap(RoleID.init), minAccountAgeDays: row["min_account_age_days"])
                }
        }
        settings.withLock { current in
            for value in loaded { current[value.guild] = value }
        }
    }

    func cleanup() async {}
}
