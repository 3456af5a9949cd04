import BotData
import FoundationEssentials
import IPC

/// What a backup is, written beside it as `<id>.json`: enough to check later that the copy is the
/// one that was verified, and to tell what a restore from it brings back.
struct BackupManifest: Codable, Sendable, Equatable {
    enum Reason: String, Codable, Sendable, CaseIterable {
        case daily
        case manual
        case preMigration = "pre-migration"
        case preDeploy = "pre-deploy"
        /// The first snapshot of the timeline a migration started (the worker asks for it).
        case postMigration = "post-migration"
        /// The restored database, taken before the worker starts on it: its timeline's base.
        case postRestore = "post-restore"
        /// The journal needs a new base (a location that failed takes writes again; a live
        /// timeline without a snapshot).
        case journal
    }

    var id: String
    /// When the snapshot was taken (ISO 8601 UTC): a restore brings back the data as of this time.
    var createdAt: String
    var reason: Reason
    var sizeBytes: Int
    var pageSize: Int
    var pageCount: Int
    var schemaVersion: String
    var databaseID: String?
    var sha256: String
    var verification: Verification
    /// Where the snapshot stands in the change journal: a restore replays the entries of this
    /// timeline after this sequence. Nil for a database from before the journal.
    var journal: JournalPosition?

    struct Verification: Codable, Sendable, Equatable {
        var at: String
        /// `ok`, or what was wrong.
        var result: String
        var check: String
    }

    var isVerified: Bool { verification.result == "ok" }

    /// 20261126T154900123Z-daily: sorts by time, safe in a file name.
    static func makeID(at date: Date, reason: Reason) -> String {
        "\(compactTimestamp(date))-\(reason.rawValue)"
    }

    /// 2026-11-26T15:49:00.123Z as 20261126T154900123Z.
    static func compactTimestamp(_ date: Date) -> String {
        Timestamp.compact(date)
    }
}
