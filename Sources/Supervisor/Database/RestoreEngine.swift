import BotData
import FoundationEssentials
import Glibc
import IPC

/// Replaces the live database with a verified backup. Blocking: run it with `onOwnThread`, and
/// only while the worker is stopped (the supervisor never writes the live file otherwise).
///
/// 1. The first candidate whose copy still verifies (SHA-256 as in its manifest, integrity_check)
///    is chosen; if none does, nothing is touched and the restore fails.
/// 2. The live file moves, with its -wal and -shm, into `quarantine/<time>-<reason>/`: never
///    deleted, and no stale -wal is ever left beside the restored file.
/// 3. The backup is copied to a temporary file, fsynced, renamed over the live path, and the
///    directory fsynced.
struct RestoreEngine: Sendable {
    struct Report: Codable, Sendable, Equatable {
        var backupID: String
        /// The data is as of this time: what was written after it is not in the restored file.
        var backupCreatedAt: String
        var location: String
        var quarantinedTo: String?
        var rejected: [String]
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let dataDir: String
    let livePath: String

    func restore(from candidates: [BackupCatalog.Copy], reason: String, now: Date = Date(), progress: @escaping @Sendable (String, Double) -> Void) throws -> Report {
        var rejected: [String] = []
        for (index, candidate) in candidates.enumerated() {
            progress("verifying backup \(candidate.manifest.id)", Double(index) / Double(max(candidates.count, 1)))
            do {
                try check(candidate)
            } catch {
                rejected.append("\(candidate.manifest.id) in \(candidate.location): \(error)")
                continue
            }
            let quarantine = try quarantineLiveFiles(reason: reason, now: now)
            let temporary = dataDir + "/.restore-tmp.sqlite"
            let sha = try DurableFile.copy(candidate.file, to: temporary) { progress("copying", Double($0) / Double(max(candidate.manifest.sizeBytes, 1))) }
            guard sha == candidate.manifest.sha256 else {
                unlink(temporary)
                throw Failure(description: "the restored copy's SHA-256 differs from the backup's; the live database is in \(quarantine ?? "place")")
            }
            try DurableFile.rename(temporary, to: livePath)
            return Report(
                backupID: candidate.manifest.id, backupCreatedAt: candidate.manifest.createdAt,
                location: candidate.location, quarantinedTo: quarantine, rejected: rejected
            )
        }
        let detail = rejected.isEmpty ? "there is no backup" : "no backup verifies: " + rejected.joined(separator: "; ")
        throw Failure(description: detail)
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
