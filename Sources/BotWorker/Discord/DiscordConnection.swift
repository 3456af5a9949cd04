import FoundationEssentials
import Glibc
import IPC
import Logging

/// The bot's connection to Discord, or to the local sandbox: the REST client, the Gateway client,
/// identify pacing, the little guild state the core keeps (the bot's user, each guild's roles),
/// and the report the heartbeat carries. Every dispatch becomes a typed `BotEvent` on the bus.
actor DiscordConnection {
    /// Discord refuses this configuration; no restart can fix it (the worker exits 78).
    struct Fatal: Error, CustomStringConvertible {
        var description: String
    }

    struct SandboxEnded: Error, CustomStringConvertible {
        var status: Int32
        var description: String { "the Discord sandbox exited (wait status \(status)); the worker restarts with a new one" }
    }

    static let guilds = 1 << 0
    static let guildMembers = 1 << 1
    static let guildVoiceStates = 1 << 7
    static let guildMessages = 1 << 9
    static let messageContent = 1 << 15

    let settings: DiscordSettings
    let intents: Int
    private let database: SafeDatabase
    private let events: EventBus
    private let writes: WriteBatcher
    private let commands: CommandRouter
    private let logger: Logger
    private var sandbox: SandboxProcess?
    private(set) var rest: DiscordREST?
    private var gateway: GatewayClient?
    private var limit: SessionStartLimit?
    private var limitFetchedAt: ContinuousClock.Instant?
    private var identifiesLast24h = 0
    private var nextIdentifyAt: Date?
    private var lastError: String?
    private let access: DiscordAccess
    private(set) var received = 0
    private var connected = false
    private var disconnectedSince: ContinuousClock.Instant? = .now
    private var connectedWaiters: [UUID: CheckedContinuation<Bool, Never>] = [:]
    /// Work started by a dispatch that must not hold up the Gateway reader (a slash command, the
    /// command sync of a guild): run as children of `run`'s task group, so none outlives the
    /// connection.
    private let (backgroundWork, backgroundContinuation) = AsyncStream.makeStream(of: (@Sendable () async -> Void).self)

    /// Why the next READY must be followed by a reconciliation, and since when events may be missing.
    private var pendingReconcile: (reason: String, since: Date?)?
    /// The guilds of a session this worker resumes from its predecessor, until RESUMED starts what
    /// their GUILD_CREATE would have.
    private var resumedGuilds: [GuildID]?
    /// When the newest event whose position was stored arrived (the start of a possible gap).
    private var lastPositionAt: Date?
    private var reconciliations = 0
    private var lastReconciliation: (text: String, at: Date)?

    /// Told when the session counts change, so that the supervisor hears of it at once.
    private let sessionChanged: AsyncStream<Void>.Continuation?

    init(
        settings: DiscordSettings, needsMessageContent: Bool, database: SafeDatabase, events: EventBus, writes: WriteBatcher,
        commands: CommandRouter, access: DiscordAccess, sessionChanged: AsyncStream<Void>.Continuation? = nil, logger: Logger
    ) {
        self.sessionChanged = sessionChanged
        self.settings = settings
        intents = Self.guilds | Self.guildMembers | Self.guildVoiceStates | Self.guildMessages | (needsMessageContent ? Self.messageContent : 0)
        self.database = database
        self.events = events
        self.writes = writes
        self.commands = commands
        self.access = access
        self.logger = logger
    }

    /// Connects and stays connected until cancelled. Throws `Fatal` when Discord refuses the
    /// token or the intents, `SandboxEnded` when the sandbox dies under us.
    func run() async throws {
        let (sandboxEnded, sandboxContinuation) = AsyncStream.makeStream(of: Int32.self)
        defer {
            sandbox?.stop()
            releaseWaiters()
        }
        let token: Secret
        let apiBaseURL: String
        var gatewayURL = settings.gatewayURL
        switch settings.mode {
        case .sandbox:
            let sandbox = try await SandboxProcess.start(
                members: settings.sandboxMembers, activityPerMinute: settings.sandboxActivityPerMinute,
                logger: logger, onExit: { status in sandboxContinuation.yield(status) }
            )
            self.sandbox = sandbox
            token = sandbox.token
            apiBaseURL = sandbox.listening.apiBaseURL
            gatewayURL = sandbox.listening.gatewayURL
        case .discord:
            guard let configured = settings.token else {
                throw Fatal(description: "discord.mode is \"discord\" but no token was given: put the bot token in DISCORD_TOKEN")
            }
            token = configured
            apiBaseURL = settings.apiBaseURL ?? DiscordREST.discordAPI
        }
        let rest = DiscordREST(baseURL: apiBaseURL, token: token, logger: logger)
        self.rest = rest
        await commands.attach(rest)
        await access.attach(rest)
        let discovered = try await discoverGateway(rest)
        // The session the previous worker left, to resume: Discord replays what it missed.
        let stored = try await database.read("core.gateway-session") { db in
            (position: try GatewayPosition.load(db), identity: try GatewayPosition.loadIdentity(db))
        }
        lastPositionAt = stored.position.storedAt
        if let reason = stored.position.reconcile { pendingReconcile = (reason, lastPositionAt) }
        // Against the real Discord (the sandbox a worker starts itself dies with it), the session
        // the previous worker left is resumed. No READY or GUILD_CREATE comes then: who the bot is
        // comes from the database, and each guild's roles from REST, before the Resume, since the
        // replayed events need them.
        var resumable = settings.mode == .discord ? stored.position.session : nil
        if let session = resumable {
            if let identity = stored.identity {
                await access.identify(bot: identity.user, application: identity.application)
                do {
                    for guild in identity.guilds where serves(guild) { try await restoreGuild(guild, bot: identity.user, rest) }
                    resumedGuilds = identity.guilds.filter { serves($0) }
                    logger.info("resuming the previous worker's gateway session", metadata: ["session_id": "\(session.sessionID)", "sequence": "\(session.sequence)"])
                } catch {
                    logger.warning("the guilds could not be read to resume the session; identifying instead", metadata: ["error": "\(error)"])
                    resumable = nil
                }
            } else {
                resumable = nil
            }
            if resumable == nil { pendingReconcile = ("the previous worker's session \(session.sessionID) could not be resumed", lastPositionAt) }
        }
        let client = GatewayClient(
            identity: .init(token: token, intents: intents, shard: nil),
            gatewayURL: gatewayURL ?? discovered,
            stored: resumable,
            logger: logger,
            identifyPermit: { [weak self] in try await self?.identifyPermit() },
            onDispatch: { [weak self] dispatch in await self?.handle(dispatch) }
        )
        gateway = client
        logger.info("connecting to the gateway", metadata: ["mode": "\(settings.mode.rawValue)", "intents": "\(intents)"])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await client.run()
                } catch let fatal as GatewayClient.Fatal {
                    throw Fatal(description: fatal.description)
                }
            }
            group.addTask {
                for await status in sandboxEnded { throw SandboxEnded(status: status) }
            }
            let backgroundWork = self.backgroundWork
            group.addTask {
                // Fire and forget: a discarding group frees each one as it ends.
                await withDiscardingTaskGroup { work in
                    for await job in backgroundWork { work.addTask { await job() } }
                }
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// A guild as GUILD_CREATE would have described it (its roles, its owner, the bot's roles),
    /// read over REST for a worker that resumes a session and so gets no GUILD_CREATE.
    private func restoreGuild(_ guild: GuildID, bot: UserID, _ rest: DiscordREST) async throws {
        guard let json = try await rest.guild(guild) else { throw DiscordREST.Failure(route: "GET /guilds/{guild}", status: 404, code: nil, message: "guild \(guild) not found") }
        var payload = try JSONLine.decode(GuildPayload.self, from: try JSONEncoder().encode(json))
        if let me = try await rest.member(guild: guild, user: bot) {
            payload.members = [try JSONLine.decode(MemberPayload.self, from: try JSONEncoder().encode(me))]
        }
        await access.guildAvailable(payload)
    }

    /// After a new worker resumed its predecessor's session: what a GUILD_CREATE would have
    /// started (the commands synchronized for this release, the features' view of every member),
    /// in the background while events flow.
    private func afterResumedStart(_ guilds: [GuildID]) {
        let commands = self.commands
        let access = self.access
        let events = self.events
        let logger = self.logger
        backgroundContinuation.yield {
            for guild in guilds {
                if let application = await access.applicationID { await commands.synchronize(application: application, guild: guild) }
                do {
                    let members = try await access.members(of: guild)
                    await events.publish(.guildAvailable(guild: guild, members: members))
                } catch {
                    logger.warning("members not read after resuming; the role rules are evaluated as events come", metadata: ["guild_id": "\(guild)", "error": "\(error)"])
                }
            }
        }
    }

    /// `GET /gateway/bot`, retried with backoff while Discord cannot be reached; a 401 is fatal.
    private func discoverGateway(_ rest: DiscordREST) async throws -> String {
        var attempt = 0
        while true {
            do {
                let answer = try await rest.gatewayBot()
                limit = answer.limit
                limitFetchedAt = .now
                return answer.url
            } catch let failure as DiscordREST.Failure where failure.status == 401 {
                throw Fatal(description: "Discord rejected the token (401 on GET /gateway/bot): put a valid bot token in DISCORD_TOKEN (Developer Portal → Bot → Reset Token)")
            } catch let error as CancellationError {
                throw error
            } catch {
                attempt += 1
                lastError = "GET /gateway/bot: \(error)"
                let delay = GatewaySession.backoff(attempt: attempt, jitter: Double.random(in: 0..<1))
                logger.warning("Discord unreachable; retrying", metadata: ["error": "\(error)", "delay": "\(delay)"])
                try await Task.sleep(for: delay)
            }
        }
    }

    /// Waits until an Identify may go (see `IdentifyPacing`), then records it. Against the
    /// sandbox only its `session_start_limit` is honoured, not the spacing meant for Discord's.
    private func identifyPermit() async throws {
        if let rest, limitFetchedAt.map({ ContinuousClock.now - $0 > .seconds(5) }) ?? true {
            if let answer = try? await rest.gatewayBot() {
                limit = answer.limit
                limitFetchedAt = .now
            }
        }
        let now = Date().timeIntervalSince1970
        let history = try await database.read("core.identify-history") { db in
            try Double.fetchAll(db, sql: "SELECT at FROM gateway_identifies WHERE at > ?", arguments: [now - 86400])
        }
        identifiesLast24h = history.count
        // The sandbox has no daily allowance to protect: only its own session_start_limit counts.
        let paced = settings.mode == .discord ? history : []
        let (wait, reason) = IdentifyPacing.delay(history: paced, limit: limit, now: now)
        if wait > 0 {
            nextIdentifyAt = Date(timeIntervalSince1970: now + wait)
            logger.warning("holding the next identify back", metadata: [
                "seconds": "\(Int(wait.rounded(.up)))", "reason": "\(reason ?? "")",
                "identifies_24h": "\(history.count)", "session_start_remaining": "\(limit.map { "\($0.remaining)" } ?? "unknown")",
            ])
            try await Task.sleep(for: .milliseconds(Int64(wait * 1000)))
            nextIdentifyAt = nil
        }
        let at = Date().timeIntervalSince1970
        let mode = settings.mode.rawValue
        try await database.write("core.record-identify") { db in
            try db.execute(sql: "INSERT INTO gateway_identifies (at, mode) VALUES (?, ?)", arguments: [at, mode])
            try db.execute(sql: "DELETE FROM gateway_identifies WHERE at < ?", arguments: [at - 2 * 86400])
        }
        identifiesLast24h += 1
        if let current = limit { limit?.remaining = max(0, current.remaining - 1) }
    }

    // MARK: - Dispatches

    private func serves(_ guild: GuildID?) -> Bool {
        guard let guild else { return false }
        return settings.guildIDs.isEmpty || settings.guildIDs.contains(guild.description)
    }

    /// Handles a dispatch, then queues its position behind the writes it caused: once those
    /// commit, so does the position, and a new worker resumes after this event.
    func handle(_ dispatch: GatewayDispatch) async {
        received += 1
        let position = dispatch.sequence.flatMap { sequence in
            dispatch.sessionID.map { GatewayPosition(sessionID: $0, resumeURL: dispatch.resumeURL, sequence: sequence) }
        }
        // The event's writes and its position commit together, never one without the other.
        if position != nil { await writes.beginEvent() }
        await act(on: dispatch)
        if let position {
            await writes.advance(to: position)
            lastPositionAt = Date()
        }
    }

    private func act(on dispatch: GatewayDispatch) async {
        switch dispatch.event {
        case .ready(let ready):
            let identity = GatewayPosition.Identity(
                user: ready.user.id, application: ready.application?.id ?? ApplicationID(ready.user.id.rawValue), guilds: ready.guilds.map(\.id)
            )
            await access.identify(bot: identity.user, application: identity.application)
            resumedGuilds = nil
            // Committed with this event's position: a worker that resumes this session knows who it is.
            await writes.submit("core.gateway-identity") { db in
                try GatewayPosition.store(identity, db)
                return nil
            }
            logger.info("gateway ready", metadata: ["guilds": "\(ready.guilds.count)", "user_id": "\(ready.user.id)"])
            if let lost = await gateway?.takeLostSession() {
                pendingReconcile = ("Discord did not resume session \(lost.sessionID) (after event \(lost.sequence.map(String.init) ?? "none"))", lastPositionAt)
            }
            markConnected()
            sessionChanged?.yield()
        case .guildCreate(let guild):
            guard serves(guild.id), guild.unavailable != true else { return }
            await access.guildAvailable(guild)
            let members = (guild.members ?? []).compactMap { $0.member(in: guild.id) }
            logger.info("guild available", metadata: ["guild_id": "\(guild.id)", "members": "\(members.count)", "roles": "\(guild.roles?.count ?? 0)"])
            if let applicationID = await access.applicationID {
                let commands = self.commands
                backgroundContinuation.yield { await commands.synchronize(application: applicationID, guild: guild.id) }
            }
            let voice = (guild.voice_states ?? []).map { $0.state(in: guild.id) }
            await events.publish(.voiceStatesAvailable(guild: guild.id, afkChannel: guild.afk_channel_id, states: voice))
            await events.publish(.guildAvailable(guild: guild.id, members: members))
            if let pending = pendingReconcile {
                pendingReconcile = nil
                await reconcile(guild: guild.id, members: members, reason: pending.reason, since: pending.since)
            }
        case .guildUpdate(let guild):
            guard serves(guild.id) else { return }
            await access.guildUpdated(guild)
        case .memberAdd(let payload):
            guard serves(payload.guild_id), let guild = payload.guild_id, let member = payload.member(in: guild) else { return }
            await events.publish(.memberJoined(member))
        case .memberUpdate(let payload):
            guard serves(payload.guild_id), let guild = payload.guild_id, let member = payload.member(in: guild) else { return }
            await access.memberUpdated(member)
            await events.publish(.memberUpdated(member))
        case .memberRemove(let payload):
            guard serves(payload.guild_id) else { return }
            await events.publish(.memberLeft(guild: payload.guild_id, user: payload.user.id))
        case .messageCreate(let payload):
            guard serves(payload.guild_id) else { return }
            var message = payload.message
            message.receivedAt = dispatch.receivedAt
            await events.publish(.messageCreated(message))
        case .voiceStateUpdate(let payload):
            guard let guild = payload.guild_id, serves(guild) else { return }
            await events.publish(.voiceStateChanged(payload.state(in: guild)))
        case .interactionCreate(let json):
            guard json["guild_id"] == nil || serves(json["guild_id"]?.stringValue.flatMap(GuildID.init)) else { return }
            // Off the Gateway reader: a command may take seconds, events must not wait for it.
            let commands = self.commands
            backgroundContinuation.yield { await commands.handle(json) }
        case .other:
            if dispatch.type == "RESUMED" {
                logger.info("gateway session resumed")
                if let guilds = resumedGuilds {
                    resumedGuilds = nil
                    afterResumedStart(guilds)
                }
                markConnected()
                sessionChanged?.yield()
            } else {
                logger.debug("gateway event not handled", metadata: ["type": "\(dispatch.type)"])
            }
        case .undecodable(let why):
            logger.warning("gateway event skipped: it did not decode", metadata: ["type": "\(dispatch.type)", "error": "\(why)"])
        }
    }

    /// After a lost session: the events between the last one handled and the new session are gone
    /// for good. Everyone is re-evaluated (the role rules run on `guildAvailable`), and members who
    /// joined in the gap get what a join gives (`membersJoinedWhileAway`).
    private func reconcile(guild: GuildID, members: [Member], reason: String, since: Date?) async {
        let now = Date()
        let joined = members.filter { member in !member.isBot && (since.map { start in (member.joinedAt ?? .distantPast) >= start.addingTimeInterval(-1) } ?? false) }
        if !joined.isEmpty { await events.publish(.membersJoinedWhileAway(guild: guild, members: joined)) }
        reconciliations += 1
        sessionChanged?.yield()
        let from = since.map { Timestamp.string($0) } ?? "the previous session"
        lastReconciliation = ("\(reason): events may have been missed between \(from) and \(Timestamp.string(now)); \(members.count) members reconciled (\(joined.count) joined in the gap)", now)
        logger.warning("gateway session lost; reconciled", metadata: ["reason": "\(reason)", "members": "\(members.count)", "joined_in_gap": "\(joined.count)", "since": "\(from)"])
        await writes.submit("core.reconciled") { db in
            try GatewayPosition.clearReconcile(db)
            return nil
        }
    }

    /// The sessions as the heartbeat reports them.
    func sessionReport() async -> SessionReport? {
        guard let gateway else { return nil }
        let counters = await gateway.counters
        return SessionReport(
            resumes: counters.resumes, identifies: counters.identifies, eventsReplayed: counters.eventsReplayed,
            duplicatesSkipped: counters.duplicatesSkipped, reconciliations: reconciliations,
            lastReconciliation: lastReconciliation?.text, lastReconciliationAt: lastReconciliation.map { Timestamp.string($0.at) }
        )
    }

    private func markConnected() {
        connected = true
        disconnectedSince = nil
        lastError = nil
        for waiter in connectedWaiters.values { waiter.resume(returning: true) }
        connectedWaiters.removeAll()
    }

    /// True once the gateway session is READY; false after `timeout`, when the connection gives
    /// up, or when the caller is cancelled.
    func waitUntilConnected(timeout: Duration) async -> Bool {
        if connected { return true }
        let id = UUID()
        return await withTaskGroup(of: Bool?.self) { group in
            group.addTask { [weak self] in
                do { try await Task.sleep(for: timeout) } catch { return nil }
                await self?.expire(id)
                return nil
            }
            defer { group.cancelAll() }
            return await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    if Task.isCancelled {
                        continuation.resume(returning: false)
                    } else {
                        connectedWaiters[id] = continuation
                    }
                }
            } onCancel: {
                // A cancellation handler is synchronous and may run on any thread: reaching the
                // actor to release the waiter takes a task. It only resumes the continuation.
                Task { await self.expire(id) }
            }
        }
    }

    private func releaseWaiters() {
        for waiter in connectedWaiters.values { waiter.resume(returning: false) }
        connectedWaiters.removeAll()
    }

    private func expire(_ id: UUID) {
        connectedWaiters.removeValue(forKey: id)?.resume(returning: false)
    }

    // MARK: - Report

    /// The connection as the heartbeat reports it; `healthy` is false once the gateway has been
    /// down for `tolerance` (a reconnect of a few seconds is normal).
    func report(tolerance: Duration = .seconds(30)) async -> (report: DiscordReport, healthy: Bool, detail: String?) {
        var state = "connecting"
        var latencyMs: Int?
        var lastEventAgeMs: Int?
        if let gateway {
            let phase = await gateway.state
            let holding = await gateway.waitingForIdentifyPermit
            state = holding ? "waiting-to-identify" : Self.name(of: phase)
            if let latency = await gateway.latency { latencyMs = latency.milliseconds }
            if let last = await gateway.lastEventAt { lastEventAgeMs = (.now - last).milliseconds }
            let isConnected = phase == .connected
            if isConnected { disconnectedSince = nil } else if disconnectedSince == nil { disconnectedSince = .now }
        }
        var restRemaining = 50
        var invalid = 0
        if let rest {
            let headroom = await rest.headroom()
            restRemaining = headroom.globalRemaining
            invalid = headroom.invalidRequests
        }
        let report = DiscordReport(
            mode: settings.mode.rawValue, gatewayState: state, latencyMs: latencyMs, lastEventAgeMs: lastEventAgeMs,
            guilds: await access.guildCount, sessionStartRemaining: limit?.remaining, sessionStartTotal: limit?.total,
            identifiesLast24h: identifiesLast24h, nextIdentifyAt: nextIdentifyAt.map { Timestamp.string($0) },
            restGlobalRemaining: restRemaining, restInvalidRequests: invalid, lastError: lastError,
            sandboxURL: sandbox.map { "http://127.0.0.1:\($0.listening.port)" }
        )
        if let since = disconnectedSince, ContinuousClock.now - since > tolerance {
            return (report, false, "Discord gateway \(state) for \((.now - since).milliseconds / 1000) s" + (lastError.map { ": \($0)" } ?? ""))
        }
        return (report, true, nil)
    }

    static func name(of phase: GatewaySession.Phase) -> String {
        switch phase {
        case .idle, .connecting, .waitingForHello: "connecting"
        case .identifying: "identifying"
        case .resuming: "resuming"
        case .connected: "connected"
        case .waitingToReconnect: "waiting-to-reconnect"
        case .fatal: "failed"
        }
    }

}
