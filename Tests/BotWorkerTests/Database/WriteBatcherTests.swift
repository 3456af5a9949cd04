import FoundationEssentials
import GRDB
import Glibc
import Logging
import Synchronization
import Testing

@testable import BotWorker

/// Group commit: many writes, few transactions, each write committed or reported.
@Suite struct WriteBatcherTests {
    let directory: String
    let database: SafeDatabase

    init() throws {
        var template = Array("/tmp/wbXXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template)!)
        let pool = try AppDatabase.openPool(path: directory + "/bot.sqlite")
        try pool.write { db in
            try db.execute(sql: "CREATE TABLE counts (id INTEGER PRIMARY KEY, n INTEGER NOT NULL CHECK (n >= 0))")
        }
        database = SafeDatabase(writer: pool, logger: Logger(label: "database")) { _ in }
    }

    @Test func writesSubmittedTogetherCommitInFewTransactions() async throws {
        let batcher = WriteBatcher(database: database, logger: Logger(label: "database"))
        for i in 0..<5000 {
            await batcher.submit("test.insert") { db in
                try db.execute(sql: "INSERT INTO counts (id, n) VALUES (?, 1)", arguments: [i])
                return nil
            }
        }
        await batcher.drain()
        #expect(await batcher.committed == 5000)
        // Group commit: far fewer transactions than writes.
        #expect(await batcher.transactions < 100)
        #expect(try await database.read("count") { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM counts") } == 5000)
        #expect(await batcher.latencyPercentiles != nil)
    }

    @Test func aRefusedWriteIsRolledBackAloneAndTheRestCommit() async throws {
        let batcher = WriteBatcher(database: database, logger: Logger(label: "database"))
        let after = Mutex(0)
        for i in 0..<10 {
            await batcher.submit("test.insert") { db in
                // id 5 breaks the CHECK constraint after its first statement ran.
                try db.execute(sql: "INSERT INTO counts (id, n) VALUES (?, 1)", arguments: [100 + i])
                if i == 5 { try db.execute(sql: "UPDATE counts SET n = -1 WHERE id = ?", arguments: [100 + i]) }
                return { after.withLock { $0 += 1 } }
            }
        }
        await batcher.drain()
        #expect(await batcher.committed == 9)
        #expect(await batcher.failed == 1)
        #expect(after.withLock { $0 } == 9)
        let ids = try await database.read("ids") { try Int.fetchAll($0, sql: "SELECT id FROM counts ORDER BY id") }
        #expect(ids == [100, 101, 102, 103, 104, 106, 107, 108, 109])
    }

    @Test func submitWaitsWhenTheQueueIsFull() async throws {
        let batcher = WriteBatcher(database: database, logger: Logger(label: "database"), maximumBatch: 10, maximumQueued: 20)
        for i in 0..<200 {
            await batcher.submit("test.insert") { db in
                try db.execute(sql: "INSERT INTO counts (id, n) VALUES (?, 1)", arguments: [1000 + i])
                return nil
            }
            #expect(await batcher.queued <= 20)
        }
        await batcher.drain()
        #expect(await batcher.committed == 200)
    }
}
