import IPC
import NIOHTTP1
import Testing

@testable import DiscordSandbox

@Suite struct RESTTests {
    @Test func missingOrWrongTokenIs401AndCounted() async throws {
        let harness = try await SandboxHarness()
        let missing = try await harness.rest(.GET, "/users/@me", token: "")
        #expect(missing.status == 401)
        #expect(missing.json == .object(["message": .string("401: Unauthorized"), "code": .integer(0)]))
        let wrong = try await harness.rest(.GET, "/users/@me", token: "nope")
        #expect(wrong.status == 401)
        let right = try await harness.rest(.GET, "/users/@me")
        #expect(right.status == 200)
        #expect(right.json?["username"] == .string("sandbox-bot"))
        let state = try await harness.control(.GET, "/state")
        #expect(state.json?["rest"]?["invalidRequests"] == .integer(2))
        try await harness.shutdown()
    }

    @Test func addingARoleSendsMemberUpdate() async throws {
        let harness = try await SandboxHarness()
        let gateway = TestGateway.connect(harness)
        gateway.send(harness.identifyPayload())
        _ = try #require(await gateway.dispatch("GUILD_CREATE"))
        let (user, verified) = harness.sandbox.withWorld { world in
            (world.guild.humans.first { !$0.roles.contains(world.guild.roles[2].id) }!.user.id, world.guild.roles[2].id)
        }
        let path = "/guilds/\(harness.guildID)/members/\(user)/roles/\(verified)"
        let put = try await harness.rest(.PUT, path, headers: [("X-Audit-Log-Reason", "passed%20verification")])
        #expect(put.status == 204)
        let update = try #require(await gateway.dispatch("GUILD_MEMBER_UPDATE"))
        #expect(update["d"]?["user"]?["id"] == .id(user))
        #expect(update["d"]?["roles"]?.array?.contains(.id(verified)) == true)
        #expect(update["d"]?["guild_id"] == .string(harness.guildID))
        let changes = harness.sandbox.withWorld { $0.roleChanges }
        #expect(changes.count == 1)
        #expect(changes.first?.reason == "passed verification")

        // No change, no event: the next event seen is the message below.
        #expect(try await harness.rest(.PUT, path).status == 204)
        _ = try await harness.control(.POST, "/message", body: .object(["user": .id(user), "content": .string("hi")]))
        let next = try #require(await gateway.next())
        #expect(next["t"] == .string("MESSAGE_CREATE"))
        gateway.stop()
        try await harness.shutdown()
    }

    @Test func rolesAtOrAboveTheBotAreRefused() async throws {
        let harness = try await SandboxHarness()
        let (user, owner, bot) = harness.sandbox.withWorld { world in
            (world.guild.humans[0].user.id, world.guild.roles[8].id, world.guild.roles[7].id)
        }
        for role in [owner, bot] {
            let reply = try await harness.rest(.PUT, "/guilds/\(harness.guildID)/members/\(user)/roles/\(role)")
            #expect(reply.status == 403)
            #expect(reply.json?["code"] == .integer(50013))
        }
        let unknownMember = try await harness.rest(.PUT, "/guilds/\(harness.guildID)/members/42/roles/\(owner)")
        #expect(unknownMember.json?["code"] == .integer(10007))
        let unknownRole = try await harness.rest(.PUT, "/guilds/\(harness.guildID)/members/\(user)/roles/42")
        #expect(unknownRole.json?["code"] == .integer(10011))
        let unknownGuild = try await harness.rest(.GET, "/guilds/42/roles")
        #expect(unknownGuild.json?["code"] == .integer(10004))
        try await harness.shutdown()
    }

    @Test func rateLimitHeadersAndABurstOverTheBucket() async throws {
        let harness = try await SandboxHarness()
        // A window of a minute: the burst exceeds it however slowly a loaded machine sends it.
        harness.sandbox.withWorld { $0.rateLimits.bucketWindow = 60 }
        let first = try await harness.rest(.GET, "/guilds/\(harness.guildID)/roles")
        for name in ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Reset-After", "X-RateLimit-Bucket"] {
            #expect(first.headers.first(name: name) != nil, "\(name)")
        }
        #expect(first.headers.first(name: "X-RateLimit-Limit") == "50")
        var limited: SandboxHarness.Response?
        for _ in 0..<60 {
            let reply = try await harness.rest(.GET, "/guilds/\(harness.guildID)/roles")
            if reply.status == 429 {
                limited = reply
                break
            }
        }
        let reply = try #require(limited)
        #expect(reply.json?["message"] == .string("You are being rate limited."))
        #expect((reply.json?["retry_after"]?.double ?? 0) > 0)
        #expect(reply.json?["global"] == .bool(false))
        #expect(reply.headers.first(name: "X-RateLimit-Scope") == "user")
        #expect(reply.headers.first(name: "Retry-After") != nil)
        try await harness.shutdown()
    }

    @Test func stormRefusesEveryRequest() async throws {
        let harness = try await SandboxHarness()
        _ = try await harness.control(.POST, "/rest/storm", body: .object(["seconds": .number(30), "global": .bool(true)]))
        let reply = try await harness.rest(.GET, "/users/@me")
        #expect(reply.status == 429)
        #expect(reply.json?["global"] == .bool(true))
        #expect(reply.headers.first(name: "X-RateLimit-Global") == "true")
        try await harness.shutdown()
    }

    @Test func anInteractionNotAnsweredWithinItsDeadlineIsUnknown() async throws {
        let harness = try await SandboxHarness()
        let user = harness.sandbox.withWorld { $0.guild.humans[0].user.id }
        let created = try await harness.control(.POST, "/interaction", body: .object(["user": .id(user), "kind": .string("command"), "name": .string("verification")]))
        let id = try #require(created.json?["id"]?.stringValue.flatMap(UInt64.init))
        let token = try #require(created.json?["token"]?.stringValue)
        // Created 3.1 s ago, as far as the sandbox knows: Discord's 3 s have passed.
        harness.sandbox.withWorld { $0.interactions[id]?.createdAt -= InteractionRecord.answerWithin + 100 }
        let late = try await harness.rest(.POST, "/interactions/\(id)/\(token)/callback", body: .object(["type": .integer(4), "data": .object(["content": .string("late")])]), token: "")
        #expect(late.status == 404 && late.json?["code"] == .integer(10062))
        try await harness.shutdown()
    }

    @Test func interactionCallbackIsRecordedOnce() async throws {
        // Not a test of the 3 s answer deadline: a minute, for a machine busy with other tests.
        let harness = try await SandboxHarness(answerWithin: 60_000)
        let gateway = TestGateway.connect(harness)
        gateway.send(harness.identifyPayload())
        _ = try #require(await gateway.dispatch("GUILD_CREATE"))
        let user = harness.sandbox.withWorld { $0.guild.humans[0].user.id }
        let created = try await harness.control(.POST, "/interaction", body: .object(["user": .id(user), "kind": .string("command"), "name": .string("verification")]))
        let id = try #require(created.json?["id"]?.stringValue)
        let token = try #require(created.json?["token"]?.stringValue)
        let event = try #require(await gateway.dispatch("INTERACTION_CREATE"))
        #expect(event["d"]?["type"] == .integer(2))
        #expect(event["d"]?["data"]?["name"] == .string("verification"))
        #expect(event["d"]?["token"] == .string(token))

        let answer: JSONValue = .object(["type": .integer(4), "data": .object(["content": .string("ok"), "flags": .integer(64)])])
        let first = try await harness.rest(.POST, "/interactions/\(id)/\(token)/callback", body: answer, token: "")
        #expect(first.status == 204)
        let second = try await harness.rest(.POST, "/interactions/\(id)/\(token)/callback", body: answer, token: "")
        #expect(second.status == 400)
        #expect(second.json?["code"] == .integer(40060))
        let unknown = try await harness.rest(.POST, "/interactions/1/nope/callback", body: answer, token: "")
        #expect(unknown.json?["code"] == .integer(10062))

        let app = harness.sandbox.withWorld { $0.applicationID }
        let followUp = try await harness.rest(.POST, "/webhooks/\(app)/\(token)", body: .object(["content": .string("more")]), token: "")
        #expect(followUp.status == 200)
        let recorded = try await harness.control(.GET, "/interactions/\(id)")
        #expect(recorded.json?["responses"]?.array?.count == 1)
        #expect(recorded.json?["followUps"]?.array?.count == 1)
        gateway.stop()
        try await harness.shutdown()
    }

    @Test func messagesAndWebhooks() async throws {
        let harness = try await SandboxHarness()
        let general = harness.sandbox.withWorld { $0.guild.channel(named: "general").id }
        let message = try await harness.rest(.POST, "/channels/\(general)/messages", body: .object(["content": .string("hello")]))
        #expect(message.status == 200)
        #expect(message.json?["author"]?["username"] == .string("sandbox-bot"))
        let tooLong = try await harness.rest(.POST, "/channels/\(general)/messages", body: .object(["content": .string(String(repeating: "x", count: 2001))]))
        #expect(tooLong.json?["code"] == .integer(50035))
        let unknown = try await harness.rest(.POST, "/channels/42/messages", body: .object(["content": .string("x")]))
        #expect(unknown.json?["code"] == .integer(10003))
        let webhook = try await harness.rest(.POST, "/webhooks/123/secret?wait=true", body: .object(["content": .string("alert")]), token: "")
        #expect(webhook.status == 200)
        let state = try await harness.control(.GET, "/state")
        #expect(state.json?["webhookMessages"]?.array?.first?["content"] == .string("alert"))
        #expect(state.json?["messages"]?.array?.count == 1)
        let notFound = try await harness.rest(.GET, "/nothing/here")
        #expect(notFound.status == 404)
        #expect(notFound.json == .object(["message": .string("404: Not Found"), "code": .integer(0)]))
        try await harness.shutdown()
    }
}
