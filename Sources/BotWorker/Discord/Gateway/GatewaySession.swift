import IPC

/// Every decision of the Gateway connection, as a pure state machine (no sockets, no clock, no
/// randomness of its own), following Discord's Gateway v10 documentation:
///
/// - After Hello, the first heartbeat goes out after `heartbeat_interval × jitter`, then one every
///   interval; a server heartbeat request (op 1) is answered at once.
/// - No ACK (op 11) between two heartbeats is a zombie connection: close with a code other than
///   1000/1001 (which would end the session) and resume.
/// - The session id, resume URL and last sequence are kept; op 7, a resumable close code, a
///   dropped connection and op 9 `true` resume; op 9 `false`, 4007 and 4009 identify afresh.
/// - Fatal close codes (4004, 4010–4014) stop reconnecting.
/// - Reconnects back off exponentially with jitter.
/// - A session stored by an earlier worker (`StoredSession`: its id, resume URL and the sequence
///   of the last event whose effects committed) is resumed; a replayed dispatch at or below that
///   sequence is skipped as a duplicate. When the resume is refused, the session is recorded as
///   lost (`lostSession`): events may have been missed, and the bot reconciles.
struct GatewaySession: Sendable {
    /// A session as a worker left it in the database.
    struct StoredSession: Sendable, Equatable {
        var sessionID: String
        var resumeURL: String?
        var sequence: Int
    }

    /// A session Discord refused to resume: the events after `sequence` may be lost.
    struct LostSession: Sendable, Equatable {
        var sessionID: String
        var sequence: Int?
    }

    /// What the status reports (`worker.sessions`).
    struct Counters: Sendable, Equatable {
        var resumes = 0
        var identifies = 0
        var eventsReplayed = 0
        var duplicatesSkipped = 0

        /// Another session's counts added (the bot's total over its shards).
        mutating func add(_ other: Counters) {
            resumes += other.resumes
            identifies += other.identifies
            eventsReplayed += other.eventsReplayed
            duplicatesSkipped += other.duplicatesSkipped
        }
    }

    struct Identity: Sendable {
        var token: Secret
        var intents: Int
        var shard: (id: Int, count: Int)?
    }

    enum Phase: Sendable, Equatable {
        case idle
        case connecting
        case waitingForHello
        case identifying
        case resuming
        case connected
        case waitingToReconnect
        case fatal(String)
    }

    enum Action: Sendable, Equatable {
        /// Open a WebSocket to `url` (with `?v=10&encoding=json`).
        case connect(url: String)
        case send(GatewayPayload)
        /// Fire `heartbeatDue(generation:)` after this long.
        case scheduleHeartbeat(after: Duration, generation: Int)
        /// Close the socket with this code; `closed` follows.
        case close(code: Int)
        /// Fire `reconnectDue` after this long.
        case scheduleReconnect(after: Duration)
        /// Stop for good, with what the operator must do.
        case fatal(String)
        /// A dispatch (op 0) for the bot: its type and data.
        case dispatch(type: String, data: JSONValue)
    }

    let identity: Identity
    let gatewayURL: String
    private(set) var phase: Phase = .idle
    private(set) var sessionID: String?
    private(set) var resumeURL: String?
    private(set) var sequence: Int?
    private(set) var heartbeatInterval: Duration?
    private(set) var latency: Duration?
    private(set) var lastEventAt: ContinuousClock.Instant?
    private(set) var failedAttempts = 0
    private(set) var counters = Counters()
    var identifies: Int { counters.identifies }
    /// Dispatches at or below this sequence of the stored session were already handled.
    private(set) var committedThrough: Int?
    /// Set when a session (stored or of this process) could not be resumed; taken by the bot.
    private(set) var lostSession: LostSession?
    private var awaitingAck = false
    private var lastHeartbeatAt: ContinuousClock.Instant?
    private var generation = 0
    /// Set when we close the socket ourselves: what to do once it is closed.
    private var plannedAfterClose: GatewayCloseCode.Meaning?

    /// The code we close with when we mean to resume: not 1000/1001, which end the session.
    static let resumeCloseCode = 4000

    init(identity: Identity, gatewayURL: String, stored: StoredSession? = nil) {
        self.identity = identity
        self.gatewayURL = gatewayURL
        if let stored {
            sessionID = stored.sessionID
            resumeURL = stored.resumeURL
            sequence = stored.sequence
            committedThrough = stored.sequence
        }
    }

    /// The lost session, once: the bot reconciles after the new session's READY.
    mutating func takeLostSession() -> LostSession? {
        defer { lostSession = nil }
        return lostSession
    }

    var canResume: Bool { sessionID != nil && sequence != nil }

    mutating func start() -> [Action] {
        phase = .connecting
        return [.connect(url: canResume ? (resumeURL ?? gatewayURL) : gatewayURL)]
    }

    /// The WebSocket is open.
    mutating func opened() -> [Action] {
        phase = .waitingForHello
        generation += 1
        awaitingAck = false
        plannedAfterClose = nil
        return []
    }

    /// A message from Discord. `jitter` is a random number in [0, 1) for the first heartbeat.
    mutating func received(_ payload: GatewayPayload, at now: ContinuousClock.Instant, jitter: Double) -> [Action] {
        lastEventAt = now
        guard let op = GatewayPayload.Opcode(rawValue: payload.op) else { return [] }
        switch op {
        case .hello:
            guard case .object(let hello) = payload.d, let intervalMs = hello["heartbeat_interval"]?.intValue else {
                return closeToReconnect(.resume)
            }
            let interval = Duration.milliseconds(intervalMs)
            heartbeatInterval = interval
            let first = Self.scale(interval, by: jitter)
            var actions: [Action] = [.scheduleHeartbeat(after: first, generation: generation)]
            if canResume, let sessionID, let sequence {
                phase = .resuming
                actions.append(.send(GatewayPayload(op: GatewayPayload.Opcode.resume.rawValue, d: .object([
                    "token": .string(identity.token.reveal()), "session_id": .string(sessionID), "seq": .integer(sequence),
                ]))))
            } else {
                phase = .identifying
                counters.identifies += 1
                committedThrough = nil
                actions.append(.send(identifyPayload()))
            }
            return actions

        case .heartbeat:
            return [.send(heartbeatPayload(at: now))]

        case .heartbeatAck:
            awaitingAck = false
            if let lastHeartbeatAt { latency = now - lastHeartbeatAt }
            return []

        case .dispatch:
            if let s = payload.s {
                if let committedThrough, s <= committedThrough {
                    // Replayed, and its effects are already committed: handled once already.
                    counters.duplicatesSkipped += 1
                    sequence = max(sequence ?? s, s)
                    return []
                }
                sequence = s
            }
            guard let type = payload.t else { return [] }
            if phase == .resuming, type != "RESUMED" { counters.eventsReplayed += 1 }
            let data = payload.d ?? .null
            switch type {
            case "READY":
                if case .object(let ready) = data {
                    sessionID = ready["session_id"]?.stringValue
                    resumeURL = ready["resume_gateway_url"]?.stringValue
                }
                phase = .connected
                failedAttempts = 0
            case "RESUMED":
                phase = .connected
                failedAttempts = 0
                counters.resumes += 1
            default:
                break
            }
            return [.dispatch(type: type, data: data)]

        case .reconnect:
            return closeToReconnect(.resume)

        case .invalidSession:
            if payload.d == .bool(true), canResume {
                return closeToReconnect(.resume)
            }
            forgetSession()
            return closeToReconnect(.identify)

        case .identify, .presenceUpdate, .resume, .requestGuildMembers:
            return []
        }
    }

    /// The heartbeat timer of connection `generation` fired.
    mutating func heartbeatDue(generation: Int, at now: ContinuousClock.Instant) -> [Action] {
        guard generation == self.generation, let heartbeatInterval else { return [] }
        switch phase {
        case .identifying, .resuming, .connected: break
        default: return []
        }
        if awaitingAck {
            // No ACK since the last heartbeat: a zombie connection.
            return closeToReconnect(.resume)
        }
        return [.send(heartbeatPayload(at: now)), .scheduleHeartbeat(after: heartbeatInterval, generation: generation)]
    }

    /// The socket closed, with Discord's close code when it sent one. `jitter` in [0, 1) spreads
    /// the reconnect delay.
    mutating func closed(code: Int?, jitter: Double) -> [Action] {
        generation += 1
        let meaning = plannedAfterClose ?? GatewayCloseCode.meaning(of: code)
        plannedAfterClose = nil
        switch meaning {
        case .fatal(let message):
            phase = .fatal(message)
            return [.fatal(message)]
        case .identify:
            forgetSession()
        case .resume:
            break
        }
        failedAttempts += 1
        phase = .waitingToReconnect
        return [.scheduleReconnect(after: Self.backoff(attempt: failedAttempts, jitter: jitter))]
    }

    mutating func reconnectDue() -> [Action] {
        guard phase == .waitingToReconnect else { return [] }
        phase = .connecting
        return [.connect(url: canResume ? (resumeURL ?? gatewayURL) : gatewayURL)]
    }

    // MARK: - Payloads

    func identifyPayload() -> GatewayPayload {
        var data: [String: JSONValue] = [
            "token": .string(identity.token.reveal()),
            "intents": .integer(identity.intents),
            "properties": .object(["os": .string("linux"), "browser": .string("bot-worker"), "device": .string("bot-worker")]),
        ]
        if let shard = identity.shard {
            data["shard"] = .array([.integer(shard.id), .integer(shard.count)])
        }
        return GatewayPayload(op: GatewayPayload.Opcode.identify.rawValue, d: .object(data))
    }

    private mutating func heartbeatPayload(at now: ContinuousClock.Instant) -> GatewayPayload {
        awaitingAck = true
        lastHeartbeatAt = now
        return GatewayPayload(op: GatewayPayload.Opcode.heartbeat.rawValue, d: sequence.map { .integer($0) } ?? .null)
    }

    private mutating func closeToReconnect(_ then: GatewayCloseCode.Meaning) -> [Action] {
        plannedAfterClose = then
        return [.close(code: Self.resumeCloseCode)]
    }

    private mutating func forgetSession() {
        if let sessionID { lostSession = LostSession(sessionID: sessionID, sequence: sequence) }
        committedThrough = nil
        sessionID = nil
        resumeURL = nil
        sequence = nil
    }

    /// 1 s, 2 s, 4 s … up to 60 s, each scaled by a jitter in [0.5, 1).
    static func backoff(attempt: Int, jitter: Double) -> Duration {
        let base = Duration.seconds(min(60, 1 << min(attempt - 1, 6)))
        return scale(base, by: 0.5 + jitter / 2)
    }

    static func scale(_ duration: Duration, by factor: Double) -> Duration {
        .milliseconds(Int64(duration.fractionalMilliseconds * factor))
    }
}
