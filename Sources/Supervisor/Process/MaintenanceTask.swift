/// Work on the live database that needs the worker stopped.
enum MaintenanceTask: Sendable, Equatable {
    /// Before the first start: the database exists (or is new), opens, passes quick_check, and
    /// has its required tables and rows; restored from a backup if not.
    case startupCheck
    /// Something reported damage (the worker, the periodic check): check again with the worker
    /// stopped, restore only if the file really is damaged.
    case repair(reason: String)
    /// An operator's `restore`: from `backupID`, or the newest verified backup.
    case restore(backupID: String?, requestedBy: String)

    var summary: String {
        switch self {
        case .startupCheck: "checking the database before start"
        case .repair(let reason): "checking the database after: \(reason)"
        case .restore(let id, let requester): "restoring \(id ?? "the newest verified backup") at the request of \(requester)"
        }
    }
}

/// What a maintenance task did, and whether the worker may start.
struct MaintenanceOutcome: Sendable, Equatable {
    /// The database is usable: start the worker.
    var startWorker: Bool
    /// The task did what was asked (a restore that found no usable backup did not).
    var succeeded: Bool
    var message: String
}
