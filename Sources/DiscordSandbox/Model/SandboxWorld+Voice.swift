import IPC

/// Voice: members joining, leaving and muting in the guild's voice channels (the control API's
/// `POST /sandbox/voice`), each change a VOICE_STATE_UPDATE for the sessions with the
/// GUILD_VOICE_STATES intent, as on Discord.
extension SandboxWorld {
    /// Moves `user` into `channel` (a voice channel) with the given mute and deafen flags, or out
    /// of voice when `channel` is nil. Flags not given keep their value.
    mutating func setVoice(
        user: UInt64, channel: UInt64?, selfMute: Bool?, selfDeaf: Bool?, mute: Bool?, deaf: Bool?
    ) throws(DiscordError) -> JSONValue {
        guard guild.members[user] != nil else { throw .unknownMember }
        guard let channel else {
            guard let state = guild.voiceStates.removeValue(forKey: user) else { return .object(["channel_id": .null]) }
            let json = guild.voiceJSON(state, member: true, channel: .some(nil))
            gateway.dispatch("VOICE_STATE_UPDATE", json, to: .voice, guild: guild.id)
            return json
        }
        guard let target = guild.channel(channel) else { throw .unknownChannel }
        guard target.type == 2 else {
            throw .invalidForm(field: "channel", code: "CHANNEL_TYPE_INVALID", message: "Channel \(channel) is not a voice channel.")
        }
        var state = guild.voiceStates[user] ?? SandboxGuild.VoiceState(user: user, channel: channel, sessionID: random.hex(32))
        state.channel = channel
        if let selfMute { state.selfMute = selfMute }
        if let selfDeaf { state.selfDeaf = selfDeaf }
        if let mute { state.mute = mute }
        if let deaf { state.deaf = deaf }
        guild.voiceStates[user] = state
        let json = guild.voiceJSON(state, member: true)
        gateway.dispatch("VOICE_STATE_UPDATE", json, to: .voice, guild: guild.id)
        return json
    }

    /// A member who leaves the guild leaves voice first, as Discord reports it.
    mutating func leaveVoice(user: UInt64) {
        if guild.voiceStates[user] != nil { _ = try? setVoice(user: user, channel: nil, selfMute: nil, selfDeaf: nil, mute: nil, deaf: nil) }
    }
}
