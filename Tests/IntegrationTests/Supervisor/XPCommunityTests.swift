import AsyncHTTPClient
import Foundation
import IPC
import TestSupport
import Testing

/// The XP features communities switch bots for, end to end through the sandbox: voice XP,
/// privacy, what leaving does, `/levels sync`, and `/levels import|export` with files.
@Suite(.serialized) struct XPCommunityTests {
    typealias Bot = FeatureTests.Bot

    /// A bot whose voice minutes last `voiceMinute` seconds.
    static func bot(voiceMinute: Double? = nil) async throws -> Bot {
        let harness = try SupervisorHarness()
        let seen = harness.notify.all.count
        try harness.start(environment: voiceMinute.map { ["BOT_WORKER_VOICE_MINUTE_SECONDS": String($0)] } ?? [:])
        _ = try harness.waitForNotification(timeout: .seconds(30), after: seen) { $0.contains("READY=1") }
        let status = try harness.waitForStatus(timeout: .seconds(30), "the gateway connected") {
            $0.worker.discord?.gatewayState == "connected" && $0.worker.discord?.guilds == 1
        }
        return try await Bot(harness: harness, sandbox: SandboxClient(baseURL: try #require(status.worker.discord?.sandboxURL)))
    }

    static func voice(_ bot: Bot, _ user: String, _ channel: String?, selfMute: Bool = false) async throws {
        try await bot.sandbox.post("/sandbox/voice", .object([
            "user": .string(user), "channel": channel.map(JSONValue.string) ?? .null, "selfMute": .bool(selfMute),
        ]))
    }

    func minutes(_ bot: Bot, _ user: String) throws -> Int {
        Int(try bot.harness.sqlite("SELECT voice_minutes FROM xp_members WHERE user_id = '\(user)'")) ?? 0
    }

    @Test func voiceMinutesEarnOnlyInCompanyUnmutedAndOutsideTheAFKChannel() async throws {
        let bot = try await Self.bot(voiceMinute: 0.4)
        let config = try await bot.command("levels", [Bot.sub("config", [Bot.option("voice_xp", 4, .integer(10))])])
        #expect(config["content"]?.stringValue?.contains("voice 10 XP a minute") == true)
        var members: [String] = []
        for _ in 0..<7 { members.append(try await bot.join(accountAgeDays: 400)) }
        let (alone, talkerA, talkerB, muted, afkA, afkB, later) = (members[0], members[1], members[2], members[3], members[4], members[5], members[6])
        // Alone in Lounge; two talking in Gaming with a self-muted third; two together in AFK.
        try await Self.voice(bot, alone, bot.channels["Lounge"])
        try await Self.voice(bot, talkerA, bot.channels["Gaming"])
        try await Self.voice(bot, talkerB, bot.channels["Gaming"])
        try await Self.voice(bot, muted, bot.channels["Gaming"], selfMute: true)
        try await Self.voice(bot, afkA, bot.channels["AFK"])
        try await Self.voice(bot, afkB, bot.channels["AFK"])

        // The two talking earn: 3 minutes each, 10 XP a minute.
        try await waitUntilAsync(timeout: .seconds(20), "3 voice minutes for both talkers") {
            ((try? minutes(bot, talkerA)) ?? 0) >= 3 && ((try? minutes(bot, talkerB)) ?? 0) >= 3
        }
        let earned = try minutes(bot, talkerA)
        #expect(try bot.harness.sqlite("SELECT xp FROM xp_members WHERE user_id = '\(talkerA)'") == String(earned * 10))
        // Meanwhile the lone member, the muted one and those in the AFK channel earned nothing.
        for user in [alone, muted, afkA, afkB] {
            #expect(try minutes(bot, user) == 0, "\(user) earned voice minutes")
        }
        let rank = try await bot.command("rank", as: talkerA, [])
        #expect(rank["content"]?.stringValue?.contains("minutes in voice") == true)

        // Company arrives for the lone member: now they earn; the talker who left keeps theirs.
        try await Self.voice(bot, talkerB, nil)
        try await Self.voice(bot, later, bot.channels["Lounge"])
        try await waitUntilAsync(timeout: .seconds(20), "the lone member earns once joined") { ((try? minutes(bot, alone)) ?? 0) >= 2 }
        #expect(try minutes(bot, muted) == 0)
        #expect(try bot.harness.terminate() == 0)
    }

    /// Against a sandbox that outlives the workers (as Discord does): a new worker resumes the
    /// session and gets no GUILD_CREATE, yet knows who is in voice (stored with each voice event).
    @Test func voiceMinutesGoOnAcrossAWorkerRestartThatResumesTheSession() async throws {
        let server = try SandboxServer(arguments: ["--token", "voice-token-1"])
        let harness = try SupervisorHarness(config: ["discord": ["mode": "discord", "apiBaseURL": server.apiBaseURL, "gatewayURL": server.gatewayURL]])
        try harness.start(environment: ["DISCORD_TOKEN": "voice-token-1", "BOT_WORKER_VOICE_MINUTE_SECONDS": "0.4"])
        let first = try harness.waitForStatus(timeout: .seconds(30), "the worker ready and connected") {
            $0.worker.state == .ready && $0.worker.discord?.gatewayState == "connected" && $0.worker.discord?.guilds == 1
        }
        let bot = try await Bot(harness: harness, sandbox: server.control)
        _ = try await bot.command("levels", [Bot.sub("config", [Bot.option("voice_xp", 4, .integer(5))])])
        let one = try await bot.join(accountAgeDays: 400)
        let two = try await bot.join(accountAgeDays: 400)
        try await Self.voice(bot, one, bot.channels["Lounge"])
        try await Self.voice(bot, two, bot.channels["Lounge"])
        try await waitUntilAsync(timeout: .seconds(20), "a first voice minute") { ((try? minutes(bot, one)) ?? 0) >= 1 }

        #expect(try SupervisorHarness.cli(["restart-worker", "--socket", harness.statusSocket]).status == 0)
        try harness.waitForStatus(timeout: .seconds(30), "a new worker resumed") {
            $0.worker.pid != first.worker.pid && $0.worker.state == .ready && $0.worker.discord?.gatewayState == "connected"
        }
        let before = try minutes(bot, one)
        try await waitUntilAsync(timeout: .seconds(20), "voice minutes counted by the new worker") { ((try? minutes(bot, one)) ?? 0) >= before + 2 }
        #expect(try await bot.sandbox.get("/sandbox/state")["gateway"]?["identifies"]?.intValue == 1)
        #expect(try harness.terminate() == 0)
    }

    @Test func aHiddenMemberIsLeftOutOfTheLeaderboardAndKeepsTheirXP() async throws {
        let bot = try await Self.bot()
        let shy = try await bot.join(accountAgeDays: 400)
        let open = try await bot.join(accountAgeDays: 400)
        for (user, xp) in [(shy, 900), (open, 400)] {
            _ = try await bot.command("xp", [Bot.sub("set", [Bot.option("member", 6, .string(user)), Bot.option("amount", 4, .integer(xp))])])
        }
        // /xp set needs Manage Server; privacy is every member's own.
        let refused = try await bot.command("xp", as: open, [Bot.sub("set", [Bot.option("member", 6, .string(open)), Bot.option("amount", 4, .integer(99999))])])
        #expect(refused["content"]?.stringValue?.contains("Manage Server") == true)
        let before = try await bot.command("leaderboard", [])
        #expect(before["content"]?.stringValue?.contains("<@\(shy)>") == true)

        let hidden = try await bot.command("xp", as: shy, [.object(["name": .string("privacy"), "type": .integer(2), "options": .array([Bot.sub("hide", [])])])])
        #expect(hidden["content"]?.stringValue?.contains("left out") == true)
        let board = try await bot.command("leaderboard", [])
        #expect(board["content"]?.stringValue?.contains("<@\(shy)>") == false)
        #expect(board["content"]?.stringValue?.contains("#1 <@\(open)>") == true)
        #expect(try bot.harness.sqlite("SELECT xp || ',' || hidden FROM xp_members WHERE user_id = '\(shy)'") == "900,1")
        let rank = try await bot.command("rank", as: shy, [])
        #expect(rank["content"]?.stringValue?.contains("hidden from the leaderboards") == true)

        _ = try await bot.command("xp", as: shy, [.object(["name": .string("privacy"), "type": .integer(2), "options": .array([Bot.sub("show", [])])])])
        #expect(try await bot.command("leaderboard", [])["content"]?.stringValue?.contains("#1 <@\(shy)>") == true)
        #expect(try bot.harness.terminate() == 0)
    }

    @Test func onLeaveResetTakesTheXPOnlyOfMembersStillGoneAfterTheGracePeriod() async throws {
        let bot = try await Self.bot()
        let returning = try await bot.join(accountAgeDays: 400)
        let gone = try await bot.join(accountAgeDays: 400)
        let kept = try await bot.join(accountAgeDays: 400)
        for user in [returning, gone, kept] {
            _ = try await bot.command("xp", [Bot.sub("set", [Bot.option("member", 6, .string(user)), Bot.option("amount", 4, .integer(500))])])
        }
        // Under the default (keep), leaving changes nothing.
        try await bot.sandbox.post("/sandbox/leave", .object(["user": .string(kept)]))
        // Reset after 7.2 s: the member who comes back does so well within it.
        let config = try await bot.command("levels", [Bot.sub("config", [
            Bot.option("on_leave", 3, .string("reset")), Bot.option("leave_grace_hours", 10, .number(0.002)),
        ])])
        #expect(config["content"]?.stringValue?.contains("on leave reset after 7 s") == true)

        // One leaves and comes back within the grace period; the other leaves after them and stays away.
        try await bot.sandbox.post("/sandbox/leave", .object(["user": .string(returning)]))
        try await waitUntilAsync(timeout: .seconds(10), "the departure recorded") {
            (try? bot.harness.sqlite("SELECT left_at IS NOT NULL FROM xp_members WHERE user_id = '\(returning)'")) == "1"
        }
        try await bot.sandbox.post("/sandbox/join", .object(["user": .string(returning)]))
        try await bot.sandbox.post("/sandbox/leave", .object(["user": .string(gone)]))

        try await waitUntilAsync(timeout: .seconds(30), "the XP of the member who stayed away reset") {
            (try? bot.harness.sqlite("SELECT COUNT(*) FROM xp_members WHERE user_id = '\(gone)'")) == "0"
        }
        // The one who came back left first, so their grace period ended first: nothing was lost.
        #expect(try bot.harness.sqlite("SELECT xp || ',' || (left_at IS NULL) FROM xp_members WHERE user_id = '\(returning)'") == "500,1")
        #expect(try bot.harness.sqlite("SELECT xp FROM xp_members WHERE user_id = '\(kept)'") == "500")
        #expect(bot.harness.log("xp").contains { ($0["message"] as? String)?.contains("xp reset") == true && $0["user_id"] as? String == gone })
        #expect(try bot.harness.terminate() == 0)
    }

    @Test func levelsSyncRestoresRewardRolesRemovedByHandAndTakesUndueOnes() async throws {
        let bot = try await Self.bot()
        let regular = try #require(bot.roles["Regular"])
        _ = try await bot.command("levels", [.object(["name": .string("reward"), "type": .integer(2), "options": .array([
            Bot.sub("add", [Bot.option("level", 4, .integer(1)), Bot.option("role", 8, .string(regular))]),
        ])])])
        let earned = try await bot.join(accountAgeDays: 400)
        let undue = try await bot.join(accountAgeDays: 400)
        _ = try await bot.command("xp", [Bot.sub("set", [Bot.option("member", 6, .string(earned)), Bot.option("amount", 4, .integer(300))])])
        try await bot.waitForRoles(earned, "the level 1 reward") { $0.contains(regular) }
        // By hand: the reward taken from the member who earned it, given to one who did not.
        try await bot.sandbox.post("/sandbox/member", .object(["user": .string(earned), "roles": .array([])]))
        try await bot.sandbox.post("/sandbox/member", .object(["user": .string(undue), "roles": .array([.string(regular)])]))
        try await bot.waitForRoles(undue, "the hand-given role") { $0.contains(regular) }

        // Members the sandbox made with the role hold it without XP too: the sync takes it from all of them.
        let holders = (try await bot.sandbox.get("/sandbox/state")["guild"]?["members"]?.arrayValue ?? [])
            .filter { $0["roles"]?.arrayValue.contains(.string(regular)) == true }.count
        #expect(holders >= 1)
        let interaction = try await bot.sandbox.post("/sandbox/interaction", .object([
            "user": .string(bot.owner), "kind": .string("command"), "name": .string("levels"), "options": .array([Bot.sub("sync", [])]),
        ]))
        let id = try #require(interaction["id"]?.stringValue)
        var report = ""
        try await waitUntilAsync(timeout: .seconds(30), "the sync's report") {
            let record = (try? await bot.sandbox.get("/sandbox/interactions/\(id)")) ?? .null
            report = record["followUps"]?.arrayValue.last?["body"]?["content"]?.stringValue ?? ""
            return report.hasPrefix("Reward roles synced")
        }
        #expect(report.contains("1 role given and \(holders) taken, on \(holders + 1) members"), "\(report)")
        let stillHolding = (try await bot.sandbox.get("/sandbox/state")["guild"]?["members"]?.arrayValue ?? [])
            .filter { $0["roles"]?.arrayValue.contains(.string(regular)) == true }.compactMap { $0["user"]?["id"]?.stringValue }
        #expect(stillHolding == [earned])
        #expect(try await bot.roles(of: earned).contains(regular))
        #expect(try await bot.roles(of: undue).contains(regular) == false)
        #expect(try await bot.roleChanges(of: earned).last?["reason"]?.stringValue?.contains("levels sync") == true)
        #expect(try bot.harness.terminate() == 0)
    }

    @Test func levelsExportThenImportRoundTripsAndAMalformedFileChangesNothing() async throws {
        let bot = try await Self.bot()
        var members: [String] = []
        for xp in [1200, 300, 45] {
            let user = try await bot.join(accountAgeDays: 400)
            members.append(user)
            _ = try await bot.command("xp", [Bot.sub("set", [Bot.option("member", 6, .string(user)), Bot.option("amount", 4, .integer(xp))])])
        }
        let exported = try await bot.command("levels", [Bot.sub("export", [])])
        let url = try #require(exported["attachments"]?.arrayValue.first?["url"]?.stringValue)
        let csv = try await Self.download(url)
        var lines = csv.split(separator: "\n").map(String.init)
        #expect(lines.first == "user_id,xp,level,messages,voice_minutes")
        #expect(lines.dropFirst().first == "\(members[0]),1200,\(try bot.harness.sqlite("SELECT level FROM xp_members WHERE user_id = '\(members[0])'")),0,0")

        // A malformed file names its line and changes nothing.
        let dump = try bot.harness.sqlite("SELECT group_concat(user_id || ':' || xp, ' ') FROM xp_members ORDER BY user_id")
        var broken = lines
        broken[2] = "\(members[1]),12a,0,0,0"
        let refused = try await importFile(bot, broken.joined(separator: "\n"), dryRun: false)
        #expect(refused.contains("line 3"), "\(refused)")
        #expect(refused.contains("Nothing was changed"))
        #expect(try bot.harness.sqlite("SELECT group_concat(user_id || ':' || xp, ' ') FROM xp_members ORDER BY user_id") == dump)

        // Changed XP: a dry run tells, the import does it, and exporting again gives the file back.
        lines[1] = "\(members[0]),5000,10,10,20"  // level 10 is what 5,000 XP gives
        let edited = lines.joined(separator: "\n") + "\n"
        let dry = try await importFile(bot, edited, dryRun: true)
        #expect(dry.contains("1 updated") && dry.contains("Dry run: nothing was written"), "\(dry)")
        #expect(try bot.harness.sqlite("SELECT xp FROM xp_members WHERE user_id = '\(members[0])'") == "1200")
        let done = try await importFile(bot, edited, dryRun: false)
        #expect(done.contains("Imported"), "\(done)")
        #expect(try bot.harness.sqlite("SELECT xp || ',' || messages || ',' || voice_minutes FROM xp_members WHERE user_id = '\(members[0])'") == "5000,10,20")
        let again = try await bot.command("levels", [Bot.sub("export", [])])
        let second = try await Self.download(try #require(again["attachments"]?.arrayValue.first?["url"]?.stringValue))
        #expect(second == edited)
        #expect(try bot.harness.terminate() == 0)
    }

    func importFile(_ bot: Bot, _ content: String, dryRun: Bool) async throws -> String {
        let attachment = try await bot.sandbox.post("/sandbox/attachments", .object(["filename": .string("xp.csv"), "content": .string(content)]))
        let id = try #require(attachment["id"]?.stringValue)
        let answer = try await bot.command("levels", [Bot.sub("import", [
            Bot.option("file", 11, .string(id)), Bot.option("format", 3, .string("csv")), Bot.option("dry_run", 5, .bool(dryRun)),
        ])])
        return answer["content"]?.stringValue ?? ""
    }

    static func download(_ url: String) async throws -> String {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
        #expect(response.status == .ok)
        let body = try await response.body.collect(upTo: 1 << 20)
        return String(buffer: body)
    }
}
