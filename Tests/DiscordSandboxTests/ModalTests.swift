import IPC
import NIOHTTP1
import Testing

@testable import DiscordSandbox

/// Modals as Discord takes them: a type-9 answer with the shape Discord requires (else its 400
/// form error), to a command or a component only; the member submits it as MODAL_SUBMIT; and the
/// guild's verification level, changed by the control API, as GUILD_UPDATE.
@Suite struct ModalTests {
    static func modal(title: String = "Verification", label: String = "What is 7 + 5?", rows: Int = 1, style: Int = 1) -> JSONValue {
        .object([
            "custom_id": .string("verification:challenge:1"), "title": .string(title),
            "components": .array((0..<rows).map { row in .object(["type": .integer(1), "components": .array([.object([
                "type": .integer(4), "custom_id": .string(row == 0 ? "answer" : "extra\(row)"), "style": .integer(style),
                "label": .string(label), "min_length": .integer(1), "max_length": .integer(40), "required": .bool(row == 0),
            ])])]) }),
        ])
    }

    /// The `errors` path of a 50035 answer, e.g. "data.components.0.components.0.label".
    static func errorPath(_ error: DiscordError) -> String {
        var path: [String] = []
        var node = error.errors
        while case .object(let object)? = node, object["_errors"] == nil, let (key, value) = object.first {
            path.append(key)
            node = value
        }
        return path.joined(separator: ".")
    }

    @Test func aWellFormedModalPassesAndMalformedOnesGetTheFormError() throws {
        try SandboxWorld.checkModal(Self.modal())
        try SandboxWorld.checkModal(Self.modal(rows: 5, style: 2))
        let cases: [(JSONValue, String)] = [
            (Self.modal(title: String(repeating: "t", count: 46)), "data.title"),
            (Self.modal(title: ""), "data.title"),
            (Self.modal(label: String(repeating: "l", count: 46)), "data.components.0.components.0.label"),
            (Self.modal(rows: 6), "data.components"),
            (Self.modal(style: 3), "data.components.0.components.0.style"),
            (.object(["title": .string("T"), "components": Self.modal()["components"]!]), "data.custom_id"),
            (.object(["custom_id": .string("x"), "title": .string("T"), "components": .array([
                .object(["type": .integer(1), "components": .array([.object(["type": .integer(2), "custom_id": .string("b"), "style": .integer(1)])])]),
            ])]), "data.components.0.components.0.type"),
        ]
        for (modal, path) in cases {
            do {
                try SandboxWorld.checkModal(modal)
                Issue.record("accepted a modal with a bad \(path)")
            } catch {
                #expect(error.status == 400 && error.code == 50035 && error.message == "Invalid Form Body")
                #expect(Self.errorPath(error) == path)
            }
        }
    }

    @Test func theSubmissionHasMODAL_SUBMITsShapeAndIsCheckedLikeDiscordsClient() throws {
        let data = try SandboxWorld.modalSubmitData(Self.modal(rows: 2), fields: ["answer": "12"])
        #expect(data["custom_id"] == .string("verification:challenge:1"))
        let rows = data["components"]?.array ?? []
        #expect(rows.count == 2 && rows.allSatisfy { $0["type"] == .integer(1) })
        #expect(rows[0]["components"]?.array?.first == .object(["type": .integer(4), "id": .integer(0), "custom_id": .string("answer"), "value": .string("12")]))
        #expect(rows[1]["components"]?.array?.first?["value"] == .string(""))
        #expect(throws: DiscordError.self) { try SandboxWorld.modalSubmitData(Self.modal(), fields: [:]) }
        #expect(throws: DiscordError.self) { try SandboxWorld.modalSubmitData(Self.modal(), fields: ["answer": "1", "other": "2"]) }
        #expect(throws: DiscordError.self) { try SandboxWorld.modalSubmitData(Self.modal(), fields: ["answer": String(repeating: "9", count: 41)]) }
    }

    @Test func aModalShownToAMemberIsSubmittedAsInteractionType5() async throws {
        let harness = try await SandboxHarness(answerWithin: 60_000)
        let gateway = TestGateway.connect(harness)
        gateway.send(harness.identifyPayload())
        _ = try #require(await gateway.dispatch("GUILD_CREATE"))
        let user = harness.sandbox.withWorld { $0.guild.humans[0].user.id }
        // Nothing was shown yet: a submission is refused.
        let early = try await harness.control(.POST, "/interaction", body: .object(["user": .id(user), "kind": .string("modal"), "fields": .object([:])]))
        #expect(early.status == 400)

        let press = try await harness.control(.POST, "/interaction", body: .object(["user": .id(user), "kind": .string("button"), "customID": .string("verification:verify")]))
        let id = try #require(press.json?["id"]?.stringValue), token = try #require(press.json?["token"]?.stringValue)
        _ = try #require(await gateway.dispatch("INTERACTION_CREATE"))
        let bad = try await harness.rest(.POST, "/interactions/\(id)/\(token)/callback", body: .object(["type": .integer(9), "data": Self.modal(title: String(repeating: "t", count: 50))]), token: "")
        #expect(bad.status == 400 && bad.json?["code"] == .integer(50035))
        let shown = try await harness.rest(.POST, "/interactions/\(id)/\(token)/callback", body: .object(["type": .integer(9), "data": Self.modal()]), token: "")
        #expect(shown.status == 204)

        let submitted = try await harness.control(.POST, "/interaction", body: .object([
            "user": .id(user), "kind": .string("modal"), "customID": .string("verification:challenge:1"), "fields": .object(["answer": .string("12")]),
        ]))
        let submitID = try #require(submitted.json?["id"]?.stringValue), submitToken = try #require(submitted.json?["token"]?.stringValue)
        let event = try #require(await gateway.dispatch("INTERACTION_CREATE"))
        #expect(event["d"]?["type"] == .integer(5))
        #expect(event["d"]?["data"]?["custom_id"] == .string("verification:challenge:1"))
        #expect(event["d"]?["data"]?["components"]?.array?.first?["components"]?.array?.first?["value"] == .string("12"))
        #expect(event["d"]?["member"]?["user"]?["id"] == .id(user))
        // A modal cannot answer a modal.
        let again = try await harness.rest(.POST, "/interactions/\(submitID)/\(submitToken)/callback", body: .object(["type": .integer(9), "data": Self.modal()]), token: "")
        #expect(again.status == 400)
        let answered = try await harness.rest(.POST, "/interactions/\(submitID)/\(submitToken)/callback", body: .object([
            "type": .integer(4), "data": .object(["content": .string("ok"), "flags": .integer(64)]),
        ]), token: "")
        #expect(answered.status == 204)
        gateway.stop()
        try await harness.shutdown()
    }

    @Test func theVerificationLevelIsInTheGuildAndItsChangeIsAGuildUpdate() async throws {
        let harness = try await SandboxHarness()
        let gateway = TestGateway.connect(harness)
        gateway.send(harness.identifyPayload())
        let created = try #require(await gateway.dispatch("GUILD_CREATE"))
        #expect(created["d"]?["verification_level"] == .integer(1))
        let changed = try await harness.control(.POST, "/guild", body: .object(["verificationLevel": .integer(3)]))
        #expect(changed.json?["verification_level"] == .integer(3))
        let update = try #require(await gateway.dispatch("GUILD_UPDATE"))
        #expect(update["d"]?["verification_level"] == .integer(3))
        #expect(try await harness.rest(.GET, "/guilds/\(harness.sandbox.withWorld { $0.guild.id })").json?["verification_level"] == .integer(3))
        #expect(try await harness.control(.POST, "/guild", body: .object(["verificationLevel": .integer(7)])).status == 400)
        gateway.stop()
        try await harness.shutdown()
    }
}
