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
/// A second connection on the same snapshot runs integrity_check alongside the copy. Each copy is
/// written as `.tmp-<id>.sqlite` with its SHA-256 taken as it is written, fsynced, checked (page count,
/// application_id, schema version, required tables, database id), then renamed to `<id>.sqlite`
/// beside its manifest and the directory fsynced. Other locations get a byte copy whose SHA-256
/// must equal the first's. One failing location does not stop the others.
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
        /// Where the time went in the first location, in this order: `copy` (the online copy, the
        /// snapshot's integrity_check alongside), `fsync` (the SHA-256 alongside), then the waits
        /// for what was not done yet: `integrity`, `sha256`, and `verify` (the copy's own checks).
        var phasesMs: [String: Int]
        /// How the first location's SHA-256 was taken: "hashed while copied", or why it was
        /// hashed after the copy instead.
        var hash: String?
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
        // On a thread below the worker's CPU priority, as are the checks and the hash it starts.
        try ConcurrentResult(.backupWork) { try perform(reason: reason, now: now, progress: progress, bytes: bytes) }.value()
    }

    private func perform(
        reason: BackupManifest.Reason, now: Date, progress: @escaping @Sendable (String, Double) -> Void,
        bytes: @escaping @Sendable (Int64, Int64) -> Void
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
        var hashMethod: String?

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
                    manifest = try snapshot(
                        into: location, id: id, reason: reason, now: now, source: source, phases: &phases, hashMethod: &hashMethod,
                        progress: progress, bytes: bytes)
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
            durationMs: StatusStore.milliseconds(ContinuousClock.now - started), phasesMs: phases, hash: hashMethod, results: results,
            journal: primary?.manifest.journal
        )
    }

    /// The online backup from the live file into `location`, verified.
    ///
    /// Each byte of the live database is read once by the copy, and the copy once by its SHA-256:
    /// - `source` copies its snapshot with the backup API while `checker`, a second connection
    ///   that began its read transaction on the same snapshot (`beginSnapshots`), runs
    ///   integrity_check on it on the other core;
    /// - the SHA-256 is taken from the copy's bytes as SQLite writes them (`CopyHasher`), or, when
    ///   that cannot be proven to be the finished file's, of the finished copy during its fsync;
    /// - the copy is then opened for its header, page count, schema and database id (a few pages).
    /// When no shared snapshot could be had (a commit between every try), the copy itself gets
    /// the integrity_check, alongside its fsync and SHA-256.
    private func snapshot(
        into location: String, id: String, reason: BackupManifest.Reason, now: Date,
        source: DatabaseInspection, phases: inout [String: Int], hashMethod: inout String?,
        progress: @escaping @Sendable (String, Double) -> Void,
        bytes: @escaping @Sendable (Int64, Int64) -> Void
    ) throws -> BackupManifest {
        var clock = ContinuousClock.now
        func lap(_ phase: String) {
            phases[phase] = StatusStore.milliseconds(ContinuousClock.now - clock)
            clock = ContinuousClock.now
        }
        let temporary = location + "/" + BackupCatalog.temporaryPrefix + id + ".sqlite"
        let sourceQueue = try DatabaseQueue(path: livePath, configuration: Self.snapshotReader("backup-source"))
        defer { try? sourceQueue.close() }
        // Leaves its read transaction open between the two database accesses that use it.
        var checkerConfiguration = Self.snapshotReader("backup-check")
        checkerConfiguration.allowsUnsafeTransactions = true
        let checker = try DatabaseQueue(path: livePath, configuration: checkerConfiguration)
        defer { try? checker.close() }
        var destinationConfiguration = Configuration()
        destinationConfiguration.label = "backup-copy"
        // The copy is made durable by the fsyncs below, not by SQLite's at its commit, and needs
        // no rollback journal: an unfinished copy is a temporary file, removed.
        destinationConfiguration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = OFF")
            try db.execute(sql: "PRAGMA journal_mode = OFF")
        }
        let pageSize = Int64(max(source.pageSize, 512))
        let pagesPerStep = CInt(max(1, stepBytes / Int(pageSize)))
        var position: JournalPosition?
        var snapshotPages = 0
        var snapshotCheck: ConcurrentResult<String>?
        var hasher: CopyHasher?
        // Whatever happens, the check's thread is done with `checker` before it closes.
        defer { _ = try? snapshotCheck?.value() }
        var destination: DatabaseQueue?
        do {
            try sourceQueue.inDatabase { source in
                // One read transaction pins the snapshot for every step: the worker's commits
                // in between cannot restart the copy.
                let (shared, walHeader) = try Self.beginSnapshots(source, checker: checker, livePath: livePath, attempts: sharedSnapshotAttempts)
                defer { try? source.execute(sql: "COMMIT") }
                if shared {
                    snapshotCheck = ConcurrentResult(.backupWork) {
                        try checker.inDatabase { db in
                            defer { try? db.execute(sql: "COMMIT") }
                            return try Self.integrityCheck(db)
                        }
                    }
                }
                // Read in the same snapshot as the copy: exactly the entries after it are
                // what a restore from this backup replays.
                position = try JournalState.read(source)
                snapshotPages = try Int.fetchOne(source, sql: "PRAGMA page_count") ?? 0
                // The SHA-256 is taken while the copy is written, when the page 1 it will end
                // with can be told in advance (CopyHasher); else after it.
                if hashWhileCopying, shared,
                   let firstPage = Self.snapshotFirstPage(livePath, pageSize: Int(pageSize), walHeader: walHeader),
                   let watchedPath = Self.canonical(temporary) {
                    hasher = CopyHasher(
                        path: watchedPath,
                        expectedFirstPage: CopyHasher.expectedFirstPage(snapshotFirstPage: firstPage, pageCount: snapshotPages))
                }
                let copyQueue = try DatabaseQueue(path: hasher?.uri ?? temporary, configuration: destinationConfiguration)
                destination = copyQueue
                let total = Int64(snapshotPages) * pageSize
                hasher?.start { bytes($0, total) }
                // The copy goes to the disk as it grows, at most two steps (4 MiB) at a time: the
                // worker's commits on the same disk wait behind that much, not behind the whole
                // copy (one large flush at the end stalls them for hundreds of ms, as `cp` +
                // `sync` does).
                let flusher = open(temporary, O_RDONLY | O_CLOEXEC)
                defer { if flusher >= 0 { close(flusher) } }
                var settled: Int64 = 0
                try copyQueue.writeWithoutTransaction { copy in
                    try source.backup(to: copy, pagesPerStep: pagesPerStep) { step in
                        progress("copying", step.totalPageCount == 0 ? 1 : Double(step.completedPageCount) / Double(step.totalPageCount))
                        let done = Int64(step.completedPageCount) * pageSize
                        if hasher == nil { bytes(done, Int64(step.totalPageCount) * pageSize) }
                        guard flusher >= 0 else { return }
                        _ = csupport_pace_writeback(flusher, settled)
                        settled = done
                    }
                }
            }
            // A backup is a single file: no -wal beside it, whatever the live file's mode.
            try destination?.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA journal_mode = DELETE")
            }
            try destination?.close()
        } catch {
            try? destination?.close()
            throw Failure(description: "the online backup failed: \(DatabaseInspector.describe(error))")
        }
        lap("copy")
        progress("verifying", 0)
        // The SHA-256 (and, without a shared snapshot, the copy's integrity_check) on the other
        // core while the copy's last pages go to the disk.
        let size = Int64(DurableFile.size(of: temporary) ?? 0)
        let hashedWhileCopying = hasher?.finish()
        let hashing = hashedWhileCopying?.digest.map { digest in ConcurrentResult { digest } }
            ?? ConcurrentResult(.backupWork) { try DurableFile.sha256(of: temporary) { bytes(Int64($0), size) } }
        hashMethod = hashedWhileCopying.map { $0.digest != nil ? $0.reason : "hashed after the copy: " + $0.reason }
            ?? (!hashWhileCopying ? "hashed after the copy" : snapshotCheck == nil ? "hashed after the copy: no shared snapshot"
                : "hashed after the copy: page 1 of the snapshot could not be read")
        let copyCheck = snapshotCheck == nil ? ConcurrentResult(.backupWork) { try verify(temporary, expecting: source) } : nil
        try DurableFile.fsync(path: temporary)
        lap("fsync")
        if let snapshotCheck {
            let result = try snapshotCheck.value()
            guard result == "ok" else {
                throw Failure(description: "verification failed: the snapshot copied fails integrity_check: \(result)")
            }
        }
        lap("integrity")
        let sha = try hashing.value()
        lap("sha256")
        let checked = try copyCheck?.value() ?? verify(temporary, expecting: source, check: .none)
        guard checked.pageCount == snapshotPages, checked.sizeBytes == checked.pageCount * checked.pageSize else {
            throw Failure(description: "verification failed: the copy has \(checked.pageCount) pages (\(checked.sizeBytes) bytes), the snapshot had \(snapshotPages)")
        }
        lap("verify")
        let manifest = BackupManifest(
            id: id, createdAt: Timestamp.string(now), reason: reason, sizeBytes: checked.sizeBytes,
            pageSize: checked.pageSize, pageCount: checked.pageCount, schemaVersion: checked.schemaVersion,
            databaseID: checked.databaseID, sha256: sha,
            verification: .init(at: Timestamp.string(), result: "ok", check: copyCheck == nil ? Self.snapshotChecked : "integrity_check"),
            journal: position
        )
        try publish(temporary, manifest: manifest, in: location)
        return manifest
    }

    /// The backup API's step. The copy's write-back is paced a step behind, so at most two steps
    /// wait in the disk's queue, and the worker's fsyncs wait behind no more (about 20 ms at
    /// 200 MB/s).
    var stepBytes = 2 << 20

    /// Whether the SHA-256 is taken while the copy is written (see `CopyHasher`); false hashes
    /// the finished copy, as the fallback does.
    var hashWhileCopying = true

    /// Page 1 of the snapshot the caller's read transaction holds on `livePath`, read beside
    /// SQLite: in WAL mode from the WAL, up to the last frame of `walHeader`, the header the
    /// snapshot began under (`beginSnapshots`); in rollback mode (no header) from the file, which
    /// the transaction's SHARED lock keeps as it is.
    static func snapshotFirstPage(_ livePath: String, pageSize: Int, walHeader: WALIndexHeader?) -> [UInt8]? {
        if let walHeader {
            return walHeader.snapshotFirstPage(databasePath: livePath, pageSize: pageSize)
        }
        return WALIndexHeader.read(livePath, count: pageSize, at: 0)
    }

    /// `path` as SQLite names the file it opens: its directory without symbolic links.
    static func canonical(_ path: String) -> String? {
        let directory = DurableFile.directory(of: path)
        guard let resolved = realpath(directory, nil) else { return nil }
        defer { free(resolved) }
        let name = path.lastIndex(of: "/").map { path[path.index(after: $0)...] } ?? Substring(path)
        return String(cString: resolved) + "/" + name
    }

    /// How many times `beginSnapshots` tries for a shared snapshot (each try costs two read
    /// transactions, tens of µs); 0 always checks the copy itself instead.
    var sharedSnapshotAttempts = 200

    /// A byte copy of a verified backup into another location. The bytes written are the bytes
    /// read, hashed on their way; equal to the manifest's SHA-256, they are the verified copy's, so
    /// only the header checks run again here (no second integrity_check).
    private func copy(_ file: String, manifest: BackupManifest, into location: String, id: String, progress: (Int) -> Void) throws -> BackupManifest {
        let temporary = location + "/" + BackupCatalog.temporaryPrefix + id + ".sqlite"
        let sha = try DurableFile.copy(file, to: temporary, progress: progress)
        guard sha == manifest.sha256 else {
            throw Failure(description: "the copy's SHA-256 differs from the original's: the disk returned other bytes than were written")
        }
        var expected = DatabaseInspector.inspect(path: file, check: .none)
        expected.databaseID = manifest.databaseID
        _ = try verify(temporary, expecting: expected, check: .none)
        var copied = manifest
        copied.verification = .init(at: Timestamp.string(), result: "ok", check: "sha256 equal to the verified copy's (\(manifest.verification.check))")
        try publish(temporary, manifest: copied, in: location)
        return copied
    }

    /// The checks every backup copy must pass before it counts as one.
    func verify(_ path: String, expecting source: DatabaseInspection, check: DatabaseInspector.Check = .integrity) throws -> DatabaseInspection {
        let copy = DatabaseInspector.inspect(path: path, check: check)
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
