import BotData
import FoundationEssentials
import GRDB
import Glibc
import IPC
import Logging
import Testing

@testable import BotWorker

/// The worker's side of the change journal: what SafeDatabase and the group commit write, read
/// back and replayed onto a snapshot.
@Suite struct JournalWriterTests {
    let directory: String

    init() throws {
        var template = Array("/tmp/bjXXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template)!)
    }

    /// A migrated database, a snapshot of it, and a SafeDatabase journaling into two locations.
    func open(locations: [String]) throws -> (SafeDatabase, JournalWriter, DatabasePool) {
        let pool = try AppDatabase.openPool(path: directory + "/bot.sqlite")
        try AppDatabase.migrate(AppDatabase.migrator(), pool)
        try pool.writeWithoutTransaction { try $0.execute(sql: "VACUUM INTO ?", arguments: [directory + "/snapshot.sqlite"]) }
        let (position, id) = try pool.read { db in
            (try JournalState.read(db)!, try String.fetchOne(db, sql: "SELECT value FROM bot_meta WHERE key = 'database_id'")!)
        }
        let journal = JournalWriter(
            settings: JournalSettings(enabled: true, locations: locations, segmentMaxBytes: 64 << 20),
            databaseID: id, position: position, logger: Logger(label: "test")
        ) { _ in }
        return (SafeDatabase(writer: pool, logger: Logger(label: "test"), journal: journal) { _ in }, journal, pool)
    }

    func rows(_ reader: any DatabaseReader) throws -> [String] {
        try reader.read { db in
            try Row.fetchAll(db, sql: "SELECT pid, version FROM worker_starts ORDER BY pid").map { "\($0["pid"] as Int) \($0["version"] as String)" }
        }
    }

    @Test func concurrentWritesEachGetTheirOwnSequenceAndReplayExactly() async throws {
        let locations = [directory + "/b1", directory + "/b2"]
        let (database, journal, pool) = try open(locations: locations)
        let batcher = WriteBatcher(database: database, logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for pid in 1...60 {
                group.addTask {
                    try await database.write("test.insert") { db in
                        try db.execute(sql: "INSERT INTO worker_starts (started_at, pid, version) VALUES ('t', ?, 'direct')", arguments: [pid])
                    }
                }
                group.addTask {
                    await batcher.submit("test.batched") { db in
                        try db.execute(sql: "INSERT INTO worker_starts (started_at, pid, version) VALUES ('t', ?, 'batched')", arguments: [1000 + pid])
                        return nil
                    }
                }
            }
            // A write that throws changes nothing and journals nothing.
            group.addTask {
                _ = try? await database.write("test.refused") { db in
                    try db.execute(sql: "INSERT INTO worker_starts (started_at, pid, version) VALUES ('t', 1, 'x')")
                    throw SafeDatabaseError.verificationFailed(operation: "on purpose")
                }
            }
            try await group.waitForAll()
        }
        await batcher.drain()
        let report = journal.report()
        #expect(report.locations.allSatisfy { $0.state == "ok" && $0.lag == 0 })
        let committed = try await pool.read { try JournalState.read($0)!.sequence }
        #expect(report.sequence == committed)

        for location in locations {
            let chain = LocationJournal.scan(location: location, timeline: report.timeline!)
            #expect(chain.problems.isEmpty && chain.tentative == nil)
            #expect(chain.committed.keys.sorted() == Array(1...committed))
        }
        // The snapshot and the journal make exactly the live rows.
        let plan = ReplayPlan.make(
            after: try await DatabaseQueue(path: directory + "/snapshot.sqlite").read { try JournalState.read($0)! },
            journals: locations.map { LocationJournal.scan(location: $0, timeline: report.timeline!) }
        )
        #expect(plan.stop == .endOfJournal && plan.entries.count == Int(committed))
        let snapshot = try DatabaseQueue(path: directory + "/snapshot.sqlite")
        let entries = plan.entries
        try await snapshot.write { db in
            for entry in entries { try Changeset.apply(entry.changeset, to: db) }
        }
        let live = try rows(pool)
        #expect(live.count == 120)
        #expect(try rows(snapshot) == live)
        journal.close()
    }

    @Test func aFailingLocationIsLeftOutAndTheOthersGoOn() async throws {
        // A file where the location's directory should be: every write there fails.
        FileManager.default.createFile(atPath: directory + "/blocked", contents: Data("x".utf8))
        let (database, journal, _) = try open(locations: [directory + "/good", directory + "/blocked/b"])
        try await database.write("test.insert") { db in
            try db.execute(sql: "INSERT INTO worker_starts (started_at, pid, version) VALUES ('t', 1, 'v')")
        }
        let report = journal.report()
        #expect(report.locations[0].state == "ok" && report.locations[0].lastSequence == 1)
        #expect(report.locations[1].state == "failed" && report.locations[1].lag == 1 && report.locations[1].error != nil)
        #expect(report.unjournaled == 0)
        journal.close()
    }

    @Test func aLocationDeletedUnderTheWriterIsFailedNotWrittenIntoTheVoid() async throws {
        let (database, journal, _) = try open(locations: [directory + "/kept", directory + "/deleted"])
        try await database.write("test.insert") { db in
            try db.execute(sql: "INSERT INTO worker_starts (started_at, pid, version) VALUES ('t', 1, 'v')")
        }
        #expect(journal.report().locations[1].state == "ok")
        // rm -rf of the location: the open segment still takes writes, which reach nothing.
        try FileManager.default.removeItem(atPath: directory + "/deleted")
        try await database.write("test.insert") { db in
            try db.execute(sql: "INSERT INTO worker_starts (started_at, pid, version) VALUES ('t', 2, 'v')")
        }
        let report = journal.report()
        #expect(report.locations[0].state == "ok" && report.locations[0].lastSequence == 2)
        #expect(report.locations[1].state == "failed" && report.locations[1].lastSequence == 1)
        #expect(report.locations[1].error?.contains("deleted") == true)
        journal.close()
    }
}
