import Logging
import ServiceLifecycle

/// Sends WATCHDOG=1 at half of WATCHDOG_USEC, but only while the supervision loop still turns:
/// each ping needs the loop to have answered the probe sent one interval earlier. A supervisor
/// that hangs stops pinging, and systemd restarts it.
struct WatchdogService: Service {
    let interval: Duration
    let supervisor: WorkerSupervisor
    let notifier: SystemdNotifier
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var probe = 0
            var stalled = false
            while !Task.isCancelled {
                probe += 1
                supervisor.probe(probe)
                guard (try? await Task.sleep(for: interval)) != nil else { return }
                if supervisor.answered >= probe {
                    notifier.watchdog()
                    if stalled { logger.info("supervision loop turns again; watchdog pings resume") }
                    stalled = false
                } else if !stalled {
                    stalled = true
                    logger.critical("supervision loop did not answer within the watchdog interval; withholding WATCHDOG=1 so that systemd restarts the supervisor")
                }
            }
        }
    }
}
