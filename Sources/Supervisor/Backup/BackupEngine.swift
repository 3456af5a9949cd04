import BotData
import CSupport
import FoundationEssentials
import GRDB
import Glibc
import IPC

/// Takes one verified backup of the live database into every backup location. Blocking: run it
/// with the `BlockingPool`.
///
/// The copy is SQLite's online backup API, run inside one read transaction of a read-only
/// connection: the worker keeps writing, and the snapshot cannot be restarted by its commits.
/// Each copy is written as `.tmp-<id>.sqlite`, fsynced, verified (integrity_check, application_id,
/// schema version, required tables, SHA-256), then renamed to `<id>.sqlite` beside its manifest
/// and the directory fsynced. One failing location does not stop the others.
struct BackupEngine: Sendable {
    struct LocationResult: Codable, Sendable, Equatable {
        var location: String
        var ok: Bool
        var message: String
    }

    struct Report: Codable, Sendable, Equatable {
        var id: String
        var createdAt: String
        var reason: String
        var sizeBytes: Int
        var durationMs: Int
        /// Where the time went in the first location: the online copy (with its fsync), the
        /// integrity_check, the SHA-256.
        var phasesMs: [String: Int]
        var results: [LocationResult]
        /// The snapshot's place in the change journal.
        var journal: JournalPosition?
        var succeeded: Bool { results.contains(where: \.ok) }
        var failures: [LocationResult] { results.filter { !$0.ok } }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let livePath: String
    let locations: [String]

    /// - Parameter progress: the phase and the fraction done, for the status snapshot.
    /// - Parameter bytes: the bytes done and in all of the phase, where it counts them (the copy,
    ///   the SHA-256 of the verification, the copy into another location).
    func run(
        reason: BackupManifest.Reason, now: Date = Date(), progress: @escaping @Sendable (String, Double) -> Void,
        bytes: @escaping @Sendable (Int64, Int64) -> Void = { _, _ in }
    ) throws -> Report {
        let started = ContinuousClock.now
        guard FileManager.default.fileExists(atPath: livePath) else {
            throw Failure(description: "there is no database at \(livePath) yet; nothing to back up")
        }
        let source = DatabaseInspector.inspect(path: livePath, check: .none)
        guard source.isHealthy else {
            throw Failure(description: "the live database cannot be read: \(source.problems.joined(separator: "; "))")
        }
        let id = BackupManifest.makeID(at: now, reason: reason)
        var results: [LocationResult] = []
        var primary: (file: String, manifest: BackupManifest)?
        var phases: [String: Int] = [:]

        for location in locations {
            do {
                try FileManager.default.createDirectory(atPath: location, withIntermediateDirectories: true)
                let manifest: BackupManifest
                let final = location + "/" + id + ".sqlite"
                if let primary {
                    manifest = try copy(primary.file, manifest: primary.manifest, into: location, id: id) { done in
                        progress("copying to \(location)", Double(done) / Double(max(primary.manifest.sizeBytes, 1)))
                        bytes(Int64(done), Int64(primary.manifest.sizeBytes))
                    }
                } else {
                    manifest = try snapshot(into: location, id: id, reason: reason, now: now, source: source, phases: &phases, progress: progress, bytes: bytes)
                    primary = (final, manifest)
                }
                results.append(LocationResult(location: location, ok: true, message: "verified, \(manifest.sizeBytes) bytes"))
            } catch {
                results.append(LocationResult(location: location, ok: false, message: "\(error)"))
                try? FileManager.default.removeItem(atPath: location + "/" + BackupCatalog.temporaryPrefix + id + ".sqlite")
                try? FileManager.default.removeItem(atPath: location + "/" + BackupCatalog.temporaryPrefix + id + ".json")
            }
        }
        return Report(
            id: id, createdAt: Timestamp.string(now), reason: reason.rawValue, sizeBytes: primary?.manifest.sizeBytes ?? 0,
            durationMs: StatusStore.milliseconds(ContinuousClock.now - started), phasesMs: phases, results: results,
            journal: primary?.manifest.journal
        )
    }

    /// The online backup from the live file into `location`, then its verification.
    private func snapshot(
        into location: String, id: String, reason: BackupManifest.Reason, now: Date,
        source: DatabaseInspection, phases: inout [String: Int], progress: @escaping @Sendable (String, Double) -> Void,
        bytes: @escaping @Sendable (Int64, Int64) -> Void
    ) throws -> BackupManifest {
        var clock = ContinuousClock.now
        func lap(_ phase: String) {
            phases[phase] = StatusStore.milliseconds(ContinuousClock.now - clock)
            clock = ContinuousClock.now
        }
        let temporary = location + "/" + BackupCatalog.temporaryPrefix + id + ".sqlite"
        var readOnly = Configuration()
        readOnly.readonly = true
        readOnly.label = "backup-source"
        let sourceQueue = try DatabaseQueue(path: livePath, configuration: readOnly)
        defer { try? sourceQueue.close() }
        var destinationConfiguration = Configuration()
        destinationConfiguration.label = "backup-copy"
        // The copy is made durable by the fsyncs below, not by SQLite's at its commit.
        destinationConfiguration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = OFF") }
        let destination = try DatabaseQueue(path: temporary, configuration: destinationConfiguration)
        // Writing the copy back as it grows (every 64 MiB, without waiting) keeps the final fsync
        // short: one large flush at the end stalls the worker's commits on the same disk for
        // hundreds of ms.
        let flusher = open(temporary, O_RDONLY | O_CLOEXEC)
        defer { if flusher >= 0 { close(flusher) } }
        let pageSize = Int64(max(source.pageSize, 512))
        let bytesPerStep = 4096 * max(source.pageSize, 512)
        var unflushedSteps = 0
        var position: JournalPosition?
        do {
            try sourceQueue.inDatabase { source in
                // One read transaction pins the snapshot for every step: the worker's commits
                // in between cannot restart the copy.
                try source.inTransaction(.deferred) {
                    _ = try Int.fetchOne(source, sql: "SELECT COUNT(*) FROM sqlite_master")
                    // Read in the same snapshot as the copy: exactly the entries after it are
                    // what a restore from this backup replays.
                    position = try JournalState.read(source)
                    try destination.writeWithoutTransaction { copy in
                        try source.backup(to: copy, pagesPerStep: 4096) { step in
                            progress("copying", step.totalPageCount == 0 ? 1 : Double(step.completedPageCount) / Double(step.totalPageCount))
                            bytes(Int64(step.completedPageCount) * pageSize, Int64(step.totalPageCount) * pageSize)
                            unflushedSteps += 1
                            if unflushedSteps * bytesPerStep >= 64 << 20, flusher >= 0 {
                                _ = csupport_start_writeback(flusher)
                                unflushedSteps = 0
                            }
                        }
                    }
                    return .commit
                }
            }
            // A backup is a single file: no -wal beside it, whatever the live file's mode.
            try destination.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA journal_mode = DELETE")
            }
            try destination.close()
        } catch {
            try? destination.close()
            throw Failure(description: "the online backup failed: \(DatabaseInspector.describe(error))")
        }
        try DurableFile.fsync(path: temporary)
        lap("copy")
        progress("verifying", 0)
        // The SHA-256 on a second thread while integrity_check runs: the machine has two cores.
        var info = stat()
        let size = stat(temporary, &info) == 0 ? Int64(info.st_size) : 0
        let hashing = ConcurrentResult { try DurableFile.sha256(of: temporary) { bytes(Int64($0), size) } }
        let checked = try verify(temporary, expecting: source)
        lap("verify")
        let sha = try hashing.value()
        lap("sha256")
        let manifest = BackupManifest(
            id: id, createdAt: Timestamp.string(now), reason: reason, sizeBytes: checked.sizeBytes,
            pageSize: checked.pageSize, pageCount: checked.pageCount, schemaVersion: checked.schemaVersion,
            databaseID: checked.databaseID, sha256: sha,
            verification: .init(at: Timestamp.string(), result: "ok", check: "integrity_check"),
            journal: position
        )
        try publish(temporary, manifest: manifest, in: location)
        return manifest
    }

    /// A byte copy of a verified backup into another location, verified again there.
    private func copy(_ file: String, manifest: BackupManifest, into location: String, id: String, progress: (Int) -> Void) throws -> BackupManifest {
        let temporary = location + "/" + BackupCatalog.temporaryPrefix + id + ".sqlite"
        let sha = try DurableFile.copy(file, to: temporary, progress: progress)
        guard sha == manifest.sha256 else {
            throw Failure(description: "the copy's SHA-256 differs from the original's: the disk returned other bytes than were written")
        }
        var expected = DatabaseInspector.inspect(path: file, check: .none)
        expected.databaseID = manifest.databaseID
        _ = try verify(temporary, expecting: expected)
        var copied = manifest
        copied.verification = .init(at: Timestamp.string(), result: "ok", check: "integrity_check")
        try publish(temporary, manifest: copied, in: location)
        return copied
    }

    /// The checks every backup copy must pass before it counts as one.
    func verify(_ path: String, expecting source: DatabaseInspection) throws -> DatabaseInspection {
        let copy = DatabaseInspector.inspect(path: path, check: .integrity)
        guard copy.isHealthy else {
            throw Failure(description: "verification failed: \(copy.problems.joined(separator: "; "))")
        }
        guard copy.applicationID == BotDatabase.applicationID || copy.isEmpty else {
            throw Failure(description: "verification failed: application_id \(copy.applicationID)")
        }
        guard copy.schemaVersion == source.schemaVersion else {
            throw Failure(description: "verification failed: schema version \(copy.schemaVersion), the live database has \(source.schemaVersion)")
        }
        guard copy.databaseID == source.databaseID else {
            throw Failure(description: "verification failed: the copy belongs to database \(copy.databaseID ?? "none"), not \(source.databaseID ?? "none")")
        }
        return copy
    }

    /// Manifest first, then the renames: a `<id>.sqlite` without its manifest is never listed.
    private func publish(_ temporary: String, manifest: BackupManifest, in location: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let temporaryManifest = location + "/" + BackupCatalog.temporaryPrefix + manifest.id + ".json"
        try DurableFile.write(try encoder.encode(manifest), to: temporaryManifest)
        try DurableFile.rename(temporary, to: location + "/" + manifest.id + ".sqlite")
        try DurableFile.rename(temporaryManifest, to: location + "/" + manifest.id + ".json")
    }
}
