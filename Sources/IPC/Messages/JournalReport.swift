/// How the worker journals its writes, from the supervisor's configuration (`journal.*`,
/// `backup.locations`), sent in the welcome.
public struct JournalSettings: Codable, Sendable, Equatable {
    public var enabled: Bool
    /// Every backup location: each gets its own copy of the journal.
    public var locations: [String]
    /// A segment larger than this is closed and a new one started.
    public var segmentMaxBytes: Int

    public init(enabled: Bool, locations: [String], segmentMaxBytes: Int) {
        self.enabled = enabled
        self.locations = locations
        self.segmentMaxBytes = segmentMaxBytes
    }
}

/// The change journal as the worker reports it with each heartbeat; the status shows it as
/// `journal`.
public struct JournalReport: Codable, Sendable, Equatable {
    public struct Location: Codable, Sendable, Equatable {
        public var path: String
        /// `ok`, or `failed` (writes go on to the other locations; the supervisor is asked for a
        /// new snapshot once the location takes writes again).
        public var state: String
        /// The newest entry written and fsynced there.
        public var lastSequence: Int64
        /// Committed transactions not (yet) in this location's journal.
        public var lag: Int64
        /// The journal of the current timeline in this location (every segment).
        public var sizeBytes: Int
        public var segments: Int
        public var error: String?

        public init(path: String, state: String, lastSequence: Int64, lag: Int64, sizeBytes: Int, segments: Int, error: String?) {
            self.path = path
            self.state = state
            self.lastSequence = lastSequence
            self.lag = lag
            self.sizeBytes = sizeBytes
            self.segments = segments
            self.error = error
        }

        private enum CodingKeys: String, CodingKey { case path, state, lastSequence, lag, sizeBytes, segments, error }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(path, forKey: .path)
            try c.encode(state, forKey: .state)
            try c.encode(lastSequence, forKey: .lastSequence)
            try c.encode(lag, forKey: .lag)
            try c.encode(sizeBytes, forKey: .sizeBytes)
            try c.encode(segments, forKey: .segments)
            try c.encode(error, forKey: .error)
        }
    }

    public var enabled: Bool
    public var timeline: String?
    /// The last committed transaction's sequence.
    public var sequence: Int64
    public var lastCommitAt: String?
    /// Transactions committed while no location took the entry (never expected; an alert).
    public var unjournaled: Int64
    public var locations: [Location]

    public init(enabled: Bool, timeline: String?, sequence: Int64, lastCommitAt: String?, unjournaled: Int64, locations: [Location]) {
        self.enabled = enabled
        self.timeline = timeline
        self.sequence = sequence
        self.lastCommitAt = lastCommitAt
        self.unjournaled = unjournaled
        self.locations = locations
    }

    private enum CodingKeys: String, CodingKey { case enabled, timeline, sequence, lastCommitAt, unjournaled, locations }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(enabled, forKey: .enabled)
        try c.encode(timeline, forKey: .timeline)
        try c.encode(sequence, forKey: .sequence)
        try c.encode(lastCommitAt, forKey: .lastCommitAt)
        try c.encode(unjournaled, forKey: .unjournaled)
        try c.encode(locations, forKey: .locations)
    }
}
