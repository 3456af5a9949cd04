import FoundationEssentials
import GRDB

/// What a read-only look at a database file found.
public struct DatabaseInspection: Codable, Sendable, Equatable {
    public var path: String
    public var sizeBytes: Int
    public var pageSize: Int
    public var pageCount: Int
    public var applicationID: Int32
    /// The applied migrations, oldest first; the last one is the schema version.
    public var migrations: [String]
    /// Tables registered in `bot_tables` and present.
    public var tables: [String]
    /// `ok`, or the first problems `quick_check`/`integrity_check` reported; nil when not checked.
    public var check: String?
    /// Row counts of the tables registered as critical.
    public var criticalRows: [String: Int]
    public var databaseID: String?
    /// Where the database stands in the change journal (nil before the journal existed).
    public var journal: JournalPosition?
    /// Everything wrong, in words; empty when the file is healthy.
    public var problems: [String]
    /// SQLite reported the file damaged (SQLITE_CORRUPT, SQLITE_NOTADB, a failed check), as
    /// opposed to unreachable or locked, which a restore would not fix.
    public var isDamaged = false
    public var isMissing = false

    public var schemaVersion: String { migrations.last ?? "none" }
    public var isHealthy: Bool { problems.isEmpty }
    /// A database no migration has touched yet: the worker creates the schema.
    public var isEmpty: Bool { migrations.isEmpty && tables.isEmpty && applicationID == 0 }
}

/// Read-only checks of a database file: the supervisor's verification of the live file and of
/// backups, and the worker's report of a dry-run migration.
///
/// Opens the file read-only: it never writes, never checkpoints (Debian's SQLite 3.40 has the
/// WAL-reset bug, so only the worker may write or checkpoint the live file).
public enum DatabaseInspector {
    public enum Check: Sendable {
        case none
        /// `PRAGMA quick_check`: O(N), the start-up and health-loop check.
        case quick
        /// `PRAGMA integrity_check`: also indexes against tables; for backups and `verify`.
        case integrity
    }

    /// - Parameter readOnly: false only while no other process uses the file (the worker is
    ///   stopped): a read-write connection can rebuild a missing -shm for a -wal that a read-only
    ///   one cannot read.
    public static func inspect(path: String, check: Check, readOnly: Bool = true) -> DatabaseInspection {
        var inspection = DatabaseInspection(
            path: path, sizeBytes: 0, pageSize: 0, pageCount: 0, applicationID: 0, migrations: [], tables: [],
            check: nil, criticalRows: [:], databaseID: nil, problems: []
        )
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
            inspection.problems.append("the file \(path) does not exist")
            inspection.isMissing = true
            return inspection
        }
        inspection.sizeBytes = (attributes[.size] as? Int) ?? 0
        do {
            var configuration = Configuration()
            configuration.readonly = readOnly
            configuration.label = "inspector"
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? queue.close() }
            try queue.read { db in
                try inspect(db, check: check, into: &inspection)
            }
        } catch {
            inspection.problems.append("cannot read the database: \(describe(error))")
            inspection.isDamaged = inspection.isDamaged || isCorruption(error)
        }
        return inspection
    }

    static func inspect(_ db: Database, check: Check, into inspection: inout DatabaseInspection) throws {
        inspection.pageSize = try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 0
        inspection.pageCount = try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0
        inspection.applicationID = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
        switch check {
        case .none: break
        case .quick: inspection.check = try integrityResult(db, pragma: "quick_check")
        case .integrity: inspection.check = try integrityResult(db, pragma: "integrity_check")
        }
        if let result = inspection.check, result != "ok" {
            inspection.isDamaged = true
            inspection.problems.append("\(check == .quick ? "quick_check" : "integrity_check") failed: \(result)")
        }
        let existing = Set(try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'"))
        if existing.isEmpty, inspection.applicationID == 0 { return }  // brand new, nothing to check

        if inspection.applicationID != BotDatabase.applicationID {
            inspection.isDamaged = true
            inspection.problems.append("application_id is \(inspection.applicationID), not this bot's \(BotDatabase.applicationID): this is not the bot's database")
            return
        }
        if existing.contains(BotDatabase.migrationsTable) {
            inspection.migrations = try String.fetchAll(db, sql: "SELECT identifier FROM \(BotDatabase.migrationsTable) ORDER BY rowid")
        }
        for required in [BotDatabase.migrationsTable, BotDatabase.metaTable, BotDatabase.tablesTable] where !existing.contains(required) {
            inspection.problems.append("required table \(required) is missing")
            inspection.isDamaged = true
        }
        guard existing.contains(BotDatabase.tablesTable) else { return }
        let registered = try Row.fetchAll(db, sql: "SELECT name, critical FROM \(BotDatabase.tablesTable) ORDER BY name")
        for row in registered {
            let name: String = row["name"]
            guard existing.contains(name) else {
                inspection.isDamaged = true
                inspection.problems.append("required table \(name) is missing")
                continue
            }
            inspection.tables.append(name)
            if row["critical"] as Bool {
                inspection.criticalRows[name] = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \"\(name)\"")
            }
        }
        if existing.contains(JournalState.table) {
            inspection.journal = try JournalState.read(db)
        }
        if existing.contains(BotDatabase.metaTable) {
            inspection.databaseID = try String.fetchOne(db, sql: "SELECT value FROM \(BotDatabase.metaTable) WHERE key = 'database_id'")
            if inspection.databaseID == nil {
                inspection.isDamaged = true
                inspection.problems.append("critical row bot_meta.database_id is missing")
            }
        }
    }

    private static func integrityResult(_ db: Database, pragma: String) throws -> String {
        let rows = try String.fetchAll(db, sql: "PRAGMA \(pragma)(20)")
        return rows == ["ok"] ? "ok" : rows.prefix(5).joined(separator: "; ")
    }

    /// A readable one-line description of a GRDB error, without SQL arguments.
    public static func describe(_ error: any Error) -> String {
        if let error = error as? DatabaseError {
            return "SQLite error \(error.extendedResultCode.rawValue): \(error.message ?? "\(error.resultCode)")"
        }
        return "\(error)"
    }

    /// Whether `error` means the file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB, a short read), as opposed to
    /// busy, full, or unreachable, which a restore would not fix.
    public static func isCorruption(_ error: any Error) -> Bool {
        guard let error = error as? DatabaseError else { return false }
        // A short read is a file shorter than its pages: truncated.
        return error.resultCode == .SQLITE_CORRUPT || error.resultCode == .SQLITE_NOTADB
            || error.extendedResultCode == .SQLITE_IOERR_SHORT_READ
    }
}
