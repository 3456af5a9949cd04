import IPC
import NIOCore

/// Gateway sessions as Discord keeps them: a sequence per session, its recent dispatches for
/// Resume, and the session kept (2 minutes by default) after its connection drops, receiving
/// the guild's events meanwhile, which a Resume replays.
///
/// Lives inside `SandboxWorld`, under its lock. `dispatch` numbers an event for every connected
/// session that may see it, keeps it for replay and queues it on the connection.
struct GatewaySessions: Sendable {
    /// Which sessions an event goes to, by the intents Discord would require.
    enum Audience: Sendable {
        case all
        /// GUILD_MEMBER_ADD/REMOVE: GUILD_MEMBERS only.
        case members
        /// GUILD_MEMBER_UPDATE: GUILD_MEMBERS, or anyone when it is the bot's own member.
        case memberUpdate(botItself: Bool)
        /// MESSAGE_CREATE: GUILD_MESSAGES; without MESSAGE_CONTENT the blanked copy is sent.
        case messages(blanked: JSONValue?)
        /// VOICE_STATE_UPDATE: GUILD_VOICE_STATES only.
        case voice
        /// GUILD_CREATE of a guild added later: everyone; without GUILD_MEMBERS, this copy (only
        /// the bot's own member listed).
        case guildCreate(withoutMembers: JSONValue)
    }

    /// The `shard: [id, count]` of an Identify. A session without one is shard 0 of 1: every guild.
    struct Shard: Sendable, Equatable {
        var id: Int
        var count: Int

        /// Whether a guild's events go to this shard: `(guild_id >> 22) % count == id`; events of
        /// no guild (DMs) go to shard 0.
        func owns(guild: UInt64?) -> Bool {
            guard let guild else { return id == 0 }
            return SandboxWorld.shard(ofGuild: guild, count: count) == id
        }
    }

    /// One Identify that passed the checks, as `GET /sandbox/state` lists it.
    struct IdentifyRecord: Sendable {
        var at: UInt64
        var shard: Int
        var count: Int
        var accepted: Bool

        var json: JSONValue {
            .object(["at": .integer(Int(at)), "shard": .integer(shard), "count": .integer(count), "accepted": .bool(accepted)])
        }
    }

    enum Intent {
        static let guilds = 1 << 0
        static let guildMembers = 1 << 1
        static let guildVoiceStates = 1 << 7
        static let guildMessages = 1 << 9
        static let messageContent = 1 << 15
        /// Every intent Discord documents: bits 0–16, 20, 21, 24, 25.
        static let known = (1 << 17) - 1 | 1 << 20 | 1 << 21 | 1 << 24 | 1 << 25
    }

    struct Session: Sendable {
        var id: String
        var intents: Int
        var sequence = 0
        var replay = ReplayBuffer()
        var connection: GatewayConnection?
        var droppedAt: UInt64?
        /// nil: the Identify had no `shard` (it gets every guild's events).
        var shard: Shard?

        func owns(guild: UInt64?) -> Bool { shard?.owns(guild: guild) ?? true }
    }

    /// How long a session stays resumable once its connection dropped (`--session-expiry-seconds`).
    var keepAfterDrop: UInt64 = 2 * 60 * 1000
    static let identifyWindow: UInt64 = 24 * 3600 * 1000
    static let sessionStartTotal = 1000
    static let keptIdentifies = 1000

    /// The most guilds one shard may hold; an Identify whose shard holds more is closed with 4011.
    var guildsPerShardLimit = 2500
    /// `session_start_limit.max_concurrency`: Identifies with rate-limit key `shard_id %
    /// maxConcurrency` may start once per `concurrencyWindow` per key (Discord: 5 s).
    var maxConcurrency = 1
    var concurrencyWindow: UInt64 = 5000
    /// The shard count `GET /gateway/bot` recommends, when the control API set one.
    var shardsOverride: Int?
    /// When each rate-limit key last started a session.
    private var lastIdentifyByKey: [Int: UInt64] = [:]
    /// The last 1000 Identifies, accepted or refused.
    private(set) var identifyLog: [IdentifyRecord] = []
    private(set) var identifyRefusals = 0

    private(set) var sessions: [String: Session] = [:]
    private(set) var identifyTimes: [UInt64] = []
    private(set) var identifies = 0
    private(set) var resumes = 0
    var connectionsOpened = 0
    var acksEnabled = true
    /// A test's fault: the next Resume replays this many events from before its sequence too, as
    /// a Discord that lost track of an acknowledgement might; a bot must skip them.
    var replayOverlap = 0

    /// Connections with a live session.
    var connected: [GatewayConnection] { sessions.values.compactMap(\.connection) }
    var hasConnectedSession: Bool { sessions.values.contains { $0.connection != nil } }
    /// Messages from members delivered to at least one live session (the bot's count must match).
    var memberMessages = 0

    func sessionStartLimit(at now: UInt64) -> (remaining: Int, resetAfter: UInt64) {
        let recent = identifyTimes.filter { now - $0 < Self.identifyWindow }
        let resetAfter = recent.min().map { $0 + Self.identifyWindow - now } ?? Self.identifyWindow
        return (max(0, Self.sessionStartTotal - recent.count), resetAfter)
    }

    /// Whether an Identify may start a session now, as Discord's `max_concurrency` allows: one per
    /// rate-limit key (`shard_id % max_concurrency`) per `concurrencyWindow`. Recorded either way.
    /// Identifies without `shard` are not limited (the sandbox always let them through; a sharded
    /// client sends `shard` on every Identify).
    mutating func admitIdentify(shard: Shard?, at now: UInt64) -> Bool {
        var accepted = true
        if let shard {
            let key = shard.id % max(1, maxConcurrency)
            if let last = lastIdentifyByKey[key], now >= last, now - last < concurrencyWindow {
                accepted = false
                identifyRefusals += 1
            } else {
                lastIdentifyByKey[key] = now
            }
        }
        identifyLog.append(IdentifyRecord(at: now, shard: shard?.id ?? 0, count: shard?.count ?? 1, accepted: accepted))
        if identifyLog.count > Self.keptIdentifies { identifyLog.removeFirst(identifyLog.count - Self.keptIdentifies) }
        return accepted
    }

    /// A new session for this connection; the caller dispatches READY and GUILD_CREATE next.
    mutating func identify(sessionID: String, intents: Int, shard: Shard? = nil, connection: GatewayConnection, at now: UInt64) {
        expire(at: now)
        identifies += 1
        identifyTimes.removeAll { now - $0 >= Self.identifyWindow }
        identifyTimes.append(now)
        sessions[sessionID] = Session(id: sessionID, intents: intents, connection: connection, shard: shard)
    }

    enum ResumeOutcome: Sendable, Equatable {
        case resumed(replayed: Int)
        /// Unknown or expired session, or a sequence older than the buffer: op 9 `false`.
        case invalid
    }

    /// Replays what the session missed after `sequence` on the new connection, then RESUMED.
    mutating func resume(sessionID: String, sequence: Int, connection: GatewayConnection, at now: UInt64) -> ResumeOutcome {
        expire(at: now)
        guard var session = sessions[sessionID], sequence <= session.sequence,
              sequence >= (session.replay.oldestSequence ?? session.sequence + 1) - 1
        else { return .invalid }
        if let old = session.connection, old !== connection { old.close(code: nil) }
        let missed = session.replay.after(max(0, sequence - replayOverlap))
        replayOverlap = 0
        for frame in missed { connection.send(frame) }
        session.connection = connection
        session.droppedAt = nil
        sessions[sessionID] = session
        resumes += 1
        send("RESUMED", .null, toSession: sessionID)
        return .resumed(replayed: missed.count)
    }

    /// The connection is gone; its session stays resumable for 5 minutes unless `keep` is false.
    mutating func disconnected(_ connection: GatewayConnection, keep: Bool, at now: UInt64) -> String? {
        guard let (id, _) = sessions.first(where: { $0.value.connection === connection }) else { return nil }
        if keep {
            sessions[id]?.connection = nil
            sessions[id]?.droppedAt = now
        } else {
            sessions[id] = nil
        }
        return id
    }

    /// Sends an event of `guild` (nil: of no guild, shard 0's) to every session allowed to see it:
    /// the sessions whose shard owns the guild, with the intents it needs. Sessions whose
    /// connection dropped get it numbered and kept too, for their Resume, as on Discord.
    /// `encoded`: `data` (and the audience's other copy) already encoded.
    mutating func dispatch(_ type: String, _ data: JSONValue, to audience: Audience, guild: UInt64?, encoded: (ByteBuffer, ByteBuffer?)? = nil) {
        var full: ByteBuffer? = encoded?.0
        var blanked: ByteBuffer? = encoded?.1
        let now = DiscordTime.nowMilliseconds()
        for id in Array(sessions.keys) {
            guard let session = sessions[id], session.owns(guild: guild) else { continue }
            if let droppedAt = session.droppedAt, now - droppedAt >= keepAfterDrop { continue }
            var body: ByteBuffer
            switch audience {
            case .all:
                body = Self.encoded(data, cache: &full)
            case .members:
                guard session.intents & Intent.guildMembers != 0 else { continue }
                body = Self.encoded(data, cache: &full)
            case .memberUpdate(let botItself):
                guard botItself || session.intents & Intent.guildMembers != 0 else { continue }
                body = Self.encoded(data, cache: &full)
            case .voice:
                guard session.intents & Intent.guildVoiceStates != 0 else { continue }
                body = Self.encoded(data, cache: &full)
            case .guildCreate(let withoutMembers):
                if session.intents & Intent.guildMembers != 0 {
                    body = Self.encoded(data, cache: &full)
                } else {
                    body = Self.encoded(withoutMembers, cache: &blanked)
                }
            case .messages(let blankedData):
                guard session.intents & Intent.guildMessages != 0 else { continue }
                if let blankedData, session.intents & Intent.messageContent == 0 {
                    body = Self.encoded(blankedData, cache: &blanked)
                } else {
                    body = Self.encoded(data, cache: &full)
                }
            }
            send(type, body: &body, toSession: id)
        }
    }

    /// Sessions that receive events: connected, or dropped less than `keepAfterDrop` ago.
    func liveSessionIDs(at now: UInt64) -> [String] {
        liveSessions(at: now).map(\.id)
    }

    /// What a flood needs of a live session, without the session: a copy of one, held while the
    /// session is numbered, would make its replay buffer's next append copy every frame it keeps
    /// (up to 200,000: milliseconds a batch).
    struct Recipient: Sendable {
        let id: String
        let intents: Int
        let shard: Shard?

        func owns(guild: UInt64?) -> Bool { shard?.owns(guild: guild) ?? true }
    }

    /// The live sessions' ids, intents and shards, by id.
    func liveRecipients(at now: UInt64) -> [Recipient] {
        liveSessions(at: now).map { Recipient(id: $0.id, intents: $0.intents, shard: $0.shard) }
    }

    /// The live sessions themselves, by id.
    func liveSessions(at now: UInt64) -> [Session] {
        sessions.values.filter { session in session.connection != nil || session.droppedAt.map { now - $0 < keepAfterDrop } ?? false }
            .sorted { $0.id < $1.id }
    }

    /// Whether some live session would receive an event of this guild.
    func reachesLiveSession(guild: UInt64?, at now: UInt64) -> Bool {
        sessions.values.contains { session in
            session.owns(guild: guild) && (session.connection != nil || session.droppedAt.map { now - $0 < keepAfterDrop } ?? false)
        }
    }

    /// Numbers, keeps and (when connected) queues one pre-encoded event for one session.
    mutating func send(_ type: String, body: inout ByteBuffer, toSession id: String) {
        // In place: a copy of the session would copy its replay buffer on append.
        guard let index = sessions.index(forKey: id) else { return }
        sessions.values[index].sequence += 1
        let sequence = sessions.values[index].sequence
        let frame = Self.frame(type: type, sequence: sequence, data: &body)
        sessions.values[index].replay.append(frame, sequence: sequence)
        sessions.values[index].connection?.send(frame)
    }

    mutating func send(_ type: String, _ data: JSONValue, toSession id: String) {
        var body = ByteBuffer()
        body.writeJSON(data)
        send(type, body: &body, toSession: id)
    }

    /// For the flood: numbers and keeps frames for one session without queueing them; the caller
    /// sends them in one batch, if the session has a connection (one that dropped replays them on
    /// its Resume).
    mutating func number(_ type: String, bodies: [ByteBuffer], forSession id: String) -> (GatewayConnection?, [ByteBuffer], first: Int)? {
        guard let index = sessions.index(forKey: id) else { return nil }
        let connection = sessions.values[index].connection
        var frames: [ByteBuffer] = []
        frames.reserveCapacity(bodies.count)
        let first = sessions.values[index].sequence + 1
        for var body in bodies {
            sessions.values[index].sequence += 1
            let sequence = sessions.values[index].sequence
            let frame = Self.frame(type: type, sequence: sequence, data: &body)
            sessions.values[index].replay.append(frame, sequence: sequence)
            frames.append(frame)
        }
        return (connection, frames, first)
    }

    func intents(ofSession id: String) -> Int? { sessions[id]?.intents }
    func shard(ofSession id: String) -> Shard? { sessions[id]?.shard }
    func session(of connection: GatewayConnection) -> String? { sessions.first { $0.value.connection === connection }?.key }
    var connectedSessionIDs: [String] { sessions.values.filter { $0.connection != nil }.map(\.id).sorted() }

    /// Op 9 `false` was sent: the connected sessions can no longer be resumed.
    mutating func endConnectedSessions() {
        sessions = sessions.filter { $0.value.connection == nil }
    }

    private mutating func expire(at now: UInt64) {
        sessions = sessions.filter { _, session in
            session.droppedAt.map { now - $0 < keepAfterDrop } ?? true
        }
    }

    private static func encoded(_ data: JSONValue, cache: inout ByteBuffer?) -> ByteBuffer {
        if let cache { return cache }
        var buffer = ByteBuffer()
        buffer.writeJSON(data)
        cache = buffer
        return buffer
    }

    /// `{"op":0,"t":TYPE,"s":N,"d":…}` around an encoded `d`.
    static func frame(type: String, sequence: Int, data: inout ByteBuffer) -> ByteBuffer {
        var frame = ByteBuffer()
        frame.reserveCapacity(data.readableBytes + type.utf8.count + 40)
        frame.writeStaticString("{\"op\":0,\"t\":\"")
        frame.writeString(type)
        frame.writeStaticString("\",\"s\":")
        frame.writeString(String(sequence))
        frame.writeStaticString(",\"d\":")
        frame.writeBuffer(&data)
        frame.writeInteger(UInt8(ascii: "}"))
        return frame
    }
}

/// The last 200,000 dispatches of a session, oldest first, for Resume (Discord does not say how
/// many it keeps; a worker down for seconds under a flood must find them all).
struct ReplayBuffer: Sendable {
    static let capacity = 200_000
    private var frames: [ByteBuffer] = []
    private var sequences: [Int] = []
    private var start = 0

    var oldestSequence: Int? { sequences.isEmpty ? nil : sequences[start] }

    mutating func append(_ frame: ByteBuffer, sequence: Int) {
        if frames.count < Self.capacity {
            frames.append(frame)
            sequences.append(sequence)
        } else {
            frames[start] = frame
            sequences[start] = sequence
            start = (start + 1) % Self.capacity
        }
    }

    /// The frames with a sequence above `sequence`, in order.
    func after(_ sequence: Int) -> [ByteBuffer] {
        (0..<frames.count).map { (start + $0) % frames.count }.filter { sequences[$0] > sequence }.map { frames[$0] }
    }
}
