import FoundationEssentials
import IPC
import ServiceLifecycle

/// Sends a heartbeat every interval, and at once when the core asks (`BotCore.reportNow`), with
/// what `BotCore` reports. The report comes from the core actor itself, so a core that stalls
/// (stuck in a loop, deadlocked) stops the heartbeats and the supervisor replaces the worker.
struct HeartbeatService: Service {
    let interval: Duration
    let core: BotCore
    let link: SupervisorLink

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await withThrowingDiscardingTaskGroup { group in
                // The interval's ticks join the core's own requests in one stream (coalesced:
                // a request while one waits adds nothing).
                group.addTask { [interval, core] in
                    while (try? await Task.sleep(for: interval)) != nil { core.reportNow.yield() }
                }
                var sequence = 0
                try await send(sequence: &sequence)
                for await _ in core.reportRequests {
                    try await send(sequence: &sequence)
                }
                group.cancelAll()
            }
        }
    }

    private func send(sequence: inout Int) async throws {
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
    }
}
