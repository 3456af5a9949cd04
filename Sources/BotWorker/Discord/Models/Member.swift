import FoundationEssentials

/// What the features need to know of a guild member, from GUILD_MEMBER_ADD/UPDATE or the REST
/// member list.
struct Member: Sendable, Equatable {
    var guild: GuildID
    var user: UserID
    var roles: Set<RoleID>
    /// Membership screening not passed yet: nothing may be granted while this is true.
    var pending: Bool
    var joinedAt: Date?
    var isBot: Bool
}

/// A message, from MESSAGE_CREATE; `content` is empty unless the MESSAGE_CONTENT intent is on.
struct Message: Sendable, Equatable {
    var id: MessageID
    var guild: GuildID?
    var channel: ChannelID
    var author: UserID
    var authorIsBot: Bool
    var authorRoles: Set<RoleID>
    var content: String
    /// The author's display name (guild nick, else global name, else username), when sent.
    var authorName: String? = nil
    /// When its Gateway frame was read: where the latency of what it causes starts.
    var receivedAt: ContinuousClock.Instant = .now
}

/// Where a member is in voice, from VOICE_STATE_UPDATE or GUILD_CREATE.
struct VoiceState: Sendable, Equatable {
    var guild: GuildID
    var user: UserID
    /// Nil when the member left voice.
    var channel: ChannelID?
    /// Muted or deafened, by themselves or by a moderator.
    var muted: Bool
    var isBot: Bool
    /// The member's roles when the update carried the member (GUILD_CREATE's list does not).
    var roles: Set<RoleID>?
    var name: String?
}
