import FoundationEssentials
import GRDB
import Glibc
import Logging
import Synchronization
import Testing

@testable import BotWorker

@Suite struct XPTests {
    @Test func theCurveIsMEE6s() {
        #expect(XPCurve.xpToNext(from: 0) == 100)
        #expect(XPCurve.xpToNext(from: 1) == 155)
        #expect(XPCurve.totalXP(for: 10) == 4675)
        #expect(XPCurve.totalXP(for: 50) == 268_375)
        #expect(XPCurve.level(forXP: 0) == 0)
        #expect(XPCurve.level(forXP: 99) == 0)
        #expect(XPCurve.level(forXP: 100) == 1)
        #expect(XPCurve.level(forXP: 254) == 1)
        #expect(XPCurve.level(forXP: 255) == 2)
        #expect(XPCurve.level(forXP: 4675) == 10)
    }

    func database() throws -> DatabasePool {
        var template = Array("/tmp/xpXXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        let pool = try AppDatabase.openPool(path: directory + "/bot.sqlite")
        try AppDatabase.migrate(AppDatabase.migrator(features: [XPFeature.self]), pool)
        return pool
    }

    @Test func everyMessageCountsButXPComesOncePerCooldown() throws {
        let pool = try database()
        let guild = GuildID(1), user = UserID(2)
        try pool.write { (db: Database) throws in
            _ = try XPFeature.countMessage(db, guild: guild, user: user, award: 20, at: 1000, cooldown: 60)
            _ = try XPFeature.countMessage(db, guild: guild, user: user, award: 20, at: 1030, cooldown: 60)
            _ = try XPFeature.countMessage(db, guild: guild, user: user, award: 20, at: 1059, cooldown: 60)
            _ = try XPFeature.countMessage(db, guild: guild, user: user, award: 20, at: 1060, cooldown: 60)
        }
        let row = try pool.read { try Row.fetchOne($0, sql: "SELECT xp, messages, last_award_at FROM xp_members")! }
        #expect(row["xp"] as Int == 40)
        #expect(row["messages"] as Int == 4)
        #expect(row["last_award_at"] as Double == 1060)
    }

    @Test func crossingALevelIsReportedOnce() throws {
        let pool = try database()
        let guild = GuildID(1), user = UserID(2)
        let levels = try pool.write { (db: Database) throws -> [Int?] in
            var levels: [Int?] = []
            for i in 0..<6 {
                let change = try XPFeature.countMessage(db, guild: guild, user: user, award: 25, at: Double(i * 60), cooldown: 60)
                levels.append(change?.new)
            }
            return levels
        }
        // 25, 50, 75, 100 (level 1), 125, 150.
        #expect(levels == [nil, nil, nil, 1, nil, nil])
        #expect(try pool.read { try Int.fetchOne($0, sql: "SELECT level FROM xp_members") } == 1)
    }

    @Test func messagesFlowThroughTheGroupCommitAndPublishLevels() async throws {
        let pool = try database()
        let database = SafeDatabase(writer: pool, logger: Logger(label: "database")) { _ in }
        let events = EventBus(logger: Logger(label: "bot"))
        let writes = WriteBatcher(database: database, logger: Logger(label: "database"))
        let feature = XPFeature(context: FeatureContext(database: database, logger: Logger(label: "xp"), audit: Logger(label: "audit"), events: events, writes: writes, commands: CommandRouter(logger: Logger(label: "bot"), audit: Logger(label: "audit")), discord: DiscordAccess()))
        try await feature.setup()
        try await feature.loadSettings()
        let reached = Mutex<[Int]>([])
        await events.subscribe([.levelReached], feature: "listener") { event in
            if case .levelReached(_, _, let level) = event { reached.withLock { $0.append(level) } }
        }
        for i in 0..<300 {
            let message = Message(id: MessageID(UInt64(i + 1)), guild: GuildID(1), channel: ChannelID(3), author: UserID(UInt64(i % 30 + 10)), authorIsBot: false, authorRoles: [], content: "")
            await events.publish(.messageCreated(message))
        }
        let bot = Message(id: MessageID(999), guild: GuildID(1), channel: ChannelID(3), author: UserID(5), authorIsBot: true, authorRoles: [], content: "")
        await events.publish(.messageCreated(bot))
        await writes.drain()
        let (members, messages) = try await database.read("sum") { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM xp_members")!, try Int.fetchOne(db, sql: "SELECT SUM(messages) FROM xp_members")!)
        }
        #expect(members == 30)
        #expect(messages == 300)
        #expect(reached.withLock { $0 }.isEmpty)  // one award each (cooldown): 15–25 XP, under level 1
    }
}

@Suite struct XPSettingsTests {
    @Test func noXPChannelsAndRolesEarnNothingAndMultipliersMultiply() {
        var s = XPSettings()
        s.noXPChannels = [ChannelID(1)]
        s.noXPRoles = [RoleID(2)]
        s.channelMultipliers = [ChannelID(3): 2]
        s.roleMultipliers = [RoleID(4): 1.5, RoleID(5): 3]
        #expect(s.award(channel: ChannelID(1), roles: [], roll: 20) == nil)
        #expect(s.award(channel: ChannelID(9), roles: [RoleID(2)], roll: 20) == nil)
        #expect(s.award(channel: ChannelID(9), roles: [], roll: 20) == 20)
        #expect(s.award(channel: ChannelID(3), roles: [], roll: 20) == 40)
        // The highest role multiplier counts, times the channel's.
        #expect(s.award(channel: ChannelID(3), roles: [RoleID(4), RoleID(5)], roll: 20) == 120)
    }

    @Test func rewardsStackOrReplace() {
        var s = XPSettings()
        s.rewards = [5: RoleID(50), 10: RoleID(100), 20: RoleID(200)]
        #expect(s.rewardRoles(at: 12).keep == [RoleID(50), RoleID(100)])
        #expect(s.rewardRoles(at: 12).drop == [RoleID(200)])
        s.rewardMode = .replace
        #expect(s.rewardRoles(at: 12).keep == [RoleID(100)])
        #expect(s.rewardRoles(at: 12).drop == [RoleID(50), RoleID(200)])
        #expect(s.rewardRoles(at: 2).keep.isEmpty)
    }

    @Test func theAnnouncementFillsItsTemplate() {
        let s = XPSettings()
        #expect(s.announcement(user: UserID(7), level: 3) == "GG <@7>, you reached level 3!")
    }

    @Test func settingsSurviveTheDatabase() throws {
        var template = Array("/tmp/xsXXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        let pool = try AppDatabase.openPool(path: directory + "/bot.sqlite")
        try AppDatabase.migrate(AppDatabase.migrator(features: [XPFeature.self]), pool)
        var s = XPSettings()
        s.minXP = 5
        s.cooldownSeconds = 30
        s.announceInSameChannel = true
        s.rewardMode = .replace
        s.noXPChannels = [ChannelID(1)]
        s.roleMultipliers = [RoleID(4): 2]
        s.rewards = [5: RoleID(50)]
        try pool.write { try s.save($0, guild: GuildID(9)) }
        let loaded = try pool.read { try XPSettings.load($0) }
        #expect(loaded[GuildID(9)] == s)
    }
}
