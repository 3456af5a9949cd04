/// The protocol between `bot-supervisor` and the `bot-worker` it spawned.
///
/// The worker connects to the supervisor's worker socket, sends `hello`, and waits for `welcome`.
/// It then sends `ready` once its work is up and a `heartbeat` every
/// `welcome.heartbeatIntervalMs`. The supervisor may send `shutdown` at any time.
public enum WorkerProtocol {
    /// Raised whenever a message changes incompatibly; the supervisor refuses other versions.
    public static let version = 1

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
    case heartbeat(Heartbeat)
    /// Sent just before exiting with `WorkerExitCode.fatalConfiguration`: what is wrong and what to do.
    case fatal(message: String)
    /// The database has migrations to apply: the worker waits for `migrationBackup` before it
    /// applies them, so that a `pre-migration` backup exists.
    case migrationsPending(identifiers: [String])
    /// SQLite said SQLITE_CORRUPT or SQLITE_NOTADB: the supervisor stops the worker and restores.
    case corruption(detail: String)

    public struct Hello: Codable, Sendable, Equatable {
        public var protocolVersion: Int
        public var pid: Int32
        public var version: String
        public init(protocolVersion: Int = WorkerProtocol.version, pid: Int32, version: String) {
            self.protocolVersion = protocolVersion
            self.pid = pid
            self.version = version
        }
    }

    /// What the worker reports about itself with each heartbeat.
    public struct Heartbeat: Codable, Sendable, Equatable {
        public var sequence: Int
        /// False when the worker runs but cannot do its job (e.g. Discord unreachable).
        public var healthy: Bool
        public var detail: String?
        public var rssBytes: Int?
        public init(sequence: Int, healthy: Bool = true, detail: String? = nil, rssBytes: Int? = nil) {
            self.sequence = sequence
            self.healthy = healthy
            self.detail = detail
            self.rssBytes = rssBytes
        }
    }
}

/// Supervisor → worker.
public enum SupervisorMessage: Sendable, Equatable {
    case welcome(Welcome)
    case shutdown(reason: String)
    case error(ErrorBody)
    /// The answer to `migrationsPending`: whether the `pre-migration` backup was taken.
    case migrationBackup(ok: Bool, message: String)

    public struct Welcome: Codable, Sendable, Equatable {
        public var protocolVersion: Int
        public var heartbeatIntervalMs: Int
        /// The live database, `<dataDir>/bot.sqlite`.
        public var databasePath: String
        public init(protocolVersion: Int = WorkerProtocol.version, heartbeatIntervalMs: Int, databasePath: String) {
            self.protocolVersion = protocolVersion
            self.heartbeatIntervalMs = heartbeatIntervalMs
            self.databasePath = databasePath
        }
    }
}

// MARK: - Codable: {"type": "...", ...fields}

private enum TypeKey: String, CodingKey { case type }
private enum FieldKey: String, CodingKey { case message, reason, code, identifiers, detail, ok }

extension WorkerMessage: Codable {
    public init(from decoder: any Decoder) throws {
        let type = try decoder.container(keyedBy: TypeKey.self).decode(String.self, forKey: .type)
        switch type {
        case "hello": self = .hello(try Hello(from: decoder))
        case "ready": self = .ready
        case "heartbeat": self = .heartbeat(try Heartbeat(from: decoder))
        case "fatal":
            self = .fatal(message: try decoder.container(keyedBy: FieldKey.self).decode(String.self, forKey: .message))
        case "migrationsPending":
            self = .migrationsPending(identifiers: try decoder.container(keyedBy: FieldKey.self).decode([String].self, forKey: .identifiers))
        case "corruption":
            self = .corruption(detail: try decoder.container(keyedBy: FieldKey.self).decode(String.self, forKey: .detail))
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
        case .heartbeat(let heartbeat):
            try container.encode("heartbeat", forKey: .type)
            try heartbeat.encode(to: encoder)
        case .fatal(let message):
            try container.encode("fatal", forKey: .type)
            var fields = encoder.container(keyedBy: FieldKey.self)
            try fields.encode(message, forKey: .message)
        case .migrationsPending(let identifiers):
            try container.encode("migrationsPending", forKey: .type)
            var fields = encoder.container(keyedBy: FieldKey.self)
            try fields.encode(identifiers, forKey: .identifiers)
        case .corruption(let detail):
            try container.encode("corruption", forKey: .type)
            var fields = encoder.container(keyedBy: FieldKey.self)
            try fields.encode(detail, forKey: .detail)
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
        case "migrationBackup":
            let fields = try decoder.container(keyedBy: FieldKey.self)
            self = .migrationBackup(ok: try fields.decode(Bool.self, forKey: .ok), message: try fields.decode(String.self, forKey: .message))
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
        case .migrationBackup(let ok, let message):
            try container.encode("migrationBackup", forKey: .type)
            var fields = encoder.container(keyedBy: FieldKey.self)
            try fields.encode(ok, forKey: .ok)
            try fields.encode(message, forKey: .message)
        }
    }
}
