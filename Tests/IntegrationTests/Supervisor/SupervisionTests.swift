import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// The supervisor keeps the worker alive: real processes, real signals, real sockets.
@Suite(.serialized) struct SupervisionTests {
    @Test func readyIsNotifiedOnceTheWorkerIsReady() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let status = try harness.status()
        #expect(status.worker.state == .ready)
        #expect(status.worker.pid != nil)
        #expect(status.worker.restarts == 0)
        #expect(status.supervisor.pid == harness.process?.processIdentifier)
        #expect(status.database?.path == harness.dataDir + "/bot.sqlite")
        #expect(status.backups != nil)  // the first backup is taken right after the first ready
        let notifications = harness.allNotifications
        #expect(notifications.contains { $0.hasPrefix("STATUS=worker ready (pid \(status.worker.pid!))") })
        #expect(try harness.terminate() == 0)
    }

    @Test func theWatchdogIsPingedAtHalfItsInterval() throws {
        let harness = try SupervisorHarness()
        // As systemd would set it for WatchdogSec=0.6s (no WATCHDOG_PID: accepted by sd_watchdog_enabled).
        try harness.start(environment: ["WATCHDOG_USEC": "600000"])
        let seen = harness.allNotifications.count
        try waitUntil(timeout: .seconds(10), "four WATCHDOG=1 pings") {
            harness.allNotifications.dropFirst(seen).filter { $0 == "WATCHDOG=1" }.count >= 4
        }
        // The worker must not inherit the watchdog: it is the supervisor's alone.
        let worker = try #require(try harness.waitForStatus(timeout: .seconds(10), "ready") { $0.worker.state == .ready }.worker.pid)
        let environment = try String(contentsOfFile: "/proc/\(worker)/environ", encoding: .utf8)
        #expect(!environment.contains("WATCHDOG_USEC") && !environment.contains("NOTIFY_SOCKET"))
        #expect(try harness.terminate() == 0)
    }

    @Test func aStalledNotifySocketNeverStallsTheSupervisor() throws {
        // Nobody reads NOTIFY_SOCKET: its queue (10 datagrams) fills up after a few changes.
        let harness = try SupervisorHarness(drainNotify: false)
        try harness.start()
        try harness.waitForStatus(timeout: .seconds(20), "ready") { $0.worker.state == .ready }
        for _ in 0..<6 {
            #expect(try SupervisorHarness.cli(["restart-worker", "--socket", harness.statusSocket]).status == 0)
        }
        #expect(try harness.status().worker.restarts == 6)
        #expect(try harness.terminate(timeout: .seconds(10)) == 0)
    }

    @Test func aKilledWorkerIsReplacedAtOnce() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let old = try #require(try harness.status().worker.pid)
        kill(old, SIGKILL)
        let status = try harness.waitForStatus(timeout: .seconds(10), "a new ready worker") {
            $0.worker.state == .ready && $0.worker.pid != old && $0.worker.pid != nil
        }
        #expect(status.worker.restarts == 1)
        #expect(status.worker.lastExit?.signal == SIGKILL)
        #expect(status.worker.lastExit?.reason == "killed by signal 9 (SIGKILL)")
        #expect(try harness.terminate() == 0)
    }

    @Test func aStoppedWorkerIsReplacedAfterTheHeartbeatTimeout() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let old = try #require(try harness.status().worker.pid)
        let stoppedAt = ContinuousClock.now
        kill(old, SIGSTOP)
        // Timeout 1.5 s, then SIGTERM (+SIGCONT), SIGKILL after the 1 s grace at worst.
        let status = try harness.waitForStatus(timeout: .seconds(10), "a replacement for the stopped worker") {
            $0.worker.state == .ready && $0.worker.pid != old && $0.worker.pid != nil
        }
        let elapsed = ContinuousClock.now - stoppedAt
        #expect(elapsed >= .milliseconds(1400))
        #expect(elapsed < .seconds(8))
        #expect(status.worker.restarts == 1)
        #expect(status.worker.lastExit?.reason.hasPrefix("hung: no heartbeat") == true)
        #expect(status.alerts.contains { $0.message.contains("pid \(old) is hung") })
        try waitUntil(timeout: .seconds(5), "the hung worker's end") { !processIsAlive(old) }
        #expect(try harness.terminate() == 0)
    }

    @Test func aCrashingWorkerReachesCrashLoopWithGrowingDelays() throws {
        let harness = try SupervisorHarness()
        let crasher = try harness.script("crasher", "echo 'ERROR cannot start' >&2; exit 3")
        let config = try String(contentsOfFile: harness.configPath, encoding: .utf8)
            .replacingOccurrences(of: "\"worker\":{", with: "\"worker\":{\"executable\":\"\(crasher)\",")
        try config.write(toFile: harness.configPath, atomically: true, encoding: .utf8)
        try harness.start()
        let status = try harness.waitForStatus(timeout: .seconds(20), "crash-loop") { $0.worker.state == .crashLoop }
        #expect(status.alerts.contains { $0.severity == .critical && $0.message.contains("crash-looping") })
        #expect(status.worker.lastExit?.code == 3)
        #expect(harness.allNotifications.contains { $0.contains("STATUS=worker crash-loop") })

        let starts = harness.log("supervisor").filter { $0["message"] as? String == "worker started" }
            .compactMap { ($0["ts"] as? String).flatMap(Timestamp.date) }
        #expect(starts.count >= 6)
        let gaps = zip(starts.dropFirst(), starts).map { $0.timeIntervalSince($1) }
        // Configured: first restart at once, then 0.1 s doubling: 0, 0.1, 0.2, 0.4, 0.8 …
        let expected = [0.0, 0.1, 0.2, 0.4, 0.8]
        for (gap, minimum) in zip(gaps, expected) {
            #expect(gap >= minimum * 0.9, "gaps \(gaps)")
        }
        #expect(gaps.count >= 5 && gaps[4] > gaps[1], "gaps \(gaps)")
        #expect(try harness.terminate() == 0)
    }

    @Test func aFatalConfigurationExitIsFailedNotALoop() throws {
        let harness = try SupervisorHarness()
        let fatal = try harness.script("fatal", "echo 'CRITICAL Discord rejected the token' >&2; exit 78")
        let config = try String(contentsOfFile: harness.configPath, encoding: .utf8)
            .replacingOccurrences(of: "\"worker\":{", with: "\"worker\":{\"executable\":\"\(fatal)\",")
        try config.write(toFile: harness.configPath, atomically: true, encoding: .utf8)
        try harness.start()
        let status = try harness.waitForStatus(timeout: .seconds(10), "failed") { $0.worker.state == .failed }
        #expect(status.worker.restarts == 0)
        #expect(status.worker.lastExit?.code == 78)
        #expect(status.alerts.contains { $0.severity == .critical })
        // Still failed, never restarted, a few restart delays later.
        let later = ContinuousClock.now + .milliseconds(800)
        while ContinuousClock.now < later { usleep(50_000) }
        #expect(try harness.status().worker.restarts == 0)
        #expect(harness.log("supervisor").filter { $0["message"] as? String == "worker started" }.count == 1)
        #expect(try harness.terminate() == 0)
    }

    @Test func sigtermStopsEverythingAndLeavesNoProcess() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let worker = try #require(try harness.status().worker.pid)
        #expect(try harness.terminate() == 0)
        #expect(harness.allNotifications.contains { $0.contains("STOPPING=1") })
        try waitUntil(timeout: .seconds(5), "the worker's end") { !processIsAlive(worker) }
        #expect(!FileManager.default.fileExists(atPath: harness.statusSocket))
        #expect(!FileManager.default.fileExists(atPath: harness.workerSocket))
        #expect(harness.log("bot").contains { ($0["message"] as? String)?.contains("shutdown requested by the supervisor") == true })
    }

    @Test func aKilledSupervisorTakesItsWorkerWithIt() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let worker = try #require(try harness.status().worker.pid)
        kill(harness.process!.processIdentifier, SIGKILL)
        _ = try harness.waitForExit(timeout: .seconds(5))
        try waitUntil(timeout: .seconds(5), "the orphaned worker's end") { !processIsAlive(worker) }

        // The next supervisor replaces the stale sockets and starts cleanly.
        #expect(FileManager.default.fileExists(atPath: harness.statusSocket))
        try harness.startReady()
        #expect(try harness.status().worker.state == .ready)
        #expect(try harness.terminate() == 0)
    }

    @Test func restartWorkerIsGraceful() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let old = try #require(try harness.status().worker.pid)
        let result = try SupervisorHarness.cli(["restart-worker", "--socket", harness.statusSocket])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("pid \(old) →"))
        let status = try harness.status()
        #expect(status.worker.state == .ready && status.worker.pid != old)
        #expect(status.worker.lastExit?.code == 0)
        let audit = harness.log("audit")
        #expect(audit.contains { $0["command"] as? String == "restart-worker" && $0["outcome"] as? String == "done" && $0["uid"] as? String == "0" })
        #expect(try harness.terminate() == 0)
    }
}
