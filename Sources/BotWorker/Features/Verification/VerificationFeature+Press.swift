import FoundationEssentials
import GRDB
import IPC

/// The Verify button and what follows it: the account-age gate, then the challenge when one is
/// set up, then the role (or a wait for Discord), every step stored as an attempt.
extension VerificationFeature {
    /// The date from which an account made at `created` may verify, or nil when it may now.
    static func eligibleFrom(created: Date, minimumDays: Int, now: Date) -> Date? {
        let from = created.addingTimeInterval(Double(minimumDays) * 86400)
        return from > now ? from : nil
    }

    /// Where a press or an answer stands after the checks both start with.
    enum Beginning {
        case proceed(GuildID, Settings)
        /// Not set up here (a refusal is thrown instead), or already verified.
        case done(InteractionReply)
    }

    /// The checks every press and answer start with, each recorded: verification set up in this
    /// server, and the member not verified yet.
    func begin(_ interaction: Interaction) async throws -> Beginning {
        guard let guild = interaction.guild, let settings = settings.withLock({ $0[guild] }) else {
            try await record(interaction.guild, interaction.user, .notConfigured, nil)
            throw CommandRefusal(description: "Verification is not set up in this server yet; ask a moderator.")
        }
        if interaction.memberRoles.contains(settings.verifiedRole) {
            try await record(guild, interaction.user, .alreadyVerified, nil)
            return .done(.ephemeral("You are already verified."))
        }
        return .proceed(guild, settings)
    }

    /// Verify pressed: refused, a question (with a challenge), the role, or a wait for Discord.
    func press(_ interaction: Interaction) async throws -> InteractionReply {
        let (guild, settings): (GuildID, Settings)
        switch try await begin(interaction) {
        case .proceed(let id, let found): (guild, settings) = (id, found)
        case .done(let reply): return reply
        }
        let user = interaction.user
        if let from = Self.eligibleFrom(created: user.createdAt, minimumDays: settings.minAccountAgeDays, now: Date()) {
            let day = Timestamp.string(from).prefix(10)
            try await record(guild, user, .tooYoung, "eligible from \(day)")
            return .ephemeral("Your account is too new to verify here: accounts must be at least \(settings.minAccountAgeDays) days old. You can verify from \(day).")
        }
        if settings.challenge != .none { return try await ask(interaction, settings) }
        return try await admit(Candidate(interaction), settings)
    }

    /// Who is about to be verified: from the interaction, or from the member update that ended
    /// their wait.
    struct Candidate: Sendable {
        var guild: GuildID
        var user: UserID
        var roles: Set<RoleID>
        var pending: Bool
        var joinedAt: Date?

        init(guild: GuildID, user: UserID, roles: Set<RoleID>, pending: Bool, joinedAt: Date?) {
            self.guild = guild
            self.user = user
            self.roles = roles
            self.pending = pending
            self.joinedAt = joinedAt
        }

        init(_ interaction: Interaction) {
            self.init(guild: interaction.guild ?? GuildID(0), user: interaction.user, roles: interaction.memberRoles,
                      pending: interaction.memberPending, joinedAt: interaction.memberJoinedAt)
        }
    }

    /// The member did their part: the role now, or (with `wait_for_discord`) once Discord's
    /// screening and verification level let them in.
    func admit(_ candidate: Candidate, _ settings: Settings) async throws -> InteractionReply {
        if settings.waitForDiscord {
            let level = await context.discord.verificationLevel(of: candidate.guild)
            if let wait = DiscordGate.wait(pending: candidate.pending, level: level, created: candidate.user.createdAt, joined: candidate.joinedAt, now: Date()) {
                try await startWaiting(candidate, wait)
                return .ephemeral("Thanks! You will get <@&\(settings.verifiedRole)> as soon as \(wait.explanation); nothing more to do.")
            }
        }
        try await grant(candidate, settings, detail: nil)
        return .ephemeral("You are verified. Welcome!")
    }

    /// Gives the verified role, takes the unverified one, stores and announces it.
    func grant(_ candidate: Candidate, _ settings: Settings, detail: String?) async throws {
        let (guild, user) = (candidate.guild, candidate.user)
        do {
            try await context.discord.addRole(guild: guild, user: user, role: settings.verifiedRole, reason: "verification: button pressed")
            if let unverified = settings.unverifiedRole, candidate.roles.contains(unverified) {
                try await context.discord.removeRole(guild: guild, user: user, role: unverified, reason: "verification: verified")
            }
        } catch {
            try await record(guild, user, .failed, "\(error)")
            throw error
        }
        try await record(guild, user, .verified, detail)
        await context.events.publish(.memberVerified(guild: guild, user: user))
    }

    /// Stores one attempt (and the verification itself) and logs it.
    func record(_ guild: GuildID?, _ user: UserID, _ outcome: Outcome, _ detail: String?) async throws {
        let guildID = guild?.description ?? "-"
        try await context.database.write("verification.attempt") { db in
            try Self.insertAttempt(db, guild: guildID, user: user.description, outcome, detail)
        }
        logAttempt(guildID, user, outcome)
    }

    func logAttempt(_ guild: String, _ user: UserID, _ outcome: Outcome) {
        context.logger.info("verification attempt", metadata: ["guild_id": "\(guild)", "user_id": "\(user)", "outcome": "\(outcome.rawValue)"])
    }

    /// The attempt's row; a verification also ends the member's challenge and wait.
    static func insertAttempt(_ db: Database, guild: String, user: String, _ outcome: Outcome, _ detail: String?) throws {
        let now = Timestamp.string()
        try db.execute(sql: "INSERT INTO verification_attempts (guild_id, user_id, at, outcome, detail) VALUES (?, ?, ?, ?, ?)",
                       arguments: [guild, user, now, outcome.rawValue, detail])
        if outcome == .verified || outcome == .alreadyVerified {
            try db.execute(sql: "INSERT OR IGNORE INTO verified_members (guild_id, user_id, verified_at) VALUES (?, ?, ?)",
                           arguments: [guild, user, now])
            try db.execute(sql: "DELETE FROM verification_challenges WHERE guild_id = ? AND user_id = ?", arguments: [guild, user])
            try db.execute(sql: "DELETE FROM verification_waiting WHERE guild_id = ? AND user_id = ?", arguments: [guild, user])
        }
    }
}
