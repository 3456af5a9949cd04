import FoundationEssentials
import GRDB

/// A guild's XP settings; defaults are MEE6's.
struct XPSettings: Sendable, Equatable {
    enum RewardMode: String, Sendable {
        /// Members keep every reward role up to their level.
        case stack
        /// Only the highest reward role reached is kept.
        case replace
    }

    /// The dashboard's leaderboard page for the guild (`/leaderboard/<guild id>`: rank, name,
    /// level and XP): off unless the guild turns it on. BotData's `PublicLeaderboard` reads it.
    enum LeaderboardPage: String, Sendable {
        /// Anyone with the dashboard's address can see it.
        case `public`
        case off
    }

    var minXP = 15
    var maxXP = 25
    var cooldownSeconds: Double = 60
    /// Where level-ups are announced: nil for nowhere, `sameChannel` for where the message was sent.
    var announceChannel: ChannelID?
    var announceInSameChannel = false
    var template = "GG {user}, you reached level {level}!"
    var rewardMode = RewardMode.stack
    var noXPChannels: Set<ChannelID> = []
    var noXPRoles: Set<RoleID> = []
    var channelMultipliers: [ChannelID: Double] = [:]
    var roleMultipliers: [RoleID: Double] = [:]
    /// Level → role.
    var rewards: [Int: RoleID] = [:]
    var leaderboard = LeaderboardPage.off
    /// XP a minute in voice earns (before multipliers); 0 turns voice XP off.
    var voiceXP = 0
    var onLeave = LeavePolicy.keep
    /// How long a member who left stays gone before `reset` takes their XP.
    var leaveGraceSeconds: Double = 86400

    enum LeavePolicy: String, Sendable {
        /// A member who leaves keeps their XP for when they come back.
        case keep
        /// Their XP is reset once they have been gone for the grace period.
        case reset
    }

    /// XP a message earns before the cooldown is considered: nil when it earns none (a no-XP
    /// channel or role). The channel's multiplier times the highest multiplier of the member's roles.
    func award(channel: ChannelID, roles: Set<RoleID>, roll: Int) -> Int? {
        guard !noXPChannels.contains(channel), noXPRoles.isDisjoint(with: roles) else { return nil }
        let channelFactor = channelMultipliers[channel] ?? 1
        let roleFactor = roles.compactMap { roleMultipliers[$0] }.max() ?? 1
        return max(0, Int((Double(roll) * channelFactor * roleFactor).rounded()))
    }

    /// The reward roles a member at `level` should hold, and those to take away.
    func rewardRoles(at level: Int) -> (keep: Set<RoleID>, drop: Set<RoleID>) {
        let reached = rewards.filter { $0.key <= level }
        let all = Set(rewards.values)
        let keep: Set<RoleID>
        switch rewardMode {
        case .stack: keep = Set(reached.values)
        case .replace: keep = reached.max { $0.key < $1.key }.map { [$0.value] } ?? []
        }
        return (keep, all.subtracting(keep))
    }

    func announcement(user: UserID, level: Int) -> String {
        template.replacingOccurrences(of: "{user}", with: "<@\(user)>").replacingOccurrences(of: "{level}", with: "\(level)")
    }

    static func load(_ db: Database) throws -> [GuildID: XPSettings] {
        var all: [GuildID: XPSettings] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT * FROM xp_settings") {
            guard let guild = GuildID(row["guild_id"] as String) else { continue }
            var s = XPSettings()
            s.minXP = row["min_xp"]
            s.maxXP = row["max_xp"]
            s.cooldownSeconds = row["cooldown_seconds"]
            let channel: String? = row["announce_channel_id"]
            s.announceInSameChannel = channel == "same"
            s.announceChannel = channel.flatMap(ChannelID.init)
            s.template = row["announce_template"]
            s.rewardMode = RewardMode(rawValue: row["reward_mode"]) ?? .stack
            s.leaderboard = LeaderboardPage(rawValue: row["leaderboard"]) ?? .off
            s.voiceXP = row["voice_xp"]
            s.onLeave = LeavePolicy(rawValue: row["on_leave"]) ?? .keep
            s.leaveGraceSeconds = row["leave_grace_seconds"]
            all[guild] = s
        }
        for row in try Row.fetchAll(db, sql: "SELECT guild_id, kind, target_id, multiplier FROM xp_modifiers") {
            guard let guild = GuildID(row["guild_id"] as String), let id = UInt64(row["target_id"] as String) else { continue }
            let multiplier: Double? = row["multiplier"]
            var s = all[guild] ?? XPSettings()
            switch (row["kind"] as String, multiplier) {
            case ("channel", nil): s.noXPChannels.insert(ChannelID(id))
            case ("role", nil): s.noXPRoles.insert(RoleID(id))
            case ("channel", let value?): s.channelMultipliers[ChannelID(id)] = value
            case ("role", let value?): s.roleMultipliers[RoleID(id)] = value
            default: break
            }
            all[guild] = s
        }
        for row in try Row.fetchAll(db, sql: "SELECT guild_id, level, role_id FROM xp_rewards") {
            guard let guild = GuildID(row["guild_id"] as String), let role = RoleID(row["role_id"] as String) else { continue }
            all[guild, default: XPSettings()].rewards[row["level"]] = role
        }
        return all
    }

    func save(_ db: Database, guild: GuildID) throws {
        let channel = announceInSameChannel ? "same" : announceChannel?.description
        try db.execute(sql: """
            INSERT INTO xp_settings (guild_id, min_xp, max_xp, cooldown_seconds, announce_channel_id, announce_template, reward_mode, leaderboard,
                                     voice_xp, on_leave, leave_grace_seconds)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (guild_id) DO UPDATE SET min_xp = excluded.min_xp, max_xp = excluded.max_xp,
                cooldown_seconds = excluded.cooldown_seconds, announce_channel_id = excluded.announce_channel_id,
                announce_template = excluded.announce_template, reward_mode = excluded.reward_mode,
                leaderboard = excluded.leaderboard, voice_xp = excluded.voice_xp, on_leave = excluded.on_leave,
                leave_grace_seconds = excluded.leave_grace_seconds
            """, arguments: [guild.description, minXP, maxXP, cooldownSeconds, channel, template, rewardMode.rawValue, leaderboard.rawValue,
                             voiceXP, onLeave.rawValue, leaveGraceSeconds])
        try db.execute(sql: "DELETE FROM xp_modifiers WHERE guild_id = ?", arguments: [guild.description])
        func modifier(_ kind: String, _ id: UInt64, _ multiplier: Double?) throws {
            try db.execute(sql: "INSERT INTO xp_modifiers (guild_id, kind, target_id, multiplier) VALUES (?, ?, ?, ?)",
                           arguments: [guild.description, kind, String(id), multiplier])
        }
        for channel in noXPChannels { try modifier("channel", channel.rawValue, nil) }
        for role in noXPRoles { try modifier("role", role.rawValue, nil) }
        for (channel, value) in channelMultipliers { try modifier("channel", channel.rawValue, value) }
        for (role, value) in roleMultipliers { try modifier("role", role.rawValue, value) }
        try db.execute(sql: "DELETE FROM xp_rewards WHERE guild_id = ?", arguments: [guild.description])
        for (level, role) in rewards {
            try db.execute(sql: "INSERT INTO xp_rewards (guild_id, level, role_id) VALUES (?, ?, ?)", arguments: [guild.description, level, role.description])
        }
    }
}
