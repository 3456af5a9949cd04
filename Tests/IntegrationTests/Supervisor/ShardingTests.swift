import Foundation
import IPC
import TestSupport
import Testing

@testable import Supervisor

/// Gateway shards, end to end: the real supervisor and worker against a `discord-sandbox` that
/// serves many guilds over shards and enforces Discord's rules (2,500 guilds a shard, else 4011;
/// one identify per `shard % max_concurrency` every 5 s, else op 9).
@Suite(.serialized) struct ShardingTests {
    func start(_ server: SandboxServer, discord: [String: Any] = [:]) throws -> SupervisorHarness {
        var settings: [String: Any] = ["mode": "discord", "apiBaseURL": server.apiBaseURL, "gatewayURL": server.gatewayURL]
        settings.merge(discord) { $1 }
        let harness = try SupervisorHarness(config: ["discord": settings])
        try harness.start(environment: ["DISCORD_TOKEN": "sandbox-token"])
        return harness
    }

    /// Every shard connected and `guilds` guilds available across them.
    @discardableResult
    func allAvailable(_ harness: SupervisorHarness, shards: Int, guilds: Int, timeout: Duration = .seconds(60)) throws -> StatusSnapshot {
        try harness.waitForStatus(timeout: timeout, "\(shards) shards connected with \(guilds) guilds") { status in
            guard let discord = status.worker.discord else { return false }
            return discord.shards.count == shards && discord.shards.allSatisfy { $0.state == "connected" }
                && discord.shards.map(\.guilds).reduce(0, +) == guilds && discord.guilds == guilds
        }
    }

    /// The identifies the sandbox accepted or refused, oldest first.
    func identifies(_ server: SandboxServer) async throws -> [(at: Int, shard: Int, count: Int, accepted: Bool)] {
        let state = try await server.control.get("/sandbox/state")
        return (state["identifies"]?.arrayValue ?? []).compactMap { item in
            guard let at = item["at"]?.intValue, let shard = item["shard"]?.intValue, let count = item["count"]?.intValue,
                  case .bool(let accepted)? = item["accepted"] else { return nil }
            return (at, shard, count, accepted)
        }.sorted { $0.at < $1.at }
    }

    @Test func sixThousandGuildsOverAutoShardsAreAllAvailable() async throws {
        let server = try SandboxServer(arguments: ["--guilds", "6000", "--max-concurrency", "16", "--members", "5"])
        // `auto`: the worker runs the 3 shards GET /gateway/bot recommends for 6,000 guilds.
        let harness = try start(server)
        let status = try allAvailable(harness, shards: 3, guilds: 6000)
        let shards = try #require(status.worker.discord?.shards)
        #expect(shards.map(\.id) == [0, 1, 2])
        // Spread as Discord routes them: no shard holds much more than its third.
        #expect(shards.allSatisfy { (1800...2200).contains($0.guilds) }, "\(shards.map(\.guilds))")
        let made = try await identifies(server)
        #expect(made.filter(\.accepted).map(\.shard).sorted() == [0, 1, 2] && made.allSatisfy { $0.count == 3 }, "\(made)")
        let refused = made.filter { !$0.accepted }
        #expect(refused.isEmpty, "refused identifies: \(refused)")
        // Each shard's session is stored on its own, with its guilds.
        try waitUntil(timeout: .seconds(30), "a session row per shard") {
            (try? harness.sqlite("SELECT group_concat(shard_id || '/' || shard_count, ' ') FROM gateway_shards")) == "0/3 1/3 2/3"
        }
        // The operator sees them.
        let text = try SupervisorHarness.cli(["status", "--config", harness.configPath])
        #expect(text.stdout.contains("shard 2") && text.stdout.contains("connected"), "\(text.stdout)")
        let metrics = try SupervisorHarness.cli(["status", "--json", "--config", harness.configPath])
        #expect(metrics.stdout.contains("\"shards\""))
        #expect(try harness.terminate() == 0)
    }

    @Test func aShardingRequiredCloseIsFollowedByResharding() async throws {
        // 30 guilds, at most 20 a shard: one shard is refused with 4011.
        let server = try SandboxServer(arguments: ["--guilds", "30", "--guilds-per-shard-limit", "20", "--max-concurrency", "16", "--members", "5"])
        let harness = try start(server, discord: ["shards": 1])
        let status = try allAvailable(harness, shards: 2, guilds: 30)
        let pid = status.worker.pid
        #expect(status.worker.restarts == 0, "resharding is no worker restart")
        // Every guild reconciled, since events of the refused session may be missing.
        let reconciled = try harness.waitForStatus(timeout: .seconds(30), "the guilds reconciled") { ($0.worker.sessions?.reconciliations ?? 0) >= 30 }
        #expect(reconciled.worker.sessions?.lastReconciliation?.contains("resharded from 1 to 2") == true, "\(String(describing: reconciled.worker.sessions))")
        #expect(reconciled.worker.pid == pid)
        // Both written by the group commit after the events the status counted: waited for.
        try waitUntil(timeout: .seconds(30), "a session row per new shard and the reconcile flag cleared") {
            (try? harness.sqlite("SELECT group_concat(shard_id || '/' || shard_count, ' ') FROM gateway_shards")) == "0/2 1/2"
                && (try? harness.sqlite("SELECT COALESCE(reconcile, 'none') FROM gateway_session")) == "none"
        }
        let log = try String(contentsOfFile: harness.dataDir + "/logs/bot.log", encoding: .utf8)
        #expect(log.contains("Discord requires more shards"))
        #expect(try harness.terminate() == 0)
    }

    @Test func withMaxConcurrencyOneShardsIdentifyFiveSecondsApart() async throws {
        let server = try SandboxServer(arguments: ["--guilds", "40", "--max-concurrency", "1", "--members", "5"])
        let harness = try start(server, discord: ["shards": 3])
        try allAvailable(harness, shards: 3, guilds: 40, timeout: .seconds(60))
        let made = try await identifies(server)
        #expect(made.count == 3 && made.allSatisfy(\.accepted), "\(made)")
        let gaps = zip(made.dropFirst(), made).map { $0.at - $1.at }
        #expect(gaps.allSatisfy { $0 >= 5000 }, "gaps \(gaps) ms: Discord allows one identify per 5 s with max_concurrency 1")
        #expect(try harness.terminate() == 0)
    }

    @Test func withMaxConcurrencySixteenShardsIdentifyTogether() async throws {
        let server = try SandboxServer(arguments: ["--guilds", "40", "--max-concurrency", "16", "--members", "5"])
        let harness = try start(server, discord: ["shards": 4])
        try allAvailable(harness, shards: 4, guilds: 40)
        let made = try await identifies(server)
        #expect(made.count == 4 && made.allSatisfy(\.accepted), "\(made)")
        // Four keys of sixteen: no shard waits for another.
        let spread = (made.map(\.at).max() ?? 0) - (made.map(\.at).min() ?? 0)
        #expect(spread < 5000, "the identifies spread over \(spread) ms; with max_concurrency 16 they need not wait")
        #expect(try harness.terminate() == 0)
    }

    @Test func aDeadShardIsResumedAloneWhileTheOthersCarryOn() async throws {
        let server = try SandboxServer(arguments: ["--guilds", "20", "--max-concurrency", "16", "--members", "5"])
        let harness = try start(server, discord: ["shards": 2])
        try allAvailable(harness, shards: 2, guilds: 20)
        let first = try await server.control.post("/sandbox/flood", .object(["count": .integer(200), "guilds": .string("all")]))
        var sent = first["sent"]?.intValue ?? 0
        try waitUntil(timeout: .seconds(30), "the first messages counted") {
            (Int((try? harness.sqlite("SELECT COALESCE(SUM(messages), 0) FROM xp_members")) ?? "") ?? -1) >= sent
        }
        // Shard 1's connection drops (not its session); messages keep coming to both shards.
        _ = try await server.control.post("/sandbox/gateway/close", .object(["shard": .integer(1), "code": .integer(4000)]))
        let second = try await server.control.post("/sandbox/flood", .object(["count": .integer(200), "guilds": .string("all")]))
        sent += second["sent"]?.intValue ?? 0
        let status = try harness.waitForStatus(timeout: .seconds(30), "shard 1 resumed") { status in
            let shards = status.worker.discord?.shards ?? []
            return shards.count == 2 && shards.allSatisfy { $0.state == "connected" } && shards[1].resumes == 1
        }
        let shards = try #require(status.worker.discord?.shards)
        #expect(shards[0].resumes == 0 && shards[0].identifies == 1, "shard 0 was not touched: \(shards[0])")
        #expect(shards[1].identifies == 1, "shard 1 resumed its session, no new identify: \(shards[1])")
        #expect(try await identifies(server).count == 2)
        // Every message counted once: shard 1's were replayed on its resume, none twice.
        var counted = -1
        try? waitUntil(timeout: .seconds(30), "every message counted (\(sent))") {
            counted = Int((try? harness.sqlite("SELECT COALESCE(SUM(messages), 0) FROM xp_members")) ?? "") ?? -1
            return counted >= sent
        }
        #expect(counted == sent)
        #expect(try harness.terminate() == 0)
    }

    /// Guild command overwrites the sandbox received so far.
    func commandOverwrites(_ server: SandboxServer) async throws -> Int {
        let state = try await server.control.get("/sandbox/state")
        guard case .object(let routes)? = state["rest"]?["byRoute"] else { return 0 }
        return routes.filter { $0.key.hasPrefix("PUT") && $0.key.hasSuffix("/commands") }.values.compactMap(\.intValue).reduce(0, +)
    }

    @Test func aRestartedWorkerGivesNoGuildItsCommandsAgain() async throws {
        let server = try SandboxServer(arguments: ["--guilds", "12", "--max-concurrency", "16", "--members", "5"])
        let harness = try start(server, discord: ["shards": 2])
        try allAvailable(harness, shards: 2, guilds: 12)
        try await waitUntilAsync(timeout: .seconds(30), "every guild given its commands") { (try? await commandOverwrites(server)) == 12 }
        try waitUntil(timeout: .seconds(30), "every guild's commands recorded") {
            (try? harness.sqlite("SELECT count(*) FROM command_sync")) == "12"
        }
        let pid = try #require(try harness.status().worker.pid)
        kill(pid, SIGKILL)
        try harness.waitForStatus(timeout: .seconds(30), "a new worker with both shards resumed") { status in
            status.worker.pid != pid && status.worker.state == .ready && (status.worker.discord?.shards ?? []).filter { $0.state == "connected" && $0.resumes == 1 }.count == 2
        }
        // The new worker has had every guild's GUILD_CREATE state (by REST, resuming): still 12.
        let after = try await commandOverwrites(server)
        #expect(after == 12, "\(after) overwrites")
        #expect(try harness.terminate() == 0)
    }
}
