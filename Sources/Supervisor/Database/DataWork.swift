import BotData
import FoundationEssentials
import Glibc
import IPC
import Logging

/// The blocking side of `DataSafetyMachine.Work`: each function runs on a `BlockingPool` thread
/// and returns the event the machine reads. Nothing here decides anything; it looks and reports.
struct DataWork: Sendable {
    let dataDir: String
    let keepDays: Int
    let tracker: OperationTracker
    let logger: Logger
    /// The off-host replicas (`replicas.targets` names): what one of them lacks is not pruned.
    var replicaNames: [String] = []

    var livePath: String { dataDir + "/" + BotDatabase.fileName }
    /// Written once a healthy database was seen: from then on a missing file is a loss, not a new install.
    var markerPath: String { dataDir + "/.database-id" }

    /// At supervisor start: clears what a crash mid-backup or mid-restore left.
    func removeLeftovers(in locations: [String]) {
        for leftover in BackupCatalog.removeLeftovers(in: locations) {
            logger.warning("removed the leftover of an unfinished backup", metadata: [LogKey.path: "\(leftover)"])
        }
        unlink(dataDir + "/.restore-tmp.sqlite")
    }

    // MARK: - Probes

    /// One location: the nearest existing directory answers statvfs, and the location, if it
    /// exists, can be listed. A location that does not exist yet is fine: the first backup makes it.
    static func probe(_ location: String) -> DataSafetyMachine.LocationProbe {
        var path = location
        while !FileManager.default.fileExists(atPath: path), path.count > 1 {
            path = DurableFile.directory(of: path)
        }
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else { return .failed("statvfs: \(DurableFile.errorText())") }
        guard path == location else { return .ok }
        guard let directory = opendir(location) else { return .failed("cannot list it: \(DurableFile.errorText())") }
        closedir(directory)
        return .ok
    }

    // MARK: - The live file

    func inspectLive(locations: [String], journalEnabled: Bool) -> DataSafetyMachine.LiveFacts {
        var inspection = DatabaseInspector.inspect(path: livePath, check: .quick)
        if !inspection.isHealthy, !inspection.isDamaged, !inspection.isMissing,
           FileManager.default.fileExists(atPath: livePath + "-wal") {
            // A -wal without its -shm cannot be read by a read-only connection. Look at a copy
            // with a read-write one, which rebuilds the index: the live files stay untouched.
            inspection = (try? inspectCopy()) ?? inspection
        }
        let catalog = BackupCatalog.scan(locations)
        if inspection.isHealthy { rememberDatabase(inspection) }
        let timelineHasSnapshot = inspection.journal.map { position in
            catalog.copies.contains { $0.manifest.isVerified && $0.manifest.journal?.timeline == position.timeline }
        } ?? true
        return .init(
            inspection: inspection, seenBefore: FileManager.default.fileExists(atPath: markerPath),
            candidates: catalog.candidates(for: nil).count, timelineHasSnapshot: timelineHasSnapshot
        )
    }

    /// The health loop's look while the worker runs: quick_check (read-only), and the locations
    /// that lost every backup the catalog had there (`known`, the catalog as last read).
    func periodicCheck(locations: [String], known: [BackupCatalog.Summary]) -> DataSafetyMachine.PeriodicFacts {
        let inspection = DatabaseInspector.inspect(path: livePath, check: .quick)
        if inspection.isHealthy { rememberDatabase(inspection) }
        let lost = locations.filter { location in
            // Only where backups were: a new installation's locations appear with the first one.
            let copies = known.filter { $0.locations.contains(location) }
            return !copies.isEmpty && !copies.contains { FileManager.default.fileExists(atPath: location + "/" + $0.id + ".sqlite") }
        }
        return .init(inspection: inspection, seenBefore: FileManager.default.fileExists(atPath: markerPath), lostLocations: lost)
    }

    /// From the first time a healthy database is seen, a missing file is a loss to repair.
    private func rememberDatabase(_ inspection: DatabaseInspection) {
        guard let id = inspection.databaseID, !FileManager.default.fileExists(atPath: markerPath) else { return }
        try? DurableFile.write(Data((id + "\n").utf8), to: markerPath)
    }

    /// Inspects a scratch copy of the database and its -wal, as the live file would read once opened.
    private func inspectCopy() throws -> DatabaseInspection {
        var template = Array((dataDir + "/.inspect-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw DurableFile.Failure(description: "mkdtemp: \(DurableFile.errorText())") }
        let scratch = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let copy = scratch + "/" + BotDatabase.fileName
        _ = try DurableFile.copy(livePath, to: copy)
        _ = try DurableFile.copy(livePath + "-wal", to: copy + "-wal")
        var inspection = DatabaseInspector.inspect(path: copy, check: .quick, readOnly: false)
        inspection.path = livePath
        return inspection
    }

    // MARK: - Backups

    /// A backup into `locations`, then retention. Returns the report, or why it failed.
    func backup(_ reason: BackupManifest.Reason, locations: [String], phasePrefix: String?, liveTimeline: String?) -> Result<BackupEngine.Report, ErrorBody> {
        let tracker = self.tracker
        do {
            let report = try BackupEngine(livePath: livePath, locations: locations).run(reason: reason, progress: { phase, progress in
                tracker.step(phasePrefix.map { "\($0): \(phase)" } ?? phase, progress)
            }, bytes: { tracker.bytes($0, of: $1) })
            logger.log(level: report.succeeded ? .info : .error, "backup finished", metadata: [
                "id": "\(report.id)", LogKey.reason: "\(reason.rawValue)", "durationMs": "\(report.durationMs)",
                "journalSequence": "\(report.journal.map { String($0.sequence) } ?? "none")",
                "locations": "\(report.results.map { "\($0.location): \($0.ok ? "ok" : $0.message)" }.joined(separator: "; "))",
            ])
            prune(locations, liveTimeline: report.journal?.timeline ?? liveTimeline)
            return .success(report)
        } catch {
            logger.error("backup failed", metadata: [LogKey.error: "\(error)"])
            return .failure(ErrorBody(code: "backup-failed", message: "\(error)"))
        }
    }

    /// Deletes what retention says may go: old backups, and journal segments no retained
    /// snapshot needs.
    func prune(_ locations: [String], liveTimeline: String?) {
        let catalog = BackupCatalog.scan(locations)
        let replicas = ReplicaRetentionGuard.load(dataDir: dataDir, names: replicaNames)
        for copy in RetentionPolicy(keepDays: keepDays).expired(catalog.copies, now: Date()) where !replicas.protects(backup: copy) {
            unlink(copy.location + "/" + copy.manifest.id + ".json")
            unlink(copy.file)
            logger.info("backup pruned by retention", metadata: ["id": "\(copy.manifest.id)", LogKey.path: "\(copy.location)"])
        }
        let remaining = BackupCatalog.scan(locations)
        for segment in JournalRetention.expired(locations: locations, copies: remaining.copies, liveTimeline: liveTimeline) where !replicas.protects(journalPath: segment) {
            if (try? FileManager.default.removeItem(atPath: segment)) != nil {
                logger.info("journal pruned with the snapshots it follows", metadata: [LogKey.path: "\(segment)"])
            }
        }
    }

    // MARK: - Verification and restore

    /// `bot-supervisor verify`: integrity_check of the live file and of every backup copy.
    func verify(locations: [String]) -> DataSafetyMachine.VerifyReport {
        let catalog = BackupCatalog.scan(locations)
        // Bytes checked so far of the live file and every copy, for the progress display.
        var info = stat()
        let liveBytes = stat(livePath, &info) == 0 ? Int64(info.st_size) : 0
        let total = catalog.copies.reduce(liveBytes) { $0 + Int64($1.manifest.sizeBytes) }
        tracker.update("live database", 0, bytes: (0, total))
        let live = DatabaseInspector.inspect(path: livePath, check: .integrity)
        var done = liveBytes
        let restore = RestoreEngine(dataDir: dataDir, livePath: livePath)
        var items: [DataSafetyMachine.VerifyReport.Item] = []
        for (index, copy) in catalog.copies.enumerated() {
            tracker.update("backup \(copy.manifest.id)", Double(index + 1) / Double(catalog.copies.count + 1), bytes: (done, total))
            done += Int64(copy.manifest.sizeBytes)
            let name = "\(copy.manifest.id) in \(copy.location)"
            do {
                try restore.check(copy)
                items.append(.init(name: name, ok: true, detail: "ok"))
            } catch {
                items.append(.init(name: name, ok: false, detail: "\(error)"))
            }
        }
        return .init(
            live: .init(name: livePath, ok: live.isHealthy, detail: live.isHealthy ? "ok" : live.problems.joined(separator: "; ")),
            backups: items
        )
    }

    func restore(_ target: RestoreEngine.Target, reason: String, locations: [String], journalLocations: [String], reported: JournalReport?) -> DataSafetyMachine.RestoreResult {
        let candidates = BackupCatalog.scan(locations).candidates(for: target)
        guard !candidates.isEmpty else { return .noCandidates }
        let engine = RestoreEngine(dataDir: dataDir, livePath: livePath, locations: journalLocations)
        let tracker = self.tracker
        logger.warning("restoring the database", metadata: [LogKey.reason: "\(reason)"])
        do {
            let report = try engine.restore(from: candidates, target: target, reason: reason, progress: { tracker.step($0, $1) }, bytes: { tracker.bytes($0, of: $1) })
            return .restored(report, reportedJournal: reported)
        } catch {
            return .failed("\(error)")
        }
    }
}
