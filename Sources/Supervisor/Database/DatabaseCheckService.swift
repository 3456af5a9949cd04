import Logging
import ServiceLifecycle

/// Every `health.intervalSeconds`: quick_check of the live database and its critical rows, while
/// the worker runs. Damage asks the supervision loop for a repair (stop, check, restore).
struct DatabaseCheckService: Service {
    let interval: Duration
    let keeper: DataKeeper
    let supervisor: WorkerSupervisor
    let store: StatusStore
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                guard (try? await Task.sleep(for: interval)) != nil else { return }
                let state = await store.workerState
                guard state == .ready || state == .unhealthy else { continue }
                switch await keeper.periodicCheck() {
                case .healthy:
                    break
                case .damaged(let detail):
                    logger.critical("the periodic check found the database damaged", metadata: [LogKey.error: "\(detail)"])
                    supervisor.send(.maintenanceRequested(.repair(reason: "the periodic check found damage (\(detail))")))
                case .unreadable(let detail):
                    logger.warning("the periodic database check could not read the file", metadata: [LogKey.error: "\(detail)"])
                }
            }
        }
    }
}
