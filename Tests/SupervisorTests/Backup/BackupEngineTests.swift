import BotData
import Foundation
import GRDB
import Glibc
import IPC
import Testing
import CSQLiteCopyWatch

@testable import Supervisor

/// The backup's copy and its verification on real SQLite files: the snapshot checked on a second
/// connection while it is copied, the fallback that checks the copy, and damage found either way.
@Suite struct BackupEngineTests {
    /// A live database in WAL mode that passes the supervisor's checks, as the worker makes it.
    final class Scratch {
        let dir: String
        let live: String
        let pool: DatabasePool

        init(rows: Int = 2_000) throws {
            var template = Array("/tmp/beXXXXXX".utf8CString)
            dir = String(cString: mkdtemp(&template)!)
            live = dir + "/bot.sqlite"
            pool = try DatabasePool(path: live)
            try pool.write { db in
                try db.execute(sql: "PRAGMA application_id = \(BotDatabase.applicationID)")
                try db.execute(sql: "CREATE TABLE \(BotDatabase.migrationsTable) (identifier TEXT NOT NULL PRIMARY KEY)")
                try db.execute(sql: "INSERT INTO \(BotDatabase.migrationsTable) VALUES ('v1')")
                try db.execute(sql: "CREATE TABLE \(BotDatabase.metaTable) (key TEXT PRIMARY KEY, value TEXT)")
                try db.execute(sql: "INSERT INTO \(BotDatabase.metaTable) VALUES ('database_id', 'db-test')")
                try db.execute(sql: "CREATE TABLE \(BotDatabase.tablesTable) (name TEXT PRIMARY KEY, feature TEXT, critical INTEGER NOT NULL)")
                try db.execute(sql: "CREATE TABLE items (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, body BLOB NOT NULL)")
                try db.execute(sql: "CREATE INDEX items_k ON items (k)")
                try db.execute(sql: "INSERT INTO \(BotDatabase.tablesTable) VALUES ('items', 'test', 1)")
                try db.execute(sql: """
                    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?)
                    INSERT INTO items (k, body) SELECT abs(random() % 1000000), randomblob(500) FROM c
                    """, arguments: [rows])
            }
        }

        deinit {
            try? pool.close()
            try? FileManager.default.removeItem(atPath: dir)
        }

        func engine(attempts: Int = 200) -> BackupEngine {
            var engine = BackupEngine(livePath: live, locations: [dir + "/b1", dir + "/b2"])
            engine.sharedSnapshotAttempts = attempts
            return engine
        }

        /// A thread that commits `sql` again and again, `pauseMicroseconds` apart, until `stop`
        /// is set; `commits` is how many it made.
        func committing(_ sql: String, pauseMicroseconds: UInt32 = 0) -> (stop: ManagedAtomicFlag, commits: ConcurrentResult<Int>) {
            let stop = ManagedAtomicFlag()
            let pool = self.pool
            let commits = ConcurrentResult {
                var commits = 0
                while !stop.isSet {
                    try pool.write { db in try db.execute(sql: sql) }
                    commits += 1
                    if pauseMicroseconds > 0 { usleep(pauseMicroseconds) }
                }
                return commits
            }
            return (stop, commits)
        }

        func manifest(_ report: BackupEngine.Report, in location: String) throws -> BackupManifest {
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(location)/\(report.id).json"))
            return try JSONDecoder().decode(BackupManifest.self, from: data)
        }
    }

    @Test func checksTheSnapshotWhileCopyingAndHashesTheCopy() throws {
        let scratch = try Scratch()
        let report = try scratch.engine().run(reason: .manual, progress: { _, _ in })
        #expect(report.results.allSatisfy { $0.ok }, "\(report.results)")
        for location in ["b1", "b2"] {
            let manifest = try scratch.manifest(report, in: location)
            let file = "\(scratch.dir)/\(location)/\(report.id).sqlite"
            #expect(try DurableFile.sha256(of: file) == manifest.sha256)
            let copy = DatabaseInspector.inspect(path: file, check: .integrity)
            #expect(copy.isHealthy, "\(copy.problems)")
            #expect(copy.criticalRows["items"] == 2_000)
            #expect(copy.pageCount == manifest.pageCount && copy.sizeBytes == manifest.sizeBytes)
            // A single file in rollback mode: nothing beside it.
            #expect(!FileManager.default.fileExists(atPath: file + "-wal"))
        }
        #expect(try scratch.manifest(report, in: "b1").verification.check == BackupEngine.snapshotChecked)
        #expect(try scratch.manifest(report, in: "b2").verification.check.hasPrefix("sha256 equal to the verified copy's"))
        #expect(Set(report.phasesMs.keys) == ["copy", "fsync", "integrity", "sha256", "verify"])
        #expect(report.hash == "hashed while copied")
    }

    @Test func withoutASharedSnapshotTheCopyItselfIsChecked() throws {
        let scratch = try Scratch()
        let report = try scratch.engine(attempts: 0).run(reason: .manual, progress: { _, _ in })
        #expect(report.results.allSatisfy { $0.ok }, "\(report.results)")
        #expect(try scratch.manifest(report, in: "b1").verification.check == "integrity_check")
    }

    /// A file in rollback mode (as a restore puts it in place): the first reader's SHARED lock
    /// keeps every commit out, so the second reads the same snapshot without a wal-index header.
    @Test func aRollbackModeFileSharesItsSnapshotToo() throws {
        let scratch = try Scratch()
        try scratch.pool.close()
        let queue = try DatabaseQueue(path: scratch.live)
        try queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = DELETE") }
        try queue.close()
        #expect(!FileManager.default.fileExists(atPath: scratch.live + "-shm"))
        let report = try scratch.engine().run(reason: .postRestore, progress: { _, _ in })
        #expect(report.results.allSatisfy { $0.ok }, "\(report.results)")
        #expect(try scratch.manifest(report, in: "b1").verification.check == BackupEngine.snapshotChecked)
        #expect(report.hash == "hashed while copied")
        #expect(try DurableFile.sha256(of: "\(scratch.dir)/b1/\(report.id).sqlite") == scratch.manifest(report, in: "b1").sha256)
    }

    /// A copy larger than SQLite's page cache reaches the file in many writes before its last
    /// commit, and the snapshot's page 1 is in the WAL (a schema change not yet checkpointed):
    /// the hash taken while copying is still the finished file's, and so is the one taken after.
    @Test(arguments: [true, false]) func theHashIsTheFinishedFilesWhileCopyingOrAfter(whileCopying: Bool) throws {
        let scratch = try Scratch(rows: 40_000)
        try scratch.pool.write { db in try db.execute(sql: "CREATE TABLE later (x)") }
        #expect(try scratch.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0 } > 4_000)
        var engine = scratch.engine()
        engine.hashWhileCopying = whileCopying
        let report = try engine.run(reason: .manual, progress: { _, _ in })
        #expect(report.results.allSatisfy { $0.ok }, "\(report.results)")
        #expect(report.hash == (whileCopying ? "hashed while copied" : "hashed after the copy"))
        let manifest = try scratch.manifest(report, in: "b1")
        #expect(try DurableFile.sha256(of: "\(scratch.dir)/b1/\(report.id).sqlite") == manifest.sha256)
        let copy = DatabaseInspector.inspect(path: "\(scratch.dir)/b1/\(report.id).sqlite", check: .integrity)
        #expect(copy.isHealthy && copy.criticalRows["items"] == 40_000, "\(copy.problems)")
    }

    /// Commits during the backup grow the file, so page 1 keeps changing in the WAL: the page 1
    /// the hash begins with is the snapshot's (up to the last frame of the header the snapshot
    /// began under), not a newer one, and the hash is still the finished file's.
    @Test func theHashWhileCopyingHoldsUnderCommits() throws {
        let scratch = try Scratch(rows: 20_000)
        // A commit every half millisecond or so: the pace of the load.
        let (stop, writer) = scratch.committing("INSERT INTO items (k, body) VALUES (1, randomblob(3000))", pauseMicroseconds: 500)
        defer { stop.set(); _ = try? writer.value() }
        for _ in 0..<3 {
            let report = try scratch.engine().run(reason: .manual, progress: { _, _ in })
            #expect(report.results.allSatisfy { $0.ok }, "\(report.results)")
            #expect(report.hash == "hashed while copied")
            #expect(try DurableFile.sha256(of: "\(scratch.dir)/b1/\(report.id).sqlite") == scratch.manifest(report, in: "b1").sha256)
        }
        stop.set()
        #expect(try writer.value() > 0)
    }

    /// A snapshot that began once a checkpoint had copied the whole WAL into the file reads the
    /// file alone, and a writer may then restart the WAL and write over its frames: page 1 is the
    /// file's, not a frame's. (Under a committing load, the auto-checkpoint sometimes finished just
    /// before a backup began, and the hash fell back to reading the copy.)
    @Test func page1OfASnapshotOfACheckpointedWALIsTheFiles() throws {
        let scratch = try Scratch(rows: 10)
        try scratch.pool.write { db in try db.execute(sql: "INSERT INTO items (k, body) VALUES (1, x'00')") }
        try scratch.pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(PASSIVE)") }
        let file = try #require(WALIndexHeader.read(scratch.live, count: 4096, at: 0))
        let reader = try DatabaseQueue(path: scratch.live)
        try reader.inDatabase { db in
            try db.execute(sql: "BEGIN DEFERRED")
            defer { try? db.execute(sql: "COMMIT") }
            _ = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM items")
            let header = try #require(WALIndexHeader.read(databasePath: scratch.live))
            #expect(header.lastFrame > 0 && header.backfilled == header.lastFrame)
            // A schema change: a new page 1, in a WAL begun again from its first frame.
            try scratch.pool.write { db in try db.execute(sql: "CREATE TABLE later (x)") }
            let now = try #require(WALIndexHeader.read(databasePath: scratch.live))
            #expect(now.lastFrame < header.lastFrame && now != header)

            let page = header.snapshotFirstPage(databasePath: scratch.live, pageSize: 4096)
            let isTheFiles = page == file
            #expect(isTheFiles, "page 1 \(page == nil ? "could not be read" : "is not the file's")")
        }
        try reader.close()
    }

    /// The hash taken while copying is given only when it provably covers the finished file:
    /// a page 1 other than the one hashed first, or a file written out of order (a page written
    /// again), gives none, and the caller hashes the file.
    @Test func aHashThatMightNotBeTheFilesIsNotGiven() throws {
        let scratch = try Scratch(rows: 10)
        let path = try #require(BackupEngine.canonical(scratch.dir + "/wrong.sqlite"))
        // The right page 1 but for one byte: SQLite's copy ends with another page 1.
        try scratch.pool.read { source in
            let first = try #require(BackupEngine.snapshotFirstPage(scratch.live, pageSize: 4096, walHeader: WALIndexHeader.read(databasePath: scratch.live)))
            var expected = CopyHasher.expectedFirstPage(snapshotFirstPage: first, pageCount: try Int.fetchOne(source, sql: "PRAGMA page_count") ?? 0)
            expected[100] ^= 0xff
            let hasher = try #require(CopyHasher(path: path, expectedFirstPage: expected))
            let copy = try DatabaseQueue(path: hasher.uri)
            hasher.start { _ in }
            try copy.writeWithoutTransaction { db in try source.backup(to: db) }
            try copy.close()
            let (digest, reason) = hasher.finish()
            #expect(digest == nil && reason == "its page 1 is not the one expected")
        }
        // Ordinary commits write pages again: not in order.
        let other = try #require(BackupEngine.canonical(scratch.dir + "/rewritten.sqlite"))
        let hasher = try #require(CopyHasher(path: other, expectedFirstPage: [UInt8](repeating: 0, count: 4096)))
        let queue = try DatabaseQueue(path: hasher.uri)
        hasher.start { _ in }
        try queue.write { db in
            try db.execute(sql: "CREATE TABLE t (x)")
            try db.execute(sql: "INSERT INTO t SELECT randomblob(3000) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50) SELECT x FROM c)")
        }
        try queue.write { db in try db.execute(sql: "UPDATE t SET x = randomblob(3000) WHERE rowid < 5") }
        try queue.close()
        let (digest, reason) = hasher.finish()
        #expect(digest == nil && reason == "SQLite wrote the copy out of order")
    }

    /// The watch's rule on the offsets written: each byte after page 1 once, in order, but for
    /// SQLite's lock-byte page at 1 GiB, which a copy of a larger database never writes.
    @Test func theWatchSettlesBytesWrittenOnceInOrderAndSkipsOnlyTheLockBytePage() throws {
        let page: Int64 = 4096, lockPage: Int64 = 0x4000_0000
        func watch(_ writes: [(Int64, Int64)]) throws -> (settled: Int64, inOrder: Bool) {
            let watch = try #require(copywatch_begin("/nonexistent/watch-test-\(UInt64.random(in: 0...UInt64.max))", CInt(page)))
            defer { copywatch_end(watch) }
            for (offset, length) in writes { copywatch_note_write(watch, offset, length, 1) }
            copywatch_finish(watch)
            var finished: CInt = 0
            return (copywatch_wait(watch, .max, &finished), copywatch_in_order(watch) == 1)
        }
        // Page 1 at any time is not counted; the rest in order.
        #expect(try watch([(page, page), (0, page), (2 * page, 2 * page)]) == (4 * page, true))
        // Across the lock-byte page.
        #expect(try watch([(page, lockPage - page), (lockPage + page, page)]) == (lockPage + 2 * page, true))
        // A gap anywhere else, a page written again, a page written before the lock-byte page.
        #expect(try watch([(page, page), (3 * page, page)]).inOrder == false)
        #expect(try watch([(page, 2 * page), (2 * page, page)]).inOrder == false)
        #expect(try watch([(page, page), (2 * page + page, page)]).inOrder == false)
    }

    /// Two read transactions begun between equal wal-index headers see the same rows, however
    /// fast another connection commits.
    @Test func aSharedSnapshotIsOneSnapshotUnderCommits() throws {
        let scratch = try Scratch(rows: 10)
        let (stop, writer) = scratch.committing("INSERT INTO items (k, body) VALUES (1, x'00')")
        defer { stop.set(); _ = try? writer.value() }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.allowsUnsafeTransactions = true
        let source = try DatabaseQueue(path: scratch.live, configuration: configuration)
        let checker = try DatabaseQueue(path: scratch.live, configuration: configuration)
        var shared = 0
        for _ in 0..<50 {
            try source.inDatabase { db in
                guard try BackupEngine.beginSnapshots(db, checker: checker, livePath: scratch.live, attempts: 1_000).shared else {
                    return try db.execute(sql: "COMMIT")
                }
                shared += 1
                let seen = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM items")
                let checked = try checker.inDatabase { other in
                    defer { try? other.execute(sql: "COMMIT") }
                    return try Int.fetchOne(other, sql: "SELECT COUNT(*) FROM items")
                }
                try db.execute(sql: "COMMIT")
                #expect(seen == checked)
            }
        }
        #expect(shared > 0)
    }

    /// A live database whose index no longer matches its table opens and reads, but its snapshot
    /// fails integrity_check: the backup fails, with or without the shared snapshot.
    @Test(arguments: [200, 0]) func aDamagedSnapshotFailsTheBackup(attempts: Int) throws {
        let scratch = try Scratch()
        try scratch.pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA writable_schema = ON")
            try db.execute(sql: "UPDATE sqlite_master SET sql = 'CREATE INDEX items_k ON items (id)' WHERE name = 'items_k'")
            try db.execute(sql: "PRAGMA writable_schema = OFF")
        }
        let report = try scratch.engine(attempts: attempts).run(reason: .manual, progress: { _, _ in })
        #expect(!report.succeeded)
        // The snapshot's own check on the second connection, or the copy's.
        let found = attempts > 0 ? "the snapshot copied fails integrity_check" : "integrity_check failed"
        #expect(report.results.allSatisfy { $0.message.contains(found) }, "\(report.results)")
        let left = try FileManager.default.contentsOfDirectory(atPath: scratch.dir + "/b1")
        #expect(left.isEmpty, "\(left)")
    }
}

/// A flag one thread sets and another reads.
final class ManagedAtomicFlag: @unchecked Sendable {  // every access holds `lock`
    private var value = false
    private let lock = NSLock()
    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }

    func set() {
        lock.lock()
        value = true
        lock.unlock()
    }
}
