import BotData
import FoundationEssentials
import GRDB

/// Opening the bot's database the one safe way, and its migrations.
///
/// - WAL mode, `synchronous=FULL` on the writer (GRDB's DatabasePool sets NORMAL, which can lose
///   the last commits on power loss), a busy timeout, foreign keys on.
/// - The worker is the only process that writes or checkpoints this file.
enum AppDatabase {
    enum OpenError: Error, CustomStringConvertible {
        case notOurs(path: String, applicationID: Int32)
        case newerSchema(path: String, unknown: [String])

        var description: String {
            switch self {
            case .notOurs(let path, let id):
                "\(path) is not this bot's database (application_id \(id)); point dataDir at the bot's data or move the file away"
            case .newerSchema(let path, let unknown):
                "\(path) was written by a newer bot-worker (unknown migrations: \(unknown.joined(separator: ", "))); deploy that version again or restore a backup taken before it: this version will not downgrade it"
            }
        }
    }

    static func openPool(path: String) throws -> DatabasePool {
        var configuration = Configuration()
        configuration.label = "bot"
        configuration.busyMode = .timeout(5)
        configuration.foreignKeysEnabled = true
        let pool = try DatabasePool(path: path, configuration: configuration)
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            let id = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
            if id != 0, id != BotDatabase.applicationID {
                throw OpenError.notOurs(path: path, applicationID: id)
            }
        }
        return pool
    }

    /// Every migration of this release, core first, then each feature's. Identifiers are never
    /// renamed and migrations never edited once released: add a new one instead.
    static func migrator(features: [any Feature.Type] = FeatureCatalog.all) -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        CoreSchema.register(in: &migrator)
        for feature in features {
            feature.registerMigrations(in: &migrator)
        }
        return migrator
    }

    /// What `migrate` would do to `db`, without doing it.
    struct Plan: Sendable {
        var applied: [String]
        var pending: [String]
        var isFresh: Bool { applied.isEmpty }
    }

    static func plan(_ migrator: DatabaseMigrator, _ reader: any DatabaseReader, path: String) throws -> Plan {
        try reader.read { db in
            if try migrator.hasBeenSuperseded(db) {
                let known = Set(migrator.migrations)
                let unknown = try migrator.appliedIdentifiers(db).filter { !known.contains($0) }.sorted()
                throw OpenError.newerSchema(path: path, unknown: unknown)
            }
            let applied = try migrator.appliedMigrations(db)
            return Plan(applied: applied, pending: migrator.migrations.filter { !applied.contains($0) })
        }
    }

    /// Applies the pending migrations, each in its own transaction, then checks foreign keys.
    static func migrate(_ migrator: DatabaseMigrator, _ writer: any DatabaseWriter) throws {
        try migrator.migrate(writer)
        try writer.read { db in try db.checkForeignKeys() }
    }

    /// Records `name` in `bot_tables`, so that verification knows the table must exist.
    static func registerTable(_ db: Database, name: String, feature: String, critical: Bool) throws {
        try db.execute(
            sql: "INSERT INTO \(BotDatabase.tablesTable) (name, feature, critical) VALUES (?, ?, ?)",
            arguments: [name, feature, critical]
        )
    }
}

/// The core tables every feature relies on.
enum CoreSchema {
    static func register(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v1-core") { db in
            try db.execute(sql: "PRAGMA application_id = \(BotDatabase.applicationID)")
            try db.create(table: BotDatabase.metaTable) { t in
                t.primaryKey("key", .text)
                t.column("value", .text).notNull()
            }
            try db.create(table: BotDatabase.tablesTable) { t in
                t.primaryKey("name", .text)
                t.column("feature", .text).notNull()
                t.column("critical", .boolean).notNull().defaults(to: false)
            }
            try db.create(table: "worker_starts") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("started_at", .text).notNull()
                t.column("pid", .integer).notNull()
                t.column("version", .text).notNull()
            }
            try db.execute(
                sql: "INSERT INTO \(BotDatabase.metaTable) (key, value) VALUES ('database_id', ?), ('created_at', ?)",
                arguments: [UUID().uuidString.lowercased(), Date().formatted(.iso8601)]
            )
            try AppDatabase.registerTable(db, name: BotDatabase.metaTable, feature: "core", critical: true)
            try AppDatabase.registerTable(db, name: BotDatabase.tablesTable, feature: "core", critical: true)
            try AppDatabase.registerTable(db, name: "worker_starts", feature: "core", critical: false)
        }
        // Every Identify the bot sends, so that restarts (which each cost one) are paced against
        // Discord's 1000 a day even though each worker process starts afresh.
        migrator.registerMigration("v2-core-gateway") { db in
            try db.create(table: "gateway_identifies") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("at", .double).notNull().indexed()
                t.column("mode", .text).notNull()
            }
            try AppDatabase.registerTable(db, name: "gateway_identifies", feature: "core", critical: false)
        }
        // Where the database stands in the change journal (see JournalWriter).
        migrator.registerMigration("v3-core-journal") { db in
            try JournalState.create(db)
            try AppDatabase.registerTable(db, name: JournalState.table, feature: "core", critical: true)
        }
        // The Gateway session and the last event whose effects are committed, written in the
        // same transaction as those effects (GatewayPosition): the next worker resumes from it.
        migrator.registerMigration("v4-core-gateway-session") { db in
            try GatewayPosition.create(db)
            try AppDatabase.registerTable(db, name: GatewayPosition.table, feature: "core", critical: false)
        }
        // A position per Gateway shard (GatewayPosition): each shard resumes its own session.
        migrator.registerMigration("v5-core-gateway-shards") { db in
            try GatewayPosition.createShards(db)
            try AppDatabase.registerTable(db, name: GatewayPosition.shardsTable, feature: "core", critical: false)
        }
        // Which commands each guild was given (a fingerprint): a start overwrites only the guilds
        // whose commands changed, not every guild of a bot in thousands.
        migrator.registerMigration("v6-core-command-sync") { db in
            try db.execute(sql: "CREATE TABLE command_sync (guild_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, synced_at REAL NOT NULL)")
            try AppDatabase.registerTable(db, name: "command_sync", feature: "core", critical: false)
        }
    }
}
