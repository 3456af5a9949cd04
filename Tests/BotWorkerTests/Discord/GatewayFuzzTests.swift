/// Bad input for the Gateway decoder: payloads shaped as Discord (and the sandbox) send them,
/// broken in their structure (keys dropped, values of another type, snowflakes as numbers or
/// garbage, nulls, empty and enormous arrays, unicode, nested copies) and in their bytes.
///
/// The defaults take a few seconds. To run longer, with a seed of your own:
///
///     FUZZ_ITERATIONS=1000000 FUZZ_SEED=$RANDOM swift test --filter Fuzz
///
/// A failure prints its seed and iteration; `FUZZ_SEED=… FUZZ_REPLAY=…` runs that input alone.

import IPC
import TestSupport
import Testing

@testable import BotWorker

@Suite struct GatewayFuzzTests {
    /// What the bot makes of a payload, for comparing a mutated payload with its seed.
    enum Kind: Equatable {
        case envelope(op: Int)
        case ready, guildCreate, guildUpdate, memberAdd, memberUpdate, memberRemove, messageCreate, interactionCreate, voiceStateUpdate, other, undecodable

        init(_ payload: GatewayPayload) {
            switch payload.event {
            case nil: self = .envelope(op: payload.op)
            case .ready: self = .ready
            case .guildCreate: self = .guildCreate
            case .guildUpdate: self = .guildUpdate
            case .guildUpdate: self = .guildCreate  // the same guild object, without members
            case .memberAdd: self = .memberAdd
            case .memberUpdate: self = .memberUpdate
            case .memberRemove: self = .memberRemove
            case .messageCreate: self = .messageCreate
            case .interactionCreate: self = .interactionCreate
            case .voiceStateUpdate: self = .voiceStateUpdate
            case .other: self = .other
            case .undecodable: self = .undecodable
            }
        }

        static let ofType: [String: Kind] = [
            "READY": .ready, "GUILD_CREATE": .guildCreate, "GUILD_MEMBER_ADD": .memberAdd, "GUILD_MEMBER_UPDATE": .memberUpdate,
            "GUILD_MEMBER_REMOVE": .memberRemove, "MESSAGE_CREATE": .messageCreate, "INTERACTION_CREATE": .interactionCreate,
            "VOICE_STATE_UPDATE": .voiceStateUpdate, "GUILD_UPDATE": .guildUpdate,
        ]
    }

    @Test func everySeedDecodesToItsKind() throws {
        for seed in GatewaySeed.all {
            let payload = try JSONLine.decode(GatewayPayload.self, from: seed.text)
            #expect(Kind(payload) == seed.kind, "\(seed.name)")
        }
    }

    @Test func structurallyMutatedPayloads() throws {
        let seeds = try GatewaySeed.all.map { ($0, try FuzzJSON(parsing: $0.text), try JSONLine.decode(GatewayPayload.self, from: $0.text)) }
        let fuzzer = Fuzzer("gateway, structure", iterations: 2500)
        fuzzer.run { random in
            let (seed, original, expected) = random.pick(seeds)
            var tree = original
            let mutations = (0...random.below(2)).map { _ in FuzzMutation.apply(to: &tree, &random) }
            let bytes = tree.bytes
            // A key that is gone counts as read unless nothing reads it: JSON of any shape will
            // do for `d`, but no `d` at all will not.
            let gone = mutations.flatMap(\.removed).map { seed.reads.classify($0) == .unread ? GatewayReads.Touch.unread : .typed }
            let touched = (mutations.flatMap(\.touched).map(seed.reads.classify) + gone).max() ?? .unread
            let benign = mutations.allSatisfy(\.benign)
            let what = "\(seed.name): \(mutations.map(\.description).joined(separator: "; "))"
            guard let payload = Self.decode(bytes, fuzzer, &random, what) else {
                fuzzer.check(!benign || touched == .typed, "\(what): only touched what the decoder reads as loose JSON or not at all, yet did not decode")
                return
            }
            switch touched {
            case .unread:
                fuzzer.check(
                    payload.event == expected.event && payload.op == expected.op && payload.s == expected.s && payload.t == expected.t,
                    "\(what): only touched what the decoder does not read, yet decoded as \(String(describing: payload.event).prefix(300))"
                )
            case .json where benign:
                fuzzer.check(Kind(payload) == seed.kind, "\(what): decoded as \(Kind(payload)), not \(seed.kind)")
            case .json, .typed:
                break
            }
        }
    }

    @Test func payloadsWithBrokenBytes() {
        let seeds = GatewaySeed.all.map { Array($0.text.utf8) }
        let fuzzer = Fuzzer("gateway, bytes", iterations: 2500)
        fuzzer.run { random in
            var bytes = random.chance(5) ? ByteMutator.noise(&random) : random.pick(seeds)
            for _ in 0...random.below(4) { ByteMutator.mutate(&bytes, &random) }
            _ = Self.decode(bytes, fuzzer, &random, "bytes changed")
        }
    }

    /// Every truncation of every seed is refused: each is an unfinished object.
    @Test func everyTruncationIsRefused() {
        let fuzzer = Fuzzer("gateway, truncated")
        var random = FuzzRandom(seed: Fuzzer.seed)
        for seed in GatewaySeed.all {
            let bytes = Array(seed.text.utf8)
            for end in 0..<bytes.count {
                fuzzer.check(Self.decode(Array(bytes[..<end]), fuzzer, &random, "\(seed.name) cut at \(end)") == nil, "\(seed.name) cut at \(end) decoded")
            }
        }
    }

    /// Nesting around the JSON decoder's limit (512), where a frame ending in a 513th `[` trapped.
    @Test func nestingAtTheLimitIsRefused() {
        let fuzzer = Fuzzer("gateway, nesting")
        var random = FuzzRandom(seed: Fuzzer.seed)
        for depth in 509...514 {
            let open = String(repeating: "[", count: depth), close = String(repeating: "]", count: depth)
            for frame in [open, #"{"op":0,"s":1,"t":"GUILD_CREATE","d":"# + open, #"{"op":10,"d":"# + open] {
                fuzzer.check(Self.decode(Array(frame.utf8), fuzzer, &random, "\(depth) deep") == nil, "\(depth) deep, unfinished, decoded")
            }
            // Within the limit the envelope decodes and the message does not.
            let message = #"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"id":"# + open + close + "}}"
            let payload = Self.decode(Array(message.utf8), fuzzer, &random, "\(depth) deep")
            fuzzer.check(payload.map { Kind($0) == .undecodable && $0.s == 1 } ?? (depth + 2 > 512), "\(depth) deep: \(String(describing: payload?.event))")
        }
    }

    /// A GUILD_CREATE of a large guild is more than a megabyte, in one frame.
    @Test func aGuildCreateOfAMegabyteDecodes() throws {
        let count = 6000
        let members = (0..<count).map { index in
            let id = 300_000_000_000_000_000 + index
            return #"{"user":{"id":"\#(id)","username":"member-\#(index)","global_name":"Member \#(index)","avatar":null,"discriminator":"0","public_flags":0},"roles":["1180000000000000012"],"joined_at":"2024-05-01T12:34:56.789000+00:00","pending":false,"flags":0,"nick":null,"avatar":null,"premium_since":null,"deaf":false,"mute":false,"communication_disabled_until":null}"#
        }
        let text = #"{"op":0,"s":2,"t":"GUILD_CREATE","d":{"id":"1180000000000000010","name":"Big Guild","owner_id":"1180000000000000001","roles":[],"channels":[],"member_count":\#(count),"unavailable":false,"members":[\#(members.joined(separator: ","))]}}"#
        #expect(text.utf8.count > 1 << 20)
        let payload = try JSONLine.decode(GatewayPayload.self, from: text)
        guard case .guildCreate(let guild)? = payload.event else {
            Issue.record("not a guild: \(String(describing: payload.event).prefix(300))")
            return
        }
        #expect(guild.members?.count == count)
        #expect(guild.members?.last?.member(in: guild.id)?.user == UserID(UInt64(300_000_000_000_000_000 + count - 1)))
    }

    /// Decodes; checks what every decoded payload must satisfy, and hands it to the code that
    /// reads it next (the session's state machine, the member and message conversions).
    static func decode(_ bytes: [UInt8], _ fuzzer: Fuzzer, _ random: inout FuzzRandom, _ what: @autoclosure () -> String) -> GatewayPayload? {
        fuzzer.feed(bytes)
        let text = String(decoding: bytes, as: UTF8.self)
        let general = try? JSONLine.decode(GatewayPayload.self, from: text)
        // The worker reads MESSAGE_CREATE without JSONDecoder: whatever that reader accepts must
        // be what JSONDecoder makes of the same frame.
        if let fast = MessageFrameReader.payload(text) {
            fuzzer.check(fast == general, "\(what()): MessageFrameReader read \(String(describing: fast.event).prefix(300)), JSONDecoder \(String(describing: general?.event).prefix(300))")
        }
        guard let payload = general else { return nil }
        if payload.op == 0, let t = payload.t, let kind = Kind.ofType[t] {
            let decoded = Kind(payload)
            fuzzer.check(decoded == kind || decoded == .undecodable, "\(what()): a \(t) decoded as \(decoded)")
            if case .undecodable(let why)? = payload.event {
                fuzzer.check(why.hasPrefix(t + ":"), "\(what()): the reason does not name the event: \(why.prefix(200))")
            }
            fuzzer.check(t == "READY" || payload.d == nil, "\(what()): a typed \(t) kept its loose JSON")
        } else {
            fuzzer.check(payload.event == nil, "\(what()): op \(payload.op) \(payload.t ?? "nil") has a typed event")
        }

        switch payload.event {
        case .ready(let ready): _ = ready.user.id.createdAt
        case .guildCreate(let guild): _ = guild.members?.compactMap { $0.member(in: guild.id) }
        case .memberAdd(let member), .memberUpdate(let member): _ = member.member(in: GuildID(1))
        case .memberRemove(let removed): _ = removed.user.id.createdAt
        case .messageCreate(let message): _ = message.message
        default: break
        }
        var session = GatewaySession(identity: .init(token: Secret("token"), intents: 515, shard: nil), gatewayURL: "wss://gateway.example")
        _ = session.start()
        _ = session.opened()
        if random.chance(50) {
            _ = session.received(GatewayPayload(op: 10, d: .object(["heartbeat_interval": .integer(41_250)])), at: .now, jitter: 0.5)
        }
        for action in session.received(payload, at: .now, jitter: Double(random.below(1000)) / 1000) {
            if case .close(let code) = action { _ = session.closed(code: code, jitter: 0.5) }
        }
        return payload
    }
}

/// Which parts of a payload the decoder reads, and how: for telling a mutation that the decoder
/// cannot see from one that it must survive.
indirect enum GatewayReads: Sendable {
    /// Read as loose JSON (`JSONValue`): any JSON value will do.
    case json
    /// Read as a value of a fixed type.
    case typed
    /// An object of which these keys are read; others are skipped.
    case fields([String: GatewayReads])
    case elements(GatewayReads)

    enum Touch: Comparable { case unread, json, typed }

    func classify(_ path: [FuzzJSON.Step]) -> Touch {
        var reads = self
        for step in path {
            switch (reads, step) {
            case (.json, _): return .json
            case (.typed, _): return .typed
            case (.fields(let fields), .member(_, let key)):
                guard let next = fields[key] else { return .unread }
                reads = next
            case (.elements(let element), .element): reads = element
            default: return .typed
            }
        }
        if case .json = reads { return .json }
        return .typed
    }

    static func envelope(_ d: GatewayReads) -> GatewayReads { .fields(["op": .typed, "s": .typed, "t": .typed, "d": d]) }

    static let user = GatewayReads.fields(["id": .typed, "username": .typed, "global_name": .typed, "bot": .typed])
    static let member = GatewayReads.fields(["guild_id": .typed, "user": user, "roles": .elements(.typed), "joined_at": .typed, "pending": .typed, "nick": .typed])
    static let ready = GatewayReads.fields([
        "session_id": .typed, "resume_gateway_url": .typed, "user": user, "guilds": .elements(.fields(["id": .typed])),
        "application": .fields(["id": .typed]),
    ])
    static let guild = GatewayReads.fields([
        "id": .typed, "name": .typed, "owner_id": .typed, "unavailable": .typed, "verification_level": .typed,
        "roles": .elements(.fields(["id": .typed, "name": .typed, "position": .typed, "permissions": .typed, "managed": .typed])),
        "channels": .elements(.fields(["id": .typed, "type": .typed, "name": .typed])),
        "members": .elements(member), "afk_channel_id": .typed, "voice_states": .elements(voiceState),
    ])
    static let voiceState = GatewayReads.fields([
        "guild_id": .typed, "channel_id": .typed, "user_id": .typed, "member": member,
        "mute": .typed, "deaf": .typed, "self_mute": .typed, "self_deaf": .typed,
    ])
    static let memberRemove = GatewayReads.fields(["guild_id": .typed, "user": user])
    static let message = GatewayReads.fields([
        "id": .typed, "channel_id": .typed, "guild_id": .typed, "author": user, "member": member, "content": .typed,
    ])
}

/// Payloads as the Gateway sends them (the sandbox's shapes, which follow Discord's).
struct GatewaySeed: Sendable {
    let name: String
    let kind: GatewayFuzzTests.Kind
    let reads: GatewayReads
    let text: String

    static let user = #"{"id":"1180000000000000101","username":"member-01","global_name":"Member 01","avatar":null,"discriminator":"0","public_flags":0}"#
    static let bot = #"{"id":"1180000000000000002","username":"sandbox-bot","global_name":null,"avatar":null,"discriminator":"0","public_flags":0,"bot":true}"#
    static let member = #""roles":["1180000000000000012","1180000000000000013"],"joined_at":"2024-05-01T12:34:56.789000+00:00","pending":false,"flags":0,"nick":null,"avatar":null,"premium_since":null,"deaf":false,"mute":false,"communication_disabled_until":null"#
    static let role = #"{"id":"1180000000000000012","name":"Verified","color":0,"hoist":false,"icon":null,"unicode_emoji":null,"position":2,"permissions":"0","managed":false,"mentionable":false,"flags":0}"#
    static let botRole = #"{"id":"1180000000000000017","name":"Bot","color":0,"hoist":false,"icon":null,"unicode_emoji":null,"position":7,"permissions":"268438528","managed":true,"mentionable":false,"flags":0,"tags":{"bot_id":"1180000000000000002"}}"#
    static let channel = #"{"id":"1180000000000000021","type":0,"guild_id":"1180000000000000010","name":"general","position":2,"parent_id":null,"topic":null,"nsfw":false,"permission_overwrites":[],"rate_limit_per_user":0,"last_message_id":null}"#
    static let interactionMember = #"{"user":\#(user),\#(member),"permissions":"2147871744"}"#
    static let interactionCommon = #""application_id":"1180000000000000009","guild_id":"1180000000000000010","guild":{"id":"1180000000000000010","locale":"en-US","features":[]},"channel":\#(channel),"member":\#(interactionMember),"token":"aW50ZXJhY3Rpb246YWJjZGVm","version":1,"app_permissions":"268438528","locale":"en-US","guild_locale":"en-US","entitlements":[],"authorizing_integration_owners":{"0":"1180000000000000010"},"context":0,"attachment_size_limit":10485760"#

    static let all: [GatewaySeed] = [
        .init(name: "HELLO", kind: .envelope(op: 10), reads: .envelope(.json), text: #"{"op":10,"d":{"heartbeat_interval":41250},"s":null,"t":null}"#),
        .init(name: "HEARTBEAT", kind: .envelope(op: 1), reads: .envelope(.json), text: #"{"op":1,"d":null,"s":null,"t":null}"#),
        .init(name: "HEARTBEAT_ACK", kind: .envelope(op: 11), reads: .envelope(.json), text: #"{"op":11,"d":null,"s":null,"t":null}"#),
        .init(name: "RECONNECT", kind: .envelope(op: 7), reads: .envelope(.json), text: #"{"op":7,"d":null,"s":null,"t":null}"#),
        .init(name: "INVALID_SESSION false", kind: .envelope(op: 9), reads: .envelope(.json), text: #"{"op":9,"d":false,"s":null,"t":null}"#),
        .init(name: "INVALID_SESSION true", kind: .envelope(op: 9), reads: .envelope(.json), text: #"{"op":9,"d":true,"s":null,"t":null}"#),
        .init(name: "RESUMED", kind: .envelope(op: 0), reads: .envelope(.json), text: #"{"op":0,"t":"RESUMED","s":7,"d":null}"#),
        .init(name: "TYPING_START", kind: .envelope(op: 0), reads: .envelope(.json), text: #"{"op":0,"t":"TYPING_START","s":8,"d":{"channel_id":"1180000000000000021","guild_id":"1180000000000000010","user_id":"1180000000000000101","timestamp":1714566896}}"#),
        .init(name: "READY", kind: .ready, reads: .envelope(GatewayReads.ready), text: #"""
            {"op":0,"t":"READY","s":1,"d":{"v":10,"user":{"id":"1180000000000000002","username":"sandbox-bot","global_name":null,"avatar":null,"discriminator":"0","public_flags":0,"bot":true,"verified":true,"mfa_enabled":false,"flags":0},"guilds":[{"id":"1180000000000000010","unavailable":true}],"session_id":"9f1c2e3d4b5a69788796a5b4c3d2e1f0","resume_gateway_url":"wss://gateway-us-east1-b.discord.gg","session_type":"normal","private_channels":[],"relationships":[],"presences":[],"guild_join_requests":[],"application":{"id":"1180000000000000009","flags":0},"shard":[0,1]}}
            """#),
        .init(name: "GUILD_CREATE", kind: .guildCreate, reads: .envelope(GatewayReads.guild), text: #"""
            {"op":0,"t":"GUILD_CREATE","s":2,"d":{"id":"1180000000000000010","name":"Sandbox Guild","icon":null,"splash":null,"owner_id":"1180000000000000001","roles":[{"id":"1180000000000000010","name":"@everyone","color":0,"hoist":false,"icon":null,"unicode_emoji":null,"position":0,"permissions":"2147552256","managed":false,"mentionable":false,"flags":0},\#(role),\#(botRole)],"emojis":[],"stickers":[],"features":[],"verification_level":1,"default_message_notifications":0,"explicit_content_filter":0,"mfa_level":0,"nsfw_level":0,"premium_tier":0,"premium_subscription_count":0,"preferred_locale":"en-US","system_channel_id":"1180000000000000020","rules_channel_id":null,"afk_timeout":300,"application_id":null,"description":null,"max_members":500000,"channels":[\#(channel),{"id":"1180000000000000020","type":0,"guild_id":"1180000000000000010","name":"welcome","position":0,"parent_id":null,"topic":null,"nsfw":false,"permission_overwrites":[],"rate_limit_per_user":0,"last_message_id":null}],"members":[{"user":\#(bot),"roles":["1180000000000000017"],"joined_at":"2023-01-01T00:00:00.000000+00:00","pending":false,"flags":0,"nick":null,"avatar":null,"premium_since":null,"deaf":false,"mute":false,"communication_disabled_until":null},{"user":\#(user),\#(member)},{"user":{"id":"1180000000000000102","username":"member-02","global_name":"Member 02","avatar":null,"discriminator":"0","public_flags":0},"roles":[],"joined_at":"2024-06-01T08:00:00.000000+00:00","pending":true,"flags":0,"nick":"👍🏽 nick","avatar":null,"premium_since":null,"deaf":false,"mute":false,"communication_disabled_until":null}],"member_count":3,"joined_at":"2023-01-01T00:00:00.000000+00:00","large":false,"unavailable":false,"threads":[],"presences":[],"voice_states":[],"stage_instances":[],"guild_scheduled_events":[],"soundboard_sounds":[]}}
            """#),
        .init(name: "MESSAGE_CREATE", kind: .messageCreate, reads: .envelope(GatewayReads.message), text: #"""
            {"op":0,"t":"MESSAGE_CREATE","s":3,"d":{"id":"1180000000000000301","channel_id":"1180000000000000021","guild_id":"1180000000000000010","author":\#(user),"content":"hey <@1180000000000000002> how do levels work","timestamp":"2024-05-01T12:34:56.789000+00:00","edited_timestamp":null,"tts":false,"mention_everyone":false,"mentions":[\#(bot)],"mention_roles":[],"attachments":[],"embeds":[],"components":[],"pinned":false,"type":0,"flags":0,"nonce":"1180000000000000300","member":{\#(member)}}}
            """#),
        .init(name: "GUILD_MEMBER_ADD", kind: .memberAdd, reads: .envelope(GatewayReads.member), text: #"""
            {"op":0,"t":"GUILD_MEMBER_ADD","s":4,"d":{"user":\#(user),"roles":[],"joined_at":"2024-05-01T12:34:56.789000+00:00","pending":true,"flags":0,"nick":null,"avatar":null,"premium_since":null,"deaf":false,"mute":false,"communication_disabled_until":null,"guild_id":"1180000000000000010"}}
            """#),
        .init(name: "GUILD_MEMBER_UPDATE", kind: .memberUpdate, reads: .envelope(GatewayReads.member), text: #"""
            {"op":0,"t":"GUILD_MEMBER_UPDATE","s":5,"d":{"user":\#(user),\#(member),"guild_id":"1180000000000000010"}}
            """#),
        .init(name: "VOICE_STATE_UPDATE", kind: .voiceStateUpdate, reads: .envelope(GatewayReads.voiceState), text: #"""
            {"op":0,"t":"VOICE_STATE_UPDATE","s":9,"d":{"user_id":"1180000000000000101","channel_id":"1180000000000000031","session_id":"9c1e0a","self_mute":false,"self_deaf":false,"mute":false,"deaf":false,"self_video":false,"suppress":false,"request_to_speak_timestamp":null,"guild_id":"1180000000000000010","member":{"user":\#(user),\#(member)}}}
            """#),
        .init(name: "GUILD_MEMBER_REMOVE", kind: .memberRemove, reads: .envelope(GatewayReads.memberRemove), text: #"""
            {"op":0,"t":"GUILD_MEMBER_REMOVE","s":6,"d":{"guild_id":"1180000000000000010","user":\#(user)}}
            """#),
        .init(name: "INTERACTION_CREATE command", kind: .interactionCreate, reads: .envelope(.json), text: #"""
            {"op":0,"t":"INTERACTION_CREATE","s":9,"d":{"id":"1180000000000000401","type":2,"data":{"id":"1180000000000000030","name":"verification","type":1,"guild_id":"1180000000000000010","options":[{"name":"set","type":1,"options":[{"name":"role","type":8,"value":"1180000000000000012"},{"name":"min_age_days","type":4,"value":7},{"name":"message","type":3,"value":"Welcome! 👋"}]}]},"channel_id":"1180000000000000021",\#(interactionCommon)}}
            """#),
        .init(name: "INTERACTION_CREATE button", kind: .interactionCreate, reads: .envelope(.json), text: #"""
            {"op":0,"t":"INTERACTION_CREATE","s":10,"d":{"id":"1180000000000000402","type":3,"data":{"custom_id":"verify","component_type":2},"message":{"id":"1180000000000000310","channel_id":"1180000000000000021","author":\#(bot),"content":"Press to verify","components":[{"type":1,"components":[{"type":2,"style":1,"label":"Verify","custom_id":"verify"}]}],"type":0,"flags":0},"channel_id":"1180000000000000021",\#(interactionCommon)}}
            """#),
    ]
}
