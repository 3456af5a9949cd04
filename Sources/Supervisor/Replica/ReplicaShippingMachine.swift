import FoundationEssentials
import IPC

/// The decisions of one replica's shipping, without I/O: how much of a journal segment goes in
/// the next object, how long to wait after a failure, and what state the replica is in.
/// `Replicator` performs them.
///
/// Two lanes ship independently (the journal every second, snapshots as they appear), so that a
/// long snapshot upload never holds back the journal; the replica is `down` while either lane's
/// last attempt failed.
struct ReplicaShippingMachine: Sendable {
    enum Lane: String, Sendable, CaseIterable {
        case journal, snapshots
    }

    let maxLagSeconds: Double
    /// The largest journal object: a catch-up after an outage ships in pieces of this size.
    static let maxJournalObject = 8 << 20
    static let firstRetry = Duration.seconds(1)
    static let maxRetry = Duration.seconds(60)

    private(set) var failures: [Lane: Int] = [:]
    private(set) var downSince: Date?
    private(set) var lastError: String?
    private(set) var lastErrorAt: Date?

    init(maxLagSeconds: Double) {
        self.maxLagSeconds = maxLagSeconds
    }

    // MARK: - Events

    mutating func succeeded(_ lane: Lane) {
        failures[lane] = nil
        if failures.isEmpty { downSince = nil }
    }

    /// A failed attempt; returns how long the lane waits before the next one (1 s, doubling to 60 s).
    mutating func failed(_ lane: Lane, error: String, now: Date) -> Duration {
        let count = (failures[lane] ?? 0) + 1
        failures[lane] = count
        if downSince == nil { downSince = now }
        lastError = error
        lastErrorAt = now
        return Self.retryDelay(afterFailures: count)
    }

    static func retryDelay(afterFailures count: Int) -> Duration {
        var delay = firstRetry
        for _ in 1..<max(1, count) where delay < maxRetry { delay *= 2 }
        return min(delay, maxRetry)
    }

    // MARK: - Decisions

    /// How many of the unshipped bytes read from a segment go in the next object: complete
    /// records only while the worker may still be appending (the newest segment of its timeline),
    /// everything read of an older segment (its writer has moved on; a torn end stays torn).
    static func journalObjectLength(read: Int, completeLength: Int, isNewestSegment: Bool) -> Int {
        isNewestSegment ? completeLength : read
    }

    /// How far behind the live commit the replica is: since the oldest entry it lacks committed;
    /// 0 when it lacks none.
    static func lagSeconds(oldestUnshippedCommitMs: Int64?, now: Date) -> Double {
        guard let oldest = oldestUnshippedCommitMs else { return 0 }
        let lag = Double(Timestamp.milliseconds(now) - oldest) / 1000
        return max(0, (lag * 10).rounded() / 10)
    }

    /// `hasSnapshot`: the replica holds a snapshot, so that a restore from it brings something back.
    func state(lagSeconds: Double, hasSnapshot: Bool = true) -> ReplicaStatus.State {
        if !failures.isEmpty { return .down }
        if !hasSnapshot { return .seeding }
        return lagSeconds > maxLagSeconds ? .lagging : .ok
    }

    /// How far behind a replica without a snapshot is: nothing can be restored from it, so
    /// everything since shipping to it began (`since`) is missing from it.
    static func seedingLagSeconds(since: Date, journalLag: Double, now: Date) -> Double {
        max(journalLag, (max(0, now.timeIntervalSince(since)) * 10).rounded() / 10)
    }

    /// The status snapshot's entry for this replica.
    func status(name: String, lagSeconds: Double, shipped: ReplicaState) -> ReplicaStatus {
        ReplicaStatus(
            name: name, state: state(lagSeconds: lagSeconds, hasSnapshot: !shipped.snapshots.isEmpty), lagSeconds: lagSeconds,
            lastSequence: shipped.lastSequence, lastShippedAt: shipped.lastShippedAt, bytes: shipped.bytes,
            lastError: lastError, lastErrorAt: lastErrorAt.map { Timestamp.string($0) },
            downSince: downSince.map { Timestamp.string($0) }, drill: ReplicaStatus.Drill()
        )
    }
}
