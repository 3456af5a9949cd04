import FoundationEssentials
import IPC

/// The alert a restore raises: what it did, and exactly what it recovered and up to when.
enum RestoreMessages {
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

}
