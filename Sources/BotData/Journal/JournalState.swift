import CSQLiteSession
import IPC
import FoundationEssentials
import GRDB

/// The row in the database that says where it stands in the journal (`journal_state`, one row).
public enum JournalState {
    public static let table = "journal_state"

    /// Creates the table with a first timeline (in the migration that introduces the journal).
    public static func create(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE \(table) (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                timeline TEXT NOT NULL,
                sequence INTEGER NOT NULL,
                committed_at_ms INTEGER NOT NULL
            )
            """)
        try db.execute(sql: "INSERT INTO \(table) (id, timeline, sequence, committed_at_ms) VALUES (1, ?, 0, 0)", arguments: [newTimeline()])
    }

    /// The position, or nil for a database from before the journal.
    public static func read(_ db: Database) throws -> JournalPosition? {
        guard try db.tableExists(table),
              let row = try Row.fetchOne(db, sql: "SELECT timeline, sequence, committed_at_ms FROM \(table) WHERE id = 1")
        else { return nil }
        return JournalPosition(timeline: row["timeline"], sequence: row["sequence"], committedAtMs: row["committed_at_ms"])
    }

    /// Inside a journaled transaction: records that it is `sequence`. The change is part of the
    /// transaction's changeset, so replaying the entry moves a restored file's position too, and
    /// an entry applied out of order conflicts on this row.
    public static func advance(_ db: Database, to sequence: Int64, committedAtMs: Int64) throws {
        try db.execute(sql: "UPDATE \(table) SET sequence = ?, committed_at_ms = ? WHERE id = 1", arguments: [sequence, committedAtMs])
    }

    /// Starts a new timeline (after a restore or a migration), outside any journaled transaction.
    @discardableResult
    public static func startTimeline(_ db: Database) throws -> String {
        let timeline = newTimeline()
        try db.execute(sql: "UPDATE \(table) SET timeline = ? WHERE id = 1", arguments: [timeline])
        return timeline
    }

    /// When `timeline` started, from its name.
    public static func start(of timeline: String) -> Date? {
        let stamp = Array(timeline.prefix(19))
        guard stamp.count == 19, stamp[8] == "T", stamp[18] == "Z" else { return nil }
        guard stamp.enumerated().allSatisfy({ [8, 18].contains($0.offset) || $0.element.isNumber }) else { return nil }
        func part(_ range: Range<Int>) -> String { String(stamp[range]) }
        let iso = part(0..<4) + "-" + part(4..<6) + "-" + part(6..<8) + "T" + part(9..<11) + ":" + part(11..<13) + ":" + part(13..<15) + "." + part(15..<18) + "Z"
        return Timestamp.date(iso)
    }

    /// 20261201T190000123Z-1a2b3c4d: sorts by creation, unique, safe as a folder name.
    static func newTimeline() -> String {
        let stamp = Timestamp.compact(Date())
        return stamp + "-" + UUID().uuidString.lowercased().prefix(8)
    }
}

/// Tables whose changes the session extension cannot record (no declared PRIMARY KEY): writing to
/// them would escape the journal, so the worker refuses to start with one.
public enum JournalCoverage {
    public static func tablesWithoutPrimaryKey(_ db: Database) throws -> [String] {
        let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        return try tables.filter { table in
            try Row.fetchAll(db, sql: "SELECT pk FROM pragma_table_info(?)", arguments: [table]).allSatisfy { ($0["pk"] as Int) == 0 }
        }.sorted()
    }
}

/// One transaction's changes, recorded by SQLite's session extension on the writer connection.
///
/// ```swift
/// try pool.write { db in
///     let recorder = try ChangeRecorder(db)
///     try db.execute(sql: "UPDATE xp_members SET xp = xp + 15 WHERE …")
///     let changes = try recorder.changeset()   // before the commit, inside the transaction
/// }
/// ```
public final class ChangeRecorder {
    private var session: UnsafeMutableRawPointer?

    public init(_ db: Database) throws {
        var created: UnsafeMutableRawPointer?
        let rc = csession_begin(UnsafeMutableRawPointer(db.sqliteConnection), &created)
        guard rc == 0, let created else { throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: "sqlite3session_create failed") }
        session = created
    }

    deinit { if let session { csession_end(session) } }

    public var isEmpty: Bool { session.map { csession_is_empty($0) != 0 } ?? true }

    public func changeset() throws -> [UInt8] {
        guard let session else { return [] }
        var size: Int32 = 0
        var bytes: UnsafeMutableRawPointer?
        let rc = csession_changeset(session, &size, &bytes)
        guard rc == 0 else { throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: "sqlite3session_changeset failed") }
        defer { if let bytes { csession_free(bytes) } }
        guard let bytes, size > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: Int(size)))
    }
}

public enum Changeset {
    public struct Conflict: Error, CustomStringConvertible {
        public var kind: String
        public var table: String
        public var description: String {
            "the changeset does not fit the database (\(kind) in table \(table.isEmpty ? "?" : table))"
        }
    }

    /// Applies `changeset` to `db`, all or nothing: any conflict throws and changes nothing.
    public static func apply(_ changeset: [UInt8], to db: Database) throws {
        guard !changeset.isEmpty else { return }
        var conflict: Int32 = 0
        var table = [CChar](repeating: 0, count: 256)
        let rc = changeset.withUnsafeBytes { bytes in
            table.withUnsafeMutableBufferPointer { name in
                csession_apply(UnsafeMutableRawPointer(db.sqliteConnection), Int32(bytes.count), bytes.baseAddress, &conflict, name.baseAddress, Int32(name.count))
            }
        }
        if conflict != 0 {
            let kinds = [1: "a row differs from what the entry expects", 2: "a row the entry changes is missing", 3: "a row the entry inserts exists already", 4: "a constraint refused it", 5: "a foreign key refused it"]
            throw Conflict(kind: kinds[Int(conflict)] ?? "conflict \(conflict)", table: String(decoding: table.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        guard rc == 0 else { throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: "sqlite3changeset_apply failed") }
    }

    /// The number of row changes in a changeset, nil when it does not parse.
    public static func count(_ changeset: [UInt8]) -> Int? {
        let count = changeset.withUnsafeBytes { csession_count(Int32($0.count), $0.baseAddress) }
        return count < 0 ? nil : Int(count)
    }
}
