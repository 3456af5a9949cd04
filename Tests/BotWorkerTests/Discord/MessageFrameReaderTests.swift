import IPC
import Testing

@testable import BotWorker

/// The worker's own reader of MESSAGE_CREATE frames: what it reads is what JSONDecoder reads, and
/// what it is not sure of it leaves to JSONDecoder. (GatewayFuzzTests compares the two on every
/// frame it makes as well.)
@Suite struct MessageFrameReaderTests {
    static let member = #""member":{"roles":["1180000000000000012","1180000000000000013"],"joined_at":"2024-05-01T12:34:56.789000+00:00","pending":false,"nick":"Ann \u00e9t\u00e9","deaf":false,"flags":0,"avatar":null}"#
    static let frame = #"{"t":"MESSAGE_CREATE","s":7,"op":0,"d":{"type":0,"tts":false,"timestamp":"2024\u002d05-01T12:34:56.789000+00:00","edited_timestamp":"\"\\\/\b\f\n\r\t","mentions":[{"id":"1","username":"x","bot":true}],"mention_roles":[],"id":"1180000000000000301","channel_id":"1180000000000000021","guild_id":"1180000000000000010","author":{"id":"1180000000000000002","username":"ann","global_name":null,"avatar":null,"bot":false,"clan":{"tag":"X","badge":null}},"content":"line one\nsaid \"hi\" \\ \/ 🎉 caf\u00e9","embeds":[{"fields":[{"name":"a","value":"b","inline":true}],"color":1.5e3}],"nonce":-12.5E-3,\#(member)}}"#

    @Test func aMessageReadsAsJSONDecoderReadsIt() throws {
        let general = try JSONLine.decode(GatewayPayload.self, from: Self.frame)
        let fast = try #require(MessageFrameReader.payload(Self.frame))
        #expect(fast == general)
        guard case .messageCreate(let message)? = fast.event else {
            Issue.record("not a message: \(String(describing: fast.event))")
            return
        }
        #expect(fast.s == 7 && fast.op == 0 && fast.t == "MESSAGE_CREATE" && fast.d == nil)
        #expect(message.content == "line one\nsaid \"hi\" \\ / 🎉 café")
        #expect(message.member?.nick == "Ann été")
        #expect(message.member?.roles == [RoleID(1_180_000_000_000_000_012), RoleID(1_180_000_000_000_000_013)])
        #expect(message.author.bot == false && message.author.global_name == nil)
    }

    /// `d` before `t` (JSON objects have no order), whitespace everywhere, and nulls.
    @Test func anyOrderAndWhitespace() throws {
        let text = """
             { "d" : { "content" : null , "member" : null , "author" : { "id" : "5" } , "channel_id" : "6" , "id" : "7" } ,
               "op" : 0 , "s" : null , "t" : "MESSAGE_CREATE" }\t\r
            """
        let fast = try #require(MessageFrameReader.payload(text))
        #expect(fast == (try JSONLine.decode(GatewayPayload.self, from: text)))
        #expect(fast.s == nil)
    }

    /// Read in place, and as JSONDecoder reads them: a snowflake of 20 digits or with a sign
    /// (read as a String, by UInt64's rules), an escaped key in an object the reader steps over,
    /// and "t" after "d" (the message read on a second pass).
    @Test(arguments: [
        #"{"t":"MESSAGE_CREATE","s":1,"op":0,"d":{"id":"18446744073709551615","channel_id":"+2","author":{"id":"0003"}}}"#,
        #"{"t":"MESSAGE_CREATE","s":1,"op":0,"d":{"id":"1","channel_id":"2","author":{"id":"3","clan":{"t\u0061g":"X"}},"embeds":[{"fi\u0065lds":[]}]}}"#,
        #"{"op":0,"s":1,"d":{"id":"1","channel_id":"2","author":{"id":"3"},"content":"x"},"t":"MESSAGE_CREATE"}"#,
    ])
    func readAsJSONDecoderReadsThem(_ text: String) throws {
        let fast = try #require(MessageFrameReader.payload(text))
        #expect(fast == (try JSONLine.decode(GatewayPayload.self, from: text)))
    }

    /// What the reader leaves to JSONDecoder: other frames, and messages it is not sure of. In
    /// every case the worker still gets JSONDecoder's answer (`GatewayPayload.decode(frame:)`).
    @Test(arguments: [
        #"{"op":0,"s":1,"t":"GUILD_CREATE","d":{"id":"1"}}"#,
        #"{"op":11}"#,
        #"{"op":0,"s":1,"t":null,"d":{}}"#,
        // Numbers that JSONDecoder may or may not take as an Int.
        #"{"op":0,"s":1.0,"t":"MESSAGE_CREATE","d":{"id":"1","channel_id":"2","author":{"id":"3"}}}"#,
        #"{"op":-0,"s":1,"t":"MESSAGE_CREATE","d":{"id":"1","channel_id":"2","author":{"id":"3"}}}"#,
        // A snowflake as a number; a field twice; a surrogate pair; a missing author.
        #"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"id":1,"channel_id":"2","author":{"id":"3"}}}"#,
        #"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"id":"1","id":"9","channel_id":"2","author":{"id":"3"}}}"#,
        #"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"id":"1","channel_id":"2","author":{"id":"3"},"content":"\ud83c\udf89"}}"#,
        #"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"id":"1","channel_id":"2"}}"#,
        // An escaped key among the fields the bot reads (Discord sends none); a snowflake of 21
        // digits, which no UInt64 holds.
        #"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"id":"1","channel_id":"2","author":{"id":"3"},"c\u006fntent":"x"}}"#,
        #"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"id":"184467440737095516150","channel_id":"2","author":{"id":"3"}}}"#,
        // In a field the bot does not read: an unknown escape, a lone surrogate, a raw tab.
        #"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"id":"1","channel_id":"2","author":{"id":"3"},"nonce":"a\x"}}"#,
        #"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"id":"1","channel_id":"2","author":{"id":"3"},"nonce":"\udc00"}}"#,
        "{\"op\":0,\"s\":1,\"t\":\"MESSAGE_CREATE\",\"d\":{\"id\":\"1\",\"channel_id\":\"2\",\"author\":{\"id\":\"3\"},\"nonce\":\"a\tb\"}}",
        // Malformed: a trailing comma, an unfinished frame, something after the object.
        #"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"id":"1","channel_id":"2","author":{"id":"3"},}}"#,
        #"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"id":"1","channel_id":"2","author":{"id":"3"}"#,
        #"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"id":"1","channel_id":"2","author":{"id":"3"}}} x"#,
    ])
    func leftToJSONDecoder(_ text: String) {
        #expect(MessageFrameReader.payload(text) == nil)
        #expect(GatewayPayload.decode(frame: text) == (try? JSONLine.decode(GatewayPayload.self, from: text)))
    }

    /// A surrogate pair is JSONDecoder's to read, and it reads it.
    @Test func aSurrogatePairStillDecodes() throws {
        let text = #"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"id":"1","channel_id":"2","author":{"id":"3"},"content":"\ud83c\udf89"}}"#
        guard case .messageCreate(let message)? = GatewayPayload.decode(frame: text)?.event else {
            Issue.record("not decoded")
            return
        }
        #expect(message.content == "🎉")
    }

    /// Every cut of the frame is refused by the reader, as by JSONDecoder.
    @Test func everyTruncationIsRefused() {
        let bytes = Array(Self.frame.utf8)
        for end in 0..<bytes.count {
            let text = String(decoding: bytes[..<end], as: UTF8.self)
            #expect(MessageFrameReader.payload(text) == nil, "cut at \(end)")
        }
    }
}
