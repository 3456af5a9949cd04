import Foundation
import Glibc
import IPC
import Synchronization
import TestSupport
import Testing

@testable import Supervisor

/// Gateway sessions that outlive workers, against a `discord-sandbox` of the test's own in
/// `discord` mode (the sandbox outlives the workers, as Discord does): a new worker resumes its
/// predecessor's session, Discord replays what the bot had not committed, and every message is
/// counted exactly once.
@Suite(.serialized) struct SessionTests {
    typealias Bot = FeatureTests.Bot

    /// A bot in `discord` mode against `server`, connected, with verification set up; `deployRoot`
    /// is its installation (releases/v1 current), for deploys and rollbacks.
    func bot(_ server: SandboxServer, deployRoot: String? = nil) async throws -> Bot {
        var config: [String: Any] = ["discord": ["mode": "discord", "apiBaseURL": server.apiBaseURL, "gatewayURL": server.gatewayURL]]
        if let deployRoot {
            config["deploy"] = ["root": deployRoot, "probationSeconds": 2, "readyTimeoutSeconds": 15, "rehearsalSeconds": 1]
        }
        let harness = try SupervisorHarness(config: config)
        try harness.start(environment: ["DISCORD_TOKEN": "sandbox-token"])
        try harness.waitForStatus(timeout: .seconds(30), "the worker ready and connected") {
            $0.worker.state == .ready && $0.worker.discord?.gatewayState == "connected" && $0.worker.discord?.guilds == 1
        }
        let bot = try await Bot(harness: harness, sandbox: server.control)
        let setup = try await bot.command("verification", [Bot.sub("setup", [
            Bot.option("channel", 7, .string(bot.channels["verify"]!)),
            Bot.option("verified_role", 8, .string(bot.roles["Verified"]!)),
            Bot.option("unverified_role", 8, .string(bot.roles["Unverified"]!)),
        ])])
        #expect(setup["content"]?.stringValue?.contains("Verification is set up") == true)
        return bot
    }

    /// Messages (and, with `joins`, a new member now and then) flowing into the guild until
    /// stopped; what the sandbox says it delivered to a session.
    final class Traffic: @unchecked Sendable {
        let sent = Mutex(0)
        let joined = Mutex<[String]>([])
        private let stop = Mutex(false)
        private var task: Task<Void, Never>?

        init(_ sandbox: SandboxClient, joins: Bool) {
            task = Task { [self] in
                var round = 0
                while !self.stop.withLock({ $0 }) {
                    round += 1
                    if let answer = try? await sandbox.post("/sandbox/flood", .object(["count": .integer(40), "perSecond": .integer(400)])),
                       (answer["sessions"]?.intValue ?? 0) > 0 {
                        self.sent.withLock { $0 += answer["sent"]?.intValue ?? 0 }
                    }
                    if joins, round % 3 == 0,
                       let member = try? await sandbox.post("/sandbox/join", .object(["count": .integer(1), "accountAgeDays": .number(400)]))["members"]?.arrayValue.first?["user"]?["id"]?.stringValue {
                        self.joined.withLock { $0.append(member) }
                    }
                }
            }
        }

        func finish() async {
            stop.withLock { $0 = true }
            await task?.value
        }
    }

    /// The messages the database counted, once the worker has committed everything it received.
    func counted(_ bot: Bot, expecting sent: Int) throws -> Int {
        var last = -1
        // A shortfall is the test's finding, not an error: the caller's expectation shows both counts.
        try? waitUntil(timeout: .seconds(30), "every delivered message counted (\(sent))") {
            last = Int((try? bot.harness.sqlite("SELECT COALESCE(SUM(messages), 0) FROM xp_members")) ?? "") ?? -1
            if last < sent { usleep(50_000) }
            return last >= sent
        }
        // Nothing more arrives: what is counted now is final.
        let stable = Int(try bot.harness.sqlite("SELECT COALESCE(SUM(messages), 0) FROM xp_members")) ?? -1
        return max(last, stable)
    }

    func readyAgain(_ harness: SupervisorHarness, other pid: Int32?) throws -> StatusSnapshot {
        try harness.waitForStatus(timeout: .seconds(30), "a new worker ready and connected") {
            $0.worker.state == .ready && $0.worker.pid != pid && $0.worker.discord?.gatewayState == "connected"
        }
    }

    @Test func killsARestartADeployARollbackAndARestoreHandleEveryMessageExactlyOnce() async throws {
        let server = try SandboxServer(arguments: [])
        var template = Array("/tmp/bdXXXXXX".utf8CString)
        let root = String(cString: try #require(mkdtemp(&template)))
        defer { try? FileManager.default.removeItem(atPath: root) }
        try DeployTests.Installation.release(at: root + "/releases/v1", version: "v1")
        try DeployTests.Installation.release(at: root + "/releases/v2", version: "v2")
        try FileManager.default.createSymbolicLink(atPath: root + "/current", withDestinationPath: root + "/releases/v1")
        let bot = try await bot(server, deployRoot: root)
        let harness = bot.harness
        let traffic = Traffic(bot.sandbox, joins: true)
        var resumedWorkers = 0
        for round in 0..<5 {
            try await Task.sleep(for: .milliseconds(300 + 250 * round))  // the moment of the kill, varied
            let pid = try #require(try harness.status().worker.pid)
            kill(pid, SIGKILL)
            _ = try readyAgain(harness, other: pid)
            resumedWorkers += 1
        }
        let before = try harness.status().worker.pid
        let restart = try SupervisorHarness.cli(["restart-worker", "--config", harness.configPath])
        #expect(restart.status == 0, "\(restart.stdout) \(restart.stderr)")
        _ = try readyAgain(harness, other: before)
        // A deploy: the old worker stops reading before the new release's worker resumes.
        let deploying = try harness.status().worker.pid
        let deploy = try SupervisorHarness.cli(["deploy", root + "/releases/v2", "--socket", harness.statusSocket])
        #expect(deploy.status == 0, "\(deploy.stderr)")
        _ = try readyAgain(harness, other: deploying)
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: root + "/current"))?.hasSuffix("v2") == true)
        let rollingBack = try harness.status().worker.pid
        let rollback = try SupervisorHarness.cli(["rollback", "--socket", harness.statusSocket])
        #expect(rollback.status == 0, "\(rollback.stderr)")
        _ = try readyAgain(harness, other: rollingBack)
        let restoring = try harness.status().worker.pid
        let restore = try SupervisorHarness.cli(["restore", "--yes", "--config", harness.configPath])
        #expect(restore.status == 0, "\(restore.stderr)")
        _ = try readyAgain(harness, other: restoring)
        await traffic.finish()

        let sent = traffic.sent.withLock { $0 }
        #expect(sent > 0)
        #expect(try counted(bot, expecting: sent) == sent, "every message delivered counted once")
        let status = try harness.status()
        let sessions = try #require(status.worker.sessions)
        // One Identify, by the first worker; every later one (five after kills, a restart, a
        // deploy, a rollback, a restore) resumed its predecessor's session.
        #expect(sessions.identifies == 1 && sessions.resumes >= resumedWorkers + 4 && sessions.reconciliations == 0, "\(sessions)")
        #expect(sessions.eventsReplayed > 0, "\(sessions)")
        let state = try await bot.sandbox.get("/sandbox/state")
        #expect(state["gateway"]?["identifies"]?.intValue == 1, "\(String(describing: state["gateway"]))")
        for member in traffic.joined.withLock({ $0 }) {
            try await bot.waitForRoles(member, "the unverified role for \(member)") { $0.contains(bot.roles["Unverified"]!) }
        }
        #expect(try harness.terminate() == 0)
    }

    @Test func aReplayedEventAlreadyCommittedIsSkippedAndCounted() async throws {
        let server = try SandboxServer(arguments: [])
        let bot = try await bot(server)
        let harness = bot.harness
        let flood = try await bot.sandbox.post("/sandbox/flood", .object(["count": .integer(200)]))
        let sent = flood["sent"]?.intValue ?? 0
        #expect(try counted(bot, expecting: sent) == sent)
        // The next resume replays 50 events from before the sequence the worker resumes at.
        _ = try await bot.sandbox.post("/sandbox/gateway/replay-overlap", .object(["count": .integer(50)]))
        let pid = try #require(try harness.status().worker.pid)
        kill(pid, SIGKILL)
        let status = try harness.waitForStatus(timeout: .seconds(30), "the replayed duplicates skipped") {
            $0.worker.pid != pid && ($0.worker.sessions?.duplicatesSkipped ?? 0) >= 50
        }
        #expect(status.worker.sessions?.duplicatesSkipped == 50, "\(String(describing: status.worker.sessions))")
        #expect(try counted(bot, expecting: sent) == sent, "no message counted twice")
        #expect(try harness.terminate() == 0)
    }

    @Test func aRestoreToThePastDropsTheSessionAndTheWorkerIdentifiesAndReconciles() async throws {
        let server = try SandboxServer(arguments: [])
        let bot = try await bot(server)
        let harness = bot.harness
        let first = try await bot.sandbox.post("/sandbox/flood", .object(["count": .integer(50)]))
        #expect(try counted(bot, expecting: first["sent"]?.intValue ?? 0) == 50)
        // The moment to go back to: the first 50 messages are committed, the next 50 not sent yet.
        let past = Timestamp.string(Date())
        let second = try await bot.sandbox.post("/sandbox/flood", .object(["count": .integer(50)]))
        #expect(try counted(bot, expecting: 50 + (second["sent"]?.intValue ?? 0)) == 100)
        let pid = try harness.status().worker.pid
        let restore = try SupervisorHarness.cli(["restore", "--at", past, "--yes", "--config", harness.configPath])
        #expect(restore.status == 0, "\(restore.stdout) \(restore.stderr)")
        // The session position of the past would make Discord replay the wrong events: dropped.
        let status = try harness.waitForStatus(timeout: .seconds(30), "a new session and a reconciliation") {
            $0.worker.pid != pid && ($0.worker.sessions?.reconciliations ?? 0) >= 1
        }
        #expect(status.worker.sessions?.lastReconciliation?.contains("restored") == true, "\(String(describing: status.worker.sessions))")
        let state = try await bot.sandbox.get("/sandbox/state")
        #expect(state["gateway"]?["identifies"]?.intValue == 2, "\(String(describing: state["gateway"]))")
        #expect(Int(try harness.sqlite("SELECT COALESCE(SUM(messages), 0) FROM xp_members")) == 50)
        #expect(try harness.terminate() == 0)
    }

    @Test func anExpiredSessionIsReconciled() async throws {
        // Sessions expire a second after their connection drops.
        let server = try SandboxServer(arguments: ["--session-expiry-seconds", "1"])
        let bot = try await bot(server)
        let harness = bot.harness
        #expect(try harness.terminate() == 0)
        // Members join while no worker runs and the session expires.
        var joined: [String] = []
        for _ in 0..<3 {
            joined.append(try await bot.join(accountAgeDays: 400))
        }
        try await waitUntilAsync(timeout: .seconds(10), "the stopped worker's session expired") {
            (try? await bot.sandbox.get("/sandbox/state"))?["gateway"]?["resumableSessions"]?.intValue == 0
        }
        try harness.start(environment: ["DISCORD_TOKEN": "sandbox-token"])
        let status = try harness.waitForStatus(timeout: .seconds(30), "a reconciliation") { ($0.worker.sessions?.reconciliations ?? 0) >= 1 }
        let sessions = try #require(status.worker.sessions)
        #expect(sessions.lastReconciliation?.contains("events may have been missed") == true && sessions.lastReconciliation?.contains("3 joined in the gap") == true, "\(sessions)")
        #expect(status.alerts.contains { $0.message.contains("events may have been missed") }, "\(status.alerts)")
        for member in joined {
            try await bot.waitForRoles(member, "the unverified role for \(member), who joined in the gap") { $0.contains(bot.roles["Unverified"]!) }
        }
        #expect(try harness.terminate() == 0)
    }
}
