#if canImport(Glibc)
import Glibc
#endif
import IPC

/// The simulated members' own doings, at `activityPerMinute` on average (Poisson arrivals), while
/// at least one session is live (connected, or dropped and still resumable): 76 % messages in
/// #general, 4 % voice (joining a voice channel, leaving it, muting), 5 % joins (a third pending
/// screening), 5 % a pending member completing screening, 2 % leaves, 8 % presses of a button on
/// one of the bot's messages.
struct Activity: Sendable {
    let sandbox: Sandbox

    func run() async {
        var random = SeededRandom(seed: sandbox.configuration.seed &+ 0xac7)
        while !Task.isCancelled {
            let perMinute = sandbox.withWorld { $0.activityPerMinute }
            guard perMinute > 0 else {
                try? await Task.sleep(for: .milliseconds(250))
                continue
            }
            let uniform = Double(random.next() >> 11) / Double(1 << 53)
            let wait = min(-log1p(-uniform) * 60 / perMinute, 1.0)
            try? await Task.sleep(for: .milliseconds(Int64(wait * 1000)))
            // Waits longer than 1 s are cut into 1 s steps so a rate change takes effect soon; the
            // step acts only with the matching probability, which keeps the arrivals Poisson.
            if wait >= 1.0, Double(random.next() >> 11) / Double(1 << 53) > perMinute / 60 { continue }
            let roll = Int(random.next() % 100)
            sandbox.withWorld { world in world.simulate(roll: roll) }
        }
    }
}

extension SandboxWorld {
    mutating func simulate(roll: Int) {
        // As on Discord, members go on while the bot is away: a session that dropped and can
        // still be resumed receives their events, which its Resume replays.
        guard !gateway.liveSessionIDs(at: DiscordTime.nowMilliseconds()).isEmpty else { return }
        let humans = guild.humans
        guard !humans.isEmpty else {
            _ = join(count: 1, pending: false, accountAgeDays: nil)
            return
        }
        let someone = humans[Int(random.next() % UInt64(humans.count))]
        switch roll {
        case 76..<80:
            moveInVoice(someone)
        case 80..<85:
            _ = join(count: 1, pending: random.next() % 3 == 0, accountAgeDays: nil)
        case 85..<90:
            if var member = humans.first(where: \.pending) {
                member.pending = false
                memberUpdated(member)
                return
            }
            postChatter(from: someone)
        case 90..<92 where humans.count > 5:
            try? leave(user: someone.user.id)
        case 92..<100:
            let buttons = messages.filter { $0.authorID == guild.bot.id && !$0.customIDs.isEmpty }
            guard let target = buttons.last, let custom = target.customIDs.first else { return postChatter(from: someone) }
            _ = try? createInteraction(
                user: someone.user.id, kind: .button, name: nil, options: nil, customID: custom, channel: target.channelID, message: target.id
            )
        default:
            postChatter(from: someone)
        }
    }

    /// Out of voice: joins a voice channel (rarely the AFK one). In voice: leaves, mutes or
    /// unmutes, or moves.
    private mutating func moveInVoice(_ member: SandboxGuild.Member) {
        let voice = guild.channels.filter { $0.type == 2 }
        guard !voice.isEmpty else { return }
        let pick = voice[Int(random.next() % UInt64(voice.count))].id
        let user = member.user.id
        guard let state = guild.voiceStates[user] else {
            _ = try? setVoice(user: user, channel: pick, selfMute: false, selfDeaf: false, mute: nil, deaf: nil)
            return
        }
        switch random.next() % 4 {
        case 0: _ = try? setVoice(user: user, channel: nil, selfMute: nil, selfDeaf: nil, mute: nil, deaf: nil)
        case 1: _ = try? setVoice(user: user, channel: state.channel, selfMute: !state.selfMute, selfDeaf: nil, mute: nil, deaf: nil)
        default: _ = try? setVoice(user: user, channel: pick, selfMute: nil, selfDeaf: nil, mute: nil, deaf: nil)
        }
    }

    private mutating func postChatter(from member: SandboxGuild.Member) {
        let count = 3 + Int(random.next() % 12)
        let content = (0..<count).map { _ in Self.words[Int(random.next() % UInt64(Self.words.count))] }.joined(separator: " ")
        _ = try? postMessage(channel: guild.channel(named: "general").id, author: member.user, content: content)
    }
}
