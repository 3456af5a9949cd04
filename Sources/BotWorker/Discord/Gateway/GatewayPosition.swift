import FoundationEssentials
import GRDB

/// Where each Gateway shard stands in its session: the session, its resume URL and the sequence of
/// the last event whose effects are committed. One row per shard in `gateway_shards`, written by
/// the group commit in the transaction of those effects (`WriteBatcher.advance`), so it is never
/// ahead of the data; it goes into the change journal and the backups with it. A new worker
/// resumes each shard from its row, and Discord replays what came after.
///
/// A row holds its shard count too: a session identified as shard 1 of 2 is no session of a
/// worker that runs 3 shards, so rows of another count are never resumed (resharding identifies
/// every shard anew, and reconciles).
///
/// `gateway_session` (one row) keeps who the bot is (`Identity`, from READY), so that a worker
/// that resumes knows it without a READY of its own, and `reconcile`, set when the sessions were
/// dropped on purpose (a restore to a point in the past): the next worker identifies and
/// reconciles, as when Discord refuses a resume.
struct GatewayPosition: Sendable, Equatable {
    var shard = 0
    var shardCount = 1
    var sessionID: String
    var resumeURL: String?
    var sequence: Int

    static let table = "gateway_session"
    static let shardsTable = "gateway_shards"

    static func create(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE \(table) (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                session_id TEXT,
                resume_url TEXT,
                sequence INTEGER,
                reconcile TEXT,
                updated_at REAL,
                user_id TEXT,
                application_id TEXT,
                guilds TEXT
            )
            """)
        try db.execute(sql: "INSERT INTO \(table) (id) VALUES (1)")
    }

    /// Migration `v5-core-gateway-shards`: a row per shard. The single session of an older worker
    /// becomes shard 0 of 1, so that the first worker of this release still resumes it.
    static func createShards(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE \(shardsTable) (
                shard_id INTEGER PRIMARY KEY,
                shard_count INTEGER NOT NULL,
                session_id TEXT,
                resume_url TEXT,
                sequence INTEGER,
                updated_at REAL,
                guilds TEXT
            )
            """)
        try db.execute(sql: """
            INSERT INTO \(shardsTable) (shard_id, shard_count, session_id, resume_url, sequence, updated_at, guilds)
            SELECT 0, 1, session_id, resume_url, sequence, updated_at, guilds FROM \(table) WHERE id = 1 AND session_id IS NOT NULL
            """)
        try db.execute(sql: "UPDATE \(table) SET session_id = NULL, resume_url = NULL, sequence = NULL, guilds = NULL WHERE id = 1")
    }

    func store(_ db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO \(Self.shardsTable) (shard_id, shard_count, session_id, resume_url, sequence, updated_at) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (shard_id) DO UPDATE SET shard_count = excluded.shard_count, session_id = excluded.session_id,
                resume_url = excluded.resume_url, sequence = excluded.sequence, updated_at = excluded.updated_at
            """).execute(arguments: [shard, shardCount, sessionID, resumeURL, sequence, Date().timeIntervalSince1970])
    }

    /// Why the next sessions must reconcile (a restore dropped them), if so.
    static func loadReconcile(_ db: Database) throws -> String? {
        guard try db.tableExists(table) else { return nil }
        return try String.fetchOne(db, sql: "SELECT reconcile FROM \(table) WHERE id = 1")
    }

    /// A shard's stored row: its session (nil when there is none to resume), when its position was
    /// last stored (the start of a possible gap) and its guilds at READY.
    struct StoredShard: Sendable, Equatable {
        var id: Int
        var count: Int
        var session: GatewaySession.StoredSession?
        var storedAt: Date?
        var guilds: [GuildID]
    }

    static func loadShards(_ db: Database) throws -> [StoredShard] {
        guard try db.tableExists(shardsTable) else { return [] }
        let rows: [(Int, Int, String?, String?, Int?, Double?, String?)] = try Row.fetchAll(
            db, sql: "SELECT shard_id, shard_count, session_id, resume_url, sequence, updated_at, guilds FROM \(shardsTable) ORDER BY shard_id"
        ).map { ($0[0], $0[1], $0[2], $0[3], $0[4], $0[5], $0[6]) }
        return rows.map { id, count, sessionID, resumeURL, sequence, updatedAt, guilds in
            StoredShard(
                id: id, count: count,
                session: sessionID.flatMap { id in sequence.map { GatewaySession.StoredSession(sessionID: id, resumeURL: resumeURL, sequence: $0) } },
                storedAt: updatedAt.map { Date(timeIntervalSince1970: $0) },
                guilds: (guilds ?? "").split(separator: ",").compactMap { GuildID(String($0)) }
            )
        }
    }

    /// Forgets every shard row of another shard count (or past the count): their sessions are not
    /// this worker's to resume.
    static func keepOnly(shardCount: Int, _ db: Database) throws {
        try db.execute(sql: "DELETE FROM \(shardsTable) WHERE shard_count != ? OR shard_id >= ?", arguments: [shardCount, shardCount])
    }

    /// A shard's guilds as its READY listed them, for a worker that resumes its session.
    static func storeGuilds(shard: Int, count: Int, _ guilds: [GuildID], _ db: Database) throws {
        try db.execute(
            sql: """
                INSERT INTO \(shardsTable) (shard_id, shard_count, guilds) VALUES (?, ?, ?)
                ON CONFLICT (shard_id) DO UPDATE SET shard_count = excluded.shard_count, guilds = excluded.guilds
                """,
            arguments: [shard, count, guilds.map(\.description).joined(separator: ",")]
        )
    }

    /// Who the bot is in the session: what READY says, which a worker that resumes its
    /// predecessor's session never receives.
    struct Identity: Sendable, Equatable {
        var user: UserID
        var application: ApplicationID
    }

    static func store(_ identity: Identity, _ db: Database) throws {
        try db.execute(
            sql: "UPDATE \(table) SET user_id = ?, application_id = ? WHERE id = 1",
            arguments: [identity.user.description, identity.application.description]
        )
    }

    static func loadIdentity(_ db: Database) throws -> Identity? {
        guard try db.tableExists(table),
              let row = try Row.fetchOne(db, sql: "SELECT user_id, application_id FROM \(table) WHERE id = 1"),
              let user = (row["user_id"] as String?).flatMap(UserID.init),
              let application = (row["application_id"] as String?).flatMap(ApplicationID.init)
        else { return nil }
        return Identity(user: user, application: application)
    }

    static func clearReconcile(_ db: Database) throws {
        try db.execute(sql: "UPDATE \(table) SET reconcile = NULL WHERE id = 1")
    }
}
