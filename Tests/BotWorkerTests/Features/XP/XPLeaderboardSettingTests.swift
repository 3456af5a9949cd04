import BotData
import FoundationEssentials
import GRDB
import Glibc
import IPC
import Logging
import Testing

@testable import BotWorker

/// `/levels config leaderboard:` and the names the public leaderboard page shows.
@Suite struct XPLeaderboardSettingTests {
    static func directory() -> String {
        var template = Array("/tmp/xlXXXXXX".utf8CString)
        return String(cString: mkdtemp(&template)!)
    }

    func feature(_ pool: DatabasePool) async throws -> XPFeature {
        let database = SafeDatabase(writer: pool, logger: Logger(label: "database")) { _ in }
        let feature = XPFeature(context: FeatureContext(
            database: database, logger: Logger(label: "xp"), audit: Logger(label: "audit"), events: EventBus(logger: Logger(label: "bot")),
            writes: WriteBatcher(database: database, logger: Logger(label: "database")),
            commands: CommandRouter(logger: Logger(label: "bot"), audit: Logger(label: "audit")), discord: DiscordAccess()
        ))
        try await feature.loadSettings()
        return feature
    }

    /// `/levels config` in guild 3 by user 4 with `options`.
    func config(_ options: [String: JSONValue]) -> Interaction {
        let list = options.map { JSONValue.object(["name": .string($0.key), "value": $0.value]) }
        return Interaction(.object([
            "id": .string("1"), "token": .string("t"), "type": .integer(2), "application_id": .string("2"), "guild_id": .string("3"),
            "member": .object(["user": .object(["id": .string("4")]), "roles": .array([]), "permissions": .string("32")]),
            "data": .object(["name": .string("levels"), "options": .array([.object(["name": .string("config"), "type": .integer(1), "options": .array(list)])])]),
        ]))!
    }

    func stored(_ pool: DatabasePool, guild: String = "3") throws -> String? {
        try pool.read { try String.fetchOne($0, sql: "SELECT leaderboard FROM xp_settings WHERE guild_id = ?", arguments: [guild]) }
    }

    @Test func theOptionIsDeclaredWithItsTwoChoices() throws {
        let levels = XPCommands.definitions.first { $0["name"]?.stringValue == "levels" }
        let config = levels?["options"]?.arrayValue.first { $0["name"]?.stringValue == "config" }
        let option = config?["options"]?.arrayValue.first { $0["name"]?.stringValue == "leaderboard" }
        #expect(option?["type"]?.intValue == 3)
        #expect(option?["choices"]?.arrayValue.compactMap { $0["value"]?.stringValue } == ["public", "off"])
        #expect((option?["description"]?.stringValue?.count ?? 101) <= 100)
        #expect((config?["options"]?.arrayValue.count ?? 26) <= 25)
    }

    @Test func theLeaderboardPageIsOffUntilTurnedOnAndTheReplySaysWhatIsShown() async throws {
        let pool = try AppDatabase.openPool(path: Self.directory() + "/bot.sqlite")
        try AppDatabase.migrate(AppDatabase.migrator(features: [XPFeature.self]), pool)
        let feature = try await feature(pool)
        #expect(feature.settings(of: GuildID(3)).leaderboard == .off)

        // Another setting alone leaves it off, and says so.
        let other = try await XPCommands(feature: feature).handle(config(["min_xp": .integer(5)]))
        #expect(try stored(pool) == "off")
        #expect(other.content.contains("leaderboard page off"))
        #expect(!other.content.contains("now public"))

        let on = try await XPCommands(feature: feature).handle(config(["leaderboard": .string("public")]))
        #expect(on.ephemeral)
        #expect(on.content.contains("The leaderboard page is now public: anyone with the dashboard's address can see rank, name, level and XP"))
        #expect(try stored(pool) == "public")
        #expect(feature.settings(of: GuildID(3)).leaderboard == .public)
        #expect(feature.settings(of: GuildID(3)).minXP == 5)  // only what was given changed
        #expect(try await pool.read { try XPSettings.load($0) }[GuildID(3)]?.leaderboard == .public)

        // Another setting keeps it public.
        _ = try await XPCommands(feature: feature).handle(config(["max_xp": .integer(30)]))
        #expect(try stored(pool) == "public")

        let off = try await XPCommands(feature: feature).handle(config(["leaderboard": .string("off")]))
        #expect(off.content.contains("The leaderboard page is now off."))
        #expect(try stored(pool) == "off")
    }

    @Test func theDisplayNameIsTheNickThenTheGlobalNameThenTheUsername() {
        #expect(XPFeature.displayName(nick: "Nick", globalName: "Global", username: "user") == "Nick")
        #expect(XPFeature.displayName(nick: nil, globalName: "Global", username: "user") == "Global")
        #expect(XPFeature.displayName(nick: "", globalName: nil, username: "user") == "user")
        #expect(XPFeature.displayName(nick: nil, globalName: nil, username: nil) == nil)
        // Untrusted text is kept as it is: escaping is the page's job.
        #expect(XPFeature.displayName(nick: "<b>&amp;</b>", globalName: nil, username: "user") == "<b>&amp;</b>")
    }

    @Test func namesAreKeptInTheRowsTheFeatureWritesAnyway() throws {
        let pool = try AppDatabase.openPool(path: Self.directory() + "/bot.sqlite")
        try AppDatabase.migrate(AppDatabase.migrator(features: [XPFeature.self]), pool)
        let guild = GuildID(1), user = UserID(2)
        func name() throws -> String? { try pool.read { try String.fetchOne($0, sql: "SELECT name FROM xp_members WHERE user_id = '2'") } }
        let changes = { (db: Database) in db.totalChangesCount }

        // An award: the name is written by the row's own upsert, one row change per message.
        let written = try pool.write { (db: Database) throws -> Int in
            let before = changes(db)
            _ = try XPFeature.countMessage(db, guild: guild, user: user, name: "Ada", award: 20, at: 1000, cooldown: 60)
            return changes(db) - before
        }
        #expect(written == 1)
        #expect(try name() == "Ada")
        // A later message with another name (a new nick) replaces it, within the cooldown too.
        try pool.write { _ = try XPFeature.countMessage($0, guild: guild, user: user, name: "Ada L.", award: 20, at: 1010, cooldown: 60) }
        #expect(try name() == "Ada L.")
        // No name known: the stored one stays.
        try pool.write { _ = try XPFeature.countMessage($0, guild: guild, user: user, name: nil, award: 20, at: 1100, cooldown: 60) }
        #expect(try name() == "Ada L.")
        #expect(try pool.read { try Int.fetchOne($0, sql: "SELECT xp FROM xp_members") } == 40)

        // The /xp commands' write.
        try pool.write { try XPFeature.setXP($0, guild: guild, user: user, name: "Ada Lovelace", xp: 500) }
        #expect(try name() == "Ada Lovelace")
        try pool.write { try XPFeature.setXP($0, guild: guild, user: user, xp: 600) }
        #expect(try name() == "Ada Lovelace")
        try pool.write { try XPFeature.setXP($0, guild: guild, user: UserID(3), name: "New", xp: 10) }
        #expect(try pool.read { try String.fetchOne($0, sql: "SELECT name FROM xp_members WHERE user_id = '3'") } == "New")
        #expect(try pool.read { try Int.fetchOne($0, sql: "SELECT xp FROM xp_members WHERE user_id = '2'") } == 600)
    }

    @Test func xpV2KeepsTheRowsOfAnXPV1Database() throws {
        let pool = try AppDatabase.openPool(path: Self.directory() + "/bot.sqlite")
        let migrator = AppDatabase.migrator(features: [XPFeature.self])
        try migrator.migrate(pool, upTo: "xp-v1")
        try pool.write { (db: Database) throws in
            try db.execute(sql: "INSERT INTO xp_members (guild_id, user_id, xp, level, messages) VALUES ('1', '2', 300, 2, 9)")
            try db.execute(sql: """
                INSERT INTO xp_settings (guild_id, min_xp, max_xp, cooldown_seconds, announce_channel_id, announce_template, reward_mode)
                VALUES ('1', 5, 10, 30, NULL, 'GG', 'replace')
                """)
        }
        try AppDatabase.migrate(migrator, pool)
        let row = try pool.read { try Row.fetchOne($0, sql: "SELECT xp, level, messages, name FROM xp_members")! }
        #expect(row["xp"] as Int == 300 && row["level"] as Int == 2 && row["messages"] as Int == 9)
        #expect((row["name"] as String?) == nil)
        #expect(try stored(pool, guild: "1") == "off")
        let settings = try pool.read { try XPSettings.load($0) }[GuildID(1)]
        #expect(settings?.leaderboard == .off && settings?.minXP == 5 && settings?.rewardMode == .replace)
    }
}
