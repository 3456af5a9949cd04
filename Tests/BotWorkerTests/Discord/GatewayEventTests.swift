import IPC
import Testing

@testable import BotWorker

/// Dispatches decode straight into typed payloads; what Discord adds later is skipped.
@Suite struct GatewayEventTests {
    func decode(_ text: String) throws -> GatewayPayload { try JSONLine.decode(GatewayPayload.self, from: text) }

    @Test func aMessageCreateDecodesIgnoringFieldsItDoesNotKnow() throws {
        let payload = try decode("""
            {"op":0,"s":42,"t":"MESSAGE_CREATE","d":{"id":"1100000000000000001","channel_id":"1100000000000000002",\
            "guild_id":"1100000000000000003","author":{"id":"1100000000000000004","username":"ann","brand_new_field":{"x":1}},\
            "member":{"roles":["1100000000000000005"],"joined_at":"2024-01-02T03:04:05.678000+00:00"},"content":"hi",\
            "type":99,"flags":123456,"poll":null}}
            """)
        #expect(payload.s == 42)
        guard case .messageCreate(let message)? = payload.event else {
            Issue.record("not a message: \(String(describing: payload.event))")
            return
        }
        #expect(message.message.author == UserID(1_100_000_000_000_000_004))
        #expect(message.message.authorRoles == [RoleID(1_100_000_000_000_000_005)])
        #expect(message.message.content == "hi")
        #expect(payload.d == nil)
    }

    @Test func aKnownEventThatDoesNotDecodeKeepsItsSequence() throws {
        let payload = try decode(#"{"op":0,"s":7,"t":"GUILD_MEMBER_ADD","d":{"roles":"not a list"}}"#)
        #expect(payload.s == 7)
        guard case .undecodable(let why)? = payload.event else {
            Issue.record("expected undecodable")
            return
        }
        #expect(why.contains("GUILD_MEMBER_ADD"))
    }

    @Test func anUnknownEventKeepsItsDataLoose() throws {
        let payload = try decode(#"{"op":0,"s":8,"t":"SOMETHING_NEW","d":{"x":1}}"#)
        #expect(payload.event == nil)
        #expect(payload.d == .object(["x": .integer(1)]))
    }

    @Test func readyKeepsItsJSONForTheSessionAndATypedCopy() throws {
        let payload = try decode("""
            {"op":0,"s":1,"t":"READY","d":{"v":10,"session_id":"abc","resume_gateway_url":"wss://r","user":{"id":"9","bot":true},\
            "guilds":[{"id":"5","unavailable":true}],"application":{"id":"9","flags":0}}}
            """)
        #expect(payload.d?["session_id"] == .string("abc"))
        guard case .ready(let ready)? = payload.event else {
            Issue.record("expected ready")
            return
        }
        #expect(ready.guilds.map(\.id) == [GuildID(5)])
        #expect(ready.application?.id == ApplicationID(9))
    }

    @Test func membersCarryPendingAndJoinDates() throws {
        let payload = try decode("""
            {"op":0,"s":3,"t":"GUILD_MEMBER_UPDATE","d":{"guild_id":"1","user":{"id":"2"},"roles":["3"],"pending":true,\
            "joined_at":"2021-04-01T12:34:56+00:00","communication_disabled_until":null}}
            """)
        guard case .memberUpdate(let member)? = payload.event, let value = member.member(in: GuildID(0)) else {
            Issue.record("expected a member update")
            return
        }
        #expect(value.guild == GuildID(1))
        #expect(value.pending)
        #expect(value.joinedAt != nil)
    }
}
