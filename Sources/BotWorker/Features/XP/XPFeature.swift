import FoundationEssentials
import GRDB
import IPC
import Logging

/// XP and levels: every message of a member counts, and earns XP (15–25 by default) at most once
/// per cooldown (60 s), as MEE6 does; bots and DMs earn nothing. Total XP is stored and the level
/// derived from it (`XPCurve`). A level reached is announced (if the guild wants), its reward roles
/// given, and `levelReached` published once the write is committed.
///
/// Messages arrive by the thousand a second in a busy guild, so their writes go through the group
/// commit (`context.writes`), never one transaction each.
struct XPFeature: Feature {
    static let name = "xp"
    static let manageServer: UInt64 = 1 << 5

    let context: FeatureContext
    let settings = Locked<[GuildID: XPSettings]>([:])
    /// The rolls of the XP a message earns: a generator seeded once, not a system call a message.
    let rolls = Locked(SplitMix64())
    /// Who is in voice and the minutes they earn (`XPVoice.swift`).
    let voice = Locked(VoiceTracker(minute: XPFeature.voiceMinute))
    /// Guilds whose `/levels sync` is running (one at a time each).
    let syncing = Locked<Set<GuildID>>([])

    init(context: FeatureContext) { self.context = context }

    static func registerMigrations(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("xp-v1") { db in
            try db.create(table: "xp_members", options: .withoutRowID) { t in
                t.column("guild_id", .text).notNull()
                t.column("user_id", .text).notNull()
                t.column("xp", .integer).notNull().defaults(to: 0).check { $0 >= 0 }
                t.column("level", .integer).notNull().defaults(to: 0)
                t.column("messages", .integer).notNull().defaults(to: 0)
                // Seconds since 1970 of the last message that earned XP.
                t.column("last_award_at", .double)
                t.primaryKey(["guild_id", "user_id"])
            }
            try db.create(index: "xp_members_rank", on: "xp_members", columns: ["guild_id", "xp"])
            try db.create(table: "xp_settings") { t in
                t.primaryKey("guild_id", .text)
                t.column("min_xp", .integer).notNull()
                t.column("max_xp", .integer).notNull()
                t.column("cooldown_seconds", .double).notNull()
                t.column("announce_channel_id", .text)  // a channel id, "same", or null for off
                t.column("announce_template", .text).notNull()
                t.column("reward_mode", .text).notNull()
            }
            // No-XP channels and roles (multiplier null) and multipliers.
            try db.create(table: "xp_modifiers", options: .withoutRowID) { t in
                t.column("guild_id", .text).notNull()
                t.column("kind", .text).notNull()
                t.column("target_id", .text).notNull()
                t.column("multiplier", .double)
                t.primaryKey(["guild_id", "kind", "target_id"])
            }
            try db.create(table: "xp_rewards", options: .withoutRowID) { t in
                t.column("guild_id", .text).notNull()
                t.column("level", .integer).notNull()
                t.column("role_id", .text).notNull()
                t.primaryKey(["guild_id", "level"])
            }
            try AppDatabase.registerTable(db, name: "xp_members", feature: name, critical: true)
            try AppDatabase.registerTable(db, name: "xp_settings", feature: name, critical: false)
            try AppDatabase.registerTable(db, name: "xp_modifiers", feature: name, critical: false)
            try AppDatabase.registerTable(db, name: "xp_rewards", feature: name, critical: false)
        }
        // The dashboard's public leaderboard page: off unless the guild turns it on, and the
        // names it shows (null until the member's row is next written with a name).
        migrator.registerMigration("xp-v2") { db in
            try db.alter(table: "xp_settings") { t in
                t.add(column: "leaderboard", .text).notNull().defaults(to: "off")  // "public" or "off"
            }
            try db.alter(table: "xp_members") { t in
                t.add(column: "name", .text)
            }
        }
        // Voice minutes, privacy, and leaving: a member's voice minutes counted, whether they are
        // hidden from the leaderboards, and since when a member who left is gone (their XP is
        // reset after the grace period when the guild's `on_leave` is `reset`).
        migrator.registerMigration("xp-v3") { db in
            try db.alter(table: "xp_members") { t in
                t.add(column: "voice_minutes", .integer).notNull().defaults(to: 0)
                t.add(column: "hidden", .boolean).notNull().defaults(to: false)
                t.add(column: "left_at", .double)  // seconds since 1970; null while a member
            }
            try db.alter(table: "xp_settings") { t in
                t.add(column: "voice_xp", .integer).notNull().defaults(to: 0)  // XP a voice minute earns; 0: off
                t.add(column: "on_leave", .text).notNull().defaults(to: "keep")  // "keep" or "reset"
                t.add(column: "leave_grace_seconds", .double).notNull().defaults(to: 86400)
            }
            // Who is in voice, written with the voice event's position: a new worker that resumes the
            // session (and so gets no GUILD_CREATE) knows who was there, and replayed events update it.
            try db.create(table: "xp_voice_states", options: .withoutRowID) { t in
                t.column("guild_id", .text).notNull()
                t.column("user_id", .text).notNull()
                t.column("channel_id", .text).notNull()
                t.column("muted", .boolean).notNull()
                t.column("is_bot", .boolean).notNull()
                t.column("name", .text)
                t.primaryKey(["guild_id", "user_id"])
            }
            try AppDatabase.registerTable(db, name: "xp_voice_states", feature: name, critical: false)
        }
    }

    func settings(of guild: GuildID) -> XPSettings { settings.withLock { $0[guild] } ?? XPSettings() }

    func setup() async throws {
        let feature = self
        for command in XPCommands.definitions {
            await context.commands.register(command: command, feature: Self.name) { interaction in
                try await XPCommands(feature: feature).handle(interaction)
            }
        }
        try await startVoice()
        await startLeaving()
        let writes = context.writes
        await context.events.subscribe([.messageCreated], feature: Self.name) { event in
            guard case .messageCreated(let message) = event, let guild = message.guild, !message.authorIsBot else { return }
            let settings = feature.settings(of: guild)
            let roll = feature.rolls.withLock { Int.random(in: settings.minXP...max(settings.minXP, settings.maxXP), using: &$0) }
            let award = settings.award(channel: message.channel, roles: message.authorRoles, roll: roll) ?? 0
            let at = Date().timeIntervalSince1970
            await writes.submit("xp.message", receivedAt: message.receivedAt) { db in
                // The author's display name rides on the row write the award makes anyway (nil
                // keeps the stored one): the public leaderboard shows it.
                let change = try XPFeature.countMessage(db, guild: guild, user: message.author, name: message.authorName, award: award, at: at, cooldown: settings.cooldownSeconds)
                guard let change, change.new > change.old else { return nil }
                return { await feature.levelChanged(guild: guild, user: message.author, from: change.old, to: change.new, channel: message.channel) }
            }
        }
    }

    /// Counts one message of `user` and adds `award` XP unless the last award is under `cooldown`
    /// seconds old. Returns the old and new level when the level changed.
    ///
    /// `name` (see `displayName`) replaces the stored one in the same row write; nil keeps it.
    static func countMessage(_ db: Database, guild: GuildID, user: UserID, name: String? = nil, award: Int, at: Double, cooldown: Double) throws -> (old: Int, new: Int)? {
        // Prepared once per connection (cachedStatement): compiling it for every message cost more
        // than running it (GRDB's statement authorizer and SQLite's parser, about a fifth of the
        // worker's CPU under a flood).
        let row = try Row.fetchOne(try db.cachedStatement(sql: """
            INSERT INTO xp_members (guild_id, user_id, xp, level, messages, last_award_at, name) VALUES (?1, ?2, ?3, 0, 1, ?4, ?6)
            ON CONFLICT (guild_id, user_id) DO UPDATE SET
                messages = messages + 1,
                xp = CASE WHEN last_award_at IS NULL OR ?4 - last_award_at >= ?5 THEN xp + ?3 ELSE xp END,
                last_award_at = CASE WHEN last_award_at IS NULL OR ?4 - last_award_at >= ?5 THEN ?4 ELSE last_award_at END,
                name = COALESCE(?6, name)
            RETURNING xp, level
            """), arguments: [guild.description, user.description, award, at, cooldown, name])
        guard let row else { return nil }
        // By position (RETURNING xp, level): a lookup by name compares lowercased column names,
        // which showed in the flood's profile.
        return try settle(db, guild: guild, user: user, xp: row[0], stored: row[1])
    }

    /// Sets `user`'s total XP (the `/xp` commands), creating the row if needed; `name` as in
    /// `countMessage`. The level is left to `settle`.
    static func setXP(_ db: Database, guild: GuildID, user: UserID, name: String? = nil, xp: Int) throws {
        try db.execute(sql: """
            INSERT INTO xp_members (guild_id, user_id, xp, level, messages, name) VALUES (?1, ?2, ?3, 0, 0, ?4)
            ON CONFLICT (guild_id, user_id) DO UPDATE SET xp = excluded.xp, name = COALESCE(?4, name)
            """, arguments: [guild.description, user.description, xp, name])
    }

    /// The name the leaderboard page shows for a member: the guild nickname, else the global
    /// display name, else the username; nil when none is known (the stored name is then kept).
    /// Untrusted text, stored as it is: escaping it is the page's job.
    static func displayName(nick: String?, globalName: String?, username: String?) -> String? {
        [nick, globalName, username].lazy.compactMap { $0 }.first { !$0.isEmpty }
    }

    /// Stores the level `xp` gives when it differs from `stored`.
    static func settle(_ db: Database, guild: GuildID, user: UserID, xp: Int, stored: Int) throws -> (old: Int, new: Int)? {
        let level = XPCurve.level(forXP: xp)
        guard level != stored else { return nil }
        try db.cachedStatement(sql: "UPDATE xp_members SET level = ? WHERE guild_id = ? AND user_id = ?").execute(arguments: [level, guild.description, user.description])
        return (stored, level)
    }

    /// After a committed level change: rewards, the announcement (on the way up), the event.
    func levelChanged(guild: GuildID, user: UserID, from old: Int, to new: Int, channel: ChannelID?) async {
        let settings = settings(of: guild)
        context.logger.info(new > old ? "level reached" : "level lowered", metadata: ["guild_id": "\(guild)", "user_id": "\(user)", "level": "\(new)"])
        await applyRewards(guild: guild, user: user, level: new, settings: settings, memberRoles: nil)
        if new > old, let target = settings.announceInSameChannel ? channel : settings.announceChannel {
            do {
                try await context.discord.send(to: target, .object([
                    "content": .string(settings.announcement(user: user, level: new)),
                    "allowed_mentions": .object(["users": .array([.string(user.description)])]),
                ]))
            } catch {
                context.logger.warning("level-up announcement not sent", metadata: ["guild_id": "\(guild)", "channel_id": "\(target)", "error": "\(error)"])
            }
        }
        await context.events.publish(.levelReached(guild: guild, user: user, level: new))
    }

    /// Gives the reward roles a member at `level` should hold and takes the others.
    func applyRewards(guild: GuildID, user: UserID, level: Int, settings: XPSettings, memberRoles: Set<RoleID>?) async {
        guard !settings.rewards.isEmpty else { return }
        let (keep, drop) = settings.rewardRoles(at: level)
        do {
            let roles: Set<RoleID>
            if let memberRoles {
                roles = memberRoles
            } else {
                guard let member = try await context.discord.member(user, of: guild) else { return }
                roles = member.roles
            }
            for role in keep.subtracting(roles).sorted() {
                try await context.discord.addRole(guild: guild, user: user, role: role, reason: "level \(level) reward")
            }
            for role in drop.intersection(roles).sorted() {
                try await context.discord.removeRole(guild: guild, user: user, role: role, reason: "level \(level): reward no longer held")
            }
        } catch {
            context.logger.error("level rewards not applied", metadata: ["guild_id": "\(guild)", "user_id": "\(user)", "error": "\(error)"])
        }
    }

    struct Standing: Sendable, Equatable {
        var xp: Int
        var level: Int
        var messages: Int
        var voiceMinutes: Int
        var rank: Int
        var hidden: Bool
    }

    static func standing(_ db: Database, guild: GuildID, user: UserID) throws -> Standing? {
        guard let row = try Row.fetchOne(db, sql: "SELECT xp, level, messages, voice_minutes, hidden FROM xp_members WHERE guild_id = ? AND user_id = ?",
                                         arguments: [guild.description, user.description]) else { return nil }
        let xp: Int = row["xp"]
        // Ranked among the members shown on the leaderboard.
        let above = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM xp_members WHERE guild_id = ? AND xp > ? AND NOT hidden", arguments: [guild.description, xp]) ?? 0
        return Standing(xp: xp, level: row["level"], messages: row["messages"], voiceMinutes: row["voice_minutes"], rank: above + 1, hidden: row["hidden"])
    }

    func verifyDatabase(_ db: Database) throws -> [String] {
        try ["xp_members", "xp_settings", "xp_modifiers", "xp_rewards", "xp_voice_states"].filter { try !db.tableExists($0) }.map { "table \($0) is missing" }
    }

    func loadSettings() async throws {
        let loaded = try await context.database.read("xp.load-settings") { try XPSettings.load($0) }
        settings.withLock { $0 = loaded }
    }

    func cleanup() async {}
}
