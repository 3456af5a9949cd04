import BotData
import FoundationEssentials
import GRDB
import Glibc
import Logging
import Synchronization
import Testing

@testable import BotWorker

@Suite struct SafeDatabaseTests {
    let directory: String

    init() throws {
        var template = Array("/tmp/bwXXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template)!)
    }

    func open() throws -> DatabasePool {
        let pool = try AppDatabase.openPool(path: directory + "/bot.sqlite")
        try AppDatabase.migrate(AppDatabase.migrator(), pool)
        return pool
    }

    @Test func theWriterIsDurableAndStamped() throws {
        let pool = try open()
        try pool.writeWithoutTransaction { (db: Database) throws in
            #expect(try Int.fetchOne(db, sql: "PRAGMA synchronous") == 2)  // FULL
            #expect(try String.fetchOne(db, sql: "PRAGMA journal_mode") == "wal")
            #expect(try Int32.fetchOne(db, sql: "PRAGMA application_id") == BotDatabase.applicationID)
            #expect(try Bool.fetchOne(db, sql: "PRAGMA foreign_keys") == true)
        }
        #expect(DatabaseInspector.inspect(path: directory + "/bot.sqlite", check: .integrity).isHealthy)
    }

    @Test func aWriteReportsTheRowsItChanged() async throws {
        let database = SafeDatabase(writer: try open(), logger: Logger(label: "test")) { _ in }
        let result = try await database.write("test.insert") { db in
            for pid in 1...3 {
                try db.execute(sql: "INSERT INTO worker_starts (started_at, pid, version) VALUES ('t', ?, 'v')", arguments: [pid])
            }
            return "done"
        }
        #expect(result.rowsChanged == 3)
        #expect(result.value == "done")
    }

    @Test func busyIsRetriedUntilTheLockIsReleased() async throws {
        let pool = try open()
        let database = SafeDatabase(writer: pool, logger: Logger(label: "test"), initialBackoff: .milliseconds(20)) { _ in }
        // Another process holds the write lock for 150 ms; our writer gives up at once on BUSY
        // (busy_timeout 0), so only SafeDatabase's retries can get the write through.
        var configuration = Configuration()
        configuration.busyMode = .immediateError
        configuration.allowsUnsafeTransactions = true  // it holds its transaction across calls
        let other = try DatabaseQueue(path: directory + "/bot.sqlite", configuration: configuration)
        try other.inDatabase { try $0.execute(sql: "BEGIN IMMEDIATE") }
        try await pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA busy_timeout = 0") }
        let release = Task {
            try await Task.sleep(for: .milliseconds(150))
            try other.inDatabase { try $0.execute(sql: "COMMIT") }
        }
        let attempts = Mutex(0)
        let result = try await database.write("test.busy") { db in
            attempts.withLock { $0 += 1 }
            try db.execute(sql: "INSERT INTO worker_starts (started_at, pid, version) VALUES ('t', 1, 'v')")
        }
        try await release.value
        #expect(result.rowsChanged == 1)
        #expect(attempts.withLock { $0 } == 1)  // BEGIN IMMEDIATE itself was busy: the body ran once
    }

    @Test func aConstraintErrorIsNeverRetriedAndRollsBack() async throws {
        let database = SafeDatabase(writer: try open(), logger: Logger(label: "test")) { _ in }
        let attempts = Mutex(0)
        await #expect {
            try await database.write("test.duplicate") { db in
                attempts.withLock { $0 += 1 }
                try db.execute(sql: "INSERT INTO worker_starts (started_at, pid, version) VALUES ('t', 1, 'v')")
                try db.execute(sql: "INSERT INTO bot_meta (key, value) VALUES ('database_id', 'again')")
            }
        } throws: { error in
            if case SafeDatabaseError.constraint = error { return true }
            return false
        }
        #expect(attempts.withLock { $0 } == 1)
        let starts = try await database.read("test.count") { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM worker_starts") }
        #expect(starts == 0)  // the first insert was rolled back with the failing one
    }

    @Test func aCriticalWriteIsReadBack() async throws {
        let database = SafeDatabase(writer: try open(), logger: Logger(label: "test")) { _ in }
        try await database.write("test.critical", verify: { db in
            try String.fetchOne(db, sql: "SELECT value FROM bot_meta WHERE key = 'greeting'") == "hello"
        }) { db in
            try db.execute(sql: "INSERT INTO bot_meta (key, value) VALUES ('greeting', 'hello')")
        }
        await #expect {
            try await database.write("test.critical-mismatch", verify: { _ in false }) { db in
                try db.execute(sql: "INSERT INTO bot_meta (key, value) VALUES ('other', 'x')")
            }
        } throws: { error in
            if case SafeDatabaseError.verificationFailed = error { return true }
            return false
        }
    }

    @Test func corruptionIsReportedAtOnce() async throws {
        let path = directory + "/bot.sqlite"
        let pool = try open()
        try await pool.write { db in
            for i in 0..<2000 {
                try db.execute(sql: "INSERT INTO worker_starts (started_at, pid, version) VALUES (?, ?, 'v')", arguments: [String(repeating: "x", count: 200), i])
            }
        }
        try await pool.writeWithoutTransaction { _ = try $0.checkpoint(.truncate) }
        try pool.close()
        // Overwrite pages 41 to 100 (the rows of worker_starts; the schema's pages come first) with garbage.
        let fd = Glibc.open(path, O_WRONLY)
        let garbage = [UInt8](repeating: 0xA5, count: 4096 * 60)
        _ = garbage.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 4096 * 40) }
        close(fd)

        let reports = Mutex<[String]>([])
        let database = SafeDatabase(writer: try DatabasePool(path: path), logger: Logger(label: "test")) { detail in
            reports.withLock { $0.append(detail) }
        }
        await #expect(throws: SafeDatabaseError.self) {
            try await database.read("test.scan") { try Int.fetchOne($0, sql: "SELECT SUM(LENGTH(started_at)) FROM worker_starts") }
        }
        #expect(reports.withLock { $0.first?.hasPrefix("test.scan") } == true)
    }
}

@Suite struct MigrationTests {
    let directory: String

    init() throws {
        var template = Array("/tmp/bwXXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template)!)
    }

    @Test func aFailedMigrationLeavesTheDatabaseAsItWasBeforeIt() throws {
        let pool = try AppDatabase.openPool(path: directory + "/bot.sqlite")
        try AppDatabase.migrate(AppDatabase.migrator(), pool)
        var failing = AppDatabase.migrator()
        failing.registerMigration("v3-broken") { db in
            try db.create(table: "half_done") { $0.column("x", .integer) }
            try db.execute(sql: "INSERT INTO half_done (x) VALUES (1)")
            try db.execute(sql: "THIS IS NOT SQL")
        }
        #expect(throws: DatabaseError.self) { try AppDatabase.migrate(failing, pool) }
        try pool.read { (db: Database) throws in
            #expect(try db.tableExists("half_done") == false)
            #expect(try failing.appliedMigrations(db) == ["v1-core", "v2-core-gateway", "v3-core-journal", "v4-core-gateway-session", "v5-core-gateway-shards", "v6-core-command-sync", "verification-v1", "verification-v2", "role_connections-v1", "role_connections-v2", "xp-v1", "xp-v2", "xp-v3"])
        }
        #expect(DatabaseInspector.inspect(path: directory + "/bot.sqlite", check: .integrity).isHealthy)
    }

    @Test func theMigrationPlanTellsFreshFromPending() throws {
        let pool = try AppDatabase.openPool(path: directory + "/bot.sqlite")
        let fresh = try AppDatabase.plan(AppDatabase.migrator(), pool, path: "bot.sqlite")
        #expect(fresh.isFresh && fresh.pending == ["v1-core", "v2-core-gateway", "v3-core-journal", "v4-core-gateway-session", "v5-core-gateway-shards", "v6-core-command-sync", "verification-v1", "verification-v2", "role_connections-v1", "role_connections-v2", "xp-v1", "xp-v2", "xp-v3"])
        try AppDatabase.migrate(AppDatabase.migrator(), pool)
        var next = AppDatabase.migrator()
        next.registerMigration("v3-next") { _ in }
        let pending = try AppDatabase.plan(next, pool, path: "bot.sqlite")
        #expect(!pending.isFresh && pending.pending == ["v3-next"])
    }

    @Test func aDatabaseFromANewerReleaseIsRefused() throws {
        let pool = try AppDatabase.openPool(path: directory + "/bot.sqlite")
        var newer = AppDatabase.migrator()
        newer.registerMigration("v9-future") { _ in }
        try AppDatabase.migrate(newer, pool)
        #expect {
            try AppDatabase.plan(AppDatabase.migrator(), pool, path: "bot.sqlite")
        } throws: { error in
            "\(error)".contains("newer bot-worker") && "\(error)".contains("v9-future")
        }
    }

    @Test func aForeignDatabaseIsRefused() throws {
        let path = directory + "/bot.sqlite"
        let other = try DatabaseQueue(path: path)
        try other.writeWithoutTransaction { try $0.execute(sql: "PRAGMA application_id = 42; CREATE TABLE t (x)") }
        try other.close()
        #expect { _ = try AppDatabase.openPool(path: path) } throws: { "\($0)".contains("not this bot's database") }
    }

    @Test func dryRunMigratesACopyAndLeavesTheFile() throws {
        let path = directory + "/bot.sqlite"
        let pool = try AppDatabase.openPool(path: path)
        try pool.close()
        let before = DurableSize.of(path)
        let report = try MigrateCommand.dryRun(database: path)
        #expect(report.ok, "\(report.problems)")
        #expect(report.applied == ["v1-core", "v2-core-gateway", "v3-core-journal", "v4-core-gateway-session", "v5-core-gateway-shards", "v6-core-command-sync", "verification-v1", "verification-v2", "role_connections-v1", "role_connections-v2", "xp-v1", "xp-v2", "xp-v3"])
        #expect(report.integrity == "ok")
        #expect(DurableSize.of(path) == before)
        let untouched = try DatabaseQueue(path: path)
        #expect(try untouched.read { try $0.tableExists("bot_meta") } == false)
    }
}

enum DurableSize {
    static func of(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : -1
    }
}
