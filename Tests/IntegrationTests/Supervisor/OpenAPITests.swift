import Foundation
import Glibc
import IPC
import Logging
import TestSupport
import Testing

@testable import BotWorker

/// The bot and the sandbox checked against Discord's own OpenAPI description of REST v10
/// (`../shared/discord/openapi.json` beside the checkout), so that the two cannot agree with each
/// other and both be wrong about Discord: the real binaries run the features, the sandbox records
/// every exchange it serves, and `Tests/OpenAPI/check-exchanges` validates each request body the
/// bot sent and each response body and status the sandbox gave.
@Suite(.serialized) struct OpenAPITests {
    typealias Bot = FeatureTests.Bot

    static let token = "openapi-token-5c1e"

    @Test func everyExchangeBetweenTheBotAndTheSandboxFitsDiscordsDescription() async throws {
        let description = try OpenAPIDescription.require()
        let python = try OpenAPIDescription.requirePython()
        // A sandbox of the test's own, in `discord` mode: it outlives a worker (the resume path
        // reads the guild over REST), and the supervisor's alerts go to one of its webhooks.
        let server = try SandboxServer(arguments: ["--token", Self.token])
        let harness = try SupervisorHarness(config: [
            "discord": ["mode": "discord", "apiBaseURL": server.apiBaseURL, "gatewayURL": server.gatewayURL],
            "alerts": ["webhookURL": server.apiBaseURL + "/webhooks/4242/alert-webhook-token"],
        ])
        try harness.start(environment: ["DISCORD_TOKEN": Self.token])
        try harness.waitForStatus(timeout: .seconds(30), "the worker ready and connected") {
            $0.worker.state == .ready && $0.worker.discord?.gatewayState == "connected" && $0.worker.discord?.guilds == 1
        }
        let bot = try await Bot(harness: harness, sandbox: server.control)
        try await driveEveryFeature(bot)
        try await resumeAfterAHang(bot)
        let followUp = try await followUpOnASandboxOfItsOwn()
        #expect(try harness.terminate() == 0)

        let exchanges = try await server.control.get("/sandbox/rest/exchanges")["exchanges"]?.arrayValue ?? []
        let all = exchanges + followUp
        // Every route the bot calls was exercised (the supervisor's alert webhook stands in for
        // `executeWebhook`, which no feature calls).
        let served = Set(all.compactMap { exchange in
            exchange["method"]?.stringValue.flatMap { method in exchange["route"]?.stringValue.map { "\(method) \(OpenAPIDescription.shape($0))" } }
        })
        for endpoint in DiscordREST.Endpoint.allCases {
            #expect(served.contains("\(endpoint.method) \(OpenAPIDescription.shape(endpoint.template))"), "\(endpoint) was not exercised; served: \(served.sorted())")
        }
        // No token in what the sandbox recorded.
        let recorded = try JSONLine.encode(JSONValue.array(all))
        #expect(!recorded.contains(Self.token) && !recorded.contains("alert-webhook-token"))

        // Kept when there are problems, to run check-exchanges on again.
        let directory = try makeTemporaryDirectory("openapi")
        let result = try OpenAPIDescription.check(.array(all), description: description, python: python, in: directory)
        #expect(result.status == 0, "check-exchanges found problems (exchanges in \(directory)/exchanges.json):\n\(result.output)")
        if result.status == 0 { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// Commands of every feature, a join, a button press, messages and a level-up: every route
    /// the features call.
    private func driveEveryFeature(_ bot: Bot) async throws {
        let setup = try await bot.command("verification", [Bot.sub("setup", [
            Bot.option("channel", 7, .string(bot.channels["verify"] ?? "")),
            Bot.option("verified_role", 8, .string(bot.roles["Verified"] ?? "")),
            Bot.option("unverified_role", 8, .string(bot.roles["Unverified"] ?? "")),
        ])])
        #expect(setup["content"]?.stringValue?.contains("Verification is set up") == true)
        _ = try await bot.command("levels", [Bot.sub("config", [
            Bot.option("min_xp", 4, .integer(120)), Bot.option("max_xp", 4, .integer(120)), Bot.option("cooldown_seconds", 4, .integer(0)),
            Bot.option("announce_channel", 7, .string(bot.channels["levels"] ?? "")),
        ])])
        _ = try await bot.command("levels", [.object(["name": .string("reward"), "type": .integer(2), "options": .array([
            Bot.sub("add", [Bot.option("level", 4, .integer(1)), Bot.option("role", 8, .string(bot.roles["Regular"] ?? ""))]),
        ])])])
        // Adding a rule sweeps the member list (GET /guilds/{guild}/members).
        let rule = try await bot.command("roleconnection", [Bot.sub("add", [
            Bot.option("role", 8, .string(bot.roles["Member"] ?? "")), Bot.option("min_level", 4, .integer(1)),
        ])])
        #expect(rule["content"]?.stringValue?.contains("added") == true)

        // A join (the unverified role), a press (roles swapped), a message (a level-up: the
        // announcement, the reward, the rule's role).
        let member = try await bot.join(accountAgeDays: 400)
        try await bot.waitForRoles(member, "the unverified role") { $0.contains(bot.roles["Unverified"] ?? "-") }
        let verified = try await bot.press("verification:verify", as: member)
        #expect(verified["content"]?.stringValue == "You are verified. Welcome!")
        try await bot.sandbox.post("/sandbox/message", .object(["user": .string(member), "content": .string("hello")]))
        try await bot.waitForRoles(member, "the level reward and the rule's role") {
            $0.contains(bot.roles["Regular"] ?? "-") && $0.contains(bot.roles["Member"] ?? "-")
        }
        // GET /guilds/{guild}/members/{user}.
        let test = try await bot.command("roleconnection", [Bot.sub("test", [Bot.option("member", 6, .string(member))])])
        #expect(test["content"]?.stringValue?.contains("#1") == true)
        _ = try await bot.command("rank", as: member, [])
        _ = try await bot.command("xp", [Bot.sub("remove", [Bot.option("member", 6, .string(member)), Bot.option("amount", 4, .integer(100))])])
        // A file in an answer (multipart/form-data), and the sync's report in its edited answer
        // (PATCH /webhooks/{application}/{token}/messages/@original).
        let exported = try await bot.command("levels", [Bot.sub("export", [])])
        #expect(exported["attachments"]?.arrayValue.count == 1)
        let sync = try await bot.sandbox.post("/sandbox/interaction", .object([
            "user": .string(bot.owner), "kind": .string("command"), "name": .string("levels"), "options": .array([Bot.sub("sync", [])]),
        ]))
        let id = try #require(sync["id"]?.stringValue)
        try await waitUntilAsync(timeout: .seconds(30), "the sync's report") {
            let record = (try? await bot.sandbox.get("/sandbox/interactions/\(id)")) ?? .null
            return record["followUps"]?.arrayValue.last?["body"]?["content"]?.stringValue?.hasPrefix("Reward roles synced") == true
        }
    }

    /// A hung worker (stopped: no heartbeats) is replaced, with an alert that goes to the webhook;
    /// its successor resumes the session and reads the guild over REST (GET /guilds/{guild}).
    private func resumeAfterAHang(_ bot: Bot) async throws {
        let pid = try #require(try bot.harness.status().worker.pid)
        kill(pid, SIGSTOP)
        try bot.harness.waitForStatus(timeout: .seconds(30), "a new worker ready and connected") {
            $0.worker.state == .ready && $0.worker.pid != pid && $0.worker.discord?.gatewayState == "connected"
        }
        for (method, route) in [("GET", "/guilds/{guild}"), ("POST", "/webhooks/{webhook}/{token}")] {
            var served: Set<String> = []
            do {
                try await waitUntilAsync(timeout: .seconds(15), "\(method) \(route) after the hang") {
                    let exchanges = (try? await bot.sandbox.get("/sandbox/rest/exchanges")["exchanges"]?.arrayValue) ?? []
                    served = Set(exchanges.map { "\($0["method"]?.stringValue ?? "") \($0["route"]?.stringValue ?? "")" })
                    return served.contains("\(method) \(route)")
                }
            } catch {
                throw TestFailure(description: "\(error); the sandbox served \(served.sorted())")
            }
        }
    }

    /// A deferred answer and its follow-up (POST /webhooks/{application}/{token}), from the bot's
    /// `CommandRouter` and `DiscordREST` on a sandbox no worker listens to: a handler slower than
    /// `deferAfter` (2 s in the worker, 100 ms here). Then the sandbox's error answers: 404, 429.
    private func followUpOnASandboxOfItsOwn() async throws -> [JSONValue] {
        let server = try SandboxServer(arguments: ["--token", Self.token])
        let control = server.control
        let state = try await control.get("/sandbox/state")
        let owner = try #require(state["guild"]?["owner_id"]?.stringValue)
        let created = try await control.post("/sandbox/interaction", .object([
            "user": .string(owner), "kind": .string("command"), "name": .string("slow"),
        ]))
        let id = try #require(created["id"]?.stringValue), token = try #require(created["token"]?.stringValue)
        let rest = DiscordREST(baseURL: server.apiBaseURL, token: Secret(Self.token), logger: Logger(label: "rest"))
        let router = CommandRouter(logger: Logger(label: "bot"), audit: Logger(label: "audit"), deferAfter: .milliseconds(100))
        await router.attach(rest)
        await router.register(command: .object(["name": .string("slow"), "description": .string("A slow command")]), feature: "test") { _ in
            // Slow until the sandbox has the deferred answer (ordered by it, not by a sleep).
            try await waitUntilAsync(timeout: .seconds(10), "the deferred answer") {
                !((try? await control.get("/sandbox/interactions/\(id)"))?["responses"]?.arrayValue.isEmpty ?? true)
            }
            return .ephemeral("Done, slowly.")
        }
        await router.handle(.object([
            "id": .string(id), "token": .string(token), "type": .integer(2),
            "application_id": server.listening["applicationID"] ?? .null, "guild_id": server.listening["guildID"] ?? .null,
            "channel_id": .string(""), "member": .object(["user": .object(["id": .string(owner)]), "roles": .array([]), "permissions": .string("0")]),
            "data": .object(["name": .string("slow")]),
        ]))
        // The sandbox's refusals: an unknown member (404), and a rate-limit storm (429).
        let guild = try #require(server.listening["guildID"]?.stringValue.flatMap(GuildID.init))
        await #expect(throws: DiscordREST.Failure.self) { try await rest.member(guild: guild, user: UserID(1)) }
        try await control.post("/sandbox/rest/storm", .object(["seconds": .number(0.3)]))
        _ = try? await rest.member(guild: guild, user: try #require(UserID(owner)))

        let exchanges = try await control.get("/sandbox/rest/exchanges")["exchanges"]?.arrayValue ?? []
        #expect(exchanges.contains { $0["route"] == .string("/webhooks/{webhook}/{token}") && $0["status"] == .integer(200) }, "\(exchanges)")
        #expect(exchanges.contains { $0["status"] == .integer(404) } && exchanges.contains { $0["status"] == .integer(429) })
        return exchanges
    }
}

/// Where Discord's description and its checker are, and how to run the checker.
enum OpenAPIDescription {
    /// The checkout's root (this file is Tests/IntegrationTests/Supervisor/OpenAPITests.swift).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    /// Beside the checkout, in CI as here: `<repo>/../shared/discord/openapi.json`.
    static let path = root.deletingLastPathComponent().appendingPathComponent("shared/discord/openapi.json").path
    static let python = root.appendingPathComponent(".build/pyenv/bin/python3").path
    static let checker = root.appendingPathComponent("Tests/OpenAPI/check-exchanges").path

    /// The description's path; a failure (not a skip) when it is missing.
    static func require() throws -> String {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw TestFailure(description: "Discord's OpenAPI description is missing: expected \(path) (shared/discord/openapi.json beside the checkout)")
        }
        return path
    }

    /// The venv's Python with jsonschema; a failure (not a skip) when it is missing.
    static func requirePython() throws -> String {
        guard FileManager.default.isExecutableFile(atPath: python),
              (try? run(python, ["-c", "import jsonschema, referencing"]).status) == 0 else {
            throw TestFailure(description: "\(python) with jsonschema is missing: run `make install-replica-tools`")
        }
        return python
    }

    /// `/guilds/{guild}` and `/guilds/{guild_id}` are the same route.
    static func shape(_ template: String) -> String {
        template.split(separator: "/", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("{") ? "{}" : String($0) }.joined(separator: "/")
    }

    /// Runs `check-exchanges` on `exchanges` (written into `directory`).
    static func check(_ exchanges: JSONValue, description: String, python: String, in directory: String) throws -> (status: Int32, output: String) {
        let file = directory + "/exchanges.json"
        try JSONLine.encode(exchanges).write(toFile: file, atomically: true, encoding: .utf8)
        return try run(python, [checker, description, file])
    }

    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
