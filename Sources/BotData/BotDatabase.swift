/// What makes a SQLite file this bot's database, known to both the worker (which creates and
/// writes it) and the supervisor (which checks, backs up and restores it).
public enum BotDatabase {
    /// Stamped in the file header (`PRAGMA application_id`, offset 68): "BotD".
    public static let applicationID: Int32 = 0x426F_7444

    /// The live database inside the data directory.
    public static let fileName = "bot.sqlite"

    /// Key/value facts about the database itself; `database_id` is set once, at creation, and
    /// tells which database a backup belongs to.
    public static let metaTable = "bot_meta"

    /// Every table the bot owns, with the feature that owns it and whether its rows are critical
    /// (counted by the health checks: a large unexplained drop is an alert). Each migration that
    /// creates a table registers it here, so the supervisor can check the schema without knowing
    /// the features.
    public static let tablesTable = "bot_tables"

    /// GRDB's record of applied migrations.
    public static let migrationsTable = "grdb_migrations"

    /// The files SQLite keeps beside the database in WAL mode; they belong to it and move with it.
    public static let sidecarSuffixes = ["-wal", "-shm"]
}
