import FoundationEssentials
import GRDB
import Glibc

/// Who is in voice, and the time each member spends there earning: a minute earns nothing while
/// the member is alone with no other human, muted or deafened (by themselves or a moderator), or
/// in the guild's AFK channel. Bots never earn and do not count as company.
///
/// A pure value: the XP feature feeds it the Gateway's voice states with the time, and asks it at
/// each tick for the whole minutes earned since. Time is counted to the second between changes,
/// so a member who leaves after 2 min 50 s earns 2 minutes, and the 50 s are not carried over.
struct VoiceTracker: Sendable {
    struct Presence: Sendable, Equatable {
        var channel: ChannelID
        var muted: Bool
        var isBot: Bool
        var roles: Set<RoleID>
        var name: String?
        /// Whether the member earns now (see the type's rules).
        var earning = false
        /// Seconds earned and not yet collected as whole minutes.
        var seconds: Double = 0
    }

    /// Minutes earned by one member, collected.
    struct Credit: Sendable, Equatable {
        var guild: GuildID
        var user: UserID
        var channel: ChannelID
        var roles: Set<RoleID>
        var name: String?
        var minutes: Int
    }

    private struct GuildVoice: Sendable {
        var afk: ChannelID?
        var members: [UserID: Presence] = [:]
        var settledAt: Double
    }

    /// Seconds in a voice minute (60; tests shorten it).
    let minute: Double
    private var guilds: [GuildID: GuildVoice] = [:]
    /// Minutes of members who left voice, until the next collection.
    private var departed: [Credit] = []

    init(minute: Double = 60) {
        self.minute = minute
    }

    func presence(guild: GuildID, user: UserID) -> Presence? { guilds[guild]?.members[user] }

    /// Members in voice, across guilds.
    var count: Int { guilds.values.reduce(0) { $0 + $1.members.count } }

    /// A guild became available: its voice states replace what was known (time earned so far by
    /// members still there is kept).
    mutating func replace(guild: GuildID, afk: ChannelID?, states: [VoiceState], roles: [UserID: Set<RoleID>], now: Double) {
        settle(guild, now: now)
        let previous = guilds[guild]?.members ?? [:]
        var voice = GuildVoice(afk: afk, settledAt: now)
        for state in states {
            guard let channel = state.channel else { continue }
            var presence = previous[state.user] ?? Presence(channel: channel, muted: state.muted, isBot: state.isBot, roles: [])
            presence.channel = channel
            presence.muted = state.muted
            presence.roles = state.roles ?? roles[state.user] ?? presence.roles
            if let name = state.name { presence.name = name }
            voice.members[state.user] = presence
        }
        guilds[guild] = voice
        recompute(guild)
    }

    /// A member's voice state changed (joined, left, moved, muted).
    mutating func update(_ state: VoiceState, now: Double) {
        settle(state.guild, now: now)
        var voice = guilds[state.guild] ?? GuildVoice(settledAt: now)
        if let channel = state.channel {
            var presence = voice.members[state.user] ?? Presence(channel: channel, muted: state.muted, isBot: state.isBot, roles: [])
            presence.channel = channel
            presence.muted = state.muted
            presence.isBot = state.isBot
            if let roles = state.roles { presence.roles = roles }
            if let name = state.name { presence.name = name }
            voice.members[state.user] = presence
        } else if let gone = voice.members.removeValue(forKey: state.user) {
            let minutes = Int(gone.seconds / minute)
            if minutes > 0 {
                departed.append(Credit(guild: state.guild, user: state.user, channel: gone.channel, roles: gone.roles, name: gone.name, minutes: minutes))
            }
        }
        guilds[state.guild] = voice
        recompute(state.guild)
    }

    /// The guild's AFK channel (from the guild's state, which GUILD_UPDATE keeps current).
    mutating func setAFK(guild: GuildID, afk: ChannelID?) {
        guard guilds[guild] != nil, guilds[guild]?.afk != afk else { return }
        guilds[guild]?.afk = afk
        recompute(guild)
    }

    /// A member's roles changed (their multipliers and no-XP roles follow).
    mutating func updateRoles(guild: GuildID, user: UserID, roles: Set<RoleID>) {
        guilds[guild]?.members[user]?.roles = roles
    }

    /// The whole minutes earned up to `now`, taken out of the count.
    mutating func collect(now: Double) -> [Credit] {
        var credits = departed
        departed = []
        for guild in Array(guilds.keys) {
            settle(guild, now: now)
            guard var voice = guilds[guild] else { continue }
            for (user, var presence) in voice.members where presence.seconds >= minute {
                let minutes = Int(presence.seconds / minute)
                presence.seconds -= Double(minutes) * minute
                voice.members[user] = presence
                credits.append(Credit(guild: guild, user: user, channel: presence.channel, roles: presence.roles, name: presence.name, minutes: minutes))
            }
            guilds[guild] = voice
        }
        return credits.sorted { ($0.guild, $0.user) < ($1.guild, $1.user) }
    }

    /// Adds the time since the last change to every member earning in `guild`.
    private mutating func settle(_ guild: GuildID, now: Double) {
        guard var voice = guilds[guild] else { return }
        let elapsed = max(0, now - voice.settledAt)
        if elapsed > 0 {
            for (user, presence) in voice.members where presence.earning {
                voice.members[user]?.seconds += elapsed
            }
        }
        voice.settledAt = now
        guilds[guild] = voice
    }

    /// Who earns, by the rules above.
    private mutating func recompute(_ guild: GuildID) {
        guard var voice = guilds[guild] else { return }
        var humans: [ChannelID: Int] = [:]
        for presence in voice.members.values where !presence.isBot { humans[presence.channel, default: 0] += 1 }
        for (user, presence) in voice.members {
            voice.members[user]?.earning = !presence.isBot && !presence.muted && presence.channel != voice.afk
                && humans[presence.channel, default: 0] >= 2
        }
        guilds[guild] = voice
    }
}

extension XPFeature {
    /// Seconds in a voice minute: 60, unless `BOT_WORKER_VOICE_MINUTE_SECONDS` (for tests only)
    /// says otherwise.
    static var voiceMinute: Double {
        guard let text = getenv("BOT_WORKER_VOICE_MINUTE_SECONDS").map({ String(cString: $0) }), let value = Double(text), value > 0 else { return 60 }
        return value
    }

    /// Feeds the tracker the voice events (and stores who is in voice with each event's
    /// position) and, every voice minute, counts the minutes earned through the group commit.
    func startVoice() async throws {
        let feature = self
        // Who was in voice when the previous worker stopped: this one may resume its session.
        let stored = try await context.database.read("xp.voice-states") { db in try XPFeature.loadVoiceStates(db) }
        voice.withLock { tracker in
            let now = Date().timeIntervalSince1970
            for (guild, states) in stored { tracker.replace(guild: guild, afk: nil, states: states, roles: [:], now: now) }
        }
        await context.events.subscribe([.voiceStatesAvailable, .voiceStateChanged, .guildAvailable, .memberUpdated], feature: Self.name) { event in
            let now = Date().timeIntervalSince1970
            switch event {
            case .voiceStatesAvailable(let guild, _, let states):
                await feature.context.writes.submit("xp.voice-states") { db in
                    try db.execute(sql: "DELETE FROM xp_voice_states WHERE guild_id = ?", arguments: [guild.description])
                    for state in states { try XPFeature.storeVoiceState(db, state) }
                    return nil
                }
            case .voiceStateChanged(let state):
                await feature.context.writes.submit("xp.voice-state") { db in
                    try XPFeature.storeVoiceState(db, state)
                    return nil
                }
            default:
                break
            }
            feature.voice.withLock { tracker in
                switch event {
                case .voiceStatesAvailable(let guild, let afk, let states):
                    tracker.replace(guild: guild, afk: afk, states: states, roles: [:], now: now)
                case .guildAvailable(let guild, let members):
                    for member in members where tracker.presence(guild: guild, user: member.user) != nil {
                        tracker.updateRoles(guild: guild, user: member.user, roles: member.roles)
                    }
                case .voiceStateChanged(let state):
                    tracker.update(state, now: now)
                case .memberUpdated(let member):
                    tracker.updateRoles(guild: member.guild, user: member.user, roles: member.roles)
                default:
                    break
                }
            }
        }
        let minute = feature.voice.withLock { $0.minute }
        context.background.submit {
            while !Task.isCancelled {
                guard (try? await Task.sleep(for: .milliseconds(Int64(minute * 1000)))) != nil else { return }
                let afk = await feature.context.discord.afkChannels
                let credits = feature.voice.withLock { tracker in
                    for (guild, channel) in afk { tracker.setAFK(guild: guild, afk: channel) }
                    return tracker.collect(now: Date().timeIntervalSince1970)
                }
                for credit in credits { await feature.countVoice(credit) }
            }
        }
    }

    /// Counts a member's voice minutes and the XP they earn: `voice_xp` a minute times the same
    /// multipliers as messages; none in a no-XP channel or with a no-XP role (the minutes still
    /// count, as a message there still counts). Nothing at all while the guild's voice XP is off.
    func countVoice(_ credit: VoiceTracker.Credit) async {
        let settings = settings(of: credit.guild)
        guard settings.voiceXP > 0 else { return }
        let award = (settings.award(channel: credit.channel, roles: credit.roles, roll: settings.voiceXP) ?? 0) * credit.minutes
        let feature = self
        await context.writes.submit("xp.voice") { db in
            let change = try XPFeature.countVoiceMinutes(db, guild: credit.guild, user: credit.user, name: credit.name, minutes: credit.minutes, award: award)
            guard let change, change.new > change.old else { return nil }
            return { await feature.levelChanged(guild: credit.guild, user: credit.user, from: change.old, to: change.new, channel: nil) }
        }
    }

    static func storeVoiceState(_ db: Database, _ state: VoiceState) throws {
        guard let channel = state.channel else {
            try db.execute(sql: "DELETE FROM xp_voice_states WHERE guild_id = ? AND user_id = ?", arguments: [state.guild.description, state.user.description])
            return
        }
        try db.execute(sql: """
            INSERT INTO xp_voice_states (guild_id, user_id, channel_id, muted, is_bot, name) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (guild_id, user_id) DO UPDATE SET channel_id = excluded.channel_id, muted = excluded.muted,
                is_bot = excluded.is_bot, name = COALESCE(excluded.name, name)
            """, arguments: [state.guild.description, state.user.description, channel.description, state.muted, state.isBot, state.name])
    }

    static func loadVoiceStates(_ db: Database) throws -> [GuildID: [VoiceState]] {
        var states: [GuildID: [VoiceState]] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT guild_id, user_id, channel_id, muted, is_bot, name FROM xp_voice_states") {
            guard let guild = GuildID(row["guild_id"] as String), let user = UserID(row["user_id"] as String),
                  let channel = ChannelID(row["channel_id"] as String) else { continue }
            states[guild, default: []].append(VoiceState(guild: guild, user: user, channel: channel, muted: row["muted"], isBot: row["is_bot"], roles: nil, name: row["name"]))
        }
        return states
    }

    /// Adds `minutes` voice minutes and `award` XP to `user`; the level change, if any.
    static func countVoiceMinutes(_ db: Database, guild: GuildID, user: UserID, name: String?, minutes: Int, award: Int) throws -> (old: Int, new: Int)? {
        let row = try Row.fetchOne(db, sql: """
            INSERT INTO xp_members (guild_id, user_id, xp, level, messages, voice_minutes, name) VALUES (?1, ?2, ?3, 0, 0, ?4, ?5)
            ON CONFLICT (guild_id, user_id) DO UPDATE SET xp = xp + ?3, voice_minutes = voice_minutes + ?4, name = COALESCE(?5, name)
            RETURNING xp, level
            """, arguments: [guild.description, user.description, award, minutes, name])
        guard let row else { return nil }
        return try settle(db, guild: guild, user: user, xp: row["xp"], stored: row["level"])
    }
}
