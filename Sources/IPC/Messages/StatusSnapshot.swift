/// What `bot-supervisor status --json` prints: docs/contract.md, "Status snapshot".
///
/// Every field is always present; a value not known yet is `null`, never missing. Times are
/// ISO 8601 UTC strings.
public struct StatusSnapshot: Codable, Sendable, Equatable {
    public var supervisor: SupervisorStatus
    public var worker: WorkerStatus
    public var database: DatabaseStatus?
    public var backups: BackupsStatus?
    public var health: HealthStatus?
    /// Newest first.
    public var alerts: [Alert]
    /// A long operation running now (backup, restore, verify), with its progress.
    public var operation: OperationStatus?
    /// The change journal, as the worker last reported it (kept while the worker restarts).
    public var journal: JournalReport?
    /// The off-host replicas, in the order of `replicas.targets`.
    public var replicas: [ReplicaStatus] = []

    enum CodingKeys: String, CodingKey {
        case supervisor, worker, database, backups, health, alerts, operation, journal, replicas
    }

    public init(
        supervisor: SupervisorStatus, worker: WorkerStatus, database: DatabaseStatus? = nil,
        backups: BackupsStatus? = nil, health: HealthStatus? = nil, alerts: [Alert] = [], operation: OperationStatus? = nil,
        journal: JournalReport? = nil
    ) {
        self.journal = journal
        self.operation = operation
        self.supervisor = supervisor
        self.worker = worker
        self.database = database
        self.backups = backups
        self.health = health
        self.alerts = alerts
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(supervisor, forKey: .supervisor)
        try c.encode(worker, forKey: .worker)
        try c.encode(database, forKey: .database)
        try c.encode(backups, forKey: .backups)
        try c.encode(health, forKey: .health)
        try c.encode(alerts, forKey: .alerts)
        try c.encode(operation, forKey: .operation)
        try c.encode(journal, forKey: .journal)
        try c.encode(replicas, forKey: .replicas)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        supervisor = try c.decode(SupervisorStatus.self, forKey: .supervisor)
        worker = try c.decode(WorkerStatus.self, forKey: .worker)
        database = try c.decodeIfPresent(DatabaseStatus.self, forKey: .database)
        backups = try c.decodeIfPresent(BackupsStatus.self, forKey: .backups)
        health = try c.decodeIfPresent(HealthStatus.self, forKey: .health)
        alerts = try c.decode([Alert].self, forKey: .alerts)
        operation = try c.decodeIfPresent(OperationStatus.self, forKey: .operation)
        journal = try c.decodeIfPresent(JournalReport.self, forKey: .journal)
        // A supervisor from before the replicas has none.
        replicas = try c.decodeIfPresent([ReplicaStatus].self, forKey: .replicas) ?? []
    }
}

public struct SupervisorStatus: Codable, Sendable, Equatable {
    public var pid: Int32
    public var version: String
    public var startedAt: String
    /// `starting`, `running` or `stopping`.
    public var state: String
    public var rssBytes: Int?

    public init(pid: Int32, version: String, startedAt: String, state: String, rssBytes: Int?) {
        self.pid = pid
        self.version = version
        self.startedAt = startedAt
        self.state = state
        self.rssBytes = rssBytes
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(pid, forKey: .pid)
        try c.encode(version, forKey: .version)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(state, forKey: .state)
        try c.encode(rssBytes, forKey: .rssBytes)
    }
}

public enum WorkerState: String, Codable, Sendable, Equatable, CaseIterable {
    case starting, ready, unhealthy, stopping, backoff
    case crashLoop = "crash-loop"
    case failed, stopped
}

public struct WorkerStatus: Codable, Sendable, Equatable {
    public var pid: Int32?
    public var state: WorkerState
    /// Restarts since the supervisor started, whatever their cause.
    public var restarts: Int
    public var startedAt: String?
    public var lastHeartbeatAgeMs: Int?
    public var lastExit: LastExit?
    /// Time from spawn to the worker's `ready` at its last start.
    public var lastStartupMs: Int?
    /// When the next start is due, while in `backoff` or `crash-loop`.
    public var nextStartAt: String?
    /// Why the worker is `failed` or `unhealthy`, in words.
    public var detail: String?
    /// The worker's own report from its last heartbeat.
    public var rssBytes: Int?
    public var discord: DiscordReport?
    public var events: EventReport?
    /// The start-up checks of the running worker.
    public var startup: StartupReport?
    /// Gateway sessions since the supervisor started, every worker's counted.
    public var sessions: SessionReport?

    public init(
        pid: Int32? = nil, state: WorkerState, restarts: Int = 0, startedAt: String? = nil,
        lastHeartbeatAgeMs: Int? = nil, lastExit: LastExit? = nil, lastStartupMs: Int? = nil,
        nextStartAt: String? = nil, detail: String? = nil, rssBytes: Int? = nil,
        discord: DiscordReport? = nil, events: EventReport? = nil, startup: StartupReport? = nil,
        sessions: SessionReport? = nil
    ) {
        self.sessions = sessions
        self.startup = startup
        self.rssBytes = rssBytes
        self.discord = discord
        self.events = events
        self.pid = pid
        self.state = state
        self.restarts = restarts
        self.startedAt = startedAt
        self.lastHeartbeatAgeMs = lastHeartbeatAgeMs
        self.lastExit = lastExit
        self.lastStartupMs = lastStartupMs
        self.nextStartAt = nextStartAt
        self.detail = detail
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(pid, forKey: .pid)
        try c.encode(state, forKey: .state)
        try c.encode(restarts, forKey: .restarts)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(lastHeartbeatAgeMs, forKey: .lastHeartbeatAgeMs)
        try c.encode(lastExit, forKey: .lastExit)
        try c.encode(lastStartupMs, forKey: .lastStartupMs)
        try c.encode(nextStartAt, forKey: .nextStartAt)
        try c.encode(detail, forKey: .detail)
        try c.encode(rssBytes, forKey: .rssBytes)
        try c.encode(discord, forKey: .discord)
        try c.encode(events, forKey: .events)
        try c.encode(startup, forKey: .startup)
        try c.encode(sessions, forKey: .sessions)
    }
}

public struct LastExit: Codable, Sendable, Equatable {
    public var code: Int32?
    public var signal: Int32?
    public var reason: String
    public var at: String

    public init(code: Int32?, signal: Int32?, reason: String, at: String) {
        self.code = code
        self.signal = signal
        self.reason = reason
        self.at = at
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(code, forKey: .code)
        try c.encode(signal, forKey: .signal)
        try c.encode(reason, forKey: .reason)
        try c.encode(at, forKey: .at)
    }
}

public struct DatabaseStatus: Codable, Sendable, Equatable {
    public var path: String
    public var sizeBytes: Int?
    public var lastCheck: Check?

    public struct Check: Codable, Sendable, Equatable {
        public var at: String
        public var result: String
        public init(at: String, result: String) {
            self.at = at
            self.result = result
        }
    }

    public init(path: String, sizeBytes: Int?, lastCheck: Check?) {
        self.path = path
        self.sizeBytes = sizeBytes
        self.lastCheck = lastCheck
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(path, forKey: .path)
        try c.encode(sizeBytes, forKey: .sizeBytes)
        try c.encode(lastCheck, forKey: .lastCheck)
    }
}

public struct BackupsStatus: Codable, Sendable, Equatable {
    public var count: Int
    public var last: Last?

    public struct Last: Codable, Sendable, Equatable {
        public var id: String
        public var at: String
        public var reason: String
        public var verified: Bool
        public var locations: [String]
        public init(id: String, at: String, reason: String, verified: Bool, locations: [String]) {
            self.id = id
            self.at = at
            self.reason = reason
            self.verified = verified
            self.locations = locations
        }
    }

    public init(count: Int, last: Last?) {
        self.count = count
        self.last = last
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(count, forKey: .count)
        try c.encode(last, forKey: .last)
    }
}

public enum CheckStatus: String, Codable, Sendable, Equatable, Comparable {
    case ok, warn, critical

    private var rank: Int {
        switch self {
        case .ok: 0
        case .warn: 1
        case .critical: 2
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rank < rhs.rank }
}

public struct HealthStatus: Codable, Sendable, Equatable {
    public var status: CheckStatus
    public var lastRunAt: String?
    public var checks: [Check]

    public struct Check: Codable, Sendable, Equatable {
        public var name: String
        public var status: CheckStatus
        public var detail: String
        public init(name: String, status: CheckStatus, detail: String) {
            self.name = name
            self.status = status
            self.detail = detail
        }
    }

    public init(status: CheckStatus, lastRunAt: String?, checks: [Check]) {
        self.status = status
        self.lastRunAt = lastRunAt
        self.checks = checks
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(status, forKey: .status)
        try c.encode(lastRunAt, forKey: .lastRunAt)
        try c.encode(checks, forKey: .checks)
    }
}

public enum AlertSeverity: String, Codable, Sendable, Equatable {
    case info, warning, critical
}

public struct Alert: Codable, Sendable, Equatable {
    public var at: String
    public var severity: AlertSeverity
    public var message: String

    public init(at: String, severity: AlertSeverity, message: String) {
        self.at = at
        self.severity = severity
        self.message = message
    }
}

public struct OperationStatus: Codable, Sendable, Equatable {
    public var name: String
    public var startedAt: String
    public var phase: String
    /// 0 to 1.
    public var progress: Double
    /// Bytes done and in all in the current phase, where it counts them (a copy, a verification);
    /// null otherwise.
    public var bytesDone: Int64?
    public var bytesTotal: Int64?

    public init(name: String, startedAt: String, phase: String, progress: Double, bytesDone: Int64? = nil, bytesTotal: Int64? = nil) {
        self.name = name
        self.startedAt = startedAt
        self.phase = phase
        self.progress = progress
        self.bytesDone = bytesDone
        self.bytesTotal = bytesTotal
    }

    enum CodingKeys: String, CodingKey {
        case name, startedAt, phase, progress, bytesDone, bytesTotal
    }

    /// Unknown byte counts are written as null, never left out.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(phase, forKey: .phase)
        try c.encode(progress, forKey: .progress)
        try c.encode(bytesDone, forKey: .bytesDone)
        try c.encode(bytesTotal, forKey: .bytesTotal)
    }
}
