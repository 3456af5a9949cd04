import FoundationEssentials
import IPC
import ServiceLifecycle

/// Sends a heartbeat every interval with what `BotCore` reports. The report comes from the core
/// actor itself, so a core that stalls (stuck in a loop, deadlocked) stops the heartbeats and the
/// supervisor replaces the worker.
struct HeartbeatService: Service {
    let interval: Duration
    let core: BotCore
    let link: SupervisorLink

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            var sequence = 0
            while !Task.isCancelled {
                sequence += 1
                let report = await core.healthReport()
                try await link.send(.heartbeat(.init(
                    sequence: sequence,
                    healthy: report.healthy,
                    detail: report.detail,
                    rssBytes: report.rssBytes,
                    discord: report.discord,
                    events: report.events,
                    journal: report.journal,
                    sessions: report.sessions
                )))
                guard (try? await Task.sleep(for: interval)) != nil else { return }
            }
        }
    }
}
