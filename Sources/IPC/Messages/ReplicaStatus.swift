/// One off-host replica in the status snapshot: CONTRACT.md, `replicas`.
public struct ReplicaStatus: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable, Equatable {
        /// Shipping keeps up: the journal lags by at most `replicas.maxLagSeconds`.
        case ok
        /// Reachable, but further behind than the bound.
        case lagging
        /// The last attempt failed; retried with backoff.
        case down
        /// Reachable, but no snapshot on it yet: a restore from it would bring back nothing. Its
        /// lag counts from when shipping to it began.
        case seeding
    }

    /// The last restore drill of this replica (all null until one ran).
    public struct Drill: Codable, Sendable, Equatable {
        public var at: String?
        /// `ok` or `failed`.
        public var result: String?
        public var detail: String?
        /// Seconds since `at`, as of the status.
        public var ageSeconds: Double?
        /// The journal sequence at which the restored copy matched (or failed to match) the live database.
        public var sequence: Int64?

        public init(at: String? = nil, result: String? = nil, detail: String? = nil, ageSeconds: Double? = nil, sequence: Int64? = nil) {
            self.at = at
            self.result = result
            self.detail = detail
            self.ageSeconds = ageSeconds
            self.sequence = sequence
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(at, forKey: .at)
            try c.encode(result, forKey: .result)
            try c.encode(detail, forKey: .detail)
            try c.encode(ageSeconds, forKey: .ageSeconds)
            try c.encode(sequence, forKey: .sequence)
        }
    }

    public var name: String
    public var state: State
    /// Since the oldest committed journal entry the replica lacks; 0 when it has them all.
    public var lagSeconds: Double
    /// The newest journal entry shipped.
    public var lastSequence: Int64?
    public var lastShippedAt: String?
    /// Encrypted bytes shipped.
    public var bytes: Int64
    public var lastError: String?
    public var lastErrorAt: String?
    /// Since when the replica is down (null while it is not).
    public var downSince: String?
    public var drill: Drill

    public init(
        name: String, state: State, lagSeconds: Double, lastSequence: Int64?, lastShippedAt: String?, bytes: Int64,
        lastError: String?, lastErrorAt: String?, downSince: String?, drill: Drill
    ) {
        self.name = name
        self.state = state
        self.lagSeconds = lagSeconds
        self.lastSequence = lastSequence
        self.lastShippedAt = lastShippedAt
        self.bytes = bytes
        self.lastError = lastError
        self.lastErrorAt = lastErrorAt
        self.downSince = downSince
        self.drill = drill
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(state, forKey: .state)
        try c.encode(lagSeconds, forKey: .lagSeconds)
        try c.encode(lastSequence, forKey: .lastSequence)
        try c.encode(lastShippedAt, forKey: .lastShippedAt)
        try c.encode(bytes, forKey: .bytes)
        try c.encode(lastError, forKey: .lastError)
        try c.encode(lastErrorAt, forKey: .lastErrorAt)
        try c.encode(downSince, forKey: .downSince)
        try c.encode(drill, forKey: .drill)
    }
}
