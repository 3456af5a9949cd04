import FoundationEssentials
import Testing

@testable import BotWorker

/// `VoiceTracker`: who earns voice minutes, and how many.
@Suite struct VoiceTrackerTests {
    static let guild = GuildID(1)
    static let lounge = ChannelID(10)
    static let gaming = ChannelID(11)
    static let afk = ChannelID(12)

    static func state(_ user: UInt64, _ channel: ChannelID?, muted: Bool = false, bot: Bool = false, roles: Set<RoleID>? = nil) -> VoiceState {
        VoiceState(guild: guild, user: UserID(user), channel: channel, muted: muted, isBot: bot, roles: roles, name: nil)
    }

    func tracker(_ states: [VoiceState]) -> VoiceTracker {
        var tracker = VoiceTracker(minute: 60)
        tracker.replace(guild: Self.guild, afk: Self.afk, states: states, roles: [:], now: 0)
        return tracker
    }

    func minutes(_ credits: [VoiceTracker.Credit]) -> [UInt64: Int] {
        Dictionary(credits.map { ($0.user.rawValue, $0.minutes) }, uniquingKeysWith: +)
    }

    @Test func twoHumansTogetherEarnAndTheLoneOneDoesNot() {
        var tracker = tracker([Self.state(1, Self.lounge), Self.state(2, Self.gaming), Self.state(3, Self.gaming)])
        #expect(minutes(tracker.collect(now: 185)) == [2: 3, 3: 3])
        // The 5 s left over carry on to the next minute.
        #expect(minutes(tracker.collect(now: 240)) == [2: 1, 3: 1])
    }

    @Test func mutedDeafenedBotsAndTheAFKChannelEarnNothing() {
        var tracker = tracker([
            Self.state(1, Self.lounge, muted: true), Self.state(2, Self.lounge),  // 2 has company (1 is human), 1 is muted
            Self.state(3, Self.gaming), Self.state(4, Self.gaming, bot: true),  // a bot is no company
            Self.state(5, Self.afk), Self.state(6, Self.afk),
        ])
        #expect(minutes(tracker.collect(now: 600)) == [2: 10])
    }

    @Test func timeIsCountedBetweenChangesAndALeaverKeepsWholeMinutes() {
        var tracker = tracker([Self.state(1, Self.lounge)])
        tracker.update(Self.state(2, Self.lounge), now: 100)  // company from 100 s
        tracker.update(Self.state(1, Self.lounge, muted: true), now: 190)  // 1 mutes after 90 s
        tracker.update(Self.state(1, Self.lounge), now: 250)  // and unmutes
        tracker.update(Self.state(2, nil), now: 310)  // 2 leaves after 210 s: 3 whole minutes
        // 1 earned 90 + 60 s = 2 minutes 30 s; alone since 310 s.
        #expect(minutes(tracker.collect(now: 1000)) == [1: 2, 2: 3])
        #expect(tracker.presence(guild: Self.guild, user: UserID(2)) == nil)
    }

    @Test func creditsCarryTheChannelAndTheLatestRoles() {
        var tracker = tracker([Self.state(1, Self.lounge, roles: [RoleID(7)]), Self.state(2, Self.lounge)])
        tracker.updateRoles(guild: Self.guild, user: UserID(1), roles: [RoleID(8)])
        let credit = tracker.collect(now: 60).first { $0.user == UserID(1) }
        #expect(credit?.channel == Self.lounge)
        #expect(credit?.roles == [RoleID(8)])
    }

    @Test func syncGivesMissingRewardsAndTakesUndueOnes() {
        var settings = XPSettings()
        settings.rewards = [1: RoleID(100), 5: RoleID(500)]
        #expect(XPSync.changes(level: 3, holding: [RoleID(500)], settings: settings) == (add: [RoleID(100)], remove: [RoleID(500)]))
        #expect(XPSync.changes(level: 0, holding: [RoleID(9)], settings: settings) == (add: [], remove: []))
        settings.rewardMode = .replace
        #expect(XPSync.changes(level: 6, holding: [RoleID(100)], settings: settings) == (add: [RoleID(500)], remove: [RoleID(100)]))
    }
}
