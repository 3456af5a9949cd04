import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// `worker.memoryMaxBytes` on the real binaries: a worker whose memory grows (the `memory-grow`
/// fault) is restarted gracefully, with the reason and an alert, and the new worker comes up.
@Suite(.serialized) struct MemoryLimitTests {
    /// Well above a normal worker's RSS (about 40–70 MB in a debug build), well below the
    /// fault's 512 MiB cap.
    static let limit = 200_000_000

    @Test func aWorkerAboveTheLimitInTwoHeartbeatsIsRestartedGracefully() throws {
        let harness = try SupervisorHarness(config: ["worker": ["memoryMaxBytes": Self.limit]])
        try harness.start(environment: ["BOT_WORKER_FAULT": "memory-grow"])
        let first = try harness.waitForStatus(timeout: .seconds(30), "the first worker ready") { $0.worker.state == .ready && $0.worker.pid != nil }
        let firstPid = try #require(first.worker.pid)
        #expect((first.worker.rssBytes ?? 0) < Self.limit, "a normal worker must start below the limit for this test")

        let restarted = try harness.waitForStatus(timeout: .seconds(60), "a restart for the memory limit") { snapshot in
            snapshot.worker.restarts >= 1 && snapshot.worker.lastExit?.reason.hasPrefix("memory limit:") == true
        }
        let reason = restarted.worker.lastExit?.reason ?? ""
        #expect(reason.contains("above worker.memoryMaxBytes 200.0 MB in two heartbeats in a row; restarted gracefully"))
        // Graceful: the worker left on its own after the shutdown request, not killed.
        #expect(restarted.worker.lastExit?.signal == nil)
        #expect(restarted.alerts.contains { $0.severity == .warning && $0.message.hasPrefix("worker RSS ") && $0.message.hasSuffix("above worker.memoryMaxBytes 200.0 MB in two heartbeats in a row; restarted gracefully") })
        #expect(!restarted.alerts.contains { $0.message.contains("crash-looping") })

        // The new worker comes up (it grows too, and will be restarted in its turn).
        let next = try harness.waitForStatus(timeout: .seconds(30), "the new worker ready") { $0.worker.state == .ready && $0.worker.pid != nil && $0.worker.pid != firstPid }
        #expect(next.worker.restarts >= 1)
        #expect(try harness.terminate() == 0)
    }
}
