import FoundationEssentials
import GRDB
import IPC
import Logging


/// Member verification: a Verify button in a channel; pressing it gives the verified role (and
/// takes the unverified one) once the account is old enough. Members still in Discord's
/// membership screening get nothing until they pass it. Every attempt is stored and logged;
/// pressing again is harmless.
///
/// Optionally (`/verification setup`): a question first, in a modal (`challenge:` sum or word;
/// three wrong answers start a cooldown; `VerificationFeature+Challenge.swift`), and waiting for
/// Discord's own gates, membership screening and the guild's verification level, before the role
/// (`wait_for_discord:`; `VerificationFeature+Waiting.swift`).
struct VerificationFeature: Feature {
    static let name = "verification"
    static let buttonID = "verification:verify"

    struct Settings: Sendable, Equatable {
        var guild: GuildID
        var channel: ChannelID
        var verifiedRole: RoleID
        var unverifiedRole: RoleID?
        var minAccountAgeDays: Int
        var challenge: ChallengeKind = .none
        var challengeCooldownSeconds = 600
        var waitForDiscord = false
    }

    enum Outcome: String, Sendable {
        case verified, alreadyVerified = "already-verified", tooYoung = "too-young", pending, notConfigured = "not-configured", failed
        case challengeAsked = "challenge-asked", challengePassed = "challenge-passed", challengeWrong = "challenge-wrong"
        case challengeCooldown = "challenge-cooldown", challengeExpired = "challenge-expired"
        case waitingForDiscord = "waiting-for-discord"
    }

    let context: FeatureContext
    let settings = Locked<[GuildID: Settings]>([:])
    /// Members seen joining while still in membership screening: the update that clears
    /// `pending` is their real arrival.
    private let screening = Locked<Set<String>>([])
    /// Members who did their part and wait for Discord's gates ("guild/user"), as in
    /// `verification_waiting`.
    let waiting = Locked<Set<String>>([])

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
        migrator.registerMigration("verification-v2") { db in
            try db.alter(table: "verification_settings") { t in
                t.add(column: "challenge", .text).notNull().defaults(to: "none")
                t.add(column: "challenge_cooldown_seconds", .integer).notNull().defaults(to: 600)
                t.add(column: "wait_for_discord", .boolean).notNull().defaults(to: false)
            }
            // One open question per member: the expected answer, wrong answers, the cooldown.
            try db.create(table: "verification_challenges", options: .withoutRowID) { t in
                t.column("guild_id", .text).notNull()
                t.column("user_id", .text).notNull()
                t.column("challenge_id", .integer).notNull()
                t.column("kind", .text).notNull()
                t.column("prompt", .text).notNull()
                t.column("answer", .text).notNull()
                t.column("wrong_answers", .integer).notNull().defaults(to: 0)
                t.column("cooldown_until", .text)
                t.column("issued_at", .text).notNull()
                t.column("expires_at", .text).notNull()
                t.primaryKey(["guild_id", "user_id"])
            }
            // Members who passed and wait for Discord's screening or verification level.
            try db.create(table: "verification_waiting", options: .withoutRowID) { t in
                t.column("guild_id", .text).notNull()
                t.column("user_id", .text).notNull()
                t.column("since", .text).notNull()
                t.column("screening", .boolean).notNull()
                t.column("ready_at", .text)
                t.primaryKey(["guild_id", "user_id"])
            }
            try AppDatabase.registerTable(db, name: "verification_challenges", feature: name, critical: false)
            try AppDatabase.registerTable(db, name: "verification_waiting", feature: name, critical: false)
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
                    .object(["type": .integer(3), "name": .string("challenge"), "description": .string("A question to answer first, in a pop-up (default: none)"), "required": .bool(false),
                             "choices": .array([
                                 .object(["name": .string("none: the button alone"), "value": .string("none")]),
                                 .object(["name": .string("a short sum"), "value": .string("sum")]),
                                 .object(["name": .string("a word to type back"), "value": .string("word")]),
                             ])]),
                    .object(["type": .integer(4), "name": .string("challenge_cooldown_seconds"), "description": .string("Wait after three wrong answers (default 600)"), "required": .bool(false), "min_value": .integer(0), "max_value": .integer(86400)]),
                    .object(["type": .integer(5), "name": .string("wait_for_discord"), "description": .string("Grant only once Discord's screening and verification level let the member in"), "required": .bool(false)]),
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
        await context.commands.register(componentPrefix: Self.buttonID, feature: Self.name, opensModals: true) { interaction in
            try await feature.press(interaction)
        }
        await context.commands.register(modalPrefix: VerificationChallenge.modalPrefix, feature: Self.name) { interaction in
            try await feature.answer(interaction)
        }
        await context.events.subscribe([.memberJoined, .memberUpdated, .memberLeft, .membersJoinedWhileAway, .guildAvailable], feature: Self.name) { event in
            switch event {
            case .guildAvailable(let guild, _):
                feature.recheckWaiting(in: guild)
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
                // Screening just passed: the member arrives now, verified already if they waited.
                let verified = await feature.finishWaiting(member)
                if feature.screening.withLock({ $0.remove("\(member.guild)/\(member.user)") }) != nil, !verified {
                    await feature.markUnverified(member)
                }
            case .memberLeft(let guild, let user):
                _ = feature.screening.withLock { $0.remove("\(guild)/\(user)") }
                await feature.stopWaiting(guild: guild, user: user)
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
        guard let challenge = ChallengeKind(rawValue: interaction.option("challenge")?.stringValue ?? "none") else {
            throw CommandRefusal(description: "The challenge is one of none, sum or word.")
        }
        let cooldown = max(0, interaction.option("challenge_cooldown_seconds")?.intValue ?? 600)
        let waitForDiscord = interaction.option("wait_for_discord") == .bool(true)
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
        let value = Settings(guild: guild, channel: channel, verifiedRole: verified, unverifiedRole: unverified, minAccountAgeDays: minimumAge,
                             challenge: challenge, challengeCooldownSeconds: cooldown, waitForDiscord: waitForDiscord)
        let by = interaction.user.description
        try await context.database.write("verification.setup", verify: { db in
            try String.fetchOne(db, sql: "SELECT verified_role_id FROM verification_settings WHERE guild_id = ?", arguments: [guild.description]) == verified.description
        }) { db in
            try db.execute(sql: """
                INSERT INTO verification_settings (guild_id, channel_id, verified_role_id, unverified_role_id, min_account_age_days, message_id, updated_at, updated_by,
                    challenge, challenge_cooldown_seconds, wait_for_discord)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (guild_id) DO UPDATE SET channel_id = excluded.channel_id, verified_role_id = excluded.verified_role_id,
                    unverified_role_id = excluded.unverified_role_id, min_account_age_days = excluded.min_account_age_days,
                    message_id = excluded.message_id, updated_at = excluded.updated_at, updated_by = excluded.updated_by,
                    challenge = excluded.challenge, challenge_cooldown_seconds = excluded.challenge_cooldown_seconds,
                    wait_for_discord = excluded.wait_for_discord
                """, arguments: [guild.description, channel.description, verified.description, unverified?.description, minimumAge,
                                 messageID?.description, Timestamp.string(), by, challenge.rawValue, cooldown, waitForDiscord])
        }
        settings.withLock { $0[guild] = value }
        context.audit.info("verification set up", metadata: [
            "guild_id": "\(guild)", "user_id": "\(interaction.user)", "command": "verification setup",
            "channel_id": "\(channel)", "verified_role_id": "\(verified)", "unverified_role_id": "\(unverified?.description ?? "-")",
            "min_account_age_days": "\(minimumAge)", "challenge": "\(challenge.rawValue)", "challenge_cooldown_seconds": "\(cooldown)",
            "wait_for_discord": "\(waitForDiscord)",
        ])
        return .ephemeral("Verification is set up: the button is in <#\(channel)>; verified members get <@&\(verified)>"
            + (unverified.map { ", new members get <@&\($0)> until then" } ?? "")
            + (minimumAge > 0 ? "; accounts must be at least \(minimumAge) days old" : "")
            + (challenge == .none ? "" : "; they answer \(challenge == .sum ? "a short sum" : "a word to type back") first (three wrong answers: \(cooldown) s to wait)")
            + (waitForDiscord ? "; the role waits for Discord's membership screening and verification level." : "."))
    }

    private func status(_ interaction: Interaction) async throws -> InteractionReply {
        guard let guild = interaction.guild else { throw CommandRefusal(description: "Verification exists only in a server.") }
        let user = interaction.option("member")?.stringValue.flatMap(UserID.init) ?? interaction.user
        let (g, u) = (guild.description, user.description)
        let (verifiedAt, attempts, challenge, waiting) = try await context.database.read("verification.status") { db in
            (try String.fetchOne(db, sql: "SELECT verified_at FROM verified_members WHERE guild_id = ? AND user_id = ?", arguments: [g, u]),
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM verification_attempts WHERE guild_id = ? AND user_id = ?", arguments: [g, u]) ?? 0,
             try Row.fetchOne(db, sql: "SELECT wrong_answers, cooldown_until, expires_at FROM verification_challenges WHERE guild_id = ? AND user_id = ?", arguments: [g, u])
                .map { row -> (wrongAnswers: Int, cooldownUntil: Date?, expiresAt: Date) in
                    (row["wrong_answers"], (row["cooldown_until"] as String?).flatMap(Timestamp.parse), Timestamp.parse(row["expires_at"] as String) ?? .distantPast)
                },
             try Row.fetchOne(db, sql: "SELECT screening, ready_at FROM verification_waiting WHERE guild_id = ? AND user_id = ?", arguments: [g, u])
                .map { row -> (screening: Bool, readyAt: Date?) in (row["screening"], (row["ready_at"] as String?).flatMap(Timestamp.parse)) })
        }
        let counted = "\(attempts) attempt\(attempts == 1 ? "" : "s")"
        if let verifiedAt { return .ephemeral("<@\(user)> is verified since \(verifiedAt) (\(counted)).") }
        let detail = Self.unfinished(challenge: challenge, waiting: waiting, now: Date())
        return .ephemeral("<@\(user)> is not verified (\(counted))" + (detail.map { ": \($0)." } ?? "."))
    }

    /// Where a member who is not verified yet stands, for `/verification status`: an open
    /// question (wrong answers so far), a cooldown, or a wait for Discord's gates; nil for none.
    static func unfinished(challenge: (wrongAnswers: Int, cooldownUntil: Date?, expiresAt: Date)?, waiting: (screening: Bool, readyAt: Date?)?, now: Date) -> String? {
        var parts: [String] = []
        if let challenge {
            if let until = challenge.cooldownUntil, until > now {
                parts.append("cooling down after \(challenge.wrongAnswers) wrong answers, until \(Timestamp.string(until))")
            } else if challenge.expiresAt > now {
                parts.append("a question is open, \(challenge.wrongAnswers) wrong answer\(challenge.wrongAnswers == 1 ? "" : "s") so far")
            }
        }
        if let waiting {
            if waiting.screening {
                parts.append("passed, waiting for Discord's membership screening")
            } else if let ready = waiting.readyAt {
                parts.append("passed, waiting for the server's verification level until \(Timestamp.string(ready))")
            }
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
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
        try ["verification_settings", "verified_members", "verification_attempts", "verification_challenges", "verification_waiting"].filter { try !db.tableExists($0) }.map { "table \($0) is missing" }
    }

    func loadSettings() async throws {
        let loaded = try await context.database.read("verification.load-settings") { db in
            let settings = try Row.fetchAll(db, sql: """
                SELECT guild_id, channel_id, verified_role_id, unverified_role_id, min_account_age_days, challenge,
                    challenge_cooldown_seconds, wait_for_discord FROM verification_settings
                """)
                .compactMap { row -> Settings? in
                    guard let guild = GuildID(row["guild_id"] as String), let channel = ChannelID(row["channel_id"] as String),
                          let verified = RoleID(row["verified_role_id"] as String) else { return nil }
                    return Settings(guild: guild, channel: channel, verifiedRole: verified,
                                    unverifiedRole: (row["unverified_role_id"] as String?).flatMap(RoleID.init), minAccountAgeDays: row["min_account_age_days"],
                                    challenge: ChallengeKind(rawValue: row["challenge"]) ?? .none, challengeCooldownSeconds: row["challenge_cooldown_seconds"],
                                    waitForDiscord: row["wait_for_discord"])
                }
            let waiting = try Row.fetchAll(db, sql: "SELECT guild_id, user_id FROM verification_waiting").map { row -> String in
                "\(row["guild_id"] as String)/\(row["user_id"] as String)"
            }
            return (settings, waiting)
        }
        settings.withLock { current in
            for value in loaded.0 { current[value.guild] = value }
        }
        waiting.withLock { $0.formUnion(loaded.1) }
    }

    func cleanup() async {}
}
