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
    }

    /// How long a session stays resumable once its connection dropped (`--session-expiry-seconds`).
    var keepAfterDrop: UInt64 = 2 * 60 * 1000
    static let identifyWindow: UInt64 = 24 * 3600 * 1000
    static let sessionStartTotal = 1000

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

    /// A new session for this connection; the caller dispatches READY and GUILD_CREATE next.
    mutating func identify(sessionID: String, intents: Int, connection: GatewayConnection, at now: UInt64) {
        expire(at: now)
        identifies += 1
        identifyTimes.removeAll { now - $0 >= Self.identifyWindow }
        identifyTimes.append(now)
        sessions[sessionID] = Session(id: sessionID, intents: intents, connection: connection)
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

    /// Sends an event to every session allowed to see it. Sessions whose connection dropped get it
    /// numbered and kept too, for their Resume, as on Discord.
    mutating func dispatch(_ type: String, _ data: JSONValue, to audience: Audience) {
        var full: ByteBuffer?
        var blanked: ByteBuffer?
        let now = DiscordTime.nowMilliseconds()
        for id in Array(sessions.keys) {
            guard let session = sessions[id] else { continue }
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
        sessions.values.filter { session in session.connection != nil || session.droppedAt.map { now - $0 < keepAfterDrop } ?? false }.map(\.id).sorted()
    }

    /// Numbers, keeps and (when connected) queues one pre-encoded event for one session.
    mutating func send(_ type: String, body: inout ByteBuffer, toSession id: String) {
        guard var session = sessions[id] else { return }
        session.sequence += 1
        let frame = Self.frame(type: type, sequence: session.sequence, data: &body)
        session.replay.append(frame, sequence: session.sequence)
        sessions[id] = session
        session.connection?.send(frame)
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
        guard var session = sessions[id] else { return nil }
        let connection = session.connection
        var frames: [ByteBuffer] = []
        frames.reserveCapacity(bodies.count)
        let first = session.sequence + 1
        for var body in bodies {
            session.sequence += 1
            let frame = Self.frame(type: type, sequence: session.sequence, data: &body)
            session.replay.append(frame, sequence: session.sequence)
            frames.append(frame)
        }
        sessions[id] = session
        return (connection, frames, first)
    }

    func intents(ofSession id: String) -> Int? { sessions[id]?.intents }
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
