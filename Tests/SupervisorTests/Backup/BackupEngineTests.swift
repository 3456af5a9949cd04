import BotData
import Foundation
import GRDB
import Glibc
import IPC
import Testing

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
    }

    /// Two read transactions begun between equal wal-index headers see the same rows, however
    /// fast another connection commits.
    @Test func aSharedSnapshotIsOneSnapshotUnderCommits() throws {
        let scratch = try Scratch(rows: 10)
        let stop = ManagedAtomicFlag()
        let pool = scratch.pool
        let writer = ConcurrentResult {
            var commits = 0
            while !stop.isSet {
                try pool.write { db in try db.execute(sql: "INSERT INTO items (k, body) VALUES (1, x'00')") }
                commits += 1
            }
            return commits
        }
        defer { stop.set(); _ = try? writer.value() }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.allowsUnsafeTransactions = true
        let source = try DatabaseQueue(path: scratch.live, configuration: configuration)
        let checker = try DatabaseQueue(path: scratch.live, configuration: configuration)
        var shared = 0
        for _ in 0..<50 {
            try source.inDatabase { db in
                guard try BackupEngine.beginSnapshots(db, checker: checker, livePath: scratch.live, attempts: 1_000) else {
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
private final class ManagedAtomicFlag: @unchecked Sendable {  // every access holds `lock`
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
