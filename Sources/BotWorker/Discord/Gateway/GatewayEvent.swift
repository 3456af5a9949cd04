import FoundationEssentials
import IPC

/// The dispatches (op 0) the bot acts on, decoded straight into typed payloads while the envelope
/// is read: one parse per message, which matters at thousands of MESSAGE_CREATE a second.
///
/// Property names mirror Discord's JSON (`guild_id`, `joined_at`), so no coding keys can drift
/// from the documentation. Fields Discord adds later are ignored; a known event that does not
/// decode is `undecodable`, logged and skipped, and never costs the connection its sequence.
enum GatewayEvent: Sendable, Equatable {
    case ready(ReadyPayload)
    case guildCreate(GuildPayload)
    /// The guild's settings changed (its verification level, say): the guild object, no members.
    case guildUpdate(GuildPayload)
    case memberAdd(MemberPayload)
    case memberUpdate(MemberPayload)
    case memberRemove(MemberRemovePayload)
    case messageCreate(MessagePayload)
    case voiceStateUpdate(VoiceStatePayload)
    /// Interactions carry open-ended command options: kept as JSON for the command router.
    case interactionCreate(JSONValue)
    /// A type this build does not handle (Discord adds them without notice).
    case other
    /// A known type whose payload did not decode: what was wrong.
    case undecodable(String)

    /// Decodes `d` of a dispatch of type `type` from the envelope's container.
    static func decode<Key: CodingKey>(type: String, from container: KeyedDecodingContainer<Key>, key: Key) -> GatewayEvent {
        do {
            switch type {
            case "READY": return .ready(try container.decode(ReadyPayload.self, forKey: key))
            case "GUILD_CREATE": return .guildCreate(try container.decode(GuildPayload.self, forKey: key))
            case "GUILD_UPDATE": return .guildUpdate(try container.decode(GuildPayload.self, forKey: key))
            case "GUILD_MEMBER_ADD": return .memberAdd(try container.decode(MemberPayload.self, forKey: key))
            case "GUILD_MEMBER_UPDATE": return .memberUpdate(try container.decode(MemberPayload.self, forKey: key))
            case "GUILD_MEMBER_REMOVE": return .memberRemove(try container.decode(MemberRemovePayload.self, forKey: key))
            case "MESSAGE_CREATE": return .messageCreate(try container.decode(MessagePayload.self, forKey: key))
            case "VOICE_STATE_UPDATE": return .voiceStateUpdate(try container.decode(VoiceStatePayload.self, forKey: key))
            case "INTERACTION_CREATE": return .interactionCreate(try container.decode(JSONValue.self, forKey: key))
            default: return .other
            }
        } catch {
            return .undecodable("\(type): \(error)")
        }
    }

    /// The types decoded here; others keep `d` as loose JSON.
    static let typed: Set<String> = [
        "READY", "GUILD_CREATE", "GUILD_UPDATE", "GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE", "MESSAGE_CREATE",
        "INTERACTION_CREATE", "VOICE_STATE_UPDATE",
    ]
}

/// One dispatch as the gateway client hands it on.
struct GatewayDispatch: Sendable {
    var type: String
    /// The shard whose connection it came in on (0 when unsharded), and the shard count it
    /// identified with.
    var shard = 0
    var shardCount = 1
    var sequence: Int?
    /// The session it came in, and where to resume it: stored with its effects.
    var sessionID: String? = nil
    var resumeURL: String? = nil
    var event: GatewayEvent
    /// When its frame was read: the start of its end-to-end latency.
    var receivedAt: ContinuousClock.Instant
}

struct UserPayload: Codable, Sendable, Equatable {
    var id: UserID
    var username: String?
    var global_name: String?
    var bot: Bool?
}

struct ReadyPayload: Codable, Sendable, Equatable {
    struct UnavailableGuild: Codable, Sendable, Equatable {
        var id: GuildID
    }

    struct Application: Codable, Sendable, Equatable {
        var id: ApplicationID
    }

    var session_id: String
    var resume_gateway_url: String?
    var user: UserPayload
    var guilds: [UnavailableGuild]
    var application: Application?
}

struct RolePayload: Codable, Sendable, Equatable {
    var id: RoleID
    var name: String
    var position: Int
    /// A bitset as a decimal string.
    var permissions: String
    var managed: Bool?
}

struct ChannelPayload: Codable, Sendable, Equatable {
    var id: ChannelID
    var type: Int
    var name: String?
}

/// A guild member; in MESSAGE_CREATE it comes without `user` (the author is beside it).
struct MemberPayload: Codable, Sendable, Equatable {
    var guild_id: GuildID?
    var user: UserPayload?
    var roles: [RoleID]
    var joined_at: String?
    var pending: Bool?
    var nick: String?

    func member(in guild: GuildID) -> Member? {
        guard let user else { return nil }
        return Member(
            guild: guild_id ?? guild, user: user.id, roles: Set(roles), pending: pending ?? false,
            joinedAt: joined_at.flatMap(Self.date), isBot: user.bot ?? false
        )
    }

    /// Discord's timestamps have microseconds (`2021-04-01T12:34:56.789000+00:00`) or none.
    static func date(_ text: String) -> Date? { Timestamp.parse(text) }
}

struct MemberRemovePayload: Codable, Sendable, Equatable {
    var guild_id: GuildID
    var user: UserPayload
}

struct GuildPayload: Codable, Sendable, Equatable {
    var id: GuildID
    var name: String?
    var owner_id: UserID?
    var unavailable: Bool?
    var roles: [RolePayload]?
    var channels: [ChannelPayload]?
    var members: [MemberPayload]?
    /// 0 NONE … 4 VERY_HIGH: what Discord asks of a member before they may use the server.
    var verification_level: Int?
    var voice_states: [VoiceStatePayload]?
    var afk_channel_id: ChannelID?
}

/// VOICE_STATE_UPDATE (with the member), or an entry of GUILD_CREATE's `voice_states` (without).
struct VoiceStatePayload: Codable, Sendable, Equatable {
    var guild_id: GuildID?
    /// Nil when the member left voice.
    var channel_id: ChannelID?
    var user_id: UserID
    var member: MemberPayload?
    var mute: Bool?
    var deaf: Bool?
    var self_mute: Bool?
    var self_deaf: Bool?

    func state(in guild: GuildID) -> VoiceState {
        VoiceState(
            guild: guild_id ?? guild, user: user_id, channel: channel_id,
            muted: (mute ?? false) || (deaf ?? false) || (self_mute ?? false) || (self_deaf ?? false),
            isBot: member?.user?.bot ?? false, roles: member.map { Set($0.roles) },
            name: member.flatMap { XPFeature.displayName(nick: $0.nick, globalName: $0.user?.global_name, username: $0.user?.username) }
        )
    }
}

struct MessagePayload: Codable, Sendable, Equatable {
    var id: MessageID
    var channel_id: ChannelID
    var guild_id: GuildID?
    var author: UserPayload
    var member: MemberPayload?
    var content: String?

    var message: Message {
        Message(
            id: id, guild: guild_id, channel: channel_id, author: author.id, authorIsBot: author.bot ?? false,
            authorRoles: Set(member?.roles ?? []), content: content ?? "",
            authorName: XPFeature.displayName(nick: member?.nick, globalName: author.global_name, username: author.username)
        )
    }
}
