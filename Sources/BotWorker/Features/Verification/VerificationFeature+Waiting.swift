import FoundationEssentials
import GRDB
import IPC

/// `wait_for_discord`: a member who did their part but whom Discord does not let in yet
/// (membership screening, the verification level's times) is stored in `verification_waiting`
/// and gets the role without pressing again: when the GUILD_MEMBER_UPDATE clearing `pending`
/// arrives, when the level's time has passed (a background timer), or, after a restart, when the
/// guild becomes available again.
extension VerificationFeature {
    static func waitingKey(_ guild: GuildID, _ user: UserID) -> String { "\(guild)/\(user)" }

    func startWaiting(_ candidate: Candidate, _ wait: DiscordGate.Wait) async throws {
        let (guild, user) = (candidate.guild, candidate.user)
        let detail = [wait.screening ? "membership screening" : nil, wait.readyAt.map { "verification level until \(Timestamp.string($0))" }]
            .compactMap { $0 }.joined(separator: "; ")
        try await context.database.write("verification.wait") { db in
            try db.execute(sql: """
                INSERT INTO verification_waiting (guild_id, user_id, since, screening, ready_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (guild_id, user_id) DO UPDATE SET screening = excluded.screening, ready_at = excluded.ready_at
                """, arguments: [guild.description, user.description, Timestamp.string(), wait.screening, wait.readyAt.map { Timestamp.string($0) }])
            try Self.insertAttempt(db, guild: guild.description, user: user.description, .waitingForDiscord, detail)
        }
        logAttempt(guild.description, user, .waitingForDiscord)
        waiting.withLock { _ = $0.insert(Self.waitingKey(guild, user)) }
        if let readyAt = wait.readyAt, !wait.screening { scheduleCheck(guild: guild, user: user, at: readyAt) }
    }

    /// A member update (or a timer, or a restart): grants the role to a waiting member whom
    /// Discord now lets in. True when the role was given.
    @discardableResult
    func finishWaiting(_ member: Member) async -> Bool {
        let key = Self.waitingKey(member.guild, member.user)
        guard !member.pending, waiting.withLock({ $0.contains(key) }), let settings = settings.withLock({ $0[member.guild] }) else { return false }
        if member.roles.contains(settings.verifiedRole) {
            await stopWaiting(guild: member.guild, user: member.user)
            return false
        }
        let level = await context.discord.verificationLevel(of: member.guild)
        if let wait = DiscordGate.wait(pending: false, level: level, created: member.user.createdAt, joined: member.joinedAt, now: Date()) {
            if let readyAt = wait.readyAt { scheduleCheck(guild: member.guild, user: member.user, at: readyAt) }
            return false
        }
        // Taken out first: a second update arriving meanwhile does not grant twice.
        guard waiting.withLock({ $0.remove(key) }) != nil else { return false }
        let candidate = Candidate(guild: member.guild, user: member.user, roles: member.roles, pending: false, joinedAt: member.joinedAt)
        do {
            try await grant(candidate, settings, detail: "after waiting for Discord")
            context.logger.info("verified after waiting for Discord", metadata: ["guild_id": "\(member.guild)", "user_id": "\(member.user)"])
            return true
        } catch {
            waiting.withLock { _ = $0.insert(key) }
            context.logger.error("could not verify a member after waiting", metadata: ["guild_id": "\(member.guild)", "user_id": "\(member.user)", "error": "\(error)"])
            return false
        }
    }

    /// The member left (or is verified already): their wait ends.
    func stopWaiting(guild: GuildID, user: UserID) async {
        guard waiting.withLock({ $0.remove(Self.waitingKey(guild, user)) }) != nil else { return }
        do {
            try await context.database.write("verification.stop-waiting") { db in
                try db.execute(sql: "DELETE FROM verification_waiting WHERE guild_id = ? AND user_id = ?", arguments: [guild.description, user.description])
            }
        } catch {
            context.logger.error("could not end a member's wait", metadata: ["guild_id": "\(guild)", "user_id": "\(user)", "error": "\(error)"])
        }
    }

    /// Looks at `user` again at `date` (a little after, so Discord's own clock has passed it too).
    func scheduleCheck(guild: GuildID, user: UserID, at date: Date) {
        let feature = self
        context.background.submit {
            let delay = date.timeIntervalSinceNow + 1
            if delay > 0 { guard (try? await Task.sleep(for: .milliseconds(Int64(delay * 1000)))) != nil else { return } }
            await feature.checkWaiting(guild: guild, user: user)
        }
    }

    /// The guild is available (again, after a restart): everyone waiting in it is looked at.
    func recheckWaiting(in guild: GuildID) {
        let prefix = "\(guild)/"
        let users = waiting.withLock { $0.filter { $0.hasPrefix(prefix) } }.compactMap { UserID(String($0.dropFirst(prefix.count))) }
        for user in users { scheduleCheck(guild: guild, user: user, at: .distantPast) }
    }

    /// Reads the member over REST and finishes their wait if Discord lets them in.
    func checkWaiting(guild: GuildID, user: UserID) async {
        guard waiting.withLock({ $0.contains(Self.waitingKey(guild, user)) }) else { return }
        do {
            guard let member = try await context.discord.member(user, of: guild) else {
                await stopWaiting(guild: guild, user: user)
                return
            }
            await finishWaiting(member)
        } catch {
            context.logger.warning("could not look at a waiting member", metadata: ["guild_id": "\(guild)", "user_id": "\(user)", "error": "\(error)"])
        }
    }
}
