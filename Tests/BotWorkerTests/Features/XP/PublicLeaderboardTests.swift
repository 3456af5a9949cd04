import BotData
import FoundationEssentials
import GRDB
import Glibc
import IPC
import Testing

@testable import BotWorker

/// BotData's `PublicLeaderboard` (the supervisor's read of the public leaderboard page) against
/// databases the worker's own migrations and XP writes made.
@Suite struct PublicLeaderboardTests {
    static let guild = GuildID(900_000_000_000_000_001)
    static let other = GuildID(900_000_000_000_000_002)
    static let ada = UserID(112_233_445_566_771_001)
    static let bob = UserID(112_233_445_566_772_002)
    static let nameless = UserID(112_233_445_566_773_003)
    static let tied = UserID(112_233_445_566_774_004)

    static func directory() -> String {
        var template = Array("/tmp/plXXXXXX".utf8CString)
        return String(cString: mkdtemp(&template)!)
    }

    /// A worker's database with four members in `guild` and one in `other`.
    func database() throws -> (path: String, pool: DatabasePool) {
        let path = Self.directory() + "/bot.sqlite"
        let pool = try AppDatabase.openPool(path: path)
        try AppDatabase.migrate(AppDatabase.migrator(), pool)
        try pool.write { (db: Database) throws in
            _ = try XPFeature.countMessage(db, guild: Self.guild, user: Self.ada, name: "Ada <script>", award: 20, at: 1000, cooldown: 60)
            try XPFeature.setXP(db, guild: Self.guild, user: Self.ada, xp: 500)
            _ = try XPFeature.settle(db, guild: Self.guild, user: Self.ada, xp: 500, stored: 0)
            try XPFeature.setXP(db, guild: Self.guild, user: Self.bob, name: "Bob", xp: 120)
            _ = try XPFeature.settle(db, guild: Self.guild, user: Self.bob, xp: 120, stored: 0)
            _ = try XPFeature.countMessage(db, guild: Self.guild, user: Self.nameless, award: 120, at: 1000, cooldown: 60)
            _ = try XPFeature.settle(db, guild: Self.guild, user: Self.nameless, xp: 120, stored: 0)
            try XPFeature.setXP(db, guild: Self.guild, user: Self.tied, name: "", xp: 5)
            try XPFeature.setXP(db, guild: Self.other, user: UserID(7), name: "Elsewhere", xp: 9999)
        }
        return (path, pool)
    }

    func setLeaderboard(_ page: XPSettings.LeaderboardPage, _ guild: GuildID, _ pool: DatabasePool) throws {
        var settings = XPSettings()
        settings.leaderboard = page
        try pool.write { try settings.save($0, guild: guild) }
    }

    @Test func aGuildThatDidNotTurnItOnHasNoPage() throws {
        let (path, pool) = try database()
        #expect(try PublicLeaderboard.read(databasePath: path, guildID: Self.guild.description) == nil)  // no settings row
        try setLeaderboard(.off, Self.guild, pool)
        #expect(try PublicLeaderboard.read(databasePath: path, guildID: Self.guild.description) == nil)
        #expect(try PublicLeaderboard.publicGuilds(databasePath: path) == [])
        // Only "public" turns it on.
        try pool.write { try $0.execute(sql: "UPDATE xp_settings SET leaderboard = 'PUBLIC'") }
        #expect(try PublicLeaderboard.read(databasePath: path, guildID: Self.guild.description) == nil)
    }

    @Test func aMemberWhoHidThemselvesIsNotOnThePage() throws {
        let (path, pool) = try database()
        try setLeaderboard(.public, Self.guild, pool)
        try pool.write { try $0.execute(sql: "UPDATE xp_members SET hidden = 1 WHERE user_id = ?", arguments: [Self.ada.description]) }
        let page = try #require(try PublicLeaderboard.read(databasePath: path, guildID: Self.guild.description))
        #expect(page.rows.map(\.name) == ["Bob", "member #3003", "member #4004"])
        #expect(page.rows.first?.rank == 1)
    }

    @Test func aPublicGuildGetsRankNameLevelAndXPAndNoUserIDs() throws {
        let (path, pool) = try database()
        try setLeaderboard(.public, Self.guild, pool)
        let page = try #require(try PublicLeaderboard.read(databasePath: path, guildID: Self.guild.description))
        #expect(page.rows == [
            .init(rank: 1, name: "Ada <script>", level: 3, xp: 500),
            .init(rank: 2, name: "Bob", level: 1, xp: 120),  // tie at 120: by user id
            .init(rank: 3, name: "member #3003", level: 1, xp: 120),
            .init(rank: 4, name: "member #4004", level: 0, xp: 5),  // an empty name is no name
        ])
        for id in [Self.ada, Self.bob, Self.nameless, Self.tied] {
            #expect(!page.rows.contains { $0.name.contains(id.description) })
        }
        let encoded = String(decoding: try JSONEncoder().encode(page), as: UTF8.self)
        #expect(!encoded.contains("112233445566"))
        #expect(Set(try JSONDecoder().decode([String: JSONValue].self, from: JSONEncoder().encode(page.rows[0])).keys) == ["rank", "name", "level", "xp"])

        #expect(try PublicLeaderboard.read(databasePath: path, guildID: Self.guild.description, limit: 2)?.rows.map(\.rank) == [1, 2])
        #expect(try PublicLeaderboard.read(databasePath: path, guildID: Self.guild.description, limit: 0)?.rows == [])
        #expect(try PublicLeaderboard.publicGuilds(databasePath: path) == [Self.guild.description])
        // The other guild stays off, and its member is not on this page.
        #expect(try PublicLeaderboard.read(databasePath: path, guildID: Self.other.description) == nil)
        #expect(!page.rows.contains { $0.name == "Elsewhere" })
        // What a URL may hold that is no guild id.
        for bad in ["", "abc", "\(Self.guild) OR 1=1", "1' --", "123456789012345678901"] {
            #expect(try PublicLeaderboard.read(databasePath: path, guildID: bad) == nil)
        }
    }

    @Test func theLiveFileIsOnlyRead() throws {
        let (path, pool) = try database()  // the "worker" keeps its pool open, frames in its -wal
        try setLeaderboard(.public, Self.guild, pool)
        func bytes(_ file: String) -> Data? { FileManager.default.contents(atPath: file) }
        func unchanged(_ file: String, _ before: Data?) -> Bool { bytes(file) == before }
        let main = bytes(path), wal = bytes(path + "-wal")
        #expect((wal?.count ?? 0) > 0)
        for _ in 0..<3 {
            _ = try PublicLeaderboard.read(databasePath: path, guildID: Self.guild.description)
            _ = try PublicLeaderboard.publicGuilds(databasePath: path)
        }
        #expect(unchanged(path, main), "the database file changed")  // nothing written, nothing checkpointed into it
        #expect(unchanged(path + "-wal", wal), "the -wal changed")
        // The worker goes on writing, and the next read sees it.
        try pool.write { try XPFeature.setXP($0, guild: Self.guild, user: Self.bob, xp: 1000) }
        #expect(try PublicLeaderboard.read(databasePath: path, guildID: Self.guild.description)?.rows.first?.name == "Bob")

        // No other connection at all (the worker stopped with its -wal left behind): the last
        // connection to close would checkpoint the -wal into the file and delete it, unless read-only.
        let copy = Self.directory() + "/bot.sqlite"
        for suffix in ["", "-wal", "-shm"] { try FileManager.default.copyItem(atPath: path + suffix, toPath: copy + suffix) }
        let copied = bytes(copy), copiedWAL = bytes(copy + "-wal")
        #expect(try PublicLeaderboard.read(databasePath: copy, guildID: Self.guild.description)?.rows.first?.name == "Bob")
        #expect(try PublicLeaderboard.publicGuilds(databasePath: copy) == [Self.guild.description])
        #expect(unchanged(copy, copied), "the database file changed: checkpointed")
        #expect(unchanged(copy + "-wal", copiedWAL), "the -wal changed or was deleted")
    }

    @Test func aDatabaseFromBeforeXPV2HasNoPage() throws {
        let path = Self.directory() + "/bot.sqlite"
        let pool = try AppDatabase.openPool(path: path)
        try AppDatabase.migrator().migrate(pool, upTo: "xp-v1")
        try pool.write { (db: Database) throws in
            try db.execute(sql: "INSERT INTO xp_members (guild_id, user_id, xp) VALUES (?, '5', 10)", arguments: [Self.guild.description])
            try db.execute(sql: """
                INSERT INTO xp_settings (guild_id, min_xp, max_xp, cooldown_seconds, announce_template, reward_mode)
                VALUES (?, 15, 25, 60, 'GG', 'stack')
                """, arguments: [Self.guild.description])
        }
        #expect(try PublicLeaderboard.read(databasePath: path, guildID: Self.guild.description) == nil)
        #expect(try PublicLeaderboard.publicGuilds(databasePath: path) == [])
        // A brand-new file the worker has not migrated yet.
        let fresh = Self.directory() + "/bot.sqlite"
        try DatabaseQueue(path: fresh).close()
        #expect(try PublicLeaderboard.read(databasePath: fresh, guildID: Self.guild.description) == nil)
        #expect(try PublicLeaderboard.publicGuilds(databasePath: fresh) == [])
    }

    @Test func aWrongOrUnreadableFileIsAnErrorThatSaysWhy() throws {
        let directory = Self.directory()
        #expect {
            try PublicLeaderboard.read(databasePath: directory + "/none.sqlite", guildID: "1")
        } throws: { "\($0)" == "cannot read the leaderboard: the database \(directory)/none.sqlite does not exist" }
        #expect(!FileManager.default.fileExists(atPath: directory + "/none.sqlite"))  // not created

        let foreign = directory + "/foreign.sqlite"
        let queue = try DatabaseQueue(path: foreign)
        try queue.writeWithoutTransaction { try $0.execute(sql: "PRAGMA application_id = 42; CREATE TABLE t (x)") }
        try queue.close()
        #expect { try PublicLeaderboard.publicGuilds(databasePath: foreign) } throws: {
            "\($0)" == "cannot read the leaderboard: \(foreign) is not the bot's database (application_id 42)"
        }

        let garbage = directory + "/garbage.sqlite"
        FileManager.default.createFile(atPath: garbage, contents: Data(repeating: 0x41, count: 8192))
        #expect { try PublicLeaderboard.read(databasePath: garbage, guildID: "1") } throws: {
            "\($0)".hasPrefix("cannot read the leaderboard from \(garbage): SQLite error")
        }
    }
}
