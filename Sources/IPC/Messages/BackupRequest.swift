/// The id of a worker's request, chosen by the worker (increasing from 1 on each connection) and
/// named by the supervisor's reply: replies are matched by id, never by arrival order.
public struct RequestID: RawRepresentable, Codable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public init(_ rawValue: Int) { self.rawValue = rawValue }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(Int.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public var description: String { "\(rawValue)" }
}

/// Why the worker asks for a backup. On the wire the raw values, which are also the backup
/// manifest's reasons the supervisor files the backup under.
public enum BackupReason: String, Codable, Sendable, CaseIterable {
    /// The database has migrations to apply: the worker migrates only once this backup exists.
    case preMigration = "pre-migration"
    /// The first snapshot of the timeline a migration started: the journal builds on it.
    case postMigration = "post-migration"
    /// The journal needs a new base (a failed location takes writes again).
    case journal
}

/// `{"type":"backupRequest","id":3,"reason":"pre-migration","migrations":["xp-v2"],"detail":"…"}`
public struct BackupRequest: Codable, Sendable, Equatable {
    public var id: RequestID
    public var reason: BackupReason
    /// `preMigration`: the migrations about to be applied, for the supervisor's log.
    public var migrations: [String]
    /// Why, in words, for the log only (a journal location's path); never compared.
    public var detail: String?

    public init(id: RequestID, reason: BackupReason, migrations: [String] = [], detail: String? = nil) {
        self.id = id
        self.reason = reason
        self.migrations = migrations
        self.detail = detail
    }

    private enum CodingKeys: String, CodingKey { case id, reason, migrations, detail }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(RequestID.self, forKey: .id)
        reason = try c.decode(BackupReason.self, forKey: .reason)
        migrations = try c.decodeIfPresent([String].self, forKey: .migrations) ?? []
        detail = try c.decodeIfPresent(String.self, forKey: .detail)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(reason, forKey: .reason)
        try c.encode(migrations, forKey: .migrations)
        try c.encodeIfPresent(detail, forKey: .detail)
    }
}

/// `{"type":"backupReply","id":3,"ok":true,"message":"backup … taken"}`: the answer to the
/// request with the same id.
public struct BackupReply: Codable, Sendable, Equatable {
    public var id: RequestID
    public var ok: Bool
    /// The backup's id when taken, else why not.
    public var message: String

    public init(id: RequestID, ok: Bool, message: String) {
        self.id = id
        self.ok = ok
        self.message = message
    }
}
