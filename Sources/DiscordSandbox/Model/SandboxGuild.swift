import IPC

/// The one simulated guild: its roles (with Discord's hierarchy), text channels and members,
/// made deterministically from a seed, and the JSON Discord would show for each.
///
/// Ids are real snowflakes. The times inside them are anchored to the start of the current UTC
/// day, so one seed gives the same guild all day while account ages stay true to the clock.
struct SandboxGuild: Sendable {
    struct User: Sendable {
        var id: UInt64
        var username: String
        var globalName: String?
        var bot = false
    }

    struct Member: Sendable {
        var user: User
        var roles: [UInt64]
        var joinedAt: UInt64
        var pending = false
        var flags = 0
        var nick: String?
    }

    struct Role: Sendable {
        var id: UInt64
        var name: String
        var position: Int
        var permissions: UInt64
        var managed = false
    }

    struct Channel: Sendable {
        var id: UInt64
        var name: String
        var position: Int
        /// 0 a text channel, 2 a voice channel.
        var type = 0
    }

    /// Where a member is in voice, as VOICE_STATE_UPDATE shows it.
    struct VoiceState: Sendable {
        var user: UInt64
        var channel: UInt64
        var selfMute = false
        var selfDeaf = false
        var mute = false
        var deaf = false
        var sessionID: String
    }

    enum Permission {
        static let administrator: UInt64 = 1 << 3
        static let viewChannel: UInt64 = 1 << 10
        static let sendMessages: UInt64 = 1 << 11
        static let embedLinks: UInt64 = 1 << 14
        static let readMessageHistory: UInt64 = 1 << 16
        static let manageRoles: UInt64 = 1 << 28
        static let useApplicationCommands: UInt64 = 1 << 31
        /// What Discord reports for an administrator: every permission bit.
        static let all: UInt64 = (1 << 51) - 1
        static let everyone = viewChannel | sendMessages | readMessageHistory | useApplicationCommands
    }

    static let roleNames = ["Unverified", "Verified", "Member", "Regular", "Veteran", "Moderator", "Bot", "Owner"]
    static let channelNames = ["welcome", "verify", "general", "bot-log", "levels"]
    /// Voice channels, after the text ones; "AFK" is the guild's AFK channel.
    static let voiceChannelNames = ["Lounge", "Gaming", "AFK"]

    let id: UInt64
    let name: String
    let createdAt: UInt64
    let bot: User
    let ownerID: UInt64
    private(set) var roles: [Role]
    let channels: [Channel]
    var members: [UInt64: Member]
    /// 0 NONE … 4 VERY_HIGH (`POST /sandbox/guild {"verificationLevel"}` changes it).
    var verificationLevel = 1
    /// Who is in a voice channel, by user.
    var voiceStates: [UInt64: VoiceState] = [:]
    /// The number the next joining member's name gets.
    var nextMemberNumber: Int
    private var userIncrement: UInt64 = 100

    init(seed: UInt64, memberCount: Int, now: UInt64) {
        var random = SeededRandom(seed: seed)
        let day = DiscordTime.dayMilliseconds
        let anchor = now / day * day
        name = "Sandbox Guild"
        createdAt = anchor - 3 * 365 * day - random.next() % day
        id = Snowflake.make(unixMilliseconds: createdAt, increment: 0)
        var roles = [Role(id: id, name: "@everyone", position: 0, permissions: Permission.everyone)]
        for (index, name) in Self.roleNames.enumerated() {
            let permissions: UInt64 = switch name {
            case "Moderator", "Owner": Permission.administrator
            case "Bot": Permission.manageRoles | Permission.everyone | Permission.embedLinks
            default: 0
            }
            roles.append(Role(
                id: Snowflake.make(unixMilliseconds: createdAt + UInt64(index + 1) * 60_000, increment: 0),
                name: name, position: index + 1, permissions: permissions, managed: name == "Bot"
            ))
        }
        self.roles = roles
        let created = createdAt
        let names = Self.channelNames.map { ($0, 0) } + Self.voiceChannelNames.map { ($0, 2) }
        channels = names.enumerated().map { index, channel in
            Channel(id: Snowflake.make(unixMilliseconds: created + UInt64(index + 1) * 1000, increment: 1), name: channel.0, position: index, type: channel.1)
        }

        let owner = User(id: Snowflake.make(unixMilliseconds: anchor - 6 * 365 * day, increment: 1), username: "sandbox-owner", globalName: "Sandbox Owner")
        bot = User(id: Snowflake.make(unixMilliseconds: anchor - 400 * day, increment: 2), username: "sandbox-bot", bot: true)
        ownerID = owner.id
        members = [:]
        members[owner.id] = Member(user: owner, roles: [roles[8].id], joinedAt: createdAt)
        members[bot.id] = Member(user: bot, roles: [roles[7].id], joinedAt: createdAt + 3600_000)

        let width = max(2, String(memberCount).count)
        let pendingNumbers = Set((0..<min(2, memberCount)).map { memberCount - $0 })
        for number in 1...max(memberCount, 1) where memberCount > 0 {
            let span = memberCount > 1 ? Double(number - 1) / Double(memberCount - 1) : 0
            let ageDays = 2 + span * (8 * 365 - 2)
            let created = anchor - UInt64(ageDays * Double(day)) + random.next() % 3_600_000
            let joinedAgo = random.next() % (730 * day)
            let joined = max(created + 3_600_000, anchor - joinedAgo)
            var memberRoles: [UInt64] = []
            switch random.next() % 10 {
            case 0, 1: memberRoles = [roles[3].id]
            case 2: memberRoles = [roles[3].id, roles[4].id]
            default: break
            }
            let pending = pendingNumbers.contains(number)
            if pending { memberRoles = [] }
            let name = Self.padded(number, width)
            let user = User(id: Snowflake.make(unixMilliseconds: created, increment: UInt64(number)), username: "member-" + name, globalName: "Member " + name)
            members[user.id] = Member(user: user, roles: memberRoles, joinedAt: joined, pending: pending)
        }
        nextMemberNumber = memberCount + 1
    }

    /// Increments in the low 22 bits of a light guild's ids: above anything guild 0's members
    /// (at most 100,000) or the id generator (below 4096) use.
    enum LightIncrement {
        static let guild: UInt64 = 0x30_0000
        static let channel: UInt64 = 0x30_0001
        static let verifiedRole: UInt64 = 0x30_0002
        static let botRole: UInt64 = 0x30_0003
        static let member: UInt64 = 0x30_0004
    }

    /// Light guild number `index` (1…): made at `base + index` ms (the world's base is guild 0's
    /// creation), so its id's timestamp, and so its shard, differs from its neighbours': N guilds
    /// spread over shards evenly, guild 0 included. It has @everyone, a "Verified" role the bot may grant,
    /// the bot's managed role, one text channel "general", and three members: the owner (the
    /// same user as guild 0's), the bot and one ordinary member. A pure function of its arguments,
    /// so the world keeps only the ones that changed.
    init(light index: Int, baseMilliseconds base: UInt64, bot: User, owner: User) {
        let created = base + UInt64(index)
        id = Snowflake.make(unixMilliseconds: created, increment: LightIncrement.guild)
        name = "Sandbox Guild \(index + 1)"
        createdAt = created
        self.bot = bot
        ownerID = owner.id
        roles = [
            Role(id: id, name: "@everyone", position: 0, permissions: Permission.everyone),
            Role(id: Snowflake.make(unixMilliseconds: created, increment: LightIncrement.verifiedRole), name: "Verified", position: 1, permissions: 0),
            Role(
                id: Snowflake.make(unixMilliseconds: created, increment: LightIncrement.botRole), name: "Bot", position: 2,
                permissions: Permission.manageRoles | Permission.everyone | Permission.embedLinks, managed: true
            ),
        ]
        channels = [Channel(id: Snowflake.make(unixMilliseconds: created, increment: LightIncrement.channel), name: "general", position: 0)]
        let member = User(
            id: Snowflake.make(unixMilliseconds: created, increment: LightIncrement.member),
            username: "guild\(index + 1)-member", globalName: "Guild \(index + 1) Member"
        )
        members = [
            owner.id: Member(user: owner, roles: [], joinedAt: created),
            bot.id: Member(user: bot, roles: [roles[2].id], joinedAt: created + 3600_000),
            member.id: Member(user: member, roles: [], joinedAt: created + 7200_000),
        ]
        nextMemberNumber = 2
    }

    static func padded(_ number: Int, _ width: Int) -> String {
        let text = String(number)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }

    // MARK: - Lookups

    func role(_ id: UInt64) -> Role? { roles.first { $0.id == id } }
    func channel(_ id: UInt64) -> Channel? { channels.first { $0.id == id } }
    func channel(named name: String) -> Channel { channels.first { $0.name == name } ?? channels[0] }
    var afkChannel: Channel? { channels.first { $0.name == "AFK" && $0.type == 2 } }

    /// The position of the bot's highest role: it can grant only roles below it.
    var botTopPosition: Int {
        (members[bot.id]?.roles ?? []).compactMap { role($0)?.position }.max() ?? 0
    }

    /// Human members (not the bot, not the owner), sorted by id.
    var humans: [Member] {
        members.values.filter { !$0.user.bot && $0.user.id != ownerID }.sorted { $0.user.id < $1.user.id }
    }

    /// What the member may do, as Discord computes it for an interaction's `member.permissions`.
    func permissions(of member: Member) -> UInt64 {
        if member.user.id == ownerID { return Permission.all }
        let bits = member.roles.compactMap { role($0)?.permissions }.reduce(roles[0].permissions, |)
        return bits & Permission.administrator != 0 ? Permission.all : bits
    }

    /// A new member joins: its account made `accountAgeDays` ago.
    mutating func join(accountAgeDays: Double, pending: Bool, now: UInt64) -> Member {
        userIncrement += 1
        let created = now - UInt64(max(accountAgeDays, 0) * Double(DiscordTime.dayMilliseconds))
        let name = Self.padded(nextMemberNumber, 2)
        nextMemberNumber += 1
        let user = User(id: Snowflake.make(unixMilliseconds: created, increment: userIncrement), username: "member-" + name, globalName: "Member " + name)
        let member = Member(user: user, roles: [], joinedAt: now, pending: pending)
        members[user.id] = member
        return member
    }

    // MARK: - JSON as Discord shows it

    static func json(_ user: User) -> JSONValue {
        var object: [String: JSONValue] = [
            "id": .id(user.id), "username": .string(user.username), "global_name": user.globalName.map(JSONValue.string) ?? .null,
            "avatar": .null, "discriminator": .string("0"), "public_flags": .integer(0), "flags": .integer(0),
            "primary_guild": .null,
        ]
        if user.bot { object["bot"] = .bool(true) }
        return .object(object)
    }

    /// The guild member object; with `guildID` it is the GUILD_MEMBER_ADD shape.
    static func json(_ member: Member, guildID: UInt64? = nil) -> JSONValue {
        var object: [String: JSONValue] = [
            "user": json(member.user), "roles": .array(member.roles.map(JSONValue.id)),
            "joined_at": .string(DiscordTime.iso(member.joinedAt)), "pending": .bool(member.pending),
            "flags": .integer(member.flags), "nick": member.nick.map(JSONValue.string) ?? .null, "avatar": .null, "banner": .null,
            "premium_since": .null, "deaf": .bool(false), "mute": .bool(false), "communication_disabled_until": .null,
        ]
        if let guildID { object["guild_id"] = .id(guildID) }
        return .object(object)
    }

    func json(_ role: Role) -> JSONValue {
        var object: [String: JSONValue] = [
            "id": .id(role.id), "name": .string(role.name), "color": .integer(0), "hoist": .bool(false),
            "colors": .object(["primary_color": .integer(0), "secondary_color": .null, "tertiary_color": .null]),
            "icon": .null, "unicode_emoji": .null, "position": .integer(role.position),
            "permissions": .string(String(role.permissions)), "managed": .bool(role.managed),
            "mentionable": .bool(false), "flags": .integer(0),
        ]
        if role.managed { object["tags"] = .object(["bot_id": .id(bot.id)]) }
        return .object(object)
    }

    func json(_ channel: Channel) -> JSONValue {
        .object([
            "id": .id(channel.id), "type": .integer(channel.type), "guild_id": .id(id), "name": .string(channel.name),
            "position": .integer(channel.position), "parent_id": .null, "topic": .null, "nsfw": .bool(false),
            "permission_overwrites": .array([]), "rate_limit_per_user": .integer(0), "last_message_id": .null,
        ])
    }

    /// A voice state; VOICE_STATE_UPDATE carries the member, GUILD_CREATE's list does not.
    /// `channel` nil: the member left voice.
    func voiceJSON(_ state: VoiceState, member withMember: Bool, channel: UInt64?? = nil) -> JSONValue {
        let channelID = channel ?? state.channel
        var object: [String: JSONValue] = [
            "user_id": .id(state.user), "channel_id": channelID.map(JSONValue.id) ?? .null, "session_id": .string(state.sessionID),
            "self_mute": .bool(state.selfMute), "self_deaf": .bool(state.selfDeaf), "mute": .bool(state.mute), "deaf": .bool(state.deaf),
            "self_video": .bool(false), "suppress": .bool(false), "request_to_speak_timestamp": .null,
        ]
        if withMember {
            object["guild_id"] = .id(id)
            if let member = members[state.user] { object["member"] = Self.json(member) }
        }
        return .object(object)
    }

    var rolesJSON: JSONValue { .array(roles.map(json)) }
    var channelsJSON: JSONValue { .array(channels.map(json)) }

    /// The guild object of GET /guilds/{id}.
    var json: JSONValue {
        .object([
            "id": .id(id), "name": .string(name), "icon": .null, "splash": .null, "owner_id": .id(ownerID),
            "roles": rolesJSON, "emojis": .array([]), "stickers": .array([]), "features": .array([]),
            "verification_level": .integer(verificationLevel), "default_message_notifications": .integer(0),
            "explicit_content_filter": .integer(0), "mfa_level": .integer(0), "nsfw_level": .integer(0),
            "premium_tier": .integer(0), "premium_subscription_count": .integer(0), "preferred_locale": .string("en-US"),
            "system_channel_id": .id(channel(named: "welcome").id), "rules_channel_id": .null, "afk_timeout": .integer(300),
            "application_id": .null, "description": .null, "max_members": .integer(500_000),
            "region": .string("deprecated"), "afk_channel_id": afkChannel.map { .id($0.id) } ?? .null, "system_channel_flags": .integer(0),
            "widget_enabled": .bool(false), "widget_channel_id": .null, "banner": .null, "discovery_splash": .null,
            "home_header": .null, "vanity_url_code": .null, "max_presences": .null, "max_video_channel_users": .integer(25),
            "max_stage_video_channel_users": .integer(50), "public_updates_channel_id": .null, "safety_alerts_channel_id": .null,
            "premium_progress_bar_enabled": .bool(false), "nsfw": .bool(false), "incidents_data": .null,
        ])
    }

    /// The GUILD_CREATE data; without the GUILD_MEMBERS intent only the bot's own member is in it.
    func createEventJSON(allMembers: Bool) -> JSONValue {
        guard case .object(var object) = json else { return json }
        let shown = allMembers ? members.values.sorted { $0.user.id < $1.user.id } : members[bot.id].map { [$0] } ?? []
        object["channels"] = channelsJSON
        object["members"] = .array(shown.map { Self.json($0) })
        object["member_count"] = .integer(members.count)
        object["joined_at"] = .string(DiscordTime.iso(members[bot.id]?.joinedAt ?? createdAt))
        object["large"] = .bool(false)
        object["unavailable"] = .bool(false)
        object["voice_states"] = .array(voiceStates.values.sorted { $0.user < $1.user }.map { voiceJSON($0, member: false) })
        for empty in ["threads", "presences", "stage_instances", "guild_scheduled_events", "soundboard_sounds"] {
            object[empty] = .array([])
        }
        return .object(object)
    }
}
