import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// The worker protocol on the real binaries: the worker announces its features' log systems in
/// its hello, and the supervisor takes them.
@Suite struct WorkerProtocolTests {
    @Test func theWorkerAnnouncesItsFeaturesLogSystems() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let connected = try #require(harness.log("supervisor").first { $0["message"] as? String == "worker connected" })
        #expect(connected["logSystems"] as? String == "verification,role_connections,xp", "\(connected)")
        // None of the worker's own lines was refiled as raw output.
        #expect(!harness.log("bot").contains { ($0["message"] as? String)?.contains("\"system\":") == true })
        #expect(try harness.terminate() == 0)
    }
}
