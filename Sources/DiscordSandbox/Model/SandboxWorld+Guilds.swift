import IPC
import NIOCore

/// The light guilds: guilds 1…N-1 beside the full simulated guild 0 (`--guilds N`). Each is a
/// pure function of its index (`SandboxGuild(light:)`), so only those that changed (a role given,
/// a member edited) are stored, and lookups by guild or channel id are arithmetic on the id's
/// timestamp: O(1), with nothing kept per untouched guild.
struct LightGuilds: Sendable {
    /// Unix milliseconds of index 0, guild 0's creation: light guild `i` is made at `base + i`, so
    /// the N guilds' id timestamps are consecutive and every shard holds N / count of them (±1).
    let base: UInt64
    let bot: SandboxGuild.User
    let owner: SandboxGuild.User
    /// Every guild, guild 0 included: the light guilds are indices 1..<total.
    private(set) var total: Int
    private var changed: [Int: SandboxGuild] = [:]
    /// Guild commands of light guilds (guild 0's are `SandboxWorld.commands`).
    var commands: [UInt64: JSONValue] = [:]
    /// GUILD_CREATE text of unchanged light guilds: with every member, and with the bot's only.
    private let fullTemplate: LightGuildTemplate
    private let botOnlyTemplate: LightGuildTemplate

    init(base: UInt64, bot: SandboxGuild.User, owner: SandboxGuild.User, total: Int) {
        self.base = base
        self.bot = bot
        self.owner = owner
        self.total = max(1, total)
        let example = SandboxGuild(light: 1, baseMilliseconds: base, bot: bot, owner: owner)
        let values = Self.slotValues(index: 1, base: base)
        fullTemplate = LightGuildTemplate(example: example, values: values, allMembers: true)
        botOnlyTemplate = LightGuildTemplate(example: example, values: values, allMembers: false)
    }

    /// What differs between light guilds as made, as quoted JSON in `LightGuildTemplate.Slot`
    /// order: the same values `SandboxGuild(light:)` gives, without building the guild.
    static func slotValues(index: Int, base: UInt64) -> [String] {
        let created = base + UInt64(index)
        func id(_ increment: UInt64) -> String { "\"\(Snowflake.make(unixMilliseconds: created, increment: increment))\"" }
        typealias Increment = SandboxGuild.LightIncrement
        return [
            id(Increment.guild), id(Increment.channel), id(Increment.verifiedRole), id(Increment.botRole), id(Increment.member),
            "\"Sandbox Guild \(index + 1)\"", "\"guild\(index + 1)-member\"", "\"Guild \(index + 1) Member\"",
            "\"" + DiscordTime.iso(created) + "\"", "\"" + DiscordTime.iso(created + 3600_000) + "\"",
            "\"" + DiscordTime.iso(created + 7200_000) + "\"",
        ]
    }

    /// The GUILD_CREATE `d` of light guild `index`, encoded.
    func createEvent(index: Int, allMembers: Bool) -> ByteBuffer {
        if let changed = changed[index] {
            var buffer = ByteBuffer()
            buffer.writeJSON(changed.createEventJSON(allMembers: allMembers))
            return buffer
        }
        return (allMembers ? fullTemplate : botOnlyTemplate).write(Self.slotValues(index: index, base: base))
    }

    func id(at index: Int) -> UInt64 { Snowflake.make(unixMilliseconds: base + UInt64(index), increment: SandboxGuild.LightIncrement.guild) }

    /// The index of the light guild with this id, if there is one.
    func index(of guildID: UInt64) -> Int? { index(guildID, increment: SandboxGuild.LightIncrement.guild) }

    /// The index of the light guild whose text channel has this id.
    func index(ofChannel channelID: UInt64) -> Int? { index(channelID, increment: SandboxGuild.LightIncrement.channel) }

    private func index(_ id: UInt64, increment: UInt64) -> Int? {
        guard id & 0x3f_ffff == increment else { return nil }
        let milliseconds = Snowflake.unixMilliseconds(of: id)
        guard milliseconds > base, milliseconds - base < UInt64(total) else { return nil }
        return Int(milliseconds - base)
    }

    subscript(index: Int) -> SandboxGuild {
        changed[index] ?? SandboxGuild(light: index, baseMilliseconds: base, bot: bot, owner: owner)
    }

    mutating func store(_ guild: SandboxGuild) {
        guard let index = index(of: guild.id) else { return }
        changed[index] = guild
    }

    /// `count` more guilds; returns their indices.
    mutating func add(_ count: Int) -> Range<Int> {
        let first = total
        total += max(0, count)
        return first..<total
    }

    /// The light guilds' indices on shard `id` of `count`, ascending:
    /// `(guild_id >> 22) % count == id`, i.e. `(base - epoch + index) % count == id`.
    func indices(inShard id: Int, of count: Int) -> StrideTo<Int> {
        stride(from: first(inShard: id, of: count), to: total, by: max(1, count))
    }

    func count(inShard id: Int, of count: Int) -> Int {
        let first = first(inShard: id, of: count)
        return first >= total ? 0 : (total - 1 - first) / max(1, count) + 1
    }

    /// The smallest index ≥ 1 on the shard.
    private func first(inShard id: Int, of count: Int) -> Int {
        let count = max(1, count)
        let offset = Int((base - Snowflake.discordEpochMilliseconds) % UInt64(count))
        let residue = ((id - offset) % count + count) % count
        return residue == 0 ? count : residue
    }
}

extension SandboxWorld {
    /// Discord's routing: a guild's events go to shard `(guild_id >> 22) % shard_count`.
    static func shard(ofGuild guildID: UInt64, count: Int) -> Int { Int((guildID >> 22) % UInt64(max(1, count))) }

    var guildCount: Int { lightGuilds.total }

    /// Guild 0 or a light guild, by id.
    func guild(withID id: UInt64) -> SandboxGuild? {
        if id == guild.id { return guild }
        return lightGuilds.index(of: id).map { lightGuilds[$0] }
    }

    func existingGuild(_ id: UInt64) throws(DiscordError) -> SandboxGuild {
        guard let found = guild(withID: id) else { throw .unknownGuild }
        return found
    }

    /// The guild a channel belongs to.
    func guild(ofChannel channelID: UInt64) -> SandboxGuild? {
        if guild.channel(channelID) != nil { return guild }
        return lightGuilds.index(ofChannel: channelID).map { lightGuilds[$0] }
    }

    /// Writes back a guild read with `guild(withID:)` and changed.
    mutating func store(_ changed: SandboxGuild) {
        if changed.id == guild.id { guild = changed } else { lightGuilds.store(changed) }
    }

    /// The ids of the guilds shard `id` of `count` holds: guild 0 first if it is one of them.
    func guildIDs(inShard id: Int, of count: Int) -> [UInt64] {
        var ids: [UInt64] = []
        if Self.shard(ofGuild: guild.id, count: count) == id { ids.append(guild.id) }
        for index in lightGuilds.indices(inShard: id, of: count) { ids.append(lightGuilds.id(at: index)) }
        return ids
    }

    func guildCount(inShard id: Int, of count: Int) -> Int {
        (Self.shard(ofGuild: guild.id, count: count) == id ? 1 : 0) + lightGuilds.count(inShard: id, of: count)
    }

    /// The shard count `GET /gateway/bot` recommends: the control API's override, else one shard
    /// per `guildsPerShardLimit` guilds (Discord: 2,500).
    var recommendedShards: Int {
        gateway.shardsOverride ?? max(1, (guildCount + gateway.guildsPerShardLimit - 1) / gateway.guildsPerShardLimit)
    }

    /// POST /sandbox/guilds: the bot is added to `count` new guilds; each one's GUILD_CREATE goes to
    /// the sessions of its shard.
    mutating func addGuilds(_ count: Int) -> [UInt64] {
        lightGuilds.add(count).map { index in
            let id = lightGuilds.id(at: index)
            let encoded = (lightGuilds.createEvent(index: index, allMembers: true), lightGuilds.createEvent(index: index, allMembers: false))
            gateway.dispatch("GUILD_CREATE", .null, to: .guildCreate(withoutMembers: .null), guild: id, encoded: encoded)
            return id
        }
    }
}

/// A light guild's GUILD_CREATE `d` as text with holes for what differs between light guilds
/// (ids, name, member names, timestamps): the generic JSON of light guild 1, cut at each of those
/// values. Filling it in is a few copies, where building the `JSONValue` and writing it costs
/// milliseconds in a debug build; 2,500 guilds per shard make the difference. Only for light guilds
/// as made (changed ones take the generic path).
struct LightGuildTemplate: Sendable {
    enum Slot: Int, CaseIterable, Sendable {
        case guildID, channelID, verifiedRoleID, botRoleID, memberID, name, memberUsername, memberGlobalName
        case createdAt, botJoinedAt, memberJoinedAt
    }

    private var literals: [ByteBuffer] = []
    private var slots: [Slot] = []

    /// `example`: light guild 1 as made, `values` its slot values; `allMembers`: the GUILD_MEMBERS
    /// shape or the bot-only one.
    init(example: SandboxGuild, values: [String], allMembers: Bool) {
        var text = ByteBuffer()
        text.writeJSON(example.createEventJSON(allMembers: allMembers))
        let bytes = Array(text.readableBytesView)
        let tokens: [(Slot, [UInt8])] = Slot.allCases.map { ($0, Array(values[$0.rawValue].utf8)) }
        var literal: [UInt8] = []
        var position = 0
        scan: while position < bytes.count {
            if bytes[position] == UInt8(ascii: "\"") {
                for (slot, token) in tokens where position + token.count <= bytes.count && bytes[position..<position + token.count].elementsEqual(token) {
                    literals.append(ByteBuffer(bytes: literal))
                    slots.append(slot)
                    literal = []
                    position += token.count
                    continue scan
                }
            }
            literal.append(bytes[position])
            position += 1
        }
        literals.append(ByteBuffer(bytes: literal))
    }

    /// The GUILD_CREATE `d` of the light guild with these slot values.
    func write(_ values: [String]) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(literals.reduce(0) { $0 + $1.readableBytes } + 400)
        for (index, slot) in slots.enumerated() {
            var literal = literals[index]
            out.writeBuffer(&literal)
            out.writeString(values[slot.rawValue])
        }
        var last = literals[literals.count - 1]
        out.writeBuffer(&last)
        return out
    }
}
