import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// `bot-worker xp import|export` on the real binaries: on a stopped bot (the CLI opens the data
/// directory itself, through the journal) and on a running one (through the supervisor to the
/// worker). A MEE6 leaderboard of 1,000 players goes in and comes out as the same CSV; a
/// malformed file names its line and changes nothing.
@Suite(.serialized) struct XPTransferTests {
    static let guild = "1187654321098765432"
    static var workerBinary: String { SupervisorHarness.binDir + "/bot-worker" }

    /// MEE6's curve: level `l` to `l + 1` takes `5 l² + 50 l + 100` XP.
    static func level(forXP xp: Int) -> Int {
        var level = 0, left = xp
        while left >= 5 * level * level + 50 * level + 100 {
            left -= 5 * level * level + 50 * level + 100
            level += 1
        }
        return level
    }

    /// A MEE6 leaderboard page of `count` players (written as MEE6 does, other keys included),
    /// and the CSV its export must be: by XP, highest first, then by user id.
    static func leaderboard(_ count: Int, seed: Int = 1) -> (json: String, csv: String) {
        var players: [(id: UInt64, xp: Int, messages: Int)] = []
        for index in 0..<count {
            // Every value repeats a few times, so ties are ordered by id.
            players.append((UInt64(172_002_275_412_279_296) + UInt64(index * 7919 % 100_003), (index * 7919 * seed) % 250_000 / 10 * 10, index * 3 % 997))
        }
        let json = """
            {"admin": false, "banner_url": null, "guild": {"id": "\(guild)", "name": "Test", "premium": false}, "page": 0,
            "players": [
            \(players.map { player in
                #"  {"avatar": "a", "detailed_xp": [0, 100, \#(player.xp)], "discriminator": "0", "guild_id": "\#(guild)", "id": "\#(player.id)", "is_monetize_subscriber": false, "level": \#(level(forXP: player.xp)), "message_count": \#(player.messages), "monetize_xp_boost": 0, "username": "player \#(player.id)", "xp": \#(player.xp)}"#
            }.joined(separator: ",\n"))
            ],
            "role_rewards": [], "user_guild_settings": null, "xp_per_message": [15, 25], "xp_rate": 1.0}
            """
        let rows = players.sorted { ($0.xp, $1.id) > ($1.xp, $0.id) }.map { "\($0.id),\($0.xp),\(level(forXP: $0.xp)),\($0.messages),0\n" }
        return (json, "user_id,xp,level,messages,voice_minutes\n" + rows.joined())
    }

    func xp(_ harness: SupervisorHarness, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try SupervisorHarness.cli(["xp"] + arguments + ["--config", harness.configPath, "--guild", Self.guild], binary: Self.workerBinary)
    }

    func write(_ text: String, _ name: String, in harness: SupervisorHarness) throws -> String {
        let path = harness.dir + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The same leaderboard with player 501's XP broken, on the line it is on.
    func malformed(_ json: String) -> (text: String, line: Int) {
        var lines = json.components(separatedBy: "\n")
        let index = lines.firstIndex { $0.contains(#""xp": "#) && $0.contains("player") }! + 500
        lines[index] = lines[index].replacingOccurrences(of: #""xp": "#, with: #""xp": "12a", "was": "#)
        return (lines.joined(separator: "\n"), index + 1)
    }

    @Test func importAndExportOnAStoppedBot() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        _ = try harness.waitForStatus(timeout: .seconds(30), "the worker ready") { $0.worker.state == .ready }
        let backup = try SupervisorHarness.cli(["backup", "--config", harness.configPath])
        #expect(backup.status == 0, "\(backup.stderr)")
        #expect(try harness.terminate() == 0)
        let (json, csv) = Self.leaderboard(1000)
        let file = try write(json, "mee6.json", in: harness)

        let dry = try xp(harness, ["import", "--format", "mee6", "--dry-run", file])
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect(dry.stdout.contains("1000 members in the file: 1000 added, 0 updated, 0 unchanged. Dry run: nothing was written."))
        #expect(try xp(harness, ["export"]).stdout == "user_id,xp,level,messages,voice_minutes\n")

        let imported = try xp(harness, ["import", "--format", "mee6", file])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("1000 members in the file: 1000 added, 0 updated, 0 unchanged. Written in one transaction"))
        let afterImport = Timestamp.string(Date())
        let exported = try xp(harness, ["export", "--output", harness.dir + "/out.csv"])
        #expect(exported.status == 0, "\(exported.stderr)")
        #expect(try String(contentsOfFile: harness.dir + "/out.csv", encoding: .utf8) == csv)

        // Refused whole, before the database is opened: the file is byte for byte the same.
        let before = try Data(contentsOf: URL(fileURLWithPath: harness.dataDir + "/bot.sqlite"))
        let (bad, line) = malformed(json)
        let refused = try xp(harness, ["import", "--format", "mee6", try write(bad, "bad.json", in: harness)])
        #expect(refused.status == 65)
        #expect(refused.stderr.contains("line \(line): field \"xp\": \"12a\" is not a whole number ≥ 0; nothing was imported"), "\(refused.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: harness.dataDir + "/bot.sqlite")) == before)

        // The import is in the change journal: the state as of just after it, brought back from
        // the backup taken before it and the journal replayed after that, has it.
        try harness.startReady()
        let restore = try SupervisorHarness.cli(["restore", "--at", afterImport, "--yes", "--config", harness.configPath])
        #expect(restore.status == 0, "\(restore.stderr)")
        _ = try harness.waitForStatus(timeout: .seconds(30), "the worker ready after the restore") { $0.worker.state == .ready }
        #expect(try xp(harness, ["export"]).stdout == csv)
        #expect(try harness.terminate() == 0)
    }

    @Test func importAndExportThroughTheRunningSupervisor() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        _ = try harness.waitForStatus(timeout: .seconds(30), "the worker ready") { $0.worker.state == .ready }
        let (json, csv) = Self.leaderboard(1000)
        let file = try write(json, "mee6.json", in: harness)

        let dry = try xp(harness, ["import", "--format", "mee6", "--dry-run", file])
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect(dry.stdout.contains("1000 members in the file: 1000 added, 0 updated, 0 unchanged. Dry run: nothing was written."))
        #expect(try xp(harness, ["export"]).stdout == "user_id,xp,level,messages,voice_minutes\n")

        let imported = try xp(harness, ["import", "--format", "mee6", file])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("1000 members in the file: 1000 added"))
        let exported = try xp(harness, ["export"])
        #expect(exported.status == 0, "\(exported.stderr)")
        #expect(exported.stdout == csv)
        #expect(harness.log("audit").contains { $0["command"] as? String == "xp-import" && $0["outcome"] as? String == "done" })

        // A malformed file: refused with its line, nothing changed.
        let (bad, line) = malformed(json)
        let refused = try xp(harness, ["import", "--format", "mee6", try write(bad, "bad.json", in: harness)])
        #expect(refused.status == 65)
        #expect(refused.stderr.contains("line \(line): field \"xp\": \"12a\""), "\(refused.stderr)")
        #expect(try xp(harness, ["export"]).stdout == csv)

        // A second page: members it lists change, the others stay.
        let again = try xp(harness, ["import", "--format", "csv", try write("user_id,xp\n172002275412279296,4675\n5,100\n", "page.csv", in: harness)])
        #expect(again.stdout.contains("2 members in the file: 1 added, 1 updated, 0 unchanged"), "\(again.stderr)")
        #expect(try harness.sqlite("SELECT level FROM xp_members WHERE guild_id = '\(Self.guild)' AND user_id = '172002275412279296'") == "10")
        #expect(try harness.sqlite("SELECT COUNT(*) FROM xp_members WHERE guild_id = '\(Self.guild)'") == "1001")

        // The raw socket command names the file's line too (a client other than the CLI).
        let body = Data(#"{"players": [{"id": "5", "xp": 1}, {"id": "5", "xp": 2}]}"#.utf8).base64EncodedString()
        let response = try ControlClient(socketPath: harness.statusSocket).exchange(
            try JSONLine.encode(ControlRequest(cmd: .xpImport, guild: Self.guild, format: "mee6", content: body))
        )
        #expect(response.contains(#""code":"malformed""#) && response.contains("user 5 is listed twice"), "\(response)")
        #expect(try harness.terminate() == 0)
    }

    @Test func refusedWhileTheSupervisorRunsWithoutAWorker() throws {
        // A worker that cannot start: the supervisor stays up, with no worker to run the import.
        let harness = try SupervisorHarness(config: ["worker": ["executable": "/bin/false"]])
        try harness.start()
        _ = try harness.waitForStatus(timeout: .seconds(30), "the worker restarting") { $0.worker.restarts > 0 && $0.worker.state != .ready }
        let file = try write("user_id,xp\n5,100\n", "page.csv", in: harness)
        let refused = try xp(harness, ["import", "--format", "csv", file])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("the worker is not running"), "\(refused.stderr)")
        #expect(try harness.terminate() == 0)
    }
}
