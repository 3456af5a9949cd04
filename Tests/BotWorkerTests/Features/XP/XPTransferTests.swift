import FoundationEssentials
import GRDB
import Glibc
import Testing

@testable import BotWorker

@Suite struct XPTransferTests {
    let guild = GuildID(1_187_654_321_098_765_432)

    func database() throws -> DatabasePool {
        var template = Array("/tmp/xptXXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        let pool = try AppDatabase.openPool(path: directory + "/bot.sqlite")
        try AppDatabase.migrate(AppDatabase.migrator(features: [XPFeature.self]), pool)
        return pool
    }

    func parse(_ text: String, _ format: XPTransfer.Format) throws(XPTransfer.Malformed) -> [XPTransfer.Entry] {
        try XPTransfer.parse(Array(text.utf8), format: format)
    }

    /// The refusal of `text`, or nil when it parses.
    func refusal(_ text: String, _ format: XPTransfer.Format) -> XPTransfer.Malformed? {
        do {
            _ = try parse(text, format)
            return nil
        } catch {
            return error
        }
    }

    // MARK: - MEE6

    static let mee6 = """
        {
          "admin": false,
          "guild": {"id": "1187654321098765432", "name": "Test", "premium": false},
          "page": 0,
          "players": [
            {"avatar": "a1b2", "detailed_xp": [45, 155, 145], "discriminator": "0", "guild_id": "1187654321098765432",
             "id": "172002275412279296", "is_monetize_subscriber": false, "level": 1, "message_count": 12,
             "monetize_xp_boost": 0, "username": "ana \\u00e9\\ud83d\\ude00", "xp": 145},
            {"id": "80351110224678912", "username": "bo", "xp": 0, "level": 0, "message_count": 0}
          ],
          "role_rewards": [{"rank": 5, "role": {"id": "1", "name": "Regular"}}],
          "user_guild_settings": null
        }
        """

    @Test func mee6sLeaderboardParses() throws {
        #expect(try parse(Self.mee6, .mee6) == [
            .init(user: UserID(172_002_275_412_279_296), xp: 145, level: 1, messages: 12, voiceMinutes: 0),
            .init(user: UserID(80_351_110_224_678_912), xp: 0, level: 0, messages: 0, voiceMinutes: 0),
        ])
    }

    @Test func mee6WithoutLevelOrMessagesDerivesThem() throws {
        #expect(try parse(#"{"players": [{"id": "5", "xp": 255}]}"#, .mee6) == [.init(user: UserID(5), xp: 255, level: 2, messages: 0, voiceMinutes: 0)])
    }

    @Test(arguments: [
        ("{\"players\": [\n{\"id\": \"5\", \"xp\": 1},\n{\"id\": \"6\", \"xp\": \"12a\"}]}", 3, "xp", "\"12a\" is not a whole number ≥ 0"),
        ("{\"players\": [\n{\"id\": \"5\", \"xp\": -3}]}", 2, "xp", "\"-3\" is not a whole number ≥ 0"),
        ("{\"players\": [\n{\"id\": \"5\", \"xp\": 1.5}]}", 2, "xp", "\"1.5\" is not a whole number ≥ 0"),
        ("{\"players\": [\n{\"id\": \"5\", \"xp\": 1},\n{\"id\": \"5\", \"xp\": 2}]}", 3, "id", "user 5 is listed twice (first on line 2); keep one of the two"),
        ("{\"players\": [\n{\"id\": \"abc\", \"xp\": 1}]}", 2, "id", "\"abc\" is not a Discord user id (a number such as 172002275412279296)"),
        ("{\"players\": [\n{\"id\": \"0\", \"xp\": 1}]}", 2, "id", "\"0\" is not a Discord user id (a number such as 172002275412279296)"),
        ("{\"players\": [\n{\"id\": \"99999999999999999999999\", \"xp\": 1}]}", 2, "id", "\"99999999999999999999999\" is not a Discord user id (a number such as 172002275412279296)"),
        ("{\"players\": [\n\n{\"xp\": 1}]}", 3, "id", "missing"),
        ("{\"players\": [\n{\"id\": \"5\"}]}", 2, "xp", "missing"),
        ("{\"players\": [\n{\"id\": \"5\", \"xp\": 1, \"message_count\": 99999999999999}]}", 2, "message_count", "99999999999999 is over 1000000000000: is the column right?"),
        ("{\"players\": []}", 1, "players", "the list is empty: there is nothing to import"),
        ("{\"player\": []}", 1, "players", "missing: this is not MEE6's leaderboard JSON (save the page of https://mee6.xyz/api/plugins/levels/leaderboard/<guild id>)"),
    ])
    func mee6ProblemsNameTheirLineAndField(text: String, line: Int, field: String, reason: String) {
        #expect(refusal(text, .mee6) == XPTransfer.Malformed(line: line, field: field, reason: reason))
    }

    @Test func jsonSyntaxErrorsNameTheirLine() {
        let missingComma = "{\"players\": [\n{\"id\": \"5\", \"xp\": 1}\n{\"id\": \"6\", \"xp\": 1}]}"
        #expect(refusal(missingComma, .mee6)?.description == "line 3: not valid JSON: expected ',' or ']' after a value in a list")
        #expect(refusal("{\"players\": [\n{\"id\": \"5\", \"xp\": 1}", .mee6)?.description == "line 2: not valid JSON: the file ends inside a list")
        #expect(refusal("[1, 2]", .mee6)?.description == "line 1: this is not MEE6's leaderboard JSON: it must be an object with \"players\"")
        #expect(refusal("user_id,xp\n1,2\n", .mee6)?.line == 1)
    }

    // MARK: - CSV

    @Test func csvInAnyColumnOrderWithOptionalColumnsMissing() throws {
        let text = "\u{FEFF}xp, user_id ,note\r\n255,\"5\",hello\r\n\r\n0,6,\n"
        #expect(try parse(text, .csv) == [
            .init(user: UserID(5), xp: 255, level: 2, messages: 0, voiceMinutes: 0),
            .init(user: UserID(6), xp: 0, level: 0, messages: 0, voiceMinutes: 0),
        ])
        #expect(try parse("name,user_id,xp\n\"Smith, \"\"Jo\"\"\",5,10\n", .csv) == [.init(user: UserID(5), xp: 10, level: 0, messages: 0, voiceMinutes: 0)])
        #expect(try parse("voice_minutes,messages,level,xp,user_id\n7,8,9,100,5", .csv) == [.init(user: UserID(5), xp: 100, level: 9, messages: 8, voiceMinutes: 7)])
    }

    @Test(arguments: [
        ("user_id,xp\n1,10\n2,20\n3,12a\n", 4, "xp", "\"12a\" is not a whole number ≥ 0"),
        ("user_id,xp,messages\n1,10,-1\n", 2, "messages", "\"-1\" is not a whole number ≥ 0"),
        ("user_id,xp\n1,10\n1,11\n", 3, "user_id", "user 1 is listed twice (first on line 2); keep one of the two"),
        ("user_id,xp\nbob,10\n", 2, "user_id", "\"bob\" is not a Discord user id (a number such as 172002275412279296)"),
        ("user_id,xp\n1,\n", 2, "xp", "\"\" is not a whole number ≥ 0"),
        ("user_id,level\n1,10\n", 1, "xp", "missing from the header: the first line names the columns, e.g. user_id,xp,level,messages,voice_minutes"),
        ("1,10\n2,20\n", 1, "user_id", "missing from the header: the first line names the columns, e.g. user_id,xp,level,messages,voice_minutes"),
        ("user_id,xp,xp\n1,10,10\n", 1, "xp", "the column is named twice in the header"),
    ])
    func csvProblemsNameTheirLineAndField(text: String, line: Int, field: String, reason: String) {
        #expect(refusal(text, .csv) == XPTransfer.Malformed(line: line, field: field, reason: reason))
    }

    @Test func csvShapeProblems() {
        #expect(refusal("user_id,xp\n1,10,3\n", .csv) == XPTransfer.Malformed(line: 2, reason: "3 fields, but the header names 2"))
        #expect(refusal("user_id,xp\n\n", .csv) == XPTransfer.Malformed(line: 2, reason: "no member after the header: there is nothing to import"))
        #expect((try? XPTransfer.parse([0x75, 0x73, 0xFF, 0x0A], format: .csv)) == nil)
    }

    @Test func emptyAndOversizedFilesAreRefused() {
        #expect(refusal("", .csv) == XPTransfer.Malformed(reason: "the file is empty"))
        #expect(refusal(" \n\r\n", .mee6) == XPTransfer.Malformed(reason: "the file is empty"))
        let huge = [UInt8](repeating: 0x20, count: XPTransfer.maximumBytes + 1)
        #expect(throws: XPTransfer.Malformed.self) { try XPTransfer.parse(huge, format: .csv) }
        #expect((try? XPTransfer.parse(huge, format: .csv)) == nil)
    }

    @Test func descriptionNamesLineFieldAndReason() {
        #expect(XPTransfer.Malformed(line: 17, field: "xp", reason: "\"12a\" is not a whole number ≥ 0").description == "line 17: field \"xp\": \"12a\" is not a whole number ≥ 0")
    }

    // MARK: - Plan, apply, export

    @Test func planApplyExportRoundTrip() throws {
        let pool = try database()
        // A member with a name, hidden, who left: all kept; another guild untouched.
        try pool.write { (db: Database) throws in
            try db.execute(sql: """
                INSERT INTO xp_members (guild_id, user_id, xp, level, messages, name, hidden, left_at, voice_minutes) VALUES
                (?, '5', 50, 0, 3, 'Ana', 1, 1700000000, 4), (?, '6', 100, 1, 1, NULL, 0, NULL, 0), (?, '7', 9, 0, 9, NULL, 0, NULL, 0), ('2', '5', 1, 0, 1, NULL, 0, NULL, 0)
                """, arguments: [guild.description, guild.description, guild.description])
        }
        let entries = try parse("user_id,xp,level,messages,voice_minutes\n5,255,7,10,3\n6,100,1,1,0\n8,4675,10,40,2\n", .csv)

        let dry = try pool.read { db in try XPTransfer.plan(db, guild: guild, entries: entries) }
        #expect(dry == .init(entries: 3, added: 1, updated: 1, unchanged: 1, levelsRecomputed: 1, dryRun: true))
        #expect(dry.summary == "3 members in the file: 1 added, 1 updated, 1 unchanged; 1 level in the file disagreed with the XP and would be recomputed from it. Dry run: nothing was written.")
        #expect(try pool.read { db in try Int.fetchOne(db, sql: "SELECT xp FROM xp_members WHERE guild_id = ? AND user_id = '5'", arguments: [guild.description]) } == 50)

        let applied = try pool.write { db in try XPTransfer.apply(db, guild: guild, entries: entries) }
        #expect(applied == .init(entries: 3, added: 1, updated: 1, unchanged: 1, levelsRecomputed: 1, dryRun: false))
        let ana = try #require(try pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM xp_members WHERE guild_id = ? AND user_id = '5'", arguments: [guild.description])
        })
        #expect(ana["xp"] as Int == 255 && ana["level"] as Int == 2 && ana["messages"] as Int == 10 && ana["voice_minutes"] as Int == 3)
        #expect(ana["name"] as String == "Ana" && ana["hidden"] as Bool == true && ana["left_at"] as Double == 1_700_000_000)

        let csv = try pool.read { db in try XPTransfer.export(db, guild: guild) }
        #expect(csv == "user_id,xp,level,messages,voice_minutes\n8,4675,10,40,2\n5,255,2,10,3\n6,100,1,1,0\n7,9,0,9,0\n")
        // Re-importing the export changes nothing.
        let again = try pool.write { db in try XPTransfer.apply(db, guild: guild, entries: try parse(csv, .csv)) }
        #expect(again == .init(entries: 4, added: 0, updated: 0, unchanged: 4, levelsRecomputed: 0, dryRun: false))
        #expect(try pool.read { db in try Int.fetchOne(db, sql: "SELECT xp FROM xp_members WHERE guild_id = '2' AND user_id = '5'") } == 1)
    }

    @Test func exportOrdersByXPThenUserID() throws {
        let pool = try database()
        let entries = try parse("user_id,xp\n30,5\n4,5\n100,7\n", .csv)
        _ = try pool.write { db in try XPTransfer.apply(db, guild: guild, entries: entries) }
        #expect(try pool.read { db in try XPTransfer.export(db, guild: guild) } == "user_id,xp,level,messages,voice_minutes\n100,7,0,0,0\n4,5,0,0,0\n30,5,0,0,0\n")
        #expect(try pool.read { db in try XPTransfer.export(db, guild: GuildID(9)) } == "user_id,xp,level,messages,voice_minutes\n")
    }
}
