/// The protocol between `bot-supervisor` and the `bot-worker` it spawned.
///
/// The worker connects to the supervisor's worker socket, sends `hello`, and waits for `welcome`.
/// It then sends `ready` once its work is up and a `heartbeat` every
/// `welcome.heartbeatIntervalMs`. The supervisor may send `shutdown` at any time.
///
/// A request that waits for an answer (`backupRequest`) carries an id chosen by the worker, and
/// its answer (`backupReply`) names that id: several requests may be outstanding at once and are
/// answered in whatever order their work finishes.
public enum WorkerProtocol {
    /// Raised whenever a message changes incompatibly; each side refuses a peer of another
    /// version, with a message naming both.
    /// - 1: replies matched by arrival order, backup reasons as free strings.
    /// - 2: `backupRequest`/`backupReply` with ids and an enum reason; `hello.logSystems`.
    /// - 3: the worker's `alert`; `xpTransfer`/`xpTransferReply` (XP imports and exports relayed
    ///   from the status socket). A version-2 supervisor would answer them as bad requests.
    public static let version = 3

    /// Why a peer of another protocol version is refused, naming both versions: the same words on
    /// both sides, so an operator reading either log knows which binaries to replace.
    /// - Parameters:
    ///   - own: the side saying it (`"supervisor"` or `"worker"`).
    public static func versionMismatch(own: String, peer: String, peerVersion: Int) -> String {
        "this \(own) speaks worker protocol \(version), the \(peer) speaks protocol \(peerVersion); deploy bot-supervisor and bot-worker from the same release"
    }

    /// Only the protocol version of a `hello` or a `welcome`: it decodes from a message of any
    /// version, so that a peer of another version is refused by its version, not with "bad request".
    public struct VersionProbe: Decodable, Sendable {
        public var type: String
        public var protocolVersion: Int
    }

    /// The name of the environment variable holding the worker socket's path.
    public static let socketEnvironmentKey = "BOT_SUPERVISOR_SOCKET"
    /// The supervisor's pid, so that a worker can tell it was orphaned before PR_SET_PDEATHSIG took hold.
    public static let supervisorPIDEnvironmentKey = "BOT_SUPERVISOR_PID"
}

/// Exit codes of `bot-worker` that mean something to the supervisor.
public enum WorkerExitCode {
    /// A configuration error no restart can fix (a rejected token, intents not enabled):
    /// the supervisor shows the worker as `failed` and does not restart it.
    /// 78 is `EX_CONFIG` from sysexits.h.
    public static let fatalConfiguration: Int32 = 78
}

/// Worker → supervisor.
public enum WorkerMessage: Sendable, Equatable {
    case hello(Hello)
    case ready
    /// The start-up checks, sent just before `ready` (or before exiting when one failed).
    case startupReport(StartupReport)
    case heartbeat(Heartbeat)
    /// Sent just before exiting with `WorkerExitCode.fatalConfiguration`: what is wrong and what to do.
    case fatal(message: String)
    /// The worker needs a backup and waits for the `backupReply` with the same id: before it
    /// migrates (`preMigration`), for its journal's new timeline (`postMigration`), or once a
    /// failed journal location takes writes again (`journal`).
    case backupRequest(BackupRequest)
    /// The answer to the `xpTransfer` request with the same id.
    case xpTransferReply(XPTransferReply)
    /// SQLite said SQLITE_CORRUPT or SQLITE_NOTADB: the supervisor stops the worker and restores.
    case corruption(detail: String)
    /// Something an operator must see that stops nothing (a feature's rules looping, say): the
    /// supervisor raises it in its status, its log and the webhook. Features rate-limit their own.
    case alert(severity: AlertSeverity, message: String)

    public struct Hello: Codable, Sendable, Equatable {
        public var protocolVersion: Int
        public var pid: Int32
        public var version: String
        /// The log systems of the worker's features (`xp`, `verification`…), beyond the core ones
        /// (`LogLine.coreWorkerSystems`): the supervisor files their lines into `<system>.log`.
        public var logSystems: [String]
        public init(protocolVersion: Int = WorkerProtocol.version, pid: Int32, version: String, logSystems: [String] = []) {
            self.protocolVersion = protocolVersion
            self.pid = pid
            self.version = version
            self.logSystems = logSystems
        }
    }

    /// What the worker reports about itself with each heartbeat.
    public struct Heartbeat: Codable, Sendable, Equatable {
        public var sequence: Int
        /// False when the worker runs but cannot do its job (e.g. Discord unreachable).
        public var healthy: Bool
        public var detail: String?
        public var rssBytes: Int?
        /// The Discord connection, once the worker has one.
        public var discord: DiscordReport?
        /// Events handled and the writes they made.
        public var events: EventReport?
        /// The change journal.
        public var journal: JournalReport?
        /// This worker's Gateway sessions: resumes, identifies, replays, duplicates, reconciliations.
        public var sessions: SessionReport?
        public init(
            sequence: Int, healthy: Bool = true, detail: String? = nil, rssBytes: Int? = nil,
            discord: DiscordReport? = nil, events: EventReport? = nil, journal: JournalReport? = nil,
            sessions: SessionReport? = nil
        ) {
            self.sessions = sessions
            self.journal = journal
            self.sequence = sequence
            self.healthy = healthy
            self.detail = detail
            self.rssBytes = rssBytes
            self.discord = discord
            self.events = events
        }
    }
}

/// The worker's Discord connection, as it reports it with each heartbeat (and the status
/// snapshot shows it as `worker.discord`).
public struct DiscordReport: Codable, Sendable, Equatable {
    /// `discord` or `sandbox`.
    public var mode: String
    /// connecting, identifying, resuming, connected, waiting-to-reconnect, waiting-to-identify, failed.
    public var gatewayState: String
    /// Time from our last heartbeat to Discord's ACK.
    public var latencyMs: Int?
    /// Time since the last message from the Gateway.
    public var lastEventAgeMs: Int?
    public var guilds: Int
    /// Identifies left today as Discord counts them (`session_start_limit.remaining`), and its total.
    public var sessionStartRemaining: Int?
    public var sessionStartTotal: Int?
    /// Identifies this bot made in the last 24 hours, from the worker's own record (which
    /// survives restarts).
    public var identifiesLast24h: Int
    /// When the next Identify may go, when the worker is holding one back.
    public var nextIdentifyAt: String?
    /// REST requests left in the current second of the 50/s global limit.
    public var restGlobalRemaining: Int
    /// 401, 403 and 429 answers in the last 10 minutes (Discord bans at 10,000).
    public var restInvalidRequests: Int
    public var lastError: String?
    /// Sandbox mode: the sandbox's base URL (its control API is under `/sandbox`).
    public var sandboxURL: String?
    /// Each Gateway shard (one connection each), by id; `gatewayState`, `latencyMs` and
    /// `lastEventAgeMs` above are the worst of them.
    public var shards: [ShardReport]

    public init(
        mode: String, gatewayState: String, latencyMs: Int? = nil, lastEventAgeMs: Int? = nil, guilds: Int = 0,
        sessionStartRemaining: Int? = nil, sessionStartTotal: Int? = nil, identifiesLast24h: Int = 0,
        nextIdentifyAt: String? = nil, restGlobalRemaining: Int = 50, restInvalidRequests: Int = 0, lastError: String? = nil,
        sandboxURL: String? = nil, shards: [ShardReport] = []
    ) {
        self.shards = shards
        self.sandboxURL = sandboxURL
        self.mode = mode
        self.gatewayState = gatewayState
        self.latencyMs = latencyMs
        self.lastEventAgeMs = lastEventAgeMs
        self.guilds = guilds
        self.sessionStartRemaining = sessionStartRemaining
        self.sessionStartTotal = sessionStartTotal
        self.identifiesLast24h = identifiesLast24h
        self.nextIdentifyAt = nextIdentifyAt
        self.restGlobalRemaining = restGlobalRemaining
        self.restInvalidRequests = restInvalidRequests
        self.lastError = lastError
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(mode, forKey: .mode)
        try c.encode(gatewayState, forKey: .gatewayState)
        try c.encode(latencyMs, forKey: .latencyMs)
        try c.encode(lastEventAgeMs, forKey: .lastEventAgeMs)
        try c.encode(guilds, forKey: .guilds)
        try c.encode(sessionStartRemaining, forKey: .sessionStartRemaining)
        try c.encode(sessionStartTotal, forKey: .sessionStartTotal)
        try c.encode(identifiesLast24h, forKey: .identifiesLast24h)
        try c.encode(nextIdentifyAt, forKey: .nextIdentifyAt)
        try c.encode(restGlobalRemaining, forKey: .restGlobalRemaining)
        try c.encode(restInvalidRequests, forKey: .restInvalidRequests)
        try c.encode(lastError, forKey: .lastError)
        try c.encode(sandboxURL, forKey: .sandboxURL)
        try c.encode(shards, forKey: .shards)
    }

    private enum CodingKeys: String, CodingKey {
        case mode, gatewayState, latencyMs, lastEventAgeMs, guilds, sessionStartRemaining, sessionStartTotal, identifiesLast24h
        case nextIdentifyAt, restGlobalRemaining, restInvalidRequests, lastError, sandboxURL, shards
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        mode = try c.decode(String.self, forKey: .mode)
        gatewayState = try c.decode(String.self, forKey: .gatewayState)
        latencyMs = try c.decodeIfPresent(Int.self, forKey: .latencyMs)
        lastEventAgeMs = try c.decodeIfPresent(Int.self, forKey: .lastEventAgeMs)
        guilds = try c.decode(Int.self, forKey: .guilds)
        sessionStartRemaining = try c.decodeIfPresent(Int.self, forKey: .sessionStartRemaining)
        sessionStartTotal = try c.decodeIfPresent(Int.self, forKey: .sessionStartTotal)
        identifiesLast24h = try c.decode(Int.self, forKey: .identifiesLast24h)
        nextIdentifyAt = try c.decodeIfPresent(String.self, forKey: .nextIdentifyAt)
        restGlobalRemaining = try c.decode(Int.self, forKey: .restGlobalRemaining)
        restInvalidRequests = try c.decode(Int.self, forKey: .restInvalidRequests)
        lastError = try c.decodeIfPresent(String.self, forKey: .lastError)
        sandboxURL = try c.decodeIfPresent(String.self, forKey: .sandboxURL)
        shards = try c.decodeIfPresent([ShardReport].self, forKey: .shards) ?? []
    }
}

/// One Gateway shard as the heartbeat reports it (`worker.discord.shards` in the status).
public struct ShardReport: Codable, Sendable, Equatable {
    public var id: Int
    /// connecting, waiting-to-identify, identifying, resuming, connected, waiting-to-reconnect, failed.
    public var state: String
    /// Guilds available on this shard.
    public var guilds: Int
    public var latencyMs: Int?
    public var lastEventAgeMs: Int?
    /// Dispatches a second over the last heartbeat interval.
    public var eventsPerSecond: Double
    /// When its last dispatch arrived (ISO 8601), null before the first.
    public var lastEventAt: String?
    public var resumes: Int
    public var identifies: Int

    public init(
        id: Int, state: String, guilds: Int = 0, latencyMs: Int? = nil, lastEventAgeMs: Int? = nil, eventsPerSecond: Double = 0,
        lastEventAt: String? = nil, resumes: Int = 0, identifies: Int = 0
    ) {
        self.id = id
        self.state = state
        self.guilds = guilds
        self.latencyMs = latencyMs
        self.lastEventAgeMs = lastEventAgeMs
        self.eventsPerSecond = eventsPerSecond
        self.lastEventAt = lastEventAt
        self.resumes = resumes
        self.identifies = identifies
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(state, forKey: .state)
        try c.encode(guilds, forKey: .guilds)
        try c.encode(latencyMs, forKey: .latencyMs)
        try c.encode(lastEventAgeMs, forKey: .lastEventAgeMs)
        try c.encode(eventsPerSecond, forKey: .eventsPerSecond)
        try c.encode(lastEventAt, forKey: .lastEventAt)
        try c.encode(resumes, forKey: .resumes)
        try c.encode(identifies, forKey: .identifies)
    }
}

/// The worker's checks before it reports ready: the database opens and takes a write, every
/// registered table exists, the Discord settings make sense, every feature loaded and found its
/// tables. The status snapshot keeps the last one as `worker.startup`.
public struct StartupReport: Codable, Sendable, Equatable {
    public var at: String
    public var ok: Bool
    public var checks: [HealthStatus.Check]

    public init(at: String, checks: [HealthStatus.Check]) {
        self.at = at
        self.checks = checks
        ok = !checks.contains { $0.status == .critical }
    }
}

/// What the worker did with the events it received, as it reports it with each heartbeat.
public struct EventReport: Codable, Sendable, Equatable {
    public var received: Int
    /// Handler failures (each also logged with its feature and event).
    public var failed: Int
    /// Writes committed through the group commit, and how long they took from the event's
    /// arrival to their commit (over the last few thousand).
    public var writesCommitted: Int
    public var writeLatencyP50Ms: Double?
    public var writeLatencyP99Ms: Double?
    public var commandsSucceeded: Int
    public var commandsFailed: Int

    public init(
        received: Int = 0, failed: Int = 0, writesCommitted: Int = 0, writeLatencyP50Ms: Double? = nil,
        writeLatencyP99Ms: Double? = nil, commandsSucceeded: Int = 0, commandsFailed: Int = 0
    ) {
        self.received = received
        self.failed = failed
        self.writesCommitted = writesCommitted
        self.writeLatencyP50Ms = writeLatencyP50Ms
        self.writeLatencyP99Ms = writeLatencyP99Ms
        self.commandsSucceeded = commandsSucceeded
        self.commandsFailed = commandsFailed
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(received, forKey: .received)
        try c.encode(failed, forKey: .failed)
        try c.encode(writesCommitted, forKey: .writesCommitted)
        try c.encode(writeLatencyP50Ms, forKey: .writeLatencyP50Ms)
        try c.encode(writeLatencyP99Ms, forKey: .writeLatencyP99Ms)
        try c.encode(commandsSucceeded, forKey: .commandsSucceeded)
        try c.encode(commandsFailed, forKey: .commandsFailed)
    }
}

/// Supervisor → worker.
public enum SupervisorMessage: Sendable, Equatable {
    case welcome(Welcome)
    case shutdown(reason: String)
    case error(ErrorBody)
    /// The answer to the `backupRequest` with the same id: whether the backup was taken.
    case backupReply(BackupReply)
    /// A backup was taken (whoever asked for it): the worker starts a new journal segment after it.
    case snapshotTaken(sequence: Int64)
    /// An operator's XP import or export (`xp-import`, `xp-export` on the status socket), run by
    /// the worker, the only writer of the live database; answered by `xpTransferReply`.
    case xpTransfer(XPTransferRequest)

    public struct Welcome: Codable, Sendable, Equatable {
        public var protocolVersion: Int
        public var heartbeatIntervalMs: Int
        /// The live database, `<dataDir>/bot.sqlite`.
        public var databasePath: String
        public var discord: DiscordSettings
        public var journal: JournalSettings
        public init(protocolVersion: Int = WorkerProtocol.version, heartbeatIntervalMs: Int, databasePath: String, discord: DiscordSettings, journal: JournalSettings) {
            self.journal = journal
            self.protocolVersion = protocolVersion
            self.heartbeatIntervalMs = heartbeatIntervalMs
            self.databasePath = databasePath
            self.discord = discord
        }
    }
}

/// How the worker reaches Discord, from the supervisor's configuration (`discord.*`).
///
/// The token travels only here, over the worker socket to a peer the supervisor checked is its
/// own child: never in the worker's environment or arguments, where `ps e` and /proc show it.
public struct DiscordSettings: Codable, Sendable, Equatable, CustomStringConvertible {
    public enum Mode: String, Codable, Sendable {
        /// Discord itself, with the token.
        case discord
        /// The built-in local sandbox (`discord-sandbox`), which the worker starts.
        case sandbox
    }

    public var mode: Mode
    public var token: Secret?
    public var gatewayURL: String?
    public var apiBaseURL: String?
    /// The guilds the bot serves; empty for all.
    public var guildIDs: [String]
    /// Sandbox only: simulated members and how many actions they take a minute.
    public var sandboxMembers: Int
    public var sandboxActivityPerMinute: Int
    /// Gateway shards: nil for Discord's recommendation (`discord.shards` = `auto`).
    public var shards: Int?
    /// Sandbox only: how many guilds it simulates (`sandbox.guilds`).
    public var sandboxGuilds: Int

    public init(
        mode: Mode, token: Secret? = nil, gatewayURL: String? = nil, apiBaseURL: String? = nil, guildIDs: [String] = [],
        sandboxMembers: Int = 40, sandboxActivityPerMinute: Int = 30, shards: Int? = nil, sandboxGuilds: Int = 1
    ) {
        self.shards = shards
        self.sandboxGuilds = sandboxGuilds
        self.mode = mode
        self.token = token
        self.gatewayURL = gatewayURL
        self.apiBaseURL = apiBaseURL
        self.guildIDs = guildIDs
        self.sandboxMembers = sandboxMembers
        self.sandboxActivityPerMinute = sandboxActivityPerMinute
    }

    public var description: String {
        "DiscordSettings(mode: \(mode.rawValue), token: \(token == nil ? "none" : "<redacted>"), gatewayURL: \(gatewayURL ?? "default"), apiBaseURL: \(apiBaseURL ?? "default"), guildIDs: \(guildIDs), shards: \(shards.map(String.init) ?? "auto"))"
    }

    private enum CodingKeys: String, CodingKey {
        case mode, token, gatewayURL, apiBaseURL, guildIDs, sandboxMembers, sandboxActivityPerMinute, shards, sandboxGuilds
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        mode = try c.decode(Mode.self, forKey: .mode)
        token = try c.decodeIfPresent(String.self, forKey: .token).map(Secret.init)
        gatewayURL = try c.decodeIfPresent(String.self, forKey: .gatewayURL)
        apiBaseURL = try c.decodeIfPresent(String.self, forKey: .apiBaseURL)
        guildIDs = try c.decodeIfPresent([String].self, forKey: .guildIDs) ?? []
        sandboxMembers = try c.decodeIfPresent(Int.self, forKey: .sandboxMembers) ?? 40
        sandboxActivityPerMinute = try c.decodeIfPresent(Int.self, forKey: .sandboxActivityPerMinute) ?? 30
        shards = try c.decodeIfPresent(Int.self, forKey: .shards)
        sandboxGuilds = try c.decodeIfPresent(Int.self, forKey: .sandboxGuilds) ?? 1
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(mode, forKey: .mode)
        try c.encodeIfPresent(token?.reveal(), forKey: .token)
        try c.encodeIfPresent(gatewayURL, forKey: .gatewayURL)
        try c.encodeIfPresent(apiBaseURL, forKey: .apiBaseURL)
        try c.encode(guildIDs, forKey: .guildIDs)
        try c.encode(sandboxMembers, forKey: .sandboxMembers)
        try c.encode(sandboxActivityPerMinute, forKey: .sandboxActivityPerMinute)
        try c.encodeIfPresent(shards, forKey: .shards)
        try c.encode(sandboxGuilds, forKey: .sandboxGuilds)
    }
}

// MARK: - Codable: {"type": "...", ...fields}

private enum TypeKey: String, CodingKey { case type }
private enum FieldKey: String, CodingKey { case message, reason, code, detail, sequence, severity }

extension WorkerMessage: Codable {
    public init(from decoder: any Decoder) throws {
        let type = try decoder.container(keyedBy: TypeKey.self).decode(String.self, forKey: .type)
        switch type {
        case "hello": self = .hello(try Hello(from: decoder))
        case "ready": self = .ready
        case "startupReport": self = .startupReport(try StartupReport(from: decoder))
        case "heartbeat": self = .heartbeat(try Heartbeat(from: decoder))
        case "fatal":
            self = .fatal(message: try decoder.container(keyedBy: FieldKey.self).decode(String.self, forKey: .message))
        case "backupRequest": self = .backupRequest(try BackupRequest(from: decoder))
        case "xpTransferReply": self = .xpTransferReply(try XPTransferReply(from: decoder))
        case "corruption":
            self = .corruption(detail: try decoder.container(keyedBy: FieldKey.self).decode(String.self, forKey: .detail))
        case "alert":
            let fields = try decoder.container(keyedBy: FieldKey.self)
            self = .alert(severity: try fields.decode(AlertSeverity.self, forKey: .severity), message: try fields.decode(String.self, forKey: .message))
        default: throw MessageDecodingError("unknown message type \"\(type)\"")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: TypeKey.self)
        switch self {
        case .hello(let hello):
            try container.encode("hello", forKey: .type)
            try hello.encode(to: encoder)
        case .ready:
            try container.encode("ready", forKey: .type)
        case .startupReport(let report):
            try container.encode("startupReport", forKey: .type)
            try report.encode(to: encoder)
        case .heartbeat(let heartbeat):
            try container.encode("heartbeat", forKey: .type)
            try heartbeat.encode(to: encoder)
        case .fatal(let message):
            try container.encode("fatal", forKey: .type)
            var fields = encoder.container(keyedBy: FieldKey.self)
            try fields.encode(message, forKey: .message)
        case .backupRequest(let request):
            try container.encode("backupRequest", forKey: .type)
            try request.encode(to: encoder)
        case .xpTransferReply(let reply):
            try container.encode("xpTransferReply", forKey: .type)
            try reply.encode(to: encoder)
        case .corruption(let detail):
            try container.encode("corruption", forKey: .type)
            var fields = encoder.container(keyedBy: FieldKey.self)
            try fields.encode(detail, forKey: .detail)
        case .alert(let severity, let message):
            try container.encode("alert", forKey: .type)
            var fields = encoder.container(keyedBy: FieldKey.self)
            try fields.encode(severity, forKey: .severity)
            try fields.encode(message, forKey: .message)
        }
    }
}

extension SupervisorMessage: Codable {
    public init(from decoder: any Decoder) throws {
        let type = try decoder.container(keyedBy: TypeKey.self).decode(String.self, forKey: .type)
        switch type {
        case "welcome": self = .welcome(try Welcome(from: decoder))
        case "shutdown":
            self = .shutdown(reason: try decoder.container(keyedBy: FieldKey.self).decode(String.self, forKey: .reason))
        case "error": self = .error(try ErrorBody(from: decoder))
        case "backupReply": self = .backupReply(try BackupReply(from: decoder))
        case "xpTransfer": self = .xpTransfer(try XPTransferRequest(from: decoder))
        case "snapshotTaken":
            self = .snapshotTaken(sequence: try decoder.container(keyedBy: FieldKey.self).decode(Int64.self, forKey: .sequence))
        default: throw MessageDecodingError("unknown message type \"\(type)\"")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: TypeKey.self)
        switch self {
        case .welcome(let welcome):
            try container.encode("welcome", forKey: .type)
            try welcome.encode(to: encoder)
        case .shutdown(let reason):
            try container.encode("shutdown", forKey: .type)
            var fields = encoder.container(keyedBy: FieldKey.self)
            try fields.encode(reason, forKey: .reason)
        case .error(let body):
            try container.encode("error", forKey: .type)
            try body.encode(to: encoder)
        case .backupReply(let reply):
            try container.encode("backupReply", forKey: .type)
            try reply.encode(to: encoder)
        case .xpTransfer(let request):
            try container.encode("xpTransfer", forKey: .type)
            try request.encode(to: encoder)
        case .snapshotTaken(let sequence):
            try container.encode("snapshotTaken", forKey: .type)
            var fields = encoder.container(keyedBy: FieldKey.self)
            try fields.encode(sequence, forKey: .sequence)
        }
    }
}

/// `{"type":"xpTransfer","id":2,"action":"import","guild":"…","format":"mee6","dryRun":true,"content":"<base64>"}`:
/// an XP import or export the supervisor relays from the status socket. The id is the
/// supervisor's; the worker's `xpTransferReply` names it.
public struct XPTransferRequest: Codable, Sendable, Equatable {
    public enum Action: String, Codable, Sendable { case `import`, export }

    public var id: RequestID
    public var action: Action
    public var guild: String
    /// `import`: `mee6` or `csv`.
    public var format: String?
    /// `import`: report what would change, write nothing.
    public var dryRun: Bool
    /// `import`: the file, base64.
    public var content: String?

    public init(id: RequestID, action: Action, guild: String, format: String? = nil, dryRun: Bool = false, content: String? = nil) {
        self.id = id
        self.action = action
        self.guild = guild
        self.format = format
        self.dryRun = dryRun
        self.content = content
    }
}

/// `{"type":"xpTransferReply","id":2,"ok":true,"result":{…}}`, or `"ok":false` with an `error`
/// (code `malformed` for a file refused whole, naming its line and field).
public struct XPTransferReply: Codable, Sendable, Equatable {
    public var id: RequestID
    public var ok: Bool
    public var result: XPTransferResult?
    public var error: ErrorBody?

    public init(id: RequestID, result: XPTransferResult) {
        self.id = id
        ok = true
        self.result = result
    }

    public init(id: RequestID, error: ErrorBody) {
        self.id = id
        ok = false
        self.error = error
    }
}

/// What an XP import did (or would do, `dryRun`), or an export: the result of `xp-import` and
/// `xp-export` on the status socket too.
public struct XPTransferResult: Codable, Sendable, Equatable {
    public var guild: String
    /// In words: the counts, the levels recomputed, whether anything was written.
    public var summary: String
    public var dryRun: Bool
    /// Import: members in the file, and how many of them the import adds, changes or leaves.
    public var entries: Int
    public var added: Int
    public var updated: Int
    public var unchanged: Int
    /// Import: members whose level in the file disagreed with their XP (stored as the XP gives).
    public var levelsRecomputed: Int
    /// Export: the CSV (`user_id,xp,level,messages,voice_minutes`).
    public var csv: String?

    public init(
        guild: String, summary: String, dryRun: Bool = false, entries: Int = 0, added: Int = 0, updated: Int = 0,
        unchanged: Int = 0, levelsRecomputed: Int = 0, csv: String? = nil
    ) {
        self.guild = guild
        self.summary = summary
        self.dryRun = dryRun
        self.entries = entries
        self.added = added
        self.updated = updated
        self.unchanged = unchanged
        self.levelsRecomputed = levelsRecomputed
        self.csv = csv
    }
}

/// The Gateway sessions (`worker.sessions` in the status): a worker reports its own counts, and
/// the supervisor adds those of the workers before it.
public struct SessionReport: Codable, Sendable, Equatable {
    /// Sessions resumed (a new worker taking over its predecessor's session, or a reconnect).
    public var resumes: Int
    /// New sessions opened (each costs one of Discord's daily identifies).
    public var identifies: Int
    /// Events Discord replayed on a resume.
    public var eventsReplayed: Int
    /// Replayed events whose effects were already committed, skipped.
    public var duplicatesSkipped: Int
    /// Times the bot reconciled after a session was lost (resume refused, or dropped by a restore to the past).
    public var reconciliations: Int
    /// The last reconciliation, in words: what may have been missed, and what was done.
    public var lastReconciliation: String?
    /// When it was made.
    public var lastReconciliationAt: String?

    public init(
        resumes: Int = 0, identifies: Int = 0, eventsReplayed: Int = 0, duplicatesSkipped: Int = 0, reconciliations: Int = 0,
        lastReconciliation: String? = nil, lastReconciliationAt: String? = nil
    ) {
        self.lastReconciliationAt = lastReconciliationAt
        self.resumes = resumes
        self.identifies = identifies
        self.eventsReplayed = eventsReplayed
        self.duplicatesSkipped = duplicatesSkipped
        self.reconciliations = reconciliations
        self.lastReconciliation = lastReconciliation
    }

    /// These counts plus `other`'s (the last reconciliation is the newer one's).
    public func adding(_ other: SessionReport) -> SessionReport {
        SessionReport(
            resumes: resumes + other.resumes, identifies: identifies + other.identifies,
            eventsReplayed: eventsReplayed + other.eventsReplayed, duplicatesSkipped: duplicatesSkipped + other.duplicatesSkipped,
            reconciliations: reconciliations + other.reconciliations,
            lastReconciliation: other.lastReconciliation ?? lastReconciliation,
            lastReconciliationAt: other.lastReconciliation == nil ? lastReconciliationAt : other.lastReconciliationAt
        )
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(resumes, forKey: .resumes)
        try c.encode(identifies, forKey: .identifies)
        try c.encode(eventsReplayed, forKey: .eventsReplayed)
        try c.encode(duplicatesSkipped, forKey: .duplicatesSkipped)
        try c.encode(reconciliations, forKey: .reconciliations)
        try c.encode(lastReconciliation, forKey: .lastReconciliation)
        try c.encode(lastReconciliationAt, forKey: .lastReconciliationAt)
    }
}
