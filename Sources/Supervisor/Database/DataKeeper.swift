import BotData
import FoundationEssentials
import Glibc
import IPC
import Logging

/// Owns everything the supervisor does to protect the database: verification at start and in the
/// health loop, backups, verification of backups, restores. Long operations run one at a time,
/// on threads of their own, while status requests are answered at once.
actor DataKeeper {
    struct VerifyReport: Codable, Sendable, Equatable {
        struct Item: Codable, Sendable, Equatable {
            var name: String
            var ok: Bool
            var detail: String
        }
        var live: Item
        var backups: [Item]
        var ok: Bool { live.ok && backups.allSatisfy(\.ok) }
    }

    enum PeriodicOutcome: Sendable, Equatable {
        case healthy
        case damaged(String)
        case unreadable(String)
    }

    private let config: SupervisorConfig
    private let store: StatusStore
    private let logger: Logger
    let tracker = OperationTracker(stepDelay: SupervisorFaults.atStart.maintenanceStepDelay)
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []
    private var lastCheck: DatabaseStatus.Check?
    private var criticalBaseline: [String: Int]?
    private var summaries: [BackupCatalog.Summary] = []
    private var restoreWaiters: [AsyncStream<MaintenanceOutcome>.Continuation] = []
    /// Told of every snapshot taken, so that the worker starts a new journal segment.
    private var snapshotListener: (@Sendable (JournalPosition) async -> Void)?
    /// The live database's journal timeline, as last seen (never pruned).
    private var liveTimeline: String?

    init(config: SupervisorConfig, store: StatusStore, logger: Logger) {
        self.config = config
        self.store = store
        self.logger = logger
    }

    var livePath: String { config.dataDir + "/" + BotDatabase.fileName }

    func onSnapshot(_ listener: @escaping @Sendable (JournalPosition) async -> Void) {
        snapshotListener = listener
    }
    /// Written once a healthy database was seen: from then on a missing file is a loss, not a new install.
    private var markerPath: String { config.dataDir + "/.database-id" }

    /// At supervisor start: clears what a crash mid-backup left, and reads the catalog.
    func prepare() {
        for leftover in BackupCatalog.removeLeftovers(in: config.backup.locations) {
            logger.warning("removed the leftover of an unfinished backup", metadata: [LogKey.path: "\(leftover)"])
        }
        if FileManager.default.fileExists(atPath: config.dataDir + "/.restore-tmp.sqlite") {
            unlink(config.dataDir + "/.restore-tmp.sqlite")
        }
        summaries = BackupCatalog.scan(config.backup.locations).summaries
    }

    // MARK: - Status

    func databaseStatus() -> DatabaseStatus {
        DatabaseStatus(path: livePath, sizeBytes: DurableFile.size(of: livePath), lastCheck: lastCheck)
    }

    func backupsStatus() -> BackupsStatus {
        BackupsStatus(count: summaries.count, last: summaries.first.map {
            .init(id: $0.id, at: $0.createdAt, reason: $0.reason, verified: $0.verified, locations: $0.locations)
        })
    }

    func backupList() -> [BackupCatalog.Summary] {
        summaries = BackupCatalog.scan(config.backup.locations).summaries
        return summaries
    }

    /// Whether there is a database with data to back up (not before the worker created it).
    func isWorthBackingUp() -> Bool {
        FileManager.default.fileExists(atPath: livePath)
    }

    /// Row counts of the critical tables at the last check.
    func criticalRows() -> [String: Int]? { criticalBaseline }

    /// Age of the newest verified backup, for the scheduler and the health checks.
    func newestVerifiedBackupDate() -> Date? {
        summaries.first(where: \.verified).flatMap { Timestamp.date($0.createdAt) }
    }

    // MARK: - Backups

    func backup(reason: BackupManifest.Reason) async -> Result<BackupEngine.Report, ErrorBody> {
        await exclusively("backup (\(reason.rawValue))") { await takeBackup(reason: reason) }
    }

    /// A backup, inside an exclusive section.
    /// - Parameter phasePrefix: names the backup's phases in the status when it is part of a
    ///   larger operation (the snapshot that ends a restore).
    private func takeBackup(reason: BackupManifest.Reason, phasePrefix: String? = nil) async -> Result<BackupEngine.Report, ErrorBody> {
        let engine = BackupEngine(livePath: livePath, locations: config.backup.locations)
        let tracker = self.tracker
        do {
            let report = try await onOwnThread {
                try engine.run(reason: reason) { phase, progress in tracker.step(phasePrefix.map { "\($0): \(phase)" } ?? phase, progress) }
            }
            for failure in report.failures {
                await store.raise(report.succeeded ? .warning : .critical, "backup \(report.id) failed in \(failure.location): \(failure.message)")
            }
            logger.log(level: report.succeeded ? .info : .error, "backup finished", metadata: [
                "id": "\(report.id)", LogKey.reason: "\(reason.rawValue)", "durationMs": "\(report.durationMs)",
                "journalSequence": "\(report.journal.map { String($0.sequence) } ?? "none")",
                "locations": "\(report.results.map { "\($0.location): \($0.ok ? "ok" : $0.message)" }.joined(separator: "; "))",
            ])
            if let position = report.journal { liveTimeline = position.timeline }
            prune()
            guard report.succeeded else {
                return .failure(ErrorBody(code: "backup-failed", message: "backup \(report.id) failed in every location: \(report.failures.map(\.message).joined(separator: "; "))"))
            }
            if let position = report.journal, let snapshotListener { await snapshotListener(position) }
            return .success(report)
        } catch {
            logger.error("backup failed", metadata: [LogKey.error: "\(error)"])
            await store.raise(.critical, "backup (\(reason.rawValue)) failed: \(error)")
            return .failure(ErrorBody(code: "backup-failed", message: "\(error)"))
        }
    }

    /// Deletes what retention says may go, then rereads the catalog.
    private func prune() {
        let catalog = BackupCatalog.scan(config.backup.locations)
        for copy in RetentionPolicy(keepDays: config.backup.keepDays).expired(catalog.copies, now: Date()) {
            unlink(copy.location + "/" + copy.manifest.id + ".json")
            unlink(copy.file)
            logger.info("backup pruned by retention", metadata: ["id": "\(copy.manifest.id)", LogKey.path: "\(copy.location)"])
        }
        let remaining = BackupCatalog.scan(config.backup.locations)
        summaries = remaining.summaries
        for segment in JournalRetention.expired(locations: config.backup.locations, copies: remaining.copies, liveTimeline: liveTimeline) {
            if (try? FileManager.default.removeItem(atPath: segment)) != nil {
                logger.info("journal pruned with the snapshots it follows", metadata: [LogKey.path: "\(segment)"])
            }
        }
    }

    // MARK: - Verification

    /// `bot-supervisor verify`: integrity_check of the live file and of every backup copy.
    func verifyAll() async -> VerifyReport {
        await exclusively("verify") {
            let livePath = self.livePath
            let catalog = BackupCatalog.scan(config.backup.locations)
            let tracker = self.tracker
            let restore = RestoreEngine(dataDir: config.dataDir, livePath: livePath)
            let report = (try? await onOwnThread { () -> VerifyReport in
                tracker.update("live database", 0)
                let live = DatabaseInspector.inspect(path: livePath, check: .integrity)
                var items: [VerifyReport.Item] = []
                for (index, copy) in catalog.copies.enumerated() {
                    tracker.update("backup \(copy.manifest.id)", Double(index + 1) / Double(catalog.copies.count + 1))
                    let name = "\(copy.manifest.id) in \(copy.location)"
                    do {
                        try restore.check(copy)
                        items.append(.init(name: name, ok: true, detail: "ok"))
                    } catch {
                        items.append(.init(name: name, ok: false, detail: "\(error)"))
                    }
                }
                return VerifyReport(
                    live: .init(name: livePath, ok: live.isHealthy, detail: live.isHealthy ? "ok" : live.problems.joined(separator: "; ")),
                    backups: items
                )
            }) ?? VerifyReport(live: .init(name: livePath, ok: false, detail: "the check could not run"), backups: [])
            lastCheck = .init(at: Timestamp.string(), result: report.live.ok ? "ok" : report.live.detail)
            for item in report.backups where !item.ok {
                await store.raise(.warning, "backup \(item.name) no longer verifies: \(item.detail)")
            }
            return report
        }
    }

    /// The health loop's check, while the worker runs: quick_check (read-only) and the critical
    /// tables' row counts against the last check.
    func periodicCheck() async -> PeriodicOutcome {
        guard !busy else { return .healthy }  // a backup or restore is looking at the file already
        let livePath = self.livePath
        guard let inspection = try? await onOwnThread({ DatabaseInspector.inspect(path: livePath, check: .quick) }) else {
            return .unreadable("the check could not run")
        }
        lastCheck = .init(at: Timestamp.string(), result: inspection.isHealthy ? "ok" : inspection.problems.joined(separator: "; "))
        if inspection.isDamaged { return .damaged(inspection.problems.joined(separator: "; ")) }
        // Deleted under the running worker (which goes on writing to the unlinked file): a loss
        // to repair, once a healthy database had been seen here.
        if inspection.isMissing, FileManager.default.fileExists(atPath: markerPath) { return .damaged("the database file \(livePath) was deleted") }
        if !inspection.isHealthy { return .unreadable(inspection.problems.joined(separator: "; ")) }
        for drop in CriticalDataCheck.drops(from: criticalBaseline, to: inspection.criticalRows) {
            await store.raise(.critical, drop)
        }
        criticalBaseline = inspection.criticalRows
        rememberDatabase(inspection)
        return .healthy
    }

    /// The health loop's look at the backup locations: one that disappeared (deleted, unmounted)
    /// took its backups and its copy of the journal with it. A backup at once makes it again,
    /// with a new base for the journal there (the worker starts a new segment after it).
    func repairLostLocations() async {
        guard !busy else { return }
        let lost = config.backup.locations.filter { location in
            // Only where backups were: a new installation's locations appear with the first one.
            let copies = summaries.filter { $0.locations.contains(location) }
            return !copies.isEmpty && !copies.contains { FileManager.default.fileExists(atPath: location + "/" + $0.id + ".sqlite") }
        }
        guard !lost.isEmpty else { return }
        for location in lost {
            logger.critical("a backup location lost its backups", metadata: [LogKey.path: "\(location)"])
            await store.raise(.critical, "backup location \(location) is gone or empty (deleted or unmounted?): its backups and its copy of the journal are lost; taking a new backup to make it again")
        }
        _ = await backup(reason: .journal)
    }

    // MARK: - Maintenance (the worker is stopped)

    func perform(_ task: MaintenanceTask) async -> MaintenanceOutcome {
        await exclusively(task.summary) {
            switch task {
            case .startupCheck:
                return await checkAndRepair(reason: nil)
            case .repair(let reason):
                return await checkAndRepair(reason: reason)
            case .restore(let target, let requester):
                let candidates = BackupCatalog.scan(config.backup.locations).candidates(for: target)
                let outcome: MaintenanceOutcome
                if case .backup(let id, _) = target, candidates.isEmpty {
                    outcome = MaintenanceOutcome(startWorker: true, succeeded: false, message: "there is no backup \(id); `bot-supervisor backups` lists them. The database was not touched.")
                } else if case .pointInTime(let date) = target, candidates.isEmpty {
                    outcome = MaintenanceOutcome(startWorker: true, succeeded: false, message: "there is no verified backup from before \(Timestamp.string(date)) to start from; `bot-supervisor backups` lists them. The database was not touched.")
                } else {
                    outcome = await restore(from: candidates, target: target, reason: "restore requested by \(requester)", keepLiveIfNoBackup: true)
                }
                for waiter in restoreWaiters {
                    waiter.yield(outcome)
                    waiter.finish()
                }
                restoreWaiters = []
                return outcome
            }
        }
    }

    private func checkAndRepair(reason: String?) async -> MaintenanceOutcome {
        let livePath = self.livePath
        let markerPath = self.markerPath
        var inspection = (try? await onOwnThread { DatabaseInspector.inspect(path: livePath, check: .quick) })
            ?? DatabaseInspector.inspect(path: livePath, check: .none)
        if !inspection.isHealthy, !inspection.isDamaged, !inspection.isMissing,
           FileManager.default.fileExists(atPath: livePath + "-wal") {
            // A -wal without its -shm cannot be read by a read-only connection. Look at a copy
            // with a read-write one, which rebuilds the index: the live files stay untouched.
            inspection = (try? await onOwnThread { try Self.inspectCopy(of: livePath) }) ?? inspection
        }
        lastCheck = .init(at: Timestamp.string(), result: inspection.isHealthy ? "ok" : inspection.problems.joined(separator: "; "))

        if inspection.isMissing {
            let existedBefore = FileManager.default.fileExists(atPath: markerPath)
            let candidates = BackupCatalog.scan(config.backup.locations).candidates(for: nil)
            if !existedBefore, candidates.isEmpty {
                lastCheck = .init(at: Timestamp.string(), result: "no database yet: the worker creates it")
                return MaintenanceOutcome(startWorker: true, succeeded: true, message: "no database yet: the worker creates it")
            }
            return await restore(from: candidates, target: .latest, reason: "the database file \(livePath) is missing", keepLiveIfNoBackup: false)
        }
        if inspection.isHealthy {
            criticalBaseline = inspection.criticalRows
            rememberDatabase(inspection)
            await ensureJournalBase(inspection)
            if let reason {
                await store.raise(.warning, "\(reason); but the database passes its checks with the worker stopped, so it was not restored")
            }
            return MaintenanceOutcome(startWorker: true, succeeded: true, message: "the database passes its checks")
        }
        if !inspection.isDamaged {
            // Unreadable but not damaged (permissions, locks): a restore would not help and would lose data.
            let message = "the database cannot be read: \(inspection.problems.joined(separator: "; ")); fix the cause (permissions, disk), then `bot-supervisor restart-worker`"
            await store.raise(.critical, message)
            return MaintenanceOutcome(startWorker: false, succeeded: false, message: message)
        }
        let why = (reason.map { $0 + "; " } ?? "") + inspection.problems.joined(separator: "; ")
        let candidates = BackupCatalog.scan(config.backup.locations).candidates(for: nil)
        return await restore(from: candidates, target: .latest, reason: "the database is damaged: \(why)", keepLiveIfNoBackup: false)
    }

    /// From the first time a healthy database is seen, a missing file is a loss to repair.
    private func rememberDatabase(_ inspection: DatabaseInspection) {
        guard let id = inspection.databaseID, !FileManager.default.fileExists(atPath: markerPath) else { return }
        try? DurableFile.write(Data((id + "\n").utf8), to: markerPath)
    }

    /// Inspects a scratch copy of the database and its -wal, as `path` would read once opened.
    private static func inspectCopy(of path: String) throws -> DatabaseInspection {
        var template = Array((DurableFile.directory(of: path) + "/.inspect-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw DurableFile.Failure(description: "mkdtemp: \(DurableFile.errorText())") }
        let scratch = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let copy = scratch + "/" + BotDatabase.fileName
        _ = try DurableFile.copy(path, to: copy)
        _ = try DurableFile.copy(path + "-wal", to: copy + "-wal")
        var inspection = DatabaseInspector.inspect(path: copy, check: .quick, readOnly: false)
        inspection.path = path
        return inspection
    }

    /// A live timeline without a snapshot (a supervisor stopped between a restore and its
    /// snapshot, a journal turned on) gets one before the worker starts: its journal entries
    /// need a base to be replayed onto.
    private func ensureJournalBase(_ inspection: DatabaseInspection) async {
        guard config.journal.enabled, let position = inspection.journal else { return }
        liveTimeline = position.timeline
        let catalog = BackupCatalog.scan(config.backup.locations)
        guard !catalog.copies.contains(where: { $0.manifest.isVerified && $0.manifest.journal?.timeline == position.timeline }) else { return }
        logger.info("the live journal timeline has no snapshot yet; taking one", metadata: ["timeline": "\(position.timeline)"])
        _ = await takeBackup(reason: .journal)
    }

    /// - Parameter keepLiveIfNoBackup: an operator's restore that finds no usable backup leaves the
    ///   working database and starts the worker on it; a damaged database never gets the worker.
    private func restore(from candidates: [BackupCatalog.Copy], target: RestoreEngine.Target, reason: String, keepLiveIfNoBackup: Bool) async -> MaintenanceOutcome {
        // With the journal off there is nothing after the backup to replay: the alert must not
        // claim everything came back.
        let engine = RestoreEngine(dataDir: config.dataDir, livePath: livePath, locations: config.journal.enabled ? config.backup.locations : [])
        let tracker = self.tracker
        let reported = await store.journalReport
        logger.warning("restoring the database", metadata: [LogKey.reason: "\(reason)"])
        do {
            let report = try await onOwnThread { try engine.restore(from: candidates, target: target, reason: reason) { tracker.step($0, $1) } }
            let inspection = DatabaseInspector.inspect(path: livePath, check: .none)
            criticalBaseline = inspection.criticalRows
            liveTimeline = report.timeline ?? liveTimeline
            lastCheck = .init(at: Timestamp.string(), result: "ok (restored from \(report.backupID))")
            var message = Self.describe(report, target: target, reason: reason, reported: reported)
            // The restored file is the base of its new timeline: snapshot it before the worker
            // writes anything, so that its journal can be replayed if it is lost again.
            if report.timeline != nil, config.journal.enabled {
                if case .failure(let error) = await takeBackup(reason: .postRestore, phasePrefix: "taking a snapshot of the restored database") {
                    message += "; the snapshot of the restored database failed (\(error.message)): until the next backup, a restore cannot replay what the worker writes now"
                }
            }
            await store.raise(.critical, message)
            return MaintenanceOutcome(startWorker: true, succeeded: true, message: message)
        } catch {
            let message: String
            if keepLiveIfNoBackup {
                message = "restore failed (\(reason)): \(error); the database was not touched"
                await store.raise(.warning, message)
            } else {
                message = "\(reason); no restore was possible: \(error). The bot stays stopped so that it never starts on an empty database over a damaged one. Restore one by hand with `bot-supervisor restore --backup ID`, or move the damaged file away to start afresh."
                await store.raise(.critical, message)
            }
            return MaintenanceOutcome(startWorker: keepLiveIfNoBackup, succeeded: false, message: message)
        }
    }

    /// What a restore did, and exactly what it recovered, in the alert's words.
    static func describe(_ report: RestoreEngine.Report, target: RestoreEngine.Target, reason: String, reported: JournalReport?) -> String {
        var message = "database restored from backup \(report.backupID) taken at \(report.backupCreatedAt) (\(reason))"
        if let replay = report.replay {
            message += "; \(replay.entries) journal entries replayed (sequence \(replay.fromSequence + 1)…\(replay.toSequence))"
            let asOf = replay.lastCommitAt ?? report.backupCreatedAt
            switch replay.stop {
            case "end-of-journal":
                message += "; every committed transaction is back, up to \(asOf)"
            case "point-in-time":
                if case .pointInTime(let date) = target {
                    message += "; the data is as it was at \(Timestamp.string(date)) (last transaction kept: \(asOf))"
                }
            default:
                message += "; the replay stopped: \(replay.detail ?? replay.stop). Recovered up to sequence \(replay.toSequence), committed at \(asOf); what committed after that is lost"
            }
            if let reported, reported.timeline == replay.timeline, reported.sequence > replay.toSequence, target == .latest {
                message += "; the worker had reported sequence \(reported.sequence): \(reported.sequence - replay.toSequence) committed transactions are missing"
            }
            if let ignored = replay.ignoredUncommitted {
                message += "; entry \(ignored), written by a transaction that never committed, was ignored"
            }
            if !replay.repaired.isEmpty {
                message += "; damaged journal copies were made up for by another location: \(replay.repaired.joined(separator: "; "))"
            }
        } else if case .backup(_, false) = target {
            message += "; the data is as of that backup, as asked"
        } else {
            message += "; the backup has no journal position (taken before the journal existed, or journal.enabled is false): everything written after \(report.backupCreatedAt) is lost"
        }
        if let quarantine = report.quarantinedTo { message += "; the replaced files are in \(quarantine)" }
        if !report.rejected.isEmpty { message += "; skipped backups that no longer verify: \(report.rejected.joined(separator: "; "))" }
        return message
    }

    /// The outcome of the next operator restore, delivered when it finishes.
    func nextRestoreOutcome() -> AsyncStream<MaintenanceOutcome> {
        let (stream, continuation) = AsyncStream.makeStream(of: MaintenanceOutcome.self)
        restoreWaiters.append(continuation)
        return stream
    }

    // MARK: - One operation at a time

    private func exclusively<T>(_ name: String, _ body: () async -> T) async -> T {
        while busy {
            await withCheckedContinuation { waiting.append($0) }
        }
        busy = true
        tracker.begin(name)
        defer {
            busy = false
            tracker.end()
            if !waiting.isEmpty { waiting.removeFirst().resume() }
        }
        return await body()
    }
}

/// A large unexplained drop in the critical tables' rows: a pure comparison.
enum CriticalDataCheck {
    /// A table that lost more than a fifth of its rows, and at least 10, since the last check.
    static func drops(from previous: [String: Int]?, to current: [String: Int]) -> [String] {
        guard let previous else { return [] }
        return previous.keys.sorted().compactMap { table in
            let before = previous[table] ?? 0
            let now = current[table] ?? 0
            let lost = before - now
            guard lost >= 10, Double(lost) > Double(before) * 0.2 else { return nil }
            return "critical data dropped: \(table) has \(now) rows, \(before) at the last check; if no one deleted them on purpose, `bot-supervisor restore` brings back the last backup"
        }
    }
}
