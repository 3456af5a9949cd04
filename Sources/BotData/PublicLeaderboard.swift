import FoundationEssentials
import GRDB

/// The data of the dashboard's public leaderboard page (`/leaderboard/<guild id>`), read by the
/// supervisor from the live database: rank, name, level and XP, and nothing else (no user ids).
///
/// A guild's page is off unless the guild turned it on (`/levels config leaderboard:public`, the
/// `leaderboard` column of `xp_settings`, migration `xp-v2`): no settings row, an older database
/// without the column, or any value but `public` all read as off.
///
/// Opens the file read-only, one connection per call, closed before returning: it never writes,
/// never checkpoints (Debian's SQLite 3.40 has the WAL-reset bug, so only the worker may write or
/// checkpoint the live file), as `DatabaseInspector` does.
///
/// ```swift
/// if let page = try PublicLeaderboard.read(databasePath: "data/bot.sqlite", guildID: "123456789012345678") {
///     for row in page.rows { print(row.rank, row.name, row.level, row.xp) }  // escape `name` before it goes into HTML
/// }
/// ```
///
/// Members who hid themselves (`/xp privacy hide`) are not on it.
///
/// Names are the members' own text, stored as Discord gave them: escape them for the page.
public enum PublicLeaderboard {
    public struct Row: Codable, Sendable, Equatable {
        public var rank: Int
        /// The member's display name, or `member #1234` (the last 4 digits of the id) when none
        /// is known yet. Untrusted text.
        public var name: String
        public var level: Int
        public var xp: Int64

        public init(rank: Int, name: String, level: Int, xp: Int64) {
            self.rank = rank
            self.name = name
            self.level = level
            self.xp = xp
        }
    }

    public struct Page: Codable, Sendable, Equatable {
        /// By XP, highest first (ties by user id), ranked 1…n.
        public var rows: [Row]

        public init(rows: [Row]) { self.rows = rows }
    }

    public enum ReadError: Error, CustomStringConvertible, Equatable {
        case missing(path: String)
        case notOurs(path: String, applicationID: Int32)
        case unreadable(path: String, reason: String)

        public var description: String {
            switch self {
            case .missing(let path):
                "cannot read the leaderboard: the database \(path) does not exist"
            case .notOurs(let path, let id):
                "cannot read the leaderboard: \(path) is not the bot's database (application_id \(id))"
            case .unreadable(let path, let reason):
                "cannot read the leaderboard from \(path): \(reason)"
            }
        }
    }

    /// The most rows a page may ask for.
    public static let maxLimit = 1000

    /// The value of `xp_settings.leaderboard` that turns the page on.
    static let publicValue = "public"

    /// The guild's leaderboard, its first `limit` members (at most `maxLimit`); nil when the guild
    /// has not turned the page on (or `guildID` is not a Discord id).
    ///
    /// - Throws: `ReadError` when the file is missing, not the bot's database or unreadable.
    public static func read(databasePath: String, guildID: String, limit: Int = 100) throws -> Page? {
        guard isSnowflake(guildID) else { return nil }
        return try withDatabase(databasePath) { db -> Page? in
            guard try isPublic(db, guildID: guildID) else { return nil }
            let columns = Set(try db.columns(in: "xp_members").map(\.name))
            // Members who chose `/xp privacy hide` (migration `xp-v3`) are left out.
            let rows = try GRDB.Row.fetchAll(db, sql: """
                SELECT user_id, \(columns.contains("name") ? "name" : "NULL AS name"), level, xp FROM xp_members
                WHERE guild_id = ?\(columns.contains("hidden") ? " AND NOT hidden" : "") ORDER BY xp DESC, user_id LIMIT ?
                """, arguments: [guildID, min(max(0, limit), maxLimit)])
            return Page(rows: rows.enumerated().map { index, row in
                let stored: String? = row["name"]
                let id: String = row["user_id"]
                return Row(rank: index + 1, name: stored.flatMap { $0.isEmpty ? nil : $0 } ?? "member #\(id.suffix(4))",
                           level: row["level"], xp: row["xp"])
            })
        }
    }

    /// The guilds that turned the page on, by id.
    ///
    /// - Throws: `ReadError` when the file is missing, not the bot's database or unreadable.
    public static func publicGuilds(databasePath: String) throws -> [String] {
        try withDatabase(databasePath) { db in
            guard try hasLeaderboardColumn(db) else { return [] }
            return try String.fetchAll(db, sql: "SELECT guild_id FROM xp_settings WHERE leaderboard = ? ORDER BY guild_id", arguments: [publicValue])
        }
    }

    private static func isPublic(_ db: Database, guildID: String) throws -> Bool {
        guard try hasLeaderboardColumn(db), try db.tableExists("xp_members") else { return false }
        let value = try String.fetchOne(db, sql: "SELECT leaderboard FROM xp_settings WHERE guild_id = ?", arguments: [guildID])
        return value == publicValue
    }

    /// False on a database from before `xp-v2` (or before the XP feature).
    private static func hasLeaderboardColumn(_ db: Database) throws -> Bool {
        guard try db.tableExists("xp_settings") else { return false }
        return try db.columns(in: "xp_settings").contains { $0.name == "leaderboard" }
    }

    /// Discord ids are decimal numbers; anything else from a URL names no guild.
    private static func isSnowflake(_ text: String) -> Bool {
        (1...20).contains(text.utf8.count) && text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }

    /// Runs `body` in one read transaction of a read-only connection to `path`, closed after.
    private static func withDatabase<T>(_ path: String, _ body: (Database) throws -> T) throws -> T {
        // A read-only open never creates the file; checked first for a plain message.
        guard FileManager.default.fileExists(atPath: path) else { throw ReadError.missing(path: path) }
        do {
            var configuration = Configuration()
            configuration.readonly = true
            configuration.label = "public-leaderboard"
            configuration.busyMode = .timeout(2)
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? queue.close() }
            return try queue.read { db in
                let id = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
                if id != BotDatabase.applicationID {
                    // A brand-new file the worker has not migrated yet holds no leaderboard.
                    let tables = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sqlite_master") ?? 0
                    guard id == 0, tables == 0 else { throw ReadError.notOurs(path: path, applicationID: id) }
                }
                return try body(db)
            }
        } catch let error as ReadError {
            throw error
        } catch {
            throw ReadError.unreadable(path: path, reason: DatabaseInspector.describe(error))
        }
    }
}
