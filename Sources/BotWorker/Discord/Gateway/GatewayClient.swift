import FoundationEssentials
import IPC
import Logging
import NIOCore
import NIOWebSocket
import WSClient

/// The Gateway connection: a WebSocket (swift-websocket's client, frames up to 16 MiB since READY
/// and GUILD_CREATE are far over the 16 KiB default) driven by `GatewaySession`, reconnecting and
/// resuming until a fatal close code.
actor GatewayClient {
    struct Fatal: Error, CustomStringConvertible {
        var description: String
        /// Discord's close code, when a close ended it (4011: resharding is due).
        var closeCode: Int? = nil
    }

    private enum Event: Sendable {
        case text(String)
        case heartbeatDue(generation: Int)
    }

    private struct HeartbeatDue: Sendable {
        var deadline: ContinuousClock.Instant
        var generation: Int
    }

    static let maximumMessageSize = 1 << 24

    private var session: GatewaySession
    private var sendLimiter = GatewaySendLimiter()
    private let logger: Logger
    private let jitter: @Sendable () -> Double
    private let identifyPermit: @Sendable () async throws -> Void
    private let beforeIdentifyFrame: @Sendable () async -> Void
    private let onDispatch: @Sendable (GatewayDispatch) async -> Void
    private(set) var waitingForIdentifyPermit = false
    /// Child tasks started by all connections so far, the connections served, and heartbeat
    /// timers fired: a connection starts two children whatever its number of heartbeats (what the
    /// tests check).
    private(set) var childTasksStarted = 0
    private(set) var connectionsServed = 0
    private(set) var heartbeatsDue = 0
    /// The shard this connection is (0 when unsharded): carried by every dispatch.
    let shardID: Int
    let shardCount: Int
    private var lastCloseCode: Int?

    /// The jitter of backoffs and the first heartbeat: a generator seeded once, since the session
    /// takes a number at every frame it reads, and the system's generator makes a system call for
    /// each.
    static func seededJitter() -> @Sendable () -> Double {
        let generator = Locked(SplitMix64())
        return { generator.withLock { Double.random(in: 0..<1, using: &$0) } }
    }

    /// - Parameters:
    ///   - jitter: a random number in [0, 1) at each call (injected by tests).
    ///   - beforeIdentifyFrame: awaited just before the Identify frame goes (Discord's rate counts
    ///     frames, and connecting takes a variable time after the permit).
    ///   - identifyPermit: awaited before every connection that will Identify (not Resume): where
    ///     the bot paces its identifies against `session_start_limit`.
    init(
        identity: GatewaySession.Identity,
        gatewayURL: String,
        stored: GatewaySession.StoredSession? = nil,
        logger: Logger,
        jitter: @escaping @Sendable () -> Double = GatewayClient.seededJitter(),
        identifyPermit: @escaping @Sendable () async throws -> Void = {},
        beforeIdentifyFrame: @escaping @Sendable () async -> Void = {},
        onDispatch: @escaping @Sendable (GatewayDispatch) async -> Void
    ) {
        session = GatewaySession(identity: identity, gatewayURL: gatewayURL, stored: stored)
        shardID = identity.shard?.id ?? 0
        shardCount = identity.shard?.count ?? 1
        self.logger = logger
        self.jitter = jitter
        self.identifyPermit = identifyPermit
        self.beforeIdentifyFrame = beforeIdentifyFrame
        self.onDispatch = onDispatch
    }

    /// What the heartbeat reports of this connection, read in one visit to the actor (the report
    /// of a worker of many shards must not queue behind the readers once per field).
    struct Snapshot: Sendable {
        var phase: GatewaySession.Phase
        var waitingForIdentifyPermit: Bool
        var latency: Duration?
        var lastEventAt: ContinuousClock.Instant?
        var counters: GatewaySession.Counters
    }

    var snapshot: Snapshot {
        Snapshot(phase: session.phase, waitingForIdentifyPermit: waitingForIdentifyPermit, latency: session.latency,
                 lastEventAt: session.lastEventAt, counters: session.counters)
    }

    var counters: GatewaySession.Counters { session.counters }
    func takeLostSession() -> GatewaySession.LostSession? { session.takeLostSession() }

    /// Connects and stays connected until cancelled; throws `Fatal` when Discord refuses the
    /// configuration (a bad token, disallowed intents).
    func run() async throws {
        var actions = session.start()
        while !Task.isCancelled {
            guard let action = actions.first else { return }
            actions.removeFirst()
            switch action {
            case .connect(let url):
                if !session.canResume {
                    waitingForIdentifyPermit = true
                    defer { waitingForIdentifyPermit = false }
                    try await identifyPermit()
                }
                let code = await connection(to: url)
                lastCloseCode = code
                actions = session.closed(code: code, jitter: jitter())
            case .scheduleReconnect(let delay):
                logger.info("gateway reconnecting", metadata: ["delay": "\(delay)", "attempt": "\(session.failedAttempts)"])
                try await Task.sleep(for: delay)
                actions = session.reconnectDue()
            case .fatal(let message):
                if lastCloseCode == GatewayCloseCode.shardingRequired {
                    // Not the end: the connection reshards (DiscordConnection).
                    logger.warning("gateway closed: Discord requires more shards", metadata: ["shard": "\(shardID)"])
                } else {
                    logger.critical("gateway closed for good", metadata: ["error": "\(message)", "shard": "\(shardID)"])
                }
                throw Fatal(description: message, closeCode: lastCloseCode)
            default:
                break
            }
        }
    }

    /// One WebSocket connection, from open to close; returns Discord's close code, if any.
    private func connection(to url: String) async -> Int? {
        let separator = url.contains("?") ? "&" : "?"
        let logger = self.logger
        do {
            // Detached, so that it does not see the worker's graceful shutdown: swift-websocket
            // answers one by closing with 1000, which ends the session on Discord's side. A
            // stopping worker cancels it instead, and `serve` closes with a code that keeps the
            // session resumable for the next worker.
            let connection = Task.detached {
                try await WebSocketClient.connect(
                    url: url + separator + "v=10&encoding=json",
                    configuration: .init(maxFrameSize: Self.maximumMessageSize),
                    logger: logger
                ) { inbound, outbound, _ in
                    try await self.serve(inbound: inbound, outbound: outbound)
                }
            }
            let close = try await withTaskCancellationHandler { try await connection.value } onCancel: { connection.cancel() }
            return close.map { Self.number(of: $0.closeCode) }
        } catch {
            logger.warning("gateway connection failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// One connection's loop. Its group holds two children for the connection's whole life, the
    /// reader and the heartbeat timer, however many heartbeats it sends (days of them on Discord):
    /// the timer sleeps to each deadline the session sets, and the session sets the next one only
    /// once the previous one fired.
    private func serve(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        _ = session.opened()
        connectionsServed += 1
        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
        let (heartbeats, heartbeatScheduler) = AsyncStream.makeStream(of: HeartbeatDue.self)
        let logger = self.logger
        try await withThrowingDiscardingTaskGroup { group in
            childTasksStarted += 1
            group.addTask {
                // The close (or a read error) ends the events stream, and with it the loop below.
                defer { continuation.finish() }
                do {
                    for try await message in inbound.messages(maxSize: Self.maximumMessageSize) {
                        if case .text(let text) = message { continuation.yield(.text(text)) }
                    }
                } catch {
                    logger.debug("gateway read ended", metadata: ["error": "\(error)"])
                }
            }
            childTasksStarted += 1
            group.addTask {
                for await due in heartbeats {
                    do { try await Task.sleep(until: due.deadline) } catch { return }
                    continuation.yield(.heartbeatDue(generation: due.generation))
                }
            }
            defer {
                heartbeatScheduler.finish()
                group.cancelAll()
            }
            // Cancelled, the events stream ends (after the event being handled): a worker
            // stopping (restart, deploy, restore, shutdown) then closes with a code that keeps the
            // session resumable for the next worker, never 1000 or 1001, which end it.
            try await read(events, outbound: outbound, scheduler: heartbeatScheduler)
            if Task.isCancelled {
                try? await outbound.close(.unknown(UInt16(GatewaySession.resumeCloseCode)), reason: "worker stopping; the session is resumed by the next")
            }
        }
    }

    private func read(_ events: AsyncStream<Event>, outbound: WebSocketOutboundWriter, scheduler heartbeatScheduler: AsyncStream<HeartbeatDue>.Continuation) async throws {
        do {
            for await event in events {
                let actions: [GatewaySession.Action]
                var received: (payload: GatewayPayload, at: ContinuousClock.Instant)?
                switch event {
                case .text(let text):
                    let now = ContinuousClock.now
                    guard let payload = GatewayPayload.decode(frame: text) else {
                        logger.debug("gateway message skipped: not a payload")
                        continue
                    }
                    received = (payload, now)
                    actions = session.received(payload, at: now, jitter: jitter())
                case .heartbeatDue(let generation):
                    heartbeatsDue += 1
                    actions = session.heartbeatDue(generation: generation, at: .now)
                }
                for action in actions {
                    switch action {
                    case .send(let payload):
                        try await send(payload, on: outbound)
                    case .scheduleHeartbeat(let delay, let generation):
                        heartbeatScheduler.yield(HeartbeatDue(deadline: .now + delay, generation: generation))
                    case .close(let code):
                        try await outbound.close(.unknown(UInt16(code)), reason: nil)
                    case .dispatch(let type, _):
                        await onDispatch(GatewayDispatch(
                            type: type, shard: shardID, shardCount: shardCount, sequence: received?.payload.s, sessionID: session.sessionID, resumeURL: session.resumeURL,
                            event: received?.payload.event ?? .other, receivedAt: received?.at ?? .now
                        ))
                    case .connect, .scheduleReconnect, .fatal:
                        break
                    }
                }
            }
        }
    }

    /// At most 120 sends a minute (heartbeats keep a reserve), each at most 4096 bytes.
    private func send(_ payload: GatewayPayload, on outbound: WebSocketOutboundWriter) async throws {
        let isHeartbeat = payload.op == GatewayPayload.Opcode.heartbeat.rawValue
        let wait = sendLimiter.delay(isHeartbeat: isHeartbeat, at: .now)
        if wait > .zero { try await Task.sleep(for: wait) }
        if payload.op == GatewayPayload.Opcode.identify.rawValue { await beforeIdentifyFrame() }
        let text = String(try JSONLine.encode(payload).dropLast())
        guard text.utf8.count <= 4096 else {
            logger.error("gateway payload over 4096 bytes not sent", metadata: ["op": "\(payload.op)"])
            return
        }
        sendLimiter.record(at: .now)
        try await outbound.write(.text(text))
    }

    static func number(of code: WebSocketErrorCode) -> Int {
        switch code {
        case .normalClosure: 1000
        case .goingAway: 1001
        case .protocolError: 1002
        case .unacceptableData: 1003
        case .dataInconsistentWithMessage: 1007
        case .policyViolation: 1008
        case .messageTooLarge: 1009
        case .missingExtension: 1010
        case .unexpectedServerError: 1011
        case .unknown(let number): Int(number)
        }
    }
}
