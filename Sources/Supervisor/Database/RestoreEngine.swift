import BotData
import FoundationEssentials
import GRDB
import Glibc
import IPC

/// Replaces the live database with a verified backup and the change journal after it. Blocking:
/// run it with the `BlockingPool`, and only while the worker is stopped (the supervisor never writes
/// the live file otherwise).
///
/// 1. The first candidate whose copy still verifies (SHA-256 as in its manifest, integrity_check)
///    is chosen; if none does, nothing is touched and the restore fails.
/// 2. It is copied beside the live file, and the journal entries of its timeline after its
///    sequence are replayed onto the copy, in order, each checked (CRC, no gap, the changeset
///    fits the rows exactly), up to the point in time if one was asked for. A damaged entry
///    stops the replay at the last good one; the report says where.
/// 3. The copy starts a new timeline, passes quick_check and is fsynced; only then does the live
///    file move, with its -wal and -shm, into `quarantine/<time>-<reason>/` (never deleted, and no
///    stale -wal is ever left beside the restored file) and the copy take its place.
struct RestoreEngine: Sendable {
    enum Target: Sendable, Equatable {
        /// The newest verified backup and the whole journal after it: nothing committed is lost.
        case latest
        /// One backup; with `rollForward`, the journal of its timeline after it too.
        case backup(id: String, rollForward: Bool)
        /// The state as of this moment: the newest backup from before it, and the journal up to it.
        case pointInTime(Date)

        var untilMs: Int64? {
            if case .pointInTime(let date) = self { return Timestamp.milliseconds(date) }
            return nil
        }

        var replays: Bool {
            if case .backup(_, let rollForward) = self { return rollForward }
            return true
        }

        /// Whether the restored data is the newest there is, so that the bot's Gateway session
        /// (stored with the data) can be resumed: not for a state from the past, whose session
        /// position would make Discord replay, or skip, the wrong events.
        var keepsSession: Bool {
            switch self {
            case .latest: true
            case .backup(_, let rollForward): rollForward
            case .pointInTime: false
            }
        }
    }

    /// What the journal replay brought back.
    struct Replay: Codable, Sendable, Equatable {
        var timeline: String
        var fromSequence: Int64
        var toSequence: Int64
        var entries: Int
        /// When the last replayed transaction committed: the data is as of this time.
        var lastCommitAt: String?
        /// `end-of-journal`, `point-in-time`, `damaged`, `gap`, or `conflict`.
        var stop: String
        var detail: String?
        var ignoredUncommitted: Int64?
        var repaired: [String]
    }

    struct Report: Codable, Sendable, Equatable {
        var backupID: String
        /// The backup's own time: with a replay, the data is newer (see `replay`).
        var backupCreatedAt: String
        var location: String
        var quarantinedTo: String?
        var rejected: [String]
        var replay: Replay?
        /// The restored database's new timeline.
        var timeline: String?
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let dataDir: String
    let livePath: String
    /// Every backup location: each holds a copy of the journal. Empty when the journal is off:
    /// then nothing is replayed.
    var locations: [String] = []

    /// - Parameter preparedCandidates: the candidates are scratch files on this file system, each
    ///   already checked (a replica's download): the one chosen is moved into place, not copied.
    func restore(from candidates: [BackupCatalog.Copy], target: Target = .latest, reason: String, now: Date = Date(), preparedCandidates: Bool = false, progress: @escaping @Sendable (String, Double) -> Void, bytes: @escaping @Sendable (Int64, Int64) -> Void = { _, _ in }) throws -> Report {
        var rejected: [String] = []
        for (index, candidate) in candidates.enumerated() {
            progress("verifying backup \(candidate.manifest.id)", Double(index) / Double(max(candidates.count, 1)) * 0.2)
            do {
                if !preparedCandidates { try check(candidate) }
            } catch {
                rejected.append("\(candidate.manifest.id) in \(candidate.location): \(error)")
                continue
            }
            let temporary = dataDir + "/.restore-tmp.sqlite"
            defer { unlink(temporary) }
            let sha: String
            if preparedCandidates {
                // Its caller has just checked it; nothing else writes a scratch download.
                try DurableFile.rename(candidate.file, to: temporary)
                sha = candidate.manifest.sha256
            } else {
                sha = try DurableFile.copy(candidate.file, to: temporary) { done in
                    progress("copying", 0.2 + 0.3 * Double(done) / Double(max(candidate.manifest.sizeBytes, 1)))
                    bytes(Int64(done), Int64(candidate.manifest.sizeBytes))
                }
            }
            guard sha == candidate.manifest.sha256 else {
                throw Failure(description: "the restored copy's SHA-256 differs from the backup's; the live database was not touched")
            }
            var replay: Replay?
            if target.replays, !locations.isEmpty, let position = candidate.manifest.journal {
                progress("replaying the journal", 0.5)
                replay = try self.replay(after: position, untilMs: target.untilMs, onto: temporary) { progress("replaying the journal", 0.5 + 0.4 * $0) }
            }
            progress("checking the restored database", 0.9)
            let timeline = try finish(temporary, dropSession: target.keepsSession ? nil : "the database was restored to \(candidate.manifest.id)\(target.untilMs.map { " as of \(Timestamp.string(Date(timeIntervalSince1970: Double($0) / 1000)))" } ?? "")")
            let quarantine = try quarantineLiveFiles(reason: reason, now: now)
            // A crash here leaves no live file: the next start restores again (the marker says
            // a database existed), from the same backup and journal.
            progress("switching to the restored file", 0.92)
            try DurableFile.rename(temporary, to: livePath)
            return Report(
                backupID: candidate.manifest.id, backupCreatedAt: candidate.manifest.createdAt,
                location: candidate.location, quarantinedTo: quarantine, rejected: rejected, replay: replay, timeline: timeline
            )
        }
        let detail = rejected.isEmpty ? "there is no backup" : "no backup verifies: " + rejected.joined(separator: "; ")
        throw Failure(description: detail)
    }

    /// Applies the committed journal entries after `position` to the database at `path`.
    func replay(after position: JournalPosition, untilMs: Int64?, untilSequence: Int64? = nil, onto path: String, progress: (Double) -> Void = { _ in }) throws -> Replay {
        let journals = locations.map { LocationJournal.scan(location: $0, timeline: position.timeline) }
        let plan = ReplayPlan.make(after: position, journals: journals, untilMs: untilMs, untilSequence: untilSequence)
        var configuration = Configuration()
        configuration.label = "restore-replay"
        // The file is fsynced once at the end; a crash before that leaves only the scratch copy.
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = OFF") }
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? queue.close() }
        var applied: [JournalEntry] = []
        var conflict: String?
        var remaining = plan.entries[...]
        while !remaining.isEmpty, conflict == nil {
            let batch = remaining.prefix(500)
            remaining = remaining.dropFirst(batch.count)
            try queue.inTransaction {
                for entry in batch {
                    do {
                        try Changeset.apply(entry.changeset, to: $0)
                        let now = try JournalState.read($0)
                        guard now?.sequence == entry.sequence else {
                            throw Failure(description: "entry \(entry.sequence) left the database at sequence \(now.map { String($0.sequence) } ?? "none")")
                        }
                    } catch {
                        conflict = "entry \(entry.sequence) does not apply: \(error)"
                        break
                    }
                    applied.append(entry)
                }
                return .commit
            }
            progress(Double(applied.count) / Double(max(plan.entries.count, 1)))
        }
        let stop: (String, String?) = switch plan.stop {
        case _ where conflict != nil: ("conflict", conflict)
        case .endOfJournal: ("end-of-journal", nil)
        case .pointInTime: ("point-in-time", nil)
        case .damaged(let sequence, let detail): ("damaged", "entry \(sequence) is damaged in every location: \(detail)")
        case .gap(let sequence): ("gap", "no location has entry \(sequence), though later entries exist")
        }
        return Replay(
            timeline: position.timeline, fromSequence: position.sequence, toSequence: applied.last?.sequence ?? position.sequence,
            entries: applied.count,
            lastCommitAt: (applied.last?.committedAtMs ?? (position.committedAtMs > 0 ? position.committedAtMs : nil)).map { Timestamp.string(Date(timeIntervalSince1970: Double($0) / 1000)) },
            stop: stop.0, detail: stop.1, ignoredUncommitted: plan.ignoredUncommitted, repaired: plan.repaired
        )
    }

    /// The restored file starts a new timeline (the journal after it is a new history), is
    /// checked and made durable. Returns the timeline.
    private func finish(_ path: String, dropSession: String?) throws -> String? {
        let queue = try DatabaseQueue(path: path)
        var timeline: String?
        try queue.write { db in
            if try JournalState.read(db) != nil { timeline = try JournalState.startTimeline(db) }
            // The worker's `gateway_session` row: its next start identifies and reconciles.
            if let dropSession, try db.tableExists("gateway_session") {
                try db.execute(sql: "UPDATE gateway_session SET session_id = NULL, resume_url = NULL, sequence = NULL, reconcile = ? WHERE id = 1", arguments: [dropSession])
                // And every shard's session (`gateway_shards`): none is resumed after the restore.
                if try db.tableExists("gateway_shards") {
                    try db.execute(sql: "UPDATE gateway_shards SET session_id = NULL, resume_url = NULL, sequence = NULL")
                }
            }
        }
        try queue.close()
        let inspection = DatabaseInspector.inspect(path: path, check: .quick)
        guard inspection.isHealthy else {
            throw Failure(description: "the restored database fails its checks (\(inspection.problems.joined(separator: "; "))); the live database was not touched")
        }
        try DurableFile.fsync(path: path)
        return timeline
    }

    /// A copy is usable when it is byte for byte what was verified, and still passes the checks.
    func check(_ copy: BackupCatalog.Copy) throws {
        guard copy.manifest.isVerified else { throw Failure(description: "it was not verified when it was taken") }
        let sha = try DurableFile.sha256(of: copy.file)
        guard sha == copy.manifest.sha256 else { throw Failure(description: "its SHA-256 no longer matches its manifest (the file changed on disk)") }
        let inspection = DatabaseInspector.inspect(path: copy.file, check: .integrity)
        guard inspection.isHealthy else { throw Failure(description: inspection.problems.joined(separator: "; ")) }
    }

    /// Moves the live database and its -wal and -shm together into a new quarantine folder;
    /// returns the folder, or nil when there was nothing to move.
    func quarantineLiveFiles(reason: String, now: Date) throws -> String? {
        let files = ([""] + BotDatabase.sidecarSuffixes).map { livePath + $0 }.filter { FileManager.default.fileExists(atPath: $0) }
        guard !files.isEmpty else { return nil }
        let slug = String(reason.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" }.prefix(40))
        let folder = dataDir + "/quarantine/" + BackupManifest.compactTimestamp(now) + "-" + slug
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for file in files {
            let name = file.split(separator: "/").last.map(String.init) ?? BotDatabase.fileName
            guard rename(file, folder + "/" + name) == 0 else {
                throw Failure(description: "cannot move \(file) into \(folder): \(DurableFile.errorText())")
            }
        }
        try DurableFile.fsync(path: folder)
        try DurableFile.fsyncDirectory(of: livePath)
        return folder
    }
}
