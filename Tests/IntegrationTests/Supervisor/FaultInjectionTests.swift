import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// The test-only faults, on the real binaries: each parsed once at start, an unknown one refused.
@Suite(.serialized) struct FaultInjectionTests {
    @Test func sigusr1CrashesAWorkerUnderTheFaultWithABacktraceInErrorsLog() throws {
        // A long heartbeat timeout and restart delay: the crash handler has time to print its
        // backtrace, and the crash is reported before any restart.
        let harness = try SupervisorHarness(config: ["worker": ["heartbeatTimeoutSeconds": 30, "restartDelaySeconds": 5]])
        try harness.start(environment: ["BOT_WORKER_FAULT": "crash-on-sigusr1"])
        let ready = try harness.waitForStatus(timeout: .seconds(60), "the worker ready") { $0.worker.state == .ready && $0.worker.pid != nil }
        let pid = try #require(ready.worker.pid)
        // Running normally until the signal: the fault is a trap set, not a crash at start.
        #expect(!harness.log("errors").contains { $0["message"] as? String == "worker ended unexpectedly" })
        kill(pid, SIGUSR1)
        try waitUntil(timeout: .seconds(60), "the crash in errors.log") {
            harness.log("errors").contains { $0["message"] as? String == "worker ended unexpectedly" && $0["pid"] as? String == "\(pid)" }
        }
        let report = try #require(harness.log("errors").first { $0["message"] as? String == "worker ended unexpectedly" })
        // A trap (SIGILL or SIGTRAP), not SIGUSR1's default action.
        let reason = (report["reason"] as? String) ?? ""
        #expect(reason.contains("signal") && !reason.contains("signal 10"), "\(reason)")
        let backtrace = (report["backtrace"] as? [String]) ?? []
        #expect(backtrace.first?.contains("Program crashed") == true, "\(backtrace.prefix(3))")
        #expect(backtrace.contains { $0.contains("crashed:") })
        let everything = ((report["last_output"] as? [String]) ?? []) + backtrace
        #expect(everything.contains { $0.contains("crash-on-sigusr1") }, "\(everything.suffix(5))")
        #expect(try harness.terminate() == 0)
    }

    @Test func anUnknownWorkerFaultFailsTheWorkerSayingSo() throws {
        let harness = try SupervisorHarness()
        try harness.start(environment: ["BOT_WORKER_FAULT": "crash-sometimes"])
        let status = try harness.waitForStatus(timeout: .seconds(30), "worker failed") { $0.worker.state == .failed }
        #expect(status.worker.detail?.contains("BOT_WORKER_FAULT=crash-sometimes") == true, "\(String(describing: status.worker.detail))")
        #expect(status.worker.lastExit?.code == WorkerExitCode.fatalConfiguration)
        #expect(try harness.terminate() == 0)
    }

    @Test func anUnknownSupervisorFaultIsRefusedAtStart() throws {
        let harness = try SupervisorHarness()
        try harness.start(environment: ["BOT_SUPERVISOR_FAULT": "slow-everything"])
        #expect(try harness.waitForExit(timeout: .seconds(20)) == 2)
        #expect(harness.stderr.contains("BOT_SUPERVISOR_FAULT=slow-everything is not a fault"), "\(harness.stderr)")
    }
}
