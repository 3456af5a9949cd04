import FoundationEssentials
import GRDB

/// Where the bot stands in its Gateway session: the session, its resume URL and the sequence of
/// the last event whose effects are committed. One row, `gateway_session`, written by the group
/// commit in the transaction of those effects (`WriteBatcher.advance`), so it is never ahead of
/// the data; it goes into the change journal and the backups with it. A new worker resumes from
/// it, and Discord replays what came after.
///
/// The same row keeps who the bot is and its guilds (`Identity`, from READY), so that a worker
/// that resumes knows them without a READY of its own.
///
/// `reconcile` is set when the session was dropped on purpose (a restore to a point in the past):
/// the next worker identifies and reconciles, as when Discord refuses a resume.
struct GatewayPosition: Sendable, Equatable {
    var sessionID: String
    var resumeURL: String?
    var sequence: Int

    static let table = "gateway_session"

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

    func store(_ db: Database) throws {
        try db.execute(
            sql: "UPDATE \(Self.table) SET session_id = ?, resume_url = ?, sequence = ?, updated_at = ? WHERE id = 1",
            arguments: [sessionID, resumeURL, sequence, Date().timeIntervalSince1970]
        )
    }

    /// The stored session (nil when there is none to resume), why to reconcile, if so, and when
    /// the position was last stored (the start of a gap, if the session is lost).
    static func load(_ db: Database) throws -> (session: GatewaySession.StoredSession?, reconcile: String?, storedAt: Date?) {
        guard try db.tableExists(table),
              let row = try Row.fetchOne(db, sql: "SELECT session_id, resume_url, sequence, reconcile, updated_at FROM \(table) WHERE id = 1")
        else { return (nil, nil, nil) }
        let reconcile: String? = row["reconcile"]
        let storedAt = (row["updated_at"] as Double?).map { Date(timeIntervalSince1970: $0) }
        guard let id: String = row["session_id"], let sequence: Int = row["sequence"] else { return (nil, reconcile, storedAt) }
        return (GatewaySession.StoredSession(sessionID: id, resumeURL: row["resume_url"], sequence: sequence), reconcile, storedAt)
    }

    /// Who the bot is in the session, and its guilds: what READY says, which a worker that resumes
    /// its predecessor's session never receives.
    struct Identity: Sendable, Equatable {
        var user: UserID
        var application: ApplicationID
        var guilds: [GuildID]
    }

    static func store(_ identity: Identity, _ db: Database) throws {
        try db.execute(
            sql: "UPDATE \(table) SET user_id = ?, application_id = ?, guilds = ? WHERE id = 1",
            arguments: [identity.user.description, identity.application.description, identity.guilds.map(\.description).joined(separator: ",")]
        )
    }

    static func loadIdentity(_ db: Database) throws -> Identity? {
        guard try db.tableExists(table),
              let row = try Row.fetchOne(db, sql: "SELECT user_id, application_id, guilds FROM \(table) WHERE id = 1"),
              let user = (row["user_id"] as String?).flatMap(UserID.init),
              let application = (row["application_id"] as String?).flatMap(ApplicationID.init)
        else { return nil }
        let guilds = ((row["guilds"] as String?) ?? "").split(separator: ",").compactMap { GuildID(String($0)) }
        return Identity(user: user, application: application, guilds: guilds)
    }

    static func clearReconcile(_ db: Database) throws {
        try db.execute(sql: "UPDATE \(table) SET reconcile = NULL WHERE id = 1")
    }
}
