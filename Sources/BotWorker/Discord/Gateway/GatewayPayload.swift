import IPC

/// The envelope of every Gateway message: `{"op": int, "d": any?, "s": int?, "t": string?}`.
///
/// For the dispatches the bot acts on (`GatewayEvent.typed`), `d` is decoded straight into
/// `event` and left nil here (READY keeps both: the session reads it). Other payloads keep `d` as
/// loose JSON; an unknown `t` or field is skipped, never an error (Discord adds them without notice).
struct GatewayPayload: Codable, Sendable, Equatable {
    var op: Int
    var d: JSONValue?
    var s: Int?
    var t: String?
    /// The typed dispatch, when `t` is one the bot handles; never encoded.
    var event: GatewayEvent?

    init(op: Int, d: JSONValue? = nil, s: Int? = nil, t: String? = nil) {
        self.op = op
        self.d = d
        self.s = s
        self.t = t
    }

    /// A Gateway frame as the client reads it: a MESSAGE_CREATE by `MessageFrameReader`, anything
    /// it is not sure of by JSONDecoder; nil when the frame is not a payload at all.
    static func decode(frame text: String) -> GatewayPayload? {
        MessageFrameReader.payload(text) ?? (try? JSONLine.decode(GatewayPayload.self, from: text))
    }

    private enum CodingKeys: String, CodingKey {
        case op, d, s, t
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        op = try c.decode(Int.self, forKey: .op)
        s = try c.decodeIfPresent(Int.self, forKey: .s)
        t = try c.decodeIfPresent(String.self, forKey: .t)
        if op == Opcode.dispatch.rawValue, let t, GatewayEvent.typed.contains(t) {
            event = GatewayEvent.decode(type: t, from: c, key: .d)
            d = t == "READY" ? try? c.decodeIfPresent(JSONValue.self, forKey: .d) : nil
        } else {
            d = try c.decodeIfPresent(JSONValue.self, forKey: .d)
        }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(op, forKey: .op)
        try c.encode(d ?? .null, forKey: .d)
        try c.encodeIfPresent(s, forKey: .s)
        try c.encodeIfPresent(t, forKey: .t)
    }

    enum Opcode: Int {
        case dispatch = 0
        case heartbeat = 1
        case identify = 2
        case presenceUpdate = 3
        case resume = 6
        case reconnect = 7
        case requestGuildMembers = 8
        case invalidSession = 9
        case hello = 10
        case heartbeatAck = 11
    }
}

/// What Discord's close codes mean to a bot (developers/topics/opcodes-and-status-codes).
enum GatewayCloseCode {
    /// A shard holds too many guilds: the bot must run more shards.
    static let shardingRequired = 4011

    enum Meaning: Equatable {
        /// Reconnect and resume the session.
        case resume
        /// Reconnect with a fresh Identify: the session is gone (4007 invalid seq, 4009 timed out).
        case identify
        /// Stop: no reconnect can succeed until the configuration changes.
        case fatal(String)
    }

    static func meaning(of code: Int?) -> Meaning {
        switch code {
        case 4004: .fatal("Discord rejected the token (close code 4004): put a valid bot token in DISCORD_TOKEN (Developer Portal → Bot → Reset Token)")
        case 4010: .fatal("Discord refused the shard (close code 4010): check the shard settings")
        case 4011: .fatal("Discord requires more shards for this bot (close code 4011): set discord.shards to \"auto\" or a larger number")
        case 4012: .fatal("Discord refused the API version (close code 4012): this build speaks v10")
        case 4013: .fatal("Discord refused the intents (close code 4013): the intents value is invalid")
        case 4014: .fatal("Discord refused privileged intents (close code 4014): enable Server Members Intent (and Message Content Intent if a feature needs it) in the Developer Portal → Bot")
        case 4007, 4009: .identify
        default: .resume
        }
    }
}
