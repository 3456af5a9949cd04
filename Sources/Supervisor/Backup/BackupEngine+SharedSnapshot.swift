import BotData
import GRDB

/// The snapshot a backup copies, read by two connections at once: one copies it, the other runs
/// integrity_check on it on the other core, so verifying costs no second read of the copy.
extension BackupEngine {
    /// What `verification.check` says of a copy whose snapshot passed integrity_check on a second
    /// connection while it was copied.
    static let snapshotChecked = "integrity_check of the snapshot copied"

    /// A read-only connection to the live file that maps it (no read(2) per page; SQLite's limit
    /// is 2 GiB, the rest is read as usual). Read-only: it never writes nor checkpoints.
    static func snapshotReader(_ label: String) -> Configuration {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.label = label
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA mmap_size = 2147418112") }
        return configuration
    }

    /// Begins a read transaction on `source` and, when it can show that both read the same
    /// snapshot, one on `checker`; returns whether it did:
    /// - in WAL mode, both began between two reads of the same wal-index header, so no commit
    ///   came between them (`WALIndexHeader`);
    /// - in rollback mode (the file a restore just put in place, before the worker opens it),
    ///   `source`'s read transaction holds a SHARED lock, and no one can commit until it ends.
    /// Otherwise, after `attempts` tries, only `source` is left in a transaction.
    ///
    /// `walHeader` is the wal-index header of the shared snapshot in WAL mode (its `lastFrame` is
    /// the snapshot's last frame), nil otherwise.
    static func beginSnapshots(
        _ source: Database, checker: DatabaseQueue, livePath: String, attempts: Int
    ) throws -> (shared: Bool, walHeader: WALIndexHeader?) {
        func begin(_ db: Database) throws {
            try db.execute(sql: "BEGIN DEFERRED")
            _ = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sqlite_master")  // the snapshot starts here
        }
        for _ in 0..<max(attempts, 0) {
            let before = WALIndexHeader.read(databasePath: livePath)
            try begin(source)
            do {
                try checker.inDatabase { try begin($0) }
            } catch {
                try? source.execute(sql: "COMMIT")
                throw error
            }
            if try String.fetchOne(source, sql: "PRAGMA journal_mode") != "wal" {
                return (true, nil)
            }
            // The header read after (equal to the one before): its `backfilled` is what a
            // checkpoint had done by the time both snapshots began (see `snapshotFirstPage`).
            if let before, let after = WALIndexHeader.read(databasePath: livePath), after == before {
                return (true, after)
            }
            try checker.inDatabase { try $0.execute(sql: "COMMIT") }
            try source.execute(sql: "COMMIT")
        }
        try begin(source)
        return (false, nil)
    }

    /// `ok`, or the first problems integrity_check found; SQLITE_CORRUPT and the like are thrown.
    static func integrityCheck(_ db: Database) throws -> String {
        let rows = try String.fetchAll(db, sql: "PRAGMA integrity_check(20)")
        return rows == ["ok"] ? "ok" : rows.prefix(5).joined(separator: "; ")
    }
}
