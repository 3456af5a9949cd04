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
            try GatewayPosition.create(db)
            try GatewayPosition.createShards(db)
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

    @Test func theGatewayPositionCommitsWithTheWritesQueuedBeforeIt() async throws {
        let batcher = WriteBatcher(database: database, logger: Logger(label: "database"), maximumBatch: 7)
        // Events 1…50: each a write then its position; every third event writes nothing.
        for event in 1...50 {
            await batcher.beginEvent()
            if event % 3 != 0 {
                await batcher.submit("test.event") { db in
                    try db.execute(sql: "INSERT INTO counts (id, n) VALUES (?, 1)", arguments: [event])
                    return nil
                }
            }
            await batcher.advance(to: GatewayPosition(sessionID: "s1", resumeURL: "wss://resume", sequence: event))
        }
        await batcher.drain()
        let (stored, rows) = try await database.read("check") { db in
            (try GatewayPosition.loadShards(db).first?.session, try Int.fetchOne(db, sql: "SELECT count(*) FROM counts") ?? 0)
        }
        #expect(stored == GatewaySession.StoredSession(sessionID: "s1", resumeURL: "wss://resume", sequence: 50))
        #expect(rows == 34)
        // Markers are not writes: they are neither counted nor timed.
        #expect(await batcher.committed == 34)
    }

    @Test func aPositionAndItsEventsWritesAlwaysCommitTogether() async throws {
        // Every committed state, watched from outside: the position's event has its row, and no
        // event's row is committed without its position (it would be replayed and counted twice).
        let batcher = WriteBatcher(database: database, logger: Logger(label: "database"), maximumBatch: 5)
        for event in 1...200 {
            await batcher.beginEvent()
            await batcher.submit("test.event") { db in
                try db.execute(sql: "INSERT INTO counts (id, n) VALUES (?, 1)", arguments: [event])
                return nil
            }
            await batcher.advance(to: GatewayPosition(sessionID: "s1", resumeURL: nil, sequence: event))
            if event % 20 == 0 {
                let (position, newest) = try await database.read("check") { db in
                    (try GatewayPosition.loadShards(db).first?.session?.sequence ?? 0, try Int.fetchOne(db, sql: "SELECT max(id) FROM counts") ?? 0)
                }
                #expect(position == newest, "position \(position), newest row \(newest)")
            }
        }
        await batcher.drain()
    }

    @Test func anEventWithMoreWritesThanTheQueueHoldsDoesNotWaitForItself() async throws {
        let batcher = WriteBatcher(database: database, logger: Logger(label: "database"), maximumBatch: 4, maximumQueued: 8)
        await batcher.beginEvent()
        for row in 1...30 {
            await batcher.submit("test.event") { db in
                try db.execute(sql: "INSERT INTO counts (id, n) VALUES (?, 1)", arguments: [row])
                return nil
            }
        }
        await batcher.advance(to: GatewayPosition(sessionID: "s1", resumeURL: nil, sequence: 1))
        await batcher.drain()
        let (position, rows) = try await database.read("check") { db in
            (try GatewayPosition.loadShards(db).first?.session?.sequence, try Int.fetchOne(db, sql: "SELECT count(*) FROM counts") ?? 0)
        }
        #expect(position == 1 && rows == 30)
    }

    @Test func eachShardKeepsItsOwnPosition() async throws {
        // Events of two shards interleaved, batched together: each shard's newest position is stored.
        let batcher = WriteBatcher(database: database, logger: Logger(label: "database"), maximumBatch: 64)
        for event in 1...40 {
            let shard = event % 2
            await batcher.beginEvent()
            await batcher.submit("test.event") { db in
                try db.execute(sql: "INSERT INTO counts (id, n) VALUES (?, 1)", arguments: [event])
                return nil
            }
            await batcher.advance(to: GatewayPosition(shard: shard, shardCount: 2, sessionID: "s\(shard)", resumeURL: nil, sequence: event))
        }
        await batcher.drain()
        let stored = try await database.read("check") { db in try GatewayPosition.loadShards(db) }
        #expect(stored.map(\.id) == [0, 1])
        #expect(stored.map(\.count) == [2, 2])
        #expect(stored.map { $0.session?.sessionID } == ["s0", "s1"])
        #expect(stored.map { $0.session?.sequence } == [40, 39])
    }
}
