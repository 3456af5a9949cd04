import Foundation
import IPC
import Logging
import TestSupport
import Testing

@testable import BotWorker

/// Issue 20's verification, on the real binaries through the sandbox: a question in a modal
/// before the role (wrong answers, the cooldown, a new question after it), and waiting for
/// Discord's membership screening and verification level before granting.
@Suite(.serialized) struct VerificationChallengeTests {
    typealias Bot = FeatureTests.Bot

    @Test func wrongAnswersThenTheCooldownThenANewQuestionAnsweredRight() async throws {
        let bot = try await Bot()
        let setup = try await bot.command("verification", [Bot.sub("setup", [
            Bot.option("channel", 7, .string(bot.channels["verify"]!)),
            Bot.option("verified_role", 8, .string(bot.roles["Verified"]!)),
            Bot.option("unverified_role", 8, .string(bot.roles["Unverified"]!)),
            Bot.option("challenge", 3, .string("sum")),
            Bot.option("challenge_cooldown_seconds", 4, .integer(8)),
        ])])
        #expect(setup["content"]?.stringValue?.contains("a short sum") == true)
        let member = try await bot.join(accountAgeDays: 400)
        try await bot.waitForRoles(member, "the unverified role") { $0.contains(bot.roles["Unverified"]!) }

        // Three wrong answers: the same question each time (pressing again re-opens it).
        var first: String?
        for attempt in 1...3 {
            let modal = try await bot.pressForModal(as: member)
            let question = try #require(Self.question(in: modal))
            if let first { #expect(modal["custom_id"]?.stringValue == first) } else { first = modal["custom_id"]?.stringValue }
            let reply = try await bot.submit(modal, ["answer": String(question.answer + 1)], as: member)
            let content = reply["content"]?.stringValue ?? ""
            #expect(reply["flags"]?.intValue == 64)
            if attempt < 3 {
                #expect(content.contains("not the answer") && content.contains("\(3 - attempt) more tr"), "\(content)")
            } else {
                #expect(content.contains("third try") && content.contains("try again <t:"), "\(content)")
            }
        }
        // The cooldown: pressing says when it ends; no modal, no role.
        let cooling = try await bot.pressForResponse(as: member)
        #expect(cooling["type"]?.intValue == 4)
        #expect(cooling["data"]?["content"]?.stringValue?.contains("Too many wrong answers. You can try again <t:") == true)
        #expect(try await bot.roles(of: member) == [bot.roles["Unverified"]!])

        // After it (8 s here), a new question; the right answer (spaces around it) gives the role.
        let until = try #require(Timestamp.parse(try bot.harness.sqlite("SELECT cooldown_until FROM verification_challenges WHERE user_id = '\(member)'")))
        try await waitUntilAsync(timeout: .seconds(15), "the cooldown's end") { Date() > until }
        let modal = try await bot.pressForModal(as: member)
        #expect(modal["custom_id"]?.stringValue != first)
        let question = try #require(Self.question(in: modal))
        let passed = try await bot.submit(modal, ["answer": "  \(question.answer) "], as: member)
        #expect(passed["content"]?.stringValue == "You are verified. Welcome!")
        try await bot.waitForRoles(member, "the verified role, the unverified one taken") { $0 == [bot.roles["Verified"]!] }

        // Every attempt is stored; the open question is gone.
        let outcomes = try bot.harness.sqlite("SELECT group_concat(outcome, ',') FROM (SELECT outcome FROM verification_attempts WHERE user_id = '\(member)' ORDER BY id)")
        #expect(outcomes == ["challenge-asked", "challenge-wrong", "challenge-asked", "challenge-wrong", "challenge-asked", "challenge-wrong",
                             "challenge-cooldown", "challenge-asked", "challenge-passed", "verified"].joined(separator: ","))
        #expect(try bot.harness.sqlite("SELECT COUNT(*) FROM verification_challenges") == "0")
        #expect(try bot.harness.sqlite("SELECT COUNT(*) FROM verified_members WHERE user_id = '\(member)'") == "1")
        // The modal's shape went through the sandbox's checks, and every exchange (the type-9
        // callback, the answers with their Verify button) fits Discord's OpenAPI description.
        let exchanges = try await bot.sandbox.get("/sandbox/rest/exchanges")["exchanges"]?.arrayValue ?? []
        #expect(!exchanges.contains { ($0["status"]?.intValue ?? 0) >= 400 && $0["route"]?.stringValue?.contains("callback") == true })
        #expect(exchanges.contains { $0["request"]?["type"]?.intValue == 9 })
        #expect(try bot.harness.terminate() == 0)
        let directory = try makeTemporaryDirectory("openapi")
        let result = try OpenAPIDescription.check(.array(exchanges), description: try OpenAPIDescription.require(),
                                                  python: try OpenAPIDescription.requirePython(), in: directory)
        #expect(result.status == 0, "check-exchanges found problems (exchanges in \(directory)/exchanges.json):\n\(result.output)")
        if result.status == 0 { try? FileManager.default.removeItem(atPath: directory) }
    }

    @Test func waitingForDiscordGrantsWhenScreeningPassesAndRespectsTheVerificationLevel() async throws {
        let bot = try await Bot()
        _ = try await bot.command("verification", [Bot.sub("setup", [
            Bot.option("channel", 7, .string(bot.channels["verify"]!)),
            Bot.option("verified_role", 8, .string(bot.roles["Verified"]!)),
            Bot.option("wait_for_discord", 5, .bool(true)),
        ])])
        // A member still in membership screening presses Verify: told to wait, no role.
        let joined = try await bot.sandbox.post("/sandbox/join", .object(["count": .integer(1), "pending": .bool(true), "accountAgeDays": .number(400)]))
        let pending = try #require(joined["members"]?.arrayValue.first?["user"]?["id"]?.stringValue)
        let told = try await bot.press("verification:verify", as: pending)
        #expect(told["content"]?.stringValue?.contains("as soon as you have completed the server's membership screening") == true, "\(told)")
        #expect(try await bot.roles(of: pending).isEmpty)
        #expect(try bot.harness.sqlite("SELECT screening FROM verification_waiting WHERE user_id = '\(pending)'") == "1")
        // Discord clears `pending`: the role arrives without another press.
        try await bot.sandbox.post("/sandbox/member", .object(["user": .string(pending), "pending": .bool(false)]))
        try await bot.waitForRoles(pending, "the verified role once screening passed") { $0 == [bot.roles["Verified"]!] }
        #expect(try bot.harness.sqlite("SELECT group_concat(outcome, ',') FROM (SELECT outcome FROM verification_attempts WHERE user_id = '\(pending)' ORDER BY id)")
            == "waiting-for-discord,verified")
        #expect(try bot.harness.sqlite("SELECT COUNT(*) FROM verification_waiting") == "0")

        // Verification level MEDIUM (2): an account 4 s short of 5 minutes old is told to wait,
        // and gets the role when the time has passed, without pressing again.
        try await bot.sandbox.post("/sandbox/guild", .object(["verificationLevel": .integer(2)]))
        let young = try await bot.join(accountAgeDays: (300 - 4) / 86400)
        let toldToWait = try await bot.press("verification:verify", as: young)
        #expect(toldToWait["content"]?.stringValue?.contains("the server's verification level lets you in") == true, "\(toldToWait)")
        #expect(try await bot.roles(of: young).isEmpty)
        try await bot.waitForRoles(young, "the verified role once the account is 5 minutes old") { $0 == [bot.roles["Verified"]!] }

        // Verification level HIGH (3): a member who joined just now waits 10 minutes.
        let guild = try await bot.sandbox.post("/sandbox/guild", .object(["verificationLevel": .integer(3)]))
        #expect(guild["verification_level"]?.intValue == 3)
        let newcomer = try await bot.join(accountAgeDays: 400)
        let waiting = try await bot.press("verification:verify", as: newcomer)
        #expect(waiting["content"]?.stringValue?.contains("the server's verification level lets you in, <t:") == true, "\(waiting)")
        #expect(try await bot.roles(of: newcomer).isEmpty)
        let readyAt = try #require(Timestamp.parse(try bot.harness.sqlite("SELECT ready_at FROM verification_waiting WHERE user_id = '\(newcomer)'")))
        #expect(abs(readyAt.timeIntervalSinceNow - 600) < 30)
        let status = try await bot.command("verification", [Bot.sub("status", [Bot.option("member", 6, .string(newcomer))])])
        #expect(status["content"]?.stringValue?.contains("is not verified (1 attempt): passed, waiting for the server's verification level until") == true, "\(status)")
        // Level NONE again: the next press verifies at once.
        try await bot.sandbox.post("/sandbox/guild", .object(["verificationLevel": .integer(0)]))
        let now = try await bot.press("verification:verify", as: newcomer)
        #expect(now["content"]?.stringValue == "You are verified. Welcome!")
        #expect(try bot.harness.sqlite("SELECT COUNT(*) FROM verification_waiting") == "0")
        #expect(try bot.harness.terminate() == 0)
    }

    /// "What is 7 + 5?" in the modal's text input label.
    static func question(in modal: JSONValue) -> (a: Int, b: Int, answer: Int)? {
        guard let label = modal["components"]?.arrayValue.first?["components"]?.arrayValue.first?["label"]?.stringValue,
              label.hasPrefix("What is "), label.hasSuffix("?") else { return nil }
        let numbers = label.dropFirst(8).dropLast().split(separator: "+").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard numbers.count == 2 else { return nil }
        return (numbers[0], numbers[1], numbers[0] + numbers[1])
    }
}

extension FeatureTests.Bot {
    /// Presses `customID` and returns the bot's whole first answer (`type` and `data`).
    func pressForResponse(_ customID: String = "verification:verify", as user: String) async throws -> JSONValue {
        let interaction = try await sandbox.post("/sandbox/interaction", .object([
            "user": .string(user), "kind": .string("button"), "customID": .string(customID),
        ]))
        return try await firstResponse(to: try #require(interaction["id"]?.stringValue))
    }

    /// Presses Verify and expects a modal (callback type 9): its data.
    func pressForModal(as user: String) async throws -> JSONValue {
        let response = try await pressForResponse(as: user)
        #expect(response["type"]?.intValue == 9, "expected a modal, got \(response)")
        return response["data"] ?? .null
    }

    /// Submits `modal` (as shown) with `fields` and returns the bot's answer's data.
    func submit(_ modal: JSONValue, _ fields: [String: String], as user: String) async throws -> JSONValue {
        let interaction = try await sandbox.post("/sandbox/interaction", .object([
            "user": .string(user), "kind": .string("modal"), "customID": modal["custom_id"] ?? .null,
            "fields": .object(fields.mapValues(JSONValue.string)),
        ]))
        let response = try await firstResponse(to: try #require(interaction["id"]?.stringValue, "the sandbox refused the modal: \(interaction)"))
        return response["data"] ?? .null
    }

    func firstResponse(to id: String) async throws -> JSONValue {
        var last: JSONValue = .null
        try await waitUntilAsync(timeout: .seconds(10), "the answer to interaction \(id)") {
            last = (try? await sandbox.get("/sandbox/interactions/\(id)")) ?? .null
            return !(last["responses"]?.arrayValue.isEmpty ?? true)
        }
        return last["responses"]?.arrayValue.first ?? .null
    }
}

/// The router's modals, against a scripted Discord: a component answered with a modal (type 9),
/// a modal submitted routed by its `custom_id` with its fields, and a modal that comes too late.
@Suite struct CommandRouterModalTests {
    func interaction(type: Int, customID: String, components: JSONValue = .array([])) -> JSONValue {
        .object([
            "id": .string("901"), "token": .string("tok"), "type": .integer(type), "application_id": .string("77"),
            "guild_id": .string("1"), "channel_id": .string("2"),
            "member": .object(["user": .object(["id": .string("3")]), "roles": .array([]), "permissions": .string("0"),
                               "pending": .bool(true), "joined_at": .string("2026-12-01T10:00:00.000000+00:00")]),
            "data": .object(["custom_id": .string(customID), "components": components]),
        ])
    }

    static let modal: JSONValue = .object(["custom_id": .string("test:modal"), "title": .string("T"), "components": .array([])])

    func router(_ server: ScriptedHTTPServer, deferAfter: Duration, modalDeferAfter: Duration) async -> CommandRouter {
        let router = CommandRouter(logger: Logger(label: "bot"), audit: Logger(label: "audit"), deferAfter: deferAfter, modalDeferAfter: modalDeferAfter)
        await router.attach(DiscordREST(baseURL: server.baseURL, token: Secret("t"), logger: Logger(label: "test")))
        return router
    }

    @Test func aComponentOpensAModalPastTheUsualDeferralAndTheSubmissionIsRouted() async throws {
        let server = try await ScriptedHTTPServer { _, _ in .init(status: 204) }
        let router = await router(server, deferAfter: .milliseconds(50), modalDeferAfter: .seconds(5))
        await router.register(componentPrefix: "test:open", feature: "test", opensModals: true) { interaction in
            #expect(interaction.memberPending && interaction.memberJoinedAt == Timestamp.parse("2026-12-01T10:00:00Z"))
            // Slower than `deferAfter`: a route that opens modals is not deferred then.
            try await Task.sleep(for: .milliseconds(300))
            return .modal(Self.modal)
        }
        let submitted = Locked<[String: String]>([:])
        await router.register(modalPrefix: "test:modal", feature: "test") { interaction in
            submitted.withLock { $0 = interaction.fields }
            return .ephemeral("got \(interaction.field("answer") ?? "-")")
        }
        await router.handle(interaction(type: 3, customID: "test:open"))
        await router.handle(interaction(type: 5, customID: "test:modal", components: .array([
            .object(["type": .integer(1), "id": .integer(1), "components": .array([
                .object(["type": .integer(4), "id": .integer(2), "custom_id": .string("answer"), "value": .string("12")]),
            ])]),
            .object(["type": .integer(18), "id": .integer(3), "component": .object(["type": .integer(4), "custom_id": .string("note"), "value": .string("")])]),
        ])))
        let bodies = server.requests.map(\.body)
        #expect(bodies.count == 2)
        #expect(bodies.first?.contains(#""type":9"#) == true && bodies.first?.contains("test:modal") == true, "\(bodies)")
        #expect(bodies.last?.contains(#""type":4"#) == true && bodies.last?.contains("got 12") == true)
        #expect(submitted.withLock { $0 } == ["answer": "12", "note": ""])
        #expect(await router.succeeded == 2)
        try await server.close()
    }

    @Test func aModalAfterTheDeferralIsReplacedByAMessage() async throws {
        let server = try await ScriptedHTTPServer { _, _ in .init(status: 204) }
        let router = await router(server, deferAfter: .milliseconds(50), modalDeferAfter: .milliseconds(100))
        await router.register(componentPrefix: "test:open", feature: "test", opensModals: true) { _ in
            // Slow until Discord has the deferred answer (ordered by the server, not by sleeps).
            let deadline = ContinuousClock.now + .seconds(10)
            while server.requests.isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            return .modal(Self.modal)
        }
        await router.handle(interaction(type: 3, customID: "test:open"))
        let requests = server.requests
        #expect(requests.count == 2)
        #expect(requests.first?.body.contains(#""type":5"#) == true)
        #expect(requests.last?.uri == "/api/v10/webhooks/77/tok" && requests.last?.body.contains("took too long") == true)
        try await server.close()
    }
}
