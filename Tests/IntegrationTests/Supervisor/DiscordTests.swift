import Foundation
import GRDB
import Glibc
import IPC
import TestSupport
import Testing

/// The bot against the local Discord sandbox: real processes, real Gateway and REST over loopback.
@Suite(.serialized) struct DiscordTests {
    func connected(_ harness: SupervisorHarness) throws -> StatusSnapshot {
        try harness.waitForStatus(timeout: .seconds(30), "the gateway connected with its guild") {
            $0.worker.state == .ready && $0.worker.discord?.gatewayState == "connected" && $0.worker.discord?.guilds == 1
        }
    }

    func sandbox(_ status: StatusSnapshot) throws -> SandboxClient {
        SandboxClient(baseURL: try #require(status.worker.discord?.sandboxURL))
    }

    @Test func withoutATokenTheBotRunsAgainstTheSandboxAndReportsItsConnection() async throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let status = try connected(harness)
        let discord = try #require(status.worker.discord)
        #expect(discord.mode == "sandbox")
        #expect(discord.identifiesLast24h == 1)
        #expect(discord.sessionStartRemaining != nil && discord.sessionStartTotal == 1000)
        #expect(discord.restInvalidRequests == 0)
        #expect(status.worker.rssBytes ?? 0 > 0)
        // The start-up checks ran before ready and are kept in the snapshot.
        let startup = try #require(status.worker.startup)
        #expect(startup.ok)
        #expect(startup.checks.map(\.name) == ["tables", "database-write", "discord-settings", "features"])
        #expect(try harness.sqlite("SELECT COUNT(*) FROM sqlite_master WHERE name = 'startup_probe'") == "0")
        // The features' slash commands were registered in the guild (bulk overwrite).
        let state = try await sandbox(status).get("/sandbox/state")
        #expect(state["commands"]?.arrayValue.contains { $0["name"]?.stringValue == "rank" } == true)
        #expect(state["gateway"]?["identifies"]?.intValue == 1)
        // The human status shows it too.
        let human = try SupervisorHarness.cli(["status", "--socket", harness.statusSocket])
        #expect(human.stdout.contains("gateway") && human.stdout.contains("connected (sandbox)"))
        #expect(try harness.terminate() == 0)
    }

    @Test func messagesBecomeXPAndARankCommandIsAnswered() async throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let control = try sandbox(try connected(harness))
        let flood = try await control.post("/sandbox/flood", .object(["count": .integer(2000)]))
        #expect(flood["sent"]?.intValue == 2000)
        let status = try harness.waitForStatus(timeout: .seconds(30), "2000 writes committed") {
            ($0.worker.events?.writesCommitted ?? 0) >= 2000
        }
        #expect(status.worker.events?.failed == 0)
        #expect(status.worker.events?.writeLatencyP99Ms != nil)
        // Every message is in the database: counted by the XP feature.
        let messages = try harness.sqlite("SELECT SUM(messages) FROM xp_members")
        #expect(messages == "2000")

        // A member asks for their rank: the interaction is answered within Discord's 3 s.
        let author = try harness.sqlite("SELECT user_id FROM xp_members ORDER BY xp DESC LIMIT 1")
        let interaction = try await control.post("/sandbox/interaction", .object([
            "user": .string(author), "kind": .string("command"), "name": .string("rank"),
        ]))
        let id = try #require(interaction["id"]?.stringValue)
        var answer: JSONValue = .null
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            answer = try await control.get("/sandbox/interactions/\(id)")
            if !(answer["responses"]?.arrayValue.isEmpty ?? true) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let response = try #require(answer["responses"]?.arrayValue.first)
        #expect(response["type"]?.intValue == 4)
        #expect(response["data"]?["content"]?.stringValue?.contains("level") == true)
        let after = try harness.waitForStatus(timeout: .seconds(10), "the command counted") { ($0.worker.events?.commandsSucceeded ?? 0) >= 1 }
        #expect(after.worker.events?.commandsFailed == 0)
        #expect(try harness.terminate() == 0)
    }

    @Test func aRejectedTokenFailsTheWorkerForGoodWithAClearMessage() async throws {
        let server = try SandboxServer(arguments: ["--token", "the-right-token"])
        let harness = try SupervisorHarness(config: [
            "discord": ["mode": "discord", "apiBaseURL": server.apiBaseURL, "gatewayURL": server.gatewayURL],
        ])
        try harness.start(environment: ["DISCORD_TOKEN": "a-wrong-token-4f2a9"])
        let status = try harness.waitForStatus(timeout: .seconds(30), "worker failed") { $0.worker.state == .failed }
        #expect(status.worker.detail?.contains("token") == true)
        #expect(status.worker.lastExit?.code == 78)
        #expect(status.worker.restarts == 0)
        // Still failed a little later: no restart loop against a bad token.
        try await Task.sleep(for: .milliseconds(800))
        #expect(try harness.status().worker.state == .failed)
        // The token is in no log and no status.
        let logs = try FileManager.default.contentsOfDirectory(atPath: harness.logsDir)
        for file in logs {
            let text = try String(contentsOfFile: harness.logsDir + "/" + file, encoding: .utf8)
            #expect(!text.contains("a-wrong-token-4f2a9"), "\(file) shows the token")
        }
        let json = try SupervisorHarness.cli(["status", "--json", "--socket", harness.statusSocket])
        #expect(!json.stdout.contains("a-wrong-token-4f2a9"))
        #expect(try harness.terminate() == 0)
    }

    @Test func refusedPrivilegedIntentsFailTheWorkerNamingThePortalSetting() async throws {
        // GUILD_MEMBERS (1 << 1) not enabled for this application.
        let server = try SandboxServer(arguments: ["--token", "token-4014", "--disallowed-intents", "2"])
        let harness = try SupervisorHarness(config: [
            "discord": ["mode": "discord", "apiBaseURL": server.apiBaseURL, "gatewayURL": server.gatewayURL],
        ])
        try harness.start(environment: ["DISCORD_TOKEN": "token-4014"])
        let status = try harness.waitForStatus(timeout: .seconds(30), "worker failed") { $0.worker.state == .failed }
        #expect(status.worker.detail?.contains("4014") == true)
        #expect(status.worker.detail?.contains("Developer Portal") == true)
        #expect(status.worker.lastExit?.code == 78)
        #expect(try harness.terminate() == 0)
    }

    @Test func theTokenReachesTheWorkerOnlyThroughItsSocket() async throws {
        let server = try SandboxServer(arguments: ["--token", "token-env-check-77"])
        let harness = try SupervisorHarness(config: [
            "discord": ["mode": "discord", "apiBaseURL": server.apiBaseURL, "gatewayURL": server.gatewayURL],
        ])
        try harness.start(environment: ["DISCORD_TOKEN": "token-env-check-77"])
        let status = try connected(harness)
        #expect(status.worker.discord?.mode == "discord")
        let pid = try #require(status.worker.pid)
        let environment = try String(contentsOfFile: "/proc/\(pid)/environ", encoding: .utf8)
        let arguments = try String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)
        #expect(!environment.contains("token-env-check-77") && !arguments.contains("token-env-check-77"))
        #expect(try harness.terminate() == 0)
    }

    @Test func aGatewayDropIsResumedWithoutANewIdentify() async throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let control = try sandbox(try connected(harness))
        try await control.post("/sandbox/gateway/close", .object(["code": .null]))
        try await waitUntilAsync(timeout: .seconds(30), "a resume") {
            (try? await control.get("/sandbox/state"))?["gateway"]?["resumes"]?.intValue ?? 0 >= 1
        }
        let state = try await control.get("/sandbox/state")
        #expect(state["gateway"]?["identifies"]?.intValue == 1)
        _ = try connected(harness)
        #expect(try harness.terminate() == 0)
    }

    @Test func theSandboxDiesWithTheWorker() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let status = try connected(harness)
        let worker = try #require(status.worker.pid)
        let sandboxPid = try #require(processes(named: "discord-sandbox").first { commandLine(of: $0).contains("--exit-on-stdin-eof") && parent(of: $0) == worker })
        kill(worker, SIGKILL)
        try waitUntil(timeout: .seconds(10), "the old sandbox gone") { !processIsAlive(sandboxPid) }
        try harness.waitForStatus(timeout: .seconds(30), "a new worker with a new sandbox") {
            $0.worker.pid != worker && $0.worker.pid != nil && $0.worker.discord?.gatewayState == "connected"
        }
        #expect(try harness.terminate() == 0)
    }
}

func waitUntilAsync(timeout: Duration, _ what: String, _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw SupervisorHarness.Timeout(description: "timed out waiting for \(what)")
}

func processes(named name: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).filter { pid in
        ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines) == name
    }
}

func commandLine(of pid: Int32) -> String {
    ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "").replacingOccurrences(of: "\0", with: " ")
}

func parent(of pid: Int32) -> Int32? {
    let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
    guard let close = stat.lastIndex(of: ")") else { return nil }
    return stat[stat.index(after: close)...].split(separator: " ").dropFirst(1).first.flatMap { Int32($0) }
}

extension SupervisorHarness {
    /// One value from the live database, read through a read-only connection (never a writer or
    /// a checkpointer: only the worker may be one).
    func sqlite(_ sql: String) throws -> String {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: dataDir + "/bot.sqlite", configuration: configuration)
        let value = try queue.read { db in try DatabaseValue.fetchOne(db, sql: sql) }
        switch value?.storage {
        case .int64(let number): return "\(number)"
        case .double(let number): return "\(number)"
        case .string(let text): return text
        default: return ""
        }
    }
}
