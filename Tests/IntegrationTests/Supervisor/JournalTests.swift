import BotData
import Foundation
import GRDB
import Glibc
import IPC
import TestSupport
import Testing

/// The change journal end to end: the worker commits transactions through the sandbox (XP,
/// verifications, role rules), the live file is damaged, and after the automatic restore every
/// committed transaction is back, row for row.
@Suite(.serialized) struct JournalTests {
    typealias Bot = FeatureTests.Bot
    typealias Rows = [String: [String]]

    nonisolated(unsafe) static let config: [String: Any] = [
        "backup": ["locations": ["DIR/b1", "DIR/b2"]],
        "health": ["intervalSeconds": 0.3],
        // Time for a graceful stop, which checkpoints the WAL into the file.
        "worker": ["stopGraceSeconds": 10],
    ]

    enum Damage: String, CaseIterable, CustomStringConvertible {
        case pageOverwrite, truncation, deletion
        var description: String { rawValue }
    }

    // MARK: - Workload and state

    /// Verification set up and used, XP settings, a role rule, and `messages` messages counted.
    func workload(_ bot: Bot, messages: Int) async throws {
        _ = try await bot.command("verification", [Bot.sub("setup", [
            Bot.option("channel", 7, .string(bot.channels["verify"]!)),
            Bot.option("verified_role", 8, .string(bot.roles["Verified"]!)),
            Bot.option("unverified_role", 8, .string(bot.roles["Unverified"]!)),
        ])])
        _ = try await bot.command("levels", [Bot.sub("config", [
            Bot.option("min_xp", 4, .integer(10)), Bot.option("max_xp", 4, .integer(10)), Bot.option("cooldown_seconds", 4, .integer(0)),
        ])])
        for _ in 0..<2 {
            let member = try await bot.join(accountAgeDays: 400)
            try await bot.waitForRoles(member, "the unverified role") { $0.contains(bot.roles["Unverified"]!) }
            _ = try await bot.press("verification:verify", as: member)
        }
        _ = try await bot.command("roleconnection", [Bot.sub("add", [
            Bot.option("role", 8, .string(bot.roles["Member"]!)), Bot.option("min_level", 4, .integer(2)),
        ])])
        if messages > 0 {
            _ = try await bot.sandbox.post("/sandbox/flood", .object(["count": .integer(messages)]))
        }
    }

    /// Waits until the worker has committed everything and stays idle: the journal's sequence
    /// the same over five looks 100 ms apart. Returns it.
    @discardableResult
    func quiesce(_ harness: SupervisorHarness, atLeast minimum: Int64 = 1) throws -> Int64 {
        var last: Int64 = -1
        var same = 0
        try waitUntil(timeout: .seconds(60), "the worker idle with every write committed") {
            let sequence = (try? harness.status().journal?.sequence) ?? -1
            same = sequence == last && sequence >= minimum ? same + 1 : 0
            last = sequence
            if same < 5 { usleep(100_000) }
            return same >= 5
        }
        return last
    }

    /// Every row of every table, as text, per table; `journal_state` without its timeline.
    func rows(_ path: String) throws -> Rows {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? queue.close() }
        return try queue.read { db in
            var rows: Rows = [:]
            for table in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name") {
                // The Gateway session is dropped on purpose by a restore to the past (SessionTests
                // check that); who the bot is and its guilds stay.
                let select = switch table {
                case JournalState.table: "SELECT sequence, committed_at_ms FROM journal_state"
                case "gateway_session": "SELECT user_id, application_id, guilds FROM gateway_session"
                case "gateway_shards": "SELECT shard_id, shard_count, guilds FROM gateway_shards"
                default: "SELECT * FROM \"\(table)\""
                }
                rows[table] = try Row.fetchAll(db, sql: select).map { row in
                    row.columnNames.map { "\($0)=\(row[$0] as DatabaseValue)" }.joined(separator: " ")
                }.sorted()
            }
            return rows
        }
    }

    /// The state as it is now, read twice around a stable journal sequence.
    func capture(_ harness: SupervisorHarness) throws -> (rows: Rows, sequence: Int64) {
        let sequence = try quiesce(harness)
        let state = try rows(harness.dataDir + "/bot.sqlite")
        #expect(try harness.status().journal?.sequence == sequence, "the worker wrote while the state was read")
        return (state, sequence)
    }

    /// The snapshot the supervisor took of the restored database before the worker started on
    /// it: exactly what the restore produced.
    func restoredRows(_ harness: SupervisorHarness, location: String = "b1") throws -> Rows {
        let list = try SupervisorHarness.cli(["backups", "--json", "--config", harness.configPath])
        let backups = try JSONDecoder().decode([JSONValue].self, from: Data(list.stdout.utf8))
        let id = try #require(backups.first { $0["reason"]?.stringValue == "post-restore" }?["id"]?.stringValue)
        return try rows(harness.dir + "/\(location)/\(id).sqlite")
    }

    func compare(_ restored: Rows, _ before: Rows) {
        #expect(restored.keys.sorted() == before.keys.sorted())
        for table in before.keys.sorted() {
            let lost = Set(before[table] ?? []).subtracting(restored[table] ?? [])
            let extra = Set(restored[table] ?? []).subtracting(before[table] ?? [])
            #expect(lost.isEmpty && extra.isEmpty, "\(table): \(lost.count) rows lost, \(extra.count) rows not there before; lost: \(lost.prefix(3)) extra: \(extra.prefix(3))")
        }
    }

    func damage(_ path: String, _ damage: Damage) throws {
        switch damage {
        case .pageOverwrite:
            // Every page but the first, over the main file: the tables' pages.
            let size = try #require(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
            let handle = try #require(FileHandle(forWritingAtPath: path))
            try handle.seek(toOffset: 4096)
            try handle.write(contentsOf: Data((0..<max(size - 4096, 8192)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }))
            try handle.close()
        case .truncation:
            let size = try #require(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
            #expect(truncate(path, off_t(size / 3)) == 0)
        case .deletion:
            for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
        }
    }

    func waitForRestore(_ harness: SupervisorHarness, replacing old: Int32?) throws -> StatusSnapshot {
        try harness.waitForStatus(timeout: .seconds(60), "a restored database and a new worker") {
            $0.worker.state == .ready && $0.worker.pid != old && $0.operation == nil
                && $0.alerts.contains { $0.message.contains("database restored from backup") }
        }
    }

    func restoreAlert(_ status: StatusSnapshot) -> String {
        status.alerts.first { $0.message.contains("database restored from backup") }?.message ?? ""
    }

    // MARK: - Tests

    @Test(arguments: Damage.allCases)
    func afterDamageWhileRunningEveryCommittedTransactionIsBack(_ damage: Damage) async throws {
        let bot = try await Bot(config: Self.config)
        let harness = bot.harness
        try await workload(bot, messages: 300)
        try quiesce(harness)
        // Fold the WAL into the file (a graceful restart checkpoints), so that the damage hits
        // the pages the tables live in.
        #expect(try SupervisorHarness.cli(["restart-worker", "--config", harness.configPath]).status == 0)
        let exit = try harness.status().worker.lastExit
        #expect(exit?.code == 0, "\(String(describing: exit))")
        let before = try capture(harness)
        #expect(before.rows["xp_members"]?.isEmpty == false && before.rows["verified_members"]?.count == 2 && before.rows["role_rules"]?.count == 1)
        #expect(before.sequence > 10)
        let old = try harness.status().worker.pid

        try self.damage(harness.dataDir + "/bot.sqlite", damage)
        let status = try waitForRestore(harness, replacing: old)
        let alert = restoreAlert(status)
        #expect(alert.contains("every committed transaction is back"), "\(alert)")
        #expect(alert.contains("…\(before.sequence))"), "\(alert)")
        compare(try restoredRows(harness), before.rows)
        // The journal goes on, on the restored database's new timeline.
        let journal = try #require(status.journal)
        #expect(journal.timeline != nil && journal.locations.count == 2 && journal.locations.allSatisfy { $0.state == "ok" })
        #expect(try harness.terminate() == 0)
    }

    @Test func workersKilledDuringWritesLoseNothingThatCommitted() async throws {
        let bot = try await Bot(config: Self.config)
        let harness = bot.harness
        try await workload(bot, messages: 0)
        var generator = SystemRandomNumberGenerator()
        for round in 0..<3 {
            let running = try harness.status()
            let pid = try #require(running.worker.pid)
            // Each worker starts a sandbox of its own.
            let sandbox = SandboxClient(baseURL: try #require(running.worker.discord?.sandboxURL))
            _ = try await sandbox.post("/sandbox/flood", .object(["count": .integer(400)]))
            // A random moment while the flood's writes commit.
            usleep(UInt32.random(in: 0...150_000, using: &generator))
            kill(pid, SIGKILL)
            let status = try harness.waitForStatus(timeout: .seconds(30), "worker \(round + 2) ready") {
                $0.worker.state == .ready && $0.worker.pid != pid && $0.worker.discord?.gatewayState == "connected"
            }
            #expect(status.worker.restarts == round + 1)
        }
        let before = try capture(harness)
        let old = try harness.status().worker.pid
        try damage(harness.dataDir + "/bot.sqlite", .deletion)
        let status = try waitForRestore(harness, replacing: old)
        #expect(restoreAlert(status).contains("every committed transaction is back"), "\(restoreAlert(status))")
        compare(try restoredRows(harness), before.rows)
        #expect(try harness.terminate() == 0)
    }

    /// The newest segment of the live timeline in `location`.
    func newestSegment(_ harness: SupervisorHarness, _ location: String) throws -> String {
        let root = harness.dir + "/" + location
        let timeline = try #require(JournalLayout.timelines(in: root).last)
        return try #require(JournalLayout.segments(root, timeline: timeline).last)
    }

    @Test func anEntryCutInHalfAtTheEndIsIgnored() async throws {
        let bot = try await Bot(config: Self.config)
        let harness = bot.harness
        try await workload(bot, messages: 50)
        let before = try capture(harness)
        #expect(try harness.terminate() == 0)
        // The worker died while writing one more entry: half of it at the end of each copy.
        let half = Array(JournalRecord.entry(JournalEntry(sequence: before.sequence + 1, committedAtMs: 1, changeset: Array(repeating: 7, count: 200))).encoded().prefix(100))
        for location in ["b1", "b2"] {
            let handle = try #require(FileHandle(forWritingAtPath: try newestSegment(harness, location)))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(half))
            try handle.close()
        }
        try damage(harness.dataDir + "/bot.sqlite", .pageOverwrite)
        try harness.startReady()
        let status = try waitForRestore(harness, replacing: nil)
        let alert = restoreAlert(status)
        #expect(alert.contains("every committed transaction is back") && !alert.contains("stopped"), "\(alert)")
        compare(try restoredRows(harness), before.rows)
        #expect(try harness.terminate() == 0)
    }

    @Test func aDamagedEntryInTheMiddleStopsTheReplayThereWithAnAlert() async throws {
        let bot = try await Bot(config: ["backup": ["locations": ["DIR/b1"]]])
        let harness = bot.harness
        try await workload(bot, messages: 0)
        let before = try capture(harness)
        #expect(try harness.terminate() == 0)

        // Flip a byte inside an entry in the middle of the newest segment.
        let path = try newestSegment(harness, "b1")
        let segment = JournalSegmentFile.read(path: path)
        let entries = segment.records.compactMap { record -> JournalEntry? in
            if case .entry(let entry) = record { return entry } else { return nil }
        }
        #expect(entries.count >= 4)
        let victim = entries[entries.count / 2]
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let frame = JournalRecord.entry(victim).encoded()
        let offset = try #require(find(frame, in: bytes))
        bytes[offset + JournalRecord.frameHeaderSize + 16 + frame.count / 3] ^= 0x5A
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        try damage(harness.dataDir + "/bot.sqlite", .pageOverwrite)
        try harness.startReady()
        let status = try waitForRestore(harness, replacing: nil)
        let alert = restoreAlert(status)
        #expect(alert.contains("the replay stopped") && alert.contains("entry \(victim.sequence) is damaged"), "\(alert)")
        #expect(alert.contains("Recovered up to sequence \(victim.sequence - 1)"), "\(alert)")
        #expect(status.alerts.first { $0.message.contains("database restored") }?.severity == .critical)
        let restored = try restoredRows(harness)
        #expect(restored["journal_state"]?.first?.hasPrefix("sequence=\(victim.sequence - 1) ") == true)
        #expect(victim.sequence - 1 < before.sequence)
        #expect(try harness.terminate() == 0)
    }

    @Test func restoreAtATimeGivesExactlyTheRowsOfThatTime() async throws {
        let bot = try await Bot(config: Self.config)
        let harness = bot.harness
        try await workload(bot, messages: 40)
        let then = try capture(harness)
        let moment = Date()
        // Everything after this commits strictly later than the moment.
        try waitUntil(timeout: .seconds(2), "the clock past the moment") { Date().timeIntervalSince(moment) > 0.01 }

        try await workload(bot, messages: 60)
        let now = try capture(harness)
        #expect(now.rows != then.rows)

        let restore = try SupervisorHarness.cli(["restore", "--at", Timestamp.string(moment), "--yes", "--config", harness.configPath])
        #expect(restore.status == 0, "\(restore.stdout) \(restore.stderr)")
        #expect(restore.stdout.contains("the data is as it was at"), "\(restore.stdout)")
        compare(try restoredRows(harness), then.rows)
        #expect(try harness.terminate() == 0)
    }

    @Test func restoreAtRefusesATimeBeforeEveryBackup() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let refused = try SupervisorHarness.cli(["restore", "--at", "2020-01-01T00:00:00Z", "--yes", "--config", harness.configPath])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("no verified backup from before 2020-01-01T00:00:00.000Z"), "\(refused.stderr)")
        let garbage = try SupervisorHarness.cli(["restore", "--at", "yesterday", "--yes", "--config", harness.configPath])
        #expect(garbage.status == 2 && garbage.stderr.contains("ISO 8601"))
        #expect(try harness.terminate() == 0)
    }

    func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<(start + needle.count)]) == needle { return start }
        }
        return nil
    }
}
