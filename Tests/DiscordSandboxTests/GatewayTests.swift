import IPC
import NIOHTTP1
import Testing

@testable import DiscordSandbox

@Suite struct GatewayTests {
    @Test func identifyGetsReadyThenGuildCreateWithMembers() async throws {
        let harness = try await SandboxHarness(members: 12)
        let gateway = TestGateway.connect(harness)
        let hello = try #require(await gateway.next())
        #expect(hello["op"] == .integer(10))
        #expect(hello["d"]?["heartbeat_interval"] == .integer(41_250))
        gateway.send(harness.identifyPayload())
        let ready = try #require(await gateway.next())
        #expect(ready["t"] == .string("READY"))
        #expect(ready["s"] == .integer(1))
        #expect(ready["d"]?["v"] == .integer(10))
        #expect(ready["d"]?["user"]?["username"] == .string("sandbox-bot"))
        #expect(ready["d"]?["resume_gateway_url"] == .string("ws://127.0.0.1:\(harness.port)/gateway-resume"))
        let create = try #require(await gateway.next())
        #expect(create["t"] == .string("GUILD_CREATE"))
        #expect(create["s"] == .integer(2))
        #expect(create["d"]?["id"] == .string(harness.guildID))
        #expect(create["d"]?["members"]?.array?.count == 14)  // 12 members, the owner and the bot
        #expect(create["d"]?["roles"]?.array?.count == 9)
        gateway.stop()
        try await harness.shutdown()
    }

    @Test func withoutGuildMembersOnlyTheBotIsListed() async throws {
        let harness = try await SandboxHarness(members: 12)
        let gateway = TestGateway.connect(harness)
        gateway.send(harness.identifyPayload(intents: 513))
        let create = try #require(await gateway.dispatch("GUILD_CREATE"))
        #expect(create["d"]?["members"]?.array?.count == 1)
        gateway.stop()
        try await harness.shutdown()
    }

    @Test func wrongTokenIsClosedWith4004() async throws {
        let harness = try await SandboxHarness()
        let gateway = TestGateway.connect(harness)
        gateway.send(harness.identifyPayload(token: "wrong"))
        #expect(await gateway.closeCode() == .some(4004))
        try await harness.shutdown()
    }

    @Test func disallowedIntentsAreClosedWith4014() async throws {
        let harness = try await SandboxHarness(disallowedIntents: 1 << 15)
        let gateway = TestGateway.connect(harness)
        gateway.send(harness.identifyPayload(intents: 33283))
        #expect(await gateway.closeCode() == .some(4014))
        try await harness.shutdown()
    }

    @Test func wrongVersionIsClosedWith4012() async throws {
        let harness = try await SandboxHarness()
        let gateway = TestGateway.connect(harness, path: "/?v=9&encoding=json")
        gateway.send(harness.identifyPayload())
        #expect(await gateway.closeCode() == .some(4012))
        try await harness.shutdown()
    }

    @Test func heartbeatIsAcknowledged() async throws {
        let harness = try await SandboxHarness()
        let gateway = TestGateway.connect(harness)
        _ = await gateway.next()
        gateway.send("{\"op\":1,\"d\":null}")
        let ack = try #require(await gateway.next())
        #expect(ack["op"] == .integer(11))
        gateway.stop()
        try await harness.shutdown()
    }

    @Test func payloadBeforeIdentifyIsClosedWith4003() async throws {
        let harness = try await SandboxHarness()
        let gateway = TestGateway.connect(harness)
        gateway.send("{\"op\":3,\"d\":{}}")
        #expect(await gateway.closeCode() == .some(4003))
        try await harness.shutdown()
    }

    @Test func resumeAfterADropReplaysMissedEventsThenResumed() async throws {
        let harness = try await SandboxHarness()
        let first = TestGateway.connect(harness)
        first.send(harness.identifyPayload())
        let ready = try #require(await first.dispatch("READY"))
        let sessionID = try #require(ready["d"]?["session_id"]?.stringValue)
        _ = try #require(await first.dispatch("GUILD_CREATE"))

        _ = try await harness.control(.POST, "/gateway/close", body: .object(["code": .null]))
        #expect(await first.closeCode() != nil)
        let user = try #require(harness.sandbox.withWorld { $0.guild.humans.first?.user.id })
        let posted = try await harness.control(.POST, "/message", body: .object(["user": .id(user), "content": .string("while you were away")]))
        #expect(posted.status == 200)

        let second = TestGateway.connect(harness, path: "/gateway-resume?v=10&encoding=json")
        _ = try #require(await second.next())  // Hello
        second.send("{\"op\":6,\"d\":{\"token\":\"\(SandboxHarness.token)\",\"session_id\":\"\(sessionID)\",\"seq\":2}}")
        let replayed = try #require(await second.next())
        #expect(replayed["t"] == .string("MESSAGE_CREATE"))
        #expect(replayed["s"] == .integer(3))
        #expect(replayed["d"]?["content"] == .string("while you were away"))
        let resumed = try #require(await second.next())
        #expect(resumed["t"] == .string("RESUMED"))
        #expect(harness.sandbox.withWorld { $0.gateway.resumes } == 1)

        let third = TestGateway.connect(harness)
        _ = await third.next()
        third.send("{\"op\":6,\"d\":{\"token\":\"\(SandboxHarness.token)\",\"session_id\":\"nope\",\"seq\":2}}")
        let invalid = try #require(await third.next())
        #expect(invalid["op"] == .integer(9))
        #expect(invalid["d"] == .bool(false))
        second.stop()
        third.stop()
        try await harness.shutdown()
    }

    @Test func floodDeliversEveryMessageInSequence() async throws {
        let harness = try await SandboxHarness()
        let gateway = TestGateway.connect(harness)
        gateway.send(harness.identifyPayload())
        _ = try #require(await gateway.dispatch("GUILD_CREATE"))
        async let answer = harness.control(.POST, "/flood", body: .object(["count": .integer(1000)]))
        var sequences: [Int] = []
        while sequences.count < 1000, let payload = await gateway.next() {
            #expect(payload["t"] == .string("MESSAGE_CREATE"))
            sequences.append(payload["s"]?.int ?? -1)
        }
        #expect(sequences == Array(3..<1003))
        let reply = try await answer
        #expect(reply.json?["sent"] == .integer(1000))
        #expect(reply.json?["firstSequence"] == .integer(3))
        #expect(reply.json?["lastSequence"] == .integer(1002))
        gateway.stop()
        try await harness.shutdown()
    }
}
