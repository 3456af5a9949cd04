import Foundation
import FoundationEssentials
import Glibc
import IPC
import Testing

@testable import Supervisor

@Suite struct HealthRulesTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func backupAgeIsCriticalAfter26Hours() {
        #expect(HealthRules.backupAge(newest: now.addingTimeInterval(-3600), now: now).status == .ok)
        #expect(HealthRules.backupAge(newest: now.addingTimeInterval(-25.5 * 3600), now: now).status == .warn)
        #expect(HealthRules.backupAge(newest: now.addingTimeInterval(-26.5 * 3600), now: now).status == .critical)
        #expect(HealthRules.backupAge(newest: nil, now: now).status == .critical)
        #expect(HealthRules.backupAge(newest: now.addingTimeInterval(-26.5 * 3600), now: now).detail.contains("26.5 h old"))
    }

    @Test func diskSpaceByShareAndBytes() {
        let tb: Int64 = 1 << 40
        #expect(HealthRules.disk(name: "d", path: "/", free: tb / 2, total: tb).status == .ok)
        #expect(HealthRules.disk(name: "d", path: "/", free: tb / 12, total: tb).status == .warn)
        #expect(HealthRules.disk(name: "d", path: "/", free: tb / 30, total: tb).status == .critical)
        // A small disk: 1 GB free of 4 is 25 % but under 2 GB.
        #expect(HealthRules.disk(name: "d", path: "/", free: 1 << 30, total: 4 << 30).status == .warn)
        #expect(HealthRules.disk(name: "d", path: "/", free: 100 << 20, total: 4 << 30).status == .critical)
        #expect(HealthRules.disk(name: "d", path: "/gone", free: nil, total: nil).status == .critical)
        #expect(HealthRules.disk(name: "d", path: "/", free: tb / 2, total: tb).detail.contains("512.0 GB free of 1024.0 GB"))
    }

    @Test func memoryAgainstItsLimits() {
        #expect(HealthRules.memory(worker: 100 << 20, supervisor: 40 << 20).status == .ok)
        #expect(HealthRules.memory(worker: 600 << 20, supervisor: 40 << 20).status == .warn)
        #expect(HealthRules.memory(worker: 100 << 20, supervisor: 2 << 30).status == .critical)
    }

    @Test func theWorkerMustBeReadyHeartbeatingAndConnected() {
        let connected = DiscordReport(mode: "discord", gatewayState: "connected", latencyMs: 40)
        let reconnecting = DiscordReport(mode: "discord", gatewayState: "waiting-to-reconnect", lastError: "timeout")
        #expect(HealthRules.worker(state: .ready, heartbeatAgeMs: 1000, heartbeatTimeoutMs: 15000, discord: connected).status == .ok)
        #expect(HealthRules.worker(state: .ready, heartbeatAgeMs: 9000, heartbeatTimeoutMs: 15000, discord: connected).status == .warn)
        #expect(HealthRules.worker(state: .ready, heartbeatAgeMs: 1000, heartbeatTimeoutMs: 15000, discord: reconnecting).detail.contains("timeout"))
        #expect(HealthRules.worker(state: .crashLoop, heartbeatAgeMs: nil, heartbeatTimeoutMs: 15000, discord: nil).status == .critical)
        #expect(HealthRules.worker(state: .failed, heartbeatAgeMs: nil, heartbeatTimeoutMs: 15000, discord: nil).status == .critical)
    }

    @Test func discordLimitsWarnBeforeTheBan() {
        var report = DiscordReport(mode: "discord", gatewayState: "connected", sessionStartRemaining: 900)
        #expect(HealthRules.discordLimits(report).status == .ok)
        report.restInvalidRequests = 1200
        #expect(HealthRules.discordLimits(report).status == .warn)
        report.restInvalidRequests = 6000
        #expect(HealthRules.discordLimits(report).status == .critical)
        report.restInvalidRequests = 0
        report.sessionStartRemaining = 50
        #expect(HealthRules.discordLimits(report).status == .warn)
        report.sessionStartRemaining = 5
        #expect(HealthRules.discordLimits(report).status == .critical)
    }

    @Test func commandsUnder95PercentAreAWarning() {
        #expect(HealthRules.commands(succeeded: 0, failed: 0).status == .ok)
        #expect(HealthRules.commands(succeeded: 95, failed: 5).status == .ok)
        #expect(HealthRules.commands(succeeded: 94, failed: 6).status == .warn)
    }

    @Test func errorsAndTheOverallStatus() {
        #expect(HealthRules.errorRate(errors: 3, window: .seconds(300), threshold: 10).status == .ok)
        #expect(HealthRules.errorRate(errors: 10, window: .seconds(300), threshold: 10).status == .warn)
        #expect(HealthRules.errorRate(errors: 50, window: .seconds(300), threshold: 10).status == .critical)
        let checks = [HealthStatus.Check(name: "a", status: .ok, detail: ""), .init(name: "b", status: .warn, detail: "")]
        #expect(HealthRules.overall(checks) == .warn)
        #expect(HealthRules.overall([]) == .ok)
    }
}

@Suite struct ErrorTrackerTests {
    final class Box: @unchecked Sendable {
        var repeats: [ErrorTracker.Repeat] = []
    }

    @Test func theSameErrorTenTimesIsOneAlertPerWindow() {
        let tracker = ErrorTracker(window: .seconds(300), threshold: 10)
        let box = Box()
        tracker.onRepeat { box.repeats.append($0) }
        let t0 = ContinuousClock.now
        for i in 0..<25 {
            tracker.record(system: "xp", message: "write failed", errorType: "busy", at: t0 + .seconds(i))
        }
        #expect(box.repeats.count == 1)
        #expect(box.repeats.first?.count == 10)
        #expect(box.repeats.first?.fingerprint == "xp | write failed | busy")
        // Another place is another fingerprint; the alert itself is never counted.
        for i in 0..<9 { tracker.record(system: "xp", message: "other", at: t0 + .seconds(i)) }
        for i in 0..<20 { tracker.record(system: "supervisor", message: "alert", at: t0 + .seconds(i)) }
        #expect(box.repeats.count == 1)
        #expect(tracker.count(at: t0 + .seconds(30)) == 34)
        // A window later, repeating again raises again.
        for i in 0..<10 { tracker.record(system: "xp", message: "write failed", errorType: "busy", at: t0 + .seconds(400 + i)) }
        #expect(box.repeats.count == 2)
        #expect(tracker.count(at: t0 + .seconds(1000)) == 0)
    }
}

@Suite struct ConcurrentLogWritersTests {
    @Test func twoWritersNeverInterleaveOrTearLines() async throws {
        var template = Array("/tmp/lwXXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        // Two independent writers of the same file, as two processes would be. On threads of their
        // own: seconds of blocking writes on the cooperative pool (one thread per core) would
        // starve the unit tests running in parallel with this one.
        let first = try LogFiles(directory: directory), second = try LogFiles(directory: directory)
        let long = String(repeating: "x", count: 3000)
        await withTaskGroup(of: Void.self) { group in
            for (index, files) in [first, second].enumerated() {
                group.addTask {
                    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                        Thread.detachNewThread {
                            for i in 0..<2000 { files.append("{\"writer\":\(index),\"i\":\(i),\"pad\":\"\(long)\"}\n", to: "bot") }
                            done.resume()
                        }
                    }
                }
            }
        }
        let lines = try String(contentsOfFile: directory + "/bot.log", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 4000)
        #expect(lines.allSatisfy { $0.hasPrefix("{\"writer\":") && $0.hasSuffix("\"}") && $0.count > 3000 })
    }
}
