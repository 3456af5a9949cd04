import IPC
import NIOHTTP1
import Testing

@testable import DiscordSandbox

/// The REST exchanges the sandbox keeps for the OpenAPI check: every one, in order, no secret.
@Suite struct RESTExchangeLogTests {
    @Test func exchangesAreRecordedWithTheirTokensRedacted() async throws {
        // Not a test of the 3 s answer deadline: a minute, for a machine busy with other tests.
        let harness = try await SandboxHarness(answerWithin: 60_000)
        let (user, channel) = harness.sandbox.withWorld { world in
            (world.guild.humans[0].user.id, world.guild.channel(named: "general").id)
        }
        let created = try await harness.control(.POST, "/interaction", body: .object([
            "user": .id(user), "kind": .string("command"), "name": .string("verification"),
        ]))
        let id = try #require(created.json?["id"]?.stringValue), token = try #require(created.json?["token"]?.stringValue)
        let answer = try await harness.rest(.POST, "/interactions/\(id)/\(token)/callback", body: .object([
            "type": .integer(4), "data": .object(["content": .string("answer with \(token) in it")]),
        ]), token: nil)
        #expect(answer.status == 204)
        let posted = try await harness.rest(.POST, "/channels/\(channel)/messages", body: .object(["content": .string("hi")]))
        #expect(posted.status == 200)
        let missing = try await harness.rest(.GET, "/nowhere/\(token)")
        #expect(missing.status == 404)

        let recorded = try await harness.control(.GET, "/rest/exchanges")
        let exchanges = recorded.json?["exchanges"]?.arrayValue ?? []
        #expect(exchanges.map { $0["route"]?.stringValue ?? "" } == ["/interactions/{interaction}/{token}/callback", "/channels/{channel}/messages", "/unknown"])
        #expect(exchanges.first?["path"] == .string("/interactions/\(id)/{token}/callback"))
        #expect(exchanges.first?["request"]?["data"]?["content"] == .string("answer with {token} in it"))
        #expect(exchanges.first?["status"] == .integer(204) && exchanges.first?["response"] == .null)
        #expect(exchanges.dropFirst().first?["response"]?["content"] == .string("hi"))
        #expect(exchanges.last?["path"] == .string("/unknown") && exchanges.last?["status"] == .integer(404))
        let text = try JSONLine.encode(recorded.json ?? .null)
        #expect(!text.contains(token) && !text.contains(SandboxHarness.token))
        try await harness.shutdown()
    }

    @Test func theRingKeepsTheNewest() {
        let log = RESTExchangeLog()
        for index in 0..<(RESTExchangeLog.capacity + 5) {
            log.record(method: "GET", route: "/gateway/bot", parameters: [:], query: ["n": String(index)], request: nil, status: 200, response: nil)
        }
        let exchanges = log.json["exchanges"]?.arrayValue ?? []
        #expect(exchanges.count == RESTExchangeLog.capacity)
        #expect(exchanges.first?["query"]?["n"] == .string("5"))
        #expect(exchanges.last?["query"]?["n"] == .string(String(RESTExchangeLog.capacity + 4)))
        #expect(log.json["recorded"] == .integer(RESTExchangeLog.capacity + 5))
    }

    @Test func componentsGetIdsInTreeOrderKeepingThoseGiven() {
        let message = JSONValue.object(["components": .array([
            .object(["type": .integer(1), "components": .array([
                .object(["type": .integer(2), "custom_id": .string("a")]),
                .object(["type": .integer(2), "custom_id": .string("b"), "id": .integer(3)]),
                .object(["type": .integer(2), "custom_id": .string("c")]),
            ])]),
        ])])
        let numbered = SandboxWorld.numberingComponents(message)
        let row = numbered["components"]?.arrayValue.first
        #expect(row?["id"] == .integer(1))
        #expect(row?["components"]?.arrayValue.map { $0["id"] } == [.integer(2), .integer(3), .integer(4)])
    }
}
