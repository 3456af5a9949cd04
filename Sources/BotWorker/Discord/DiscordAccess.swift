import FoundationEssentials
import IPC
import Logging

/// What features may ask of Discord, and what the core knows of each guild (its roles, the bot's
/// roles, its owner), kept current from the Gateway. Features never see the connection itself.
///
/// Role changes are checked here before they go out: a role above the bot's highest role, a
/// managed role, or a missing Manage Roles permission would be refused by Discord with a 403, and
/// 403s count towards the 10,000-per-10-minutes ban, so they are refused here instead.
actor DiscordAccess {
    struct NotConnected: Error, CustomStringConvertible {
        var description: String { "the bot is not connected to Discord yet; try again in a moment" }
    }

    struct GuildState: Sendable {
        var roles: [RoleID: RolePayload] = [:]
        var ownerID: UserID?
        var botRoles: Set<RoleID> = []
        /// `verification_level`: 0 NONE … 4 VERY_HIGH.
        var verificationLevel = 0
        /// The voice channel where idle members are moved (they earn no voice XP there).
        var afkChannel: ChannelID?
    }

    static let administrator: UInt64 = 1 << 3
    static let manageRoles: UInt64 = 1 << 28

    private var rest: DiscordREST?
    private(set) var botUser: UserID?
    private(set) var applicationID: ApplicationID?
    private var guilds: [GuildID: GuildState] = [:]

    func attach(_ rest: DiscordREST) {
        self.rest = rest
    }

    func identify(bot: UserID, application: ApplicationID) {
        botUser = bot
        applicationID = application
    }

    func guildAvailable(_ guild: GuildPayload) {
        var state = GuildState()
        state.roles = Dictionary((guild.roles ?? []).map { ($0.id, $0) }, uniquingKeysWith: { $1 })
        state.ownerID = guild.owner_id
        state.verificationLevel = guild.verification_level ?? 0
        state.afkChannel = guild.afk_channel_id
        if let botUser, let me = guild.members?.first(where: { $0.user?.id == botUser }) {
            state.botRoles = Set(me.roles)
        }
        guilds[guild.id] = state
    }

    /// GUILD_UPDATE: the guild object without its members; the bot's roles stay as they were.
    func guildUpdated(_ guild: GuildPayload) {
        guard var state = guilds[guild.id] else { return }
        if let roles = guild.roles { state.roles = Dictionary(roles.map { ($0.id, $0) }, uniquingKeysWith: { $1 }) }
        if let owner = guild.owner_id { state.ownerID = owner }
        if let level = guild.verification_level { state.verificationLevel = level }
        state.afkChannel = guild.afk_channel_id
        guilds[guild.id] = state
    }

    /// The guild's verification level (0 NONE … 4 VERY_HIGH), as of its last GUILD_CREATE or
    /// GUILD_UPDATE.
    func verificationLevel(of guild: GuildID) -> Int { guilds[guild]?.verificationLevel ?? 0 }

    func memberUpdated(_ member: Member) {
        if member.user == botUser { guilds[member.guild]?.botRoles = member.roles }
    }

    var guildCount: Int { guilds.count }
    var guildIDs: [GuildID] { Array(guilds.keys) }

    func roles(of guild: GuildID) -> [RoleID: RolePayload] { guilds[guild]?.roles ?? [:] }

    /// The AFK voice channels of the guilds the bot knows, by guild.
    var afkChannels: [GuildID: ChannelID?] { guilds.mapValues(\.afkChannel) }

    /// Why the bot cannot give or take `role` in `guild`, or nil when it can.
    func cannotManage(_ role: RoleID, in guild: GuildID) -> String? {
        guard let state = guilds[guild] else { return "the bot does not know this server yet" }
        guard let target = state.roles[role] else { return "the role <@&\(role)> does not exist (deleted?)" }
        if target.managed == true { return "<@&\(role)> is managed by an integration; nobody can give it by hand" }
        if role.rawValue == guild.rawValue { return "@everyone cannot be given" }
        let mine = state.botRoles.compactMap { state.roles[$0] } + (state.roles[RoleID(guild.rawValue)].map { [$0] } ?? [])
        let permissions = mine.reduce(UInt64(0)) { $0 | (UInt64($1.permissions) ?? 0) }
        if permissions & (Self.administrator | Self.manageRoles) == 0 {
            return "the bot lacks the Manage Roles permission: give its role Manage Roles in Server Settings → Roles"
        }
        let highest = mine.map(\.position).max() ?? 0
        if target.position >= highest {
            return "<@&\(role)> is not below the bot's highest role: move the bot's role above it in Server Settings → Roles"
        }
        return nil
    }

    private func client() throws -> DiscordREST {
        guard let rest else { throw NotConnected() }
        return rest
    }

    func addRole(guild: GuildID, user: UserID, role: RoleID, reason: String) async throws {
        if let why = cannotManage(role, in: guild) { throw CommandRefusal(description: "Cannot give <@&\(role)>: \(why).") }
        try await client().addRole(guild: guild, user: user, role: role, reason: reason)
    }

    func removeRole(guild: GuildID, user: UserID, role: RoleID, reason: String) async throws {
        if let why = cannotManage(role, in: guild) { throw CommandRefusal(description: "Cannot take <@&\(role)>: \(why).") }
        try await client().removeRole(guild: guild, user: user, role: role, reason: reason)
    }

    @discardableResult
    func send(to channel: ChannelID, _ message: JSONValue) async throws -> MessageID? {
        let answer = try await client().createMessage(channel: channel, message)
        return answer?["id"]?.stringValue.flatMap(MessageID.init)
    }

    /// Every member of `guild`, page by page (1000 a request).
    func members(of guild: GuildID) async throws -> [Member] {
        let rest = try client()
        var all: [Member] = []
        var after: UserID?
        while true {
            let page = try await rest.members(guild: guild, after: after)
            let decoded = page.compactMap { json -> Member? in
                guard let data = try? JSONEncoder().encode(json), let payload = try? JSONLine.decode(MemberPayload.self, from: data) else { return nil }
                return payload.member(in: guild)
            }
            all += decoded
            guard page.count == 1000, let last = decoded.map(\.user).max() else { return all }
            after = last
        }
    }

    /// Replaces the first answer to an interaction (progress of a long command, then its result).
    func editOriginal(application: ApplicationID, token: String, _ message: JSONValue) async throws {
        try await client().editOriginal(application: application, token: token, message)
    }

    /// A member's uploaded file (an interaction's attachment), at most `limit` bytes.
    func download(_ url: String, limit: Int) async throws -> [UInt8] {
        try await client().download(url, limit: limit)
    }

    /// One member, or nil when they left.
    func member(_ user: UserID, of guild: GuildID) async throws -> Member? {
        do {
            guard let json = try await client().member(guild: guild, user: user),
                  let data = try? JSONEncoder().encode(json),
                  let payload = try? JSONLine.decode(MemberPayload.self, from: data) else { return nil }
            return payload.member(in: guild)
        } catch let failure as DiscordREST.Failure where failure.code == 10007 || failure.status == 404 {
            return nil
        }
    }
}
