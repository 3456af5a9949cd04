import Crypto
import FoundationEssentials
import GRDB

/// A digest of every row of every table of a database (SQLite's own `sqlite_*` tables aside): per
/// table, the row count and a SHA-256 over the rows in key order, each value with its type. Two
/// databases with equal digests hold the same data; a difference names the table.
struct DatabaseDigest: Codable, Sendable, Equatable {
    struct Table: Codable, Sendable, Equatable {
        var name: String
        var rows: Int
        var sha256: String
    }

    var tables: [Table]

    /// Reads `db` inside the caller's transaction (one snapshot of the file).
    static func compute(_ db: Database) throws -> DatabaseDigest {
        let names = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        var tables: [Table] = []
        for name in names {
            let quoted = "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
            let withoutRowID = try Bool.fetchOne(db, sql: "SELECT sql LIKE '%WITHOUT ROWID%' FROM sqlite_master WHERE name = ?", arguments: [name]) ?? false
            let columns = try Int.fetchOne(db, sql: "SELECT count(*) FROM pragma_table_info(?)", arguments: [name]) ?? 1
            let order = withoutRowID ? (1...max(columns, 1)).map(String.init).joined(separator: ", ") : "rowid"
            var hash = SHA256()
            var count = 0
            let cursor = try Row.fetchCursor(db, sql: "SELECT * FROM \(quoted) ORDER BY \(order)")
            while let row = try cursor.next() {
                count += 1
                var bytes: [UInt8] = []
                for value in row.databaseValues { append(value, to: &bytes) }
                hash.update(data: bytes)
            }
            tables.append(Table(name: name, rows: count, sha256: DurableFile.hex(hash.finalize())))
        }
        return DatabaseDigest(tables: tables)
    }

    /// What differs from `other` (this one described as `mine`, the other as `theirs`), one
    /// sentence per table; empty when they are equal.
    func differences(from other: DatabaseDigest, mine: String, theirs: String) -> [String] {
        let a = Dictionary(uniqueKeysWithValues: tables.map { ($0.name, $0) })
        let b = Dictionary(uniqueKeysWithValues: other.tables.map { ($0.name, $0) })
        var out: [String] = []
        for name in Set(a.keys).union(b.keys).sorted() {
            switch (a[name], b[name]) {
            case (let x?, let y?) where x != y:
                out.append(x.rows == y.rows
                    ? "table \(name): \(x.rows) rows in both, with different contents"
                    : "table \(name): \(x.rows) rows in \(mine), \(y.rows) in \(theirs)")
            case (nil, _?): out.append("table \(name) is missing from \(mine)")
            case (_?, nil): out.append("table \(name) is missing from \(theirs)")
            default: break
            }
        }
        return out
    }

    private static func append(_ value: DatabaseValue, to bytes: inout [UInt8]) {
        func length(_ n: Int) { for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: n >> shift)) } }
        switch value.storage {
        case .null: bytes.append(0)
        case .int64(let n):
            bytes.append(1)
            length(Int(n))
        case .double(let d):
            bytes.append(2)
            length(Int(bitPattern: UInt(d.bitPattern)))
        case .string(let s):
            bytes.append(3)
            length(s.utf8.count)
            bytes += Array(s.utf8)
        case .blob(let data):
            bytes.append(4)
            length(data.count)
            bytes += Array(data)
        }
    }
}
