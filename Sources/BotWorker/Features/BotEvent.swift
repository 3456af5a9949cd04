/// The typed events the core publishes. Features never import each other: what one does that
/// another may care about (a member verified, a level reached) travels as one of these.
enum BotEvent: Sendable, Equatable {
    /// A guild the bot serves became available (GUILD_CREATE), with the members Discord sent.
    case guildAvailable(guild: GuildID, members: [Member])
    case memberJoined(Member)
    case memberUpdated(Member)
    case memberLeft(guild: GuildID, user: UserID)
    case messageCreated(Message)
    /// Published by the verification feature.
    case memberVerified(guild: GuildID, user: UserID)
    /// Published by the XP feature.
    case levelReached(guild: GuildID, user: UserID, level: Int)
    /// After a lost Gateway session: members who joined while no event reached the bot.
    case membersJoinedWhileAway(guild: GuildID, members: [Member])
    /// A guild became available: who is in voice, and its AFK channel (published before
    /// `guildAvailable`, whose members give the roles of those in voice).
    case voiceStatesAvailable(guild: GuildID, afkChannel: ChannelID?, states: [VoiceState])
    /// A member joined, left, moved or muted in voice.
    case voiceStateChanged(VoiceState)

    /// The event's kind, which subscribers filter on.
    var kind: Kind {
        switch self {
        case .guildAvailable: .guildAvailable
        case .memberJoined: .memberJoined
        case .memberUpdated: .memberUpdated
        case .memberLeft: .memberLeft
        case .messageCreated: .messageCreated
        case .memberVerified: .memberVerified
        case .levelReached: .levelReached
        case .membersJoinedWhileAway: .membersJoinedWhileAway
        case .voiceStatesAvailable: .voiceStatesAvailable
        case .voiceStateChanged: .voiceStateChanged
        }
    }

    enum Kind: Sendable, Hashable, CaseIterable {
        case guildAvailable, memberJoined, memberUpdated, memberLeft, messageCreated, memberVerified, levelReached, membersJoinedWhileAway
        case voiceStatesAvailable, voiceStateChanged
    }
}
