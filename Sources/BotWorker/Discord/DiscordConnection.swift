import FoundationEssentials
import GRDB
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
    private var limit: SessionStartLimit?
    private var limitFetchedAt: ContinuousClock.Instant?
    private var identifiesLast24h = 0
    private var nextIdentifyAt: Date?
    private var lastError: String?
    private let access: DiscordAccess
    private(set) var received = 0
    private var disconnectedSince: ContinuousClock.Instant? = .now
    private var connectedWaiters: [UUID: CheckedContinuation<Bool, Never>] = [:]
    /// Work started by a dispatch that must not hold up the Gateway reader (a slash command, the
    /// command sync of a guild): run as children of `run`'s task group, so none outlives the
    /// connection.
    private let (backgroundWork, backgroundContinuation) = AsyncStream.makeStream(of: (@Sendable () async -> Void).self)

    /// The shards of the current shard count, by id (`runShards` makes them).
    private var shards: [Int: Shard] = [:]
    private var shardCount = 1
    /// Discord's identify rate limit, across the shards.
    private var identifyBuckets = IdentifyBuckets(maxConcurrency: 1)
    /// One event at a time, whatever its shard: an event's writes and its position commit
    /// together (`WriteBatcher.beginEvent`), which needs events handled in turn.
    private var handling = false
    private var handlingWaiters: [CheckedContinuation<Void, Never>] = []
    private var reconciliations = 0
    private var lastReconciliation: (text: String, at: Date)?
    private var retiredCounters = GatewaySession.Counters()
    /// This release's commands' fingerprint, and the one each guild was given (`command_sync`).
    private var commandsFingerprint: String?
    private var syncedCommands: [String: String] = [:]
    private var commandSyncQueue: [GuildID] = []
    private var commandSyncLoad: Task<(String, [String: String]), Never>?
    private var commandSyncRunning = false
    /// Every shard has been READY (or RESUMED) at least once since they started.
    private var connected = false

    /// One Gateway connection and what the worker keeps of its session.
    private struct Shard {
        let id: Int
        let client: GatewayClient
        /// Why this shard's guilds must be reconciled, and since when events may be missing; the
        /// guilds still to reconcile, once READY listed them (nil until then).
        var pendingReconcile: (reason: String, since: Date?)?
        var reconcileGuilds: Set<GuildID>?
        /// The guilds of a session this worker resumes from its predecessor, until RESUMED starts
        /// what their GUILD_CREATE would have.
        var resumedGuilds: [GuildID]?
        /// When the newest event whose position was stored arrived (the start of a possible gap).
        var lastPositionAt: Date?
        var guilds: Set<GuildID> = []
        var connected = false
        var received = 0
        var lastEventAt: Date?
        /// The count at the previous report, for events a second.
        var sample: (received: Int, at: ContinuousClock.Instant) = (0, .now)
        var eventsPerSecond = 0.0
    }

    /// The shards must start again at `count` (Discord closed one with 4011, or recommends more).
    private struct Reshard: Error {
        var count: Int
    }

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
                members: settings.sandboxMembers, guilds: settings.sandboxGuilds, activityPerMinute: settings.sandboxActivityPerMinute,
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
        let url = gatewayURL
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var required: Int?
                // Until cancelled; a reshard (4011, or Discord recommending more shards) starts
                // the shards again at the new count.
                while true {
                    do {
                        try await self.runShards(rest: rest, token: token, gatewayURL: url, required: required)
                        return
                    } catch let reshard as Reshard {
                        required = reshard.count
                    }
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

    /// Runs the shards at the count `ShardPlan` gives, until cancelled; throws `Reshard` when
    /// they must start again at another count.
    ///
    /// Against the real Discord (the sandbox a worker starts itself dies with it), each shard
    /// resumes the session the previous worker left for it. No READY or GUILD_CREATE comes then:
    /// who the bot is comes from the database, and each guild's roles from REST, before the
    /// Resume, since the replayed events need them.
    private func runShards(rest: DiscordREST, token: Secret, gatewayURL configuredURL: String?, required: Int?) async throws {
        let discovered = try await discoverGateway(rest)
        let stored = try await database.read("core.gateway-session") { db in
            (reconcile: try GatewayPosition.loadReconcile(db), shards: try GatewayPosition.loadShards(db), identity: try GatewayPosition.loadIdentity(db))
        }
        let storedCount = stored.shards.first(where: { $0.session != nil })?.count
        let count = ShardPlan.count(configured: settings.shards, recommended: discovered.shards, stored: storedCount, required: required)
        var reconcileReason = stored.reconcile
        if let storedCount, storedCount != count {
            reconcileReason = reconcileReason ?? "the shard count changed from \(storedCount) to \(count)"
            logger.warning("resharding: the previous sessions are not resumed", metadata: ["from": "\(storedCount)", "to": "\(count)"])
        }
        try await database.write("core.gateway-shards") { db in try GatewayPosition.keepOnly(shardCount: count, db) }
        let byID = Dictionary(stored.shards.filter { $0.count == count }.map { ($0.id, $0) }, uniquingKeysWith: { $1 })
        shardCount = count
        identifyBuckets = IdentifyBuckets(maxConcurrency: discovered.limit.maxConcurrency)
        if settings.mode == .discord {
            // The previous worker may have identified a moment ago: Discord counts that one too.
            let last = try await database.read("core.identify-history") { db in try Double.fetchOne(db, sql: "SELECT max(at) FROM gateway_identifies") }
            if let last { identifyBuckets.holdAll(until: last + IdentifyBuckets.window) }
        }
        var made: [Int: Shard] = [:]
        for id in 0..<count {
            let row = byID[id]
            var resumable = settings.mode == .discord ? row?.session : nil
            var resumedGuilds: [GuildID]?
            if let session = resumable {
                if let identity = stored.identity, let row {
                    await access.identify(bot: identity.user, application: identity.application)
                    do {
                        let guilds = row.guilds.filter { serves($0) }
                        for guild in guilds { try await restoreGuild(guild, bot: identity.user, rest) }
                        resumedGuilds = guilds
                        logger.info("resuming the previous worker's gateway session", metadata: [
                            "shard": "\(id)", "session_id": "\(session.sessionID)", "sequence": "\(session.sequence)",
                        ])
                    } catch {
                        logger.warning("the guilds could not be read to resume the session; identifying instead", metadata: ["shard": "\(id)", "error": "\(error)"])
                        resumable = nil
                    }
                } else {
                    resumable = nil
                }
            }
            var pending = reconcileReason.map { (reason: $0, since: row?.storedAt) }
            // Against Discord only: the sandbox a worker starts is new, with no session to lose.
            if settings.mode == .discord, resumable == nil, let session = row?.session {
                pending = pending ?? ("the previous worker's session \(session.sessionID) could not be resumed", row?.storedAt)
            }
            let client = GatewayClient(
                identity: .init(token: token, intents: intents, shard: count > 1 ? (id, count) : nil),
                gatewayURL: configuredURL ?? discovered.url,
                stored: resumable,
                logger: logger,
                identifyPermit: { [weak self] in try await self?.identifyPermit(shard: id) },
                beforeIdentifyFrame: { [weak self] in await self?.beforeIdentifyFrame(shard: id) },
                onDispatch: { [weak self] dispatch in await self?.handle(dispatch) }
            )
            var shard = Shard(id: id, client: client)
            shard.pendingReconcile = pending
            shard.resumedGuilds = resumedGuilds
            shard.lastPositionAt = row?.storedAt
            shard.guilds = Set(resumedGuilds ?? [])
            made[id] = shard
        }
        shards = made
        logger.info("connecting to the gateway", metadata: [
            "mode": "\(settings.mode.rawValue)", "intents": "\(intents)", "shards": "\(count)",
            "max_concurrency": "\(discovered.limit.maxConcurrency)",
        ])
        do {
            try await runClients(made, rest: rest, discovered: discovered)
        } catch {
            await retireShards()
            throw error
        }
        await retireShards()
    }

    private func runClients(_ made: [Int: Shard], rest: DiscordREST, discovered: GatewayBot) async throws {
        let count = made.count
        try await withThrowingTaskGroup(of: Void.self) { group in
            for shard in made.values.sorted(by: { $0.id < $1.id }) {
                let client = shard.client
                group.addTask {
                    do {
                        try await client.run()
                    } catch let fatal as GatewayClient.Fatal where fatal.closeCode == GatewayCloseCode.shardingRequired {
                        let recommended = (try? await rest.gatewayBot().shards) ?? discovered.shards
                        throw Reshard(count: ShardPlan.afterShardingRequired(count: count, recommended: recommended))
                    } catch let fatal as GatewayClient.Fatal {
                        throw Fatal(description: fatal.description)
                    }
                }
            }
            if settings.shards == nil {
                let interval = Self.shardCheckInterval
                group.addTask {
                    // Discord's recommendation grows with the bot: follow it.
                    while true {
                        try await Task.sleep(for: interval)
                        if let recommended = try? await rest.gatewayBot().shards, recommended > count {
                            throw Reshard(count: recommended)
                        }
                    }
                }
            }
            defer { group.cancelAll() }
            do {
                try await group.next()
            } catch let reshard as Reshard {
                group.cancelAll()
                lastError = "resharding from \(count) to \(reshard.count) shards"
                logger.warning("resharding: every shard identifies again and its guilds are reconciled", metadata: ["from": "\(count)", "to": "\(reshard.count)"])
                // The sessions of the old count are of no use to the new shards.
                try await database.write("core.gateway-reshard") { db in
                    try db.execute(sql: "DELETE FROM \(GatewayPosition.shardsTable)")
                    try db.execute(sql: "UPDATE \(GatewayPosition.table) SET reconcile = ? WHERE id = 1", arguments: ["resharded from \(count) to \(reshard.count) shards"])
                }
                throw reshard
            }
        }
    }

    /// How often `auto` asks Discord whether it recommends more shards (test knob:
    /// `BOT_WORKER_SHARD_CHECK_SECONDS`).
    static var shardCheckInterval: Duration {
        if let text = getenv("BOT_WORKER_SHARD_CHECK_SECONDS").map({ String(cString: $0) }), let seconds = Double(text), seconds > 0 {
            return .milliseconds(Int64(seconds * 1000))
        }
        return .seconds(1800)
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

    /// Gives `guild` this release's slash commands, in the background, unless it has them already
    /// (`command_sync` holds the fingerprint each guild was given). The sandbox a worker starts is
    /// new each time, with no commands: there every guild is given them.
    ///
    /// One background job works through the guilds in turn: a bot in thousands of guilds queues
    /// them, not thousands of tasks waiting on the REST limiter at once.
    private func synchronizeCommands(_ guild: GuildID) async {
        if settings.mode == .discord {
            // Read once; callers that come while it is read (the actor is reentrant) wait for it.
            let loading = commandSyncLoad ?? Task { [commands, database] in
                let fingerprint = await commands.definitionsFingerprint
                let synced = (try? await database.read("core.command-sync") { db -> [String: String] in
                    Dictionary(try Row.fetchAll(db, sql: "SELECT guild_id, fingerprint FROM command_sync").map { (($0[0] as String), ($0[1] as String)) }, uniquingKeysWith: { $1 })
                }) ?? [:]
                return (fingerprint, synced)
            }
            commandSyncLoad = loading
            if commandsFingerprint == nil {
                let (fingerprint, synced) = await loading.value
                // Whichever waiter resumes first installs what was read.
                if commandsFingerprint == nil {
                    commandsFingerprint = fingerprint
                    syncedCommands = synced
                }
            }
            guard syncedCommands[guild.description] != commandsFingerprint else { return }
            syncedCommands[guild.description] = commandsFingerprint
        }
        commandSyncQueue.append(guild)
        guard !commandSyncRunning else { return }
        commandSyncRunning = true
        backgroundContinuation.yield { [weak self] in
            while let self, let guild = await self.nextCommandSync() {
                await self.runCommandSync(guild)
            }
        }
    }

    private func nextCommandSync() -> GuildID? {
        guard !commandSyncQueue.isEmpty else {
            commandSyncRunning = false
            return nil
        }
        return commandSyncQueue.removeFirst()
    }

    private func runCommandSync(_ guild: GuildID) async {
        guard let application = await access.applicationID else { return }
        let synced = await commands.synchronize(application: application, guild: guild)
        guard settings.mode == .discord, let fingerprint = commandsFingerprint else { return }
        guard synced else {
            syncedCommands[guild.description] = nil
            return
        }
        _ = try? await database.write("core.command-sync") { db in
            try db.execute(
                sql: "INSERT INTO command_sync (guild_id, fingerprint, synced_at) VALUES (?, ?, ?) ON CONFLICT (guild_id) DO UPDATE SET fingerprint = excluded.fingerprint, synced_at = excluded.synced_at",
                arguments: [guild.description, fingerprint, Date().timeIntervalSince1970]
            )
        }
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
                await self.synchronizeCommands(guild)
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
    private func discoverGateway(_ rest: DiscordREST) async throws -> GatewayBot {
        var attempt = 0
        while true {
            do {
                let answer = try await rest.gatewayBot()
                limit = answer.limit
                limitFetchedAt = .now
                return answer
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

    /// Waits until `shard` may identify, then records it: Discord's rate (`IdentifyBuckets`: one
    /// identify per `shard % max_concurrency` every 5 s) and the daily allowance shared by all
    /// shards (`IdentifyPacing`). Against the sandbox its `session_start_limit` and rate are
    /// honoured, not the daily rationing meant for Discord's allowance.
    private func identifyPermit(shard: Int) async throws {
        if let rest, limitFetchedAt.map({ ContinuousClock.now - $0 > .seconds(5) }) ?? true {
            limitFetchedAt = .now
            if let answer = try? await rest.gatewayBot() {
                limit = answer.limit
            }
        }
        let now = Date().timeIntervalSince1970
        let history = try await database.read("core.identify-history") { db in
            try Double.fetchAll(db, sql: "SELECT at FROM gateway_identifies WHERE at > ?", arguments: [now - 86400])
        }
        identifiesLast24h = history.count
        // The sandbox has no daily allowance to protect: only its own session_start_limit counts.
        let paced = settings.mode == .discord ? history : []
        let (daily, dailyReason) = IdentifyPacing.delay(history: paced, limit: limit, now: now, shards: shardCount)
        // Reserved at once (no suspension in between), so that shards asking together get
        // consecutive slots of their keys.
        let slot = identifyBuckets.reserve(shard: shard, notBefore: now + daily)
        let wait = slot - now
        if wait > 0 {
            let reason = wait > daily ? "shard \(shard) waits its turn: one identify per 5 s for each shard % max_concurrency (\(identifyBuckets.maxConcurrency))" : dailyReason
            if nextIdentifyAt.map({ $0.timeIntervalSince1970 > slot }) ?? true { nextIdentifyAt = Date(timeIntervalSince1970: slot) }
            let level: Logger.Level = daily > 0 ? .warning : .info
            logger.log(level: level, "holding the next identify back", metadata: [
                "shard": "\(shard)", "seconds": "\((wait * 10).rounded() / 10)", "reason": "\(reason ?? "")",
                "identifies_24h": "\(history.count)", "session_start_remaining": "\(limit.map { "\($0.remaining)" } ?? "unknown")",
            ])
            try await Task.sleep(for: .milliseconds(Int64(wait * 1000)))
            if nextIdentifyAt.map({ $0.timeIntervalSince1970 <= slot }) ?? false { nextIdentifyAt = nil }
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

    /// Holds `shard`'s Identify frame until 5 s after the previous frame of its key went: the
    /// permit spaced the connections, but a connection that took long to open sends late.
    private func beforeIdentifyFrame(shard: Int) async {
        let now = Date().timeIntervalSince1970
        let wait = identifyBuckets.frameTime(shard: shard, now: now) - now
        if wait > 0 { try? await Task.sleep(for: .milliseconds(Int64(wait * 1000))) }
    }

    // MARK: - Dispatches

    private func serves(_ guild: GuildID?) -> Bool {
        guard let guild else { return false }
        return settings.guildIDs.isEmpty || settings.guildIDs.contains(guild.description)
    }

    /// Handles a dispatch, then queues its position behind the writes it caused: once those
    /// commit, so does the position, and a new worker resumes its shard after this event.
    /// Dispatches of all shards are handled one at a time, in the order they arrive.
    func handle(_ dispatch: GatewayDispatch) async {
        while handling { await withCheckedContinuation { handlingWaiters.append($0) } }
        handling = true
        defer {
            handling = false
            if !handlingWaiters.isEmpty { handlingWaiters.removeFirst().resume() }
        }
        received += 1
        shards[dispatch.shard]?.received += 1
        shards[dispatch.shard]?.lastEventAt = Date()
        // A dispatch of a shard of another count (one a reshard retired, still draining) changes
        // no stored position: its session is not one the new shards resume.
        let current = dispatch.shardCount == shardCount
        let position = dispatch.sequence.flatMap { sequence in
            dispatch.sessionID.flatMap { current ? $0 : nil }.map {
                GatewayPosition(shard: dispatch.shard, shardCount: shardCount, sessionID: $0, resumeURL: dispatch.resumeURL, sequence: sequence)
            }
        }
        // The event's writes and its position commit together, never one without the other.
        if position != nil { await writes.beginEvent() }
        await act(on: dispatch)
        if let position {
            await writes.advance(to: position)
            shards[dispatch.shard]?.lastPositionAt = Date()
        }
    }

    private func act(on dispatch: GatewayDispatch) async {
        let shardID = dispatch.shard
        switch dispatch.event {
        case .ready(let ready):
            let identity = GatewayPosition.Identity(user: ready.user.id, application: ready.application?.id ?? ApplicationID(ready.user.id.rawValue))
            let guilds = ready.guilds.map(\.id)
            await access.identify(bot: identity.user, application: identity.application)
            shards[shardID]?.resumedGuilds = nil
            shards[shardID]?.guilds = []
            let count = shardCount
            // Committed with this event's position: a worker that resumes this session knows who it is.
            await writes.submit("core.gateway-identity") { db in
                try GatewayPosition.store(identity, db)
                try GatewayPosition.storeGuilds(shard: shardID, count: count, guilds, db)
                return nil
            }
            logger.info("gateway ready", metadata: ["shard": "\(shardID)", "guilds": "\(ready.guilds.count)", "user_id": "\(ready.user.id)"])
            if let lost = await shards[shardID]?.client.takeLostSession() {
                let since = shards[shardID]?.lastPositionAt
                shards[shardID]?.pendingReconcile = ("Discord did not resume session \(lost.sessionID) (after event \(lost.sequence.map(String.init) ?? "none"))", since)
            }
            if shards[shardID]?.pendingReconcile != nil {
                // Each of the session's guilds is reconciled as its GUILD_CREATE comes.
                shards[shardID]?.reconcileGuilds = Set(guilds.filter { serves($0) })
                await finishReconcileIfDone(shardID)
            }
            markConnected(shardID)
            sessionChanged?.yield()
        case .guildCreate(let guild):
            guard serves(guild.id), guild.unavailable != true else { return }
            shards[shardID]?.guilds.insert(guild.id)
            await access.guildAvailable(guild)
            let members = (guild.members ?? []).compactMap { $0.member(in: guild.id) }
            logger.info("guild available", metadata: ["shard": "\(shardID)", "guild_id": "\(guild.id)", "members": "\(members.count)", "roles": "\(guild.roles?.count ?? 0)"])
            await synchronizeCommands(guild.id)
            let voice = (guild.voice_states ?? []).map { $0.state(in: guild.id) }
            await events.publish(.voiceStatesAvailable(guild: guild.id, afkChannel: guild.afk_channel_id, states: voice))
            await events.publish(.guildAvailable(guild: guild.id, members: members))
            if let pending = shards[shardID]?.pendingReconcile {
                // Before READY listed the guilds (nil), every guild that comes is reconciled.
                if shards[shardID]?.reconcileGuilds?.remove(guild.id) != nil || shards[shardID]?.reconcileGuilds == nil {
                    await reconcile(guild: guild.id, members: members, reason: pending.reason, since: pending.since)
                }
                await finishReconcileIfDone(shardID)
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
                logger.info("gateway session resumed", metadata: ["shard": "\(shardID)"])
                if let guilds = shards[shardID]?.resumedGuilds {
                    shards[shardID]?.resumedGuilds = nil
                    afterResumedStart(guilds)
                }
                markConnected(shardID)
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
        logger.warning("gateway session lost; reconciled", metadata: ["guild_id": "\(guild)", "reason": "\(reason)", "members": "\(members.count)", "joined_in_gap": "\(joined.count)", "since": "\(from)"])
    }

    /// Once a shard reconciled every guild its READY listed, it has nothing pending; once no shard
    /// has, neither has the database (a restore's `reconcile` is done).
    private func finishReconcileIfDone(_ shardID: Int) async {
        guard shards[shardID]?.reconcileGuilds?.isEmpty == true else { return }
        shards[shardID]?.pendingReconcile = nil
        shards[shardID]?.reconcileGuilds = nil
        guard !shards.values.contains(where: { $0.pendingReconcile != nil }) else { return }
        await writes.submit("core.reconciled") { db in
            try GatewayPosition.clearReconcile(db)
            return nil
        }
    }

    /// The sessions as the heartbeat reports them: every shard's counters, and those of the
    /// shards a reshard retired.
    func sessionReport() async -> SessionReport? {
        guard !shards.isEmpty || retiredCounters != GatewaySession.Counters() else { return nil }
        var total = retiredCounters
        for shard in shards.values { total.add(await shard.client.counters) }
        return SessionReport(
            resumes: total.resumes, identifies: total.identifies, eventsReplayed: total.eventsReplayed,
            duplicatesSkipped: total.duplicatesSkipped, reconciliations: reconciliations,
            lastReconciliation: lastReconciliation?.text, lastReconciliationAt: lastReconciliation.map { Timestamp.string($0.at) }
        )
    }

    /// The shards of a count that is done (a reshard, or the end): their counters are kept.
    private func retireShards() async {
        for shard in shards.values { retiredCounters.add(await shard.client.counters) }
        shards = [:]
        connected = false
    }

    /// Once every shard has had its READY (or RESUMED), the connection counts as up.
    private func markConnected(_ shardID: Int) {
        shards[shardID]?.connected = true
        guard !connected, shards.count == shardCount, shards.values.allSatisfy(\.connected) else { return }
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
        var reports: [ShardReport] = []
        let now = ContinuousClock.now
        for shard in shards.values.sorted(by: { $0.id < $1.id }) {
            let snapshot = await shard.client.snapshot
            let state = snapshot.waitingForIdentifyPermit ? "waiting-to-identify" : Self.name(of: snapshot.phase)
            let counters = snapshot.counters
            let seconds = (now - shard.sample.at).fractionalMilliseconds / 1000
            let rate = seconds >= 0.5 ? Double(shard.received - shard.sample.received) / seconds : shard.eventsPerSecond
            if seconds >= 0.5 {
                shards[shard.id]?.sample = (shard.received, now)
                shards[shard.id]?.eventsPerSecond = rate
            }
            reports.append(ShardReport(
                id: shard.id, state: state, guilds: shard.guilds.count, latencyMs: snapshot.latency?.milliseconds,
                lastEventAgeMs: snapshot.lastEventAt.map { (now - $0).milliseconds }, eventsPerSecond: (rate * 10).rounded() / 10,
                lastEventAt: shard.lastEventAt.map { Timestamp.string($0) }, resumes: counters.resumes, identifies: counters.identifies
            ))
        }
        // The bot as a whole: as down as its worst shard, as recent as its newest event.
        let states = reports.map(\.state)
        let state = states.isEmpty ? "connecting" : states.first { $0 != "connected" }.map { _ in
            ["failed", "waiting-to-reconnect", "waiting-to-identify", "identifying", "resuming", "connecting"].first { states.contains($0) } ?? "connecting"
        } ?? "connected"
        let down = reports.filter { $0.state != "connected" }.map(\.id)
        if down.isEmpty && !reports.isEmpty { disconnectedSince = nil } else if disconnectedSince == nil { disconnectedSince = .now }
        var restRemaining = 50
        var invalid = 0
        if let rest {
            let headroom = await rest.headroom()
            restRemaining = headroom.globalRemaining
            invalid = headroom.invalidRequests
        }
        let report = DiscordReport(
            mode: settings.mode.rawValue, gatewayState: state, latencyMs: reports.compactMap(\.latencyMs).max(),
            lastEventAgeMs: reports.compactMap(\.lastEventAgeMs).min(),
            guilds: await access.guildCount, sessionStartRemaining: limit?.remaining, sessionStartTotal: limit?.total,
            identifiesLast24h: identifiesLast24h, nextIdentifyAt: nextIdentifyAt.map { Timestamp.string($0) },
            restGlobalRemaining: restRemaining, restInvalidRequests: invalid, lastError: lastError,
            sandboxURL: sandbox.map { "http://127.0.0.1:\($0.listening.port)" }, shards: reports
        )
        if let since = disconnectedSince, ContinuousClock.now - since > tolerance {
            let which = reports.count > 1 ? " (shard\(down.count == 1 ? "" : "s") \(down.map(String.init).joined(separator: ", ")) of \(reports.count))" : ""
            return (report, false, "Discord gateway \(state)\(which) for \((.now - since).milliseconds / 1000) s" + (lastError.map { ": \($0)" } ?? ""))
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
