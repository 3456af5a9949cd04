import IPC
/// Work on the live database that needs the worker stopped.
enum MaintenanceTask: Sendable, Equatable {
    /// Before the first start: the database exists (or is new), opens, passes quick_check, and
    /// has its required tables and rows; restored from a backup if not.
    case startupCheck
    /// Something reported damage (the worker, the periodic check): check again with the worker
    /// stopped, restore only if the file really is damaged.
    case repair(reason: String)
    /// An operator's `restore` (or a rollback's): the newest verified backup and the journal, one
    /// backup, or a point in time.
    case restore(RestoreEngine.Target, requestedBy: String)

    var summary: String {
        switch self {
        case .startupCheck: "checking the database before start"
        case .repair(let reason): "checking the database after: \(reason)"
        case .restore(let target, let requester):
            switch target {
            case .latest: "restoring the newest verified backup and the journal at the request of \(requester)"
            case .backup(let id, _): "restoring backup \(id) at the request of \(requester)"
            case .pointInTime(let date): "restoring the state as of \(Timestamp.string(date)) at the request of \(requester)"
            }
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
