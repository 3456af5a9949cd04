import FoundationEssentials
import GRDB
import Logging

/// Group commit for the writes events cause (a message counted, XP awarded): writes submitted
/// while one transaction commits are gathered and committed together in the next, so that
/// thousands of events a second cost tens of fsyncs, not thousands, and each write is as durable
/// as a single one (`synchronous=FULL`) once `submit` reports it committed.
///
/// Each write runs in a savepoint of the shared transaction: one that throws is rolled back alone
/// and logged; the others commit. A failure of the transaction itself (a damaged file, a full disk)
/// fails every write of the batch, and SafeDatabase reports it as it does any write.
///
/// There is no timer: the batch is whatever arrived during the previous commit, so an idle bot
/// commits a lone write at once and a busy one batches more. When `maximumQueued` writes wait,
/// `submit` waits too (back-pressure on the Gateway reader rather than unbounded memory).
///
/// A Gateway event's writes and its position commit in one transaction: between `beginEvent` and
/// `advance(to:)` nothing queued from the event's start on is taken into a batch, so a crash
/// never leaves an event's writes committed without its position (the event would be replayed
/// and counted twice) or its position without its writes.
actor WriteBatcher {
    /// A write, and optionally what to do once it is committed (publish "level reached", say).
    typealias Write = @Sendable (Database) throws -> AfterCommit?
    typealias AfterCommit = @Sendable () async -> Void

    private struct Pending {
        var operation: String
        var write: Write?
        var receivedAt: ContinuousClock.Instant
        /// A position marker instead of a write: everything queued before it belongs to events up
        /// to it.
        var position: GatewayPosition? = nil
        /// A write of an event being handled: a batch never ends on one (it takes the rest of the
        /// event, up to its position, too).
        var ofEvent = false
    }

    private let database: SafeDatabase
    private let logger: Logger
    private let maximumBatch: Int
    private let maximumQueued: Int
    private var queue: [Pending] = []
    /// While an event is being handled: where its writes begin in `queue`. Batches stop there.
    private var eventStart: Int?
    private var flushing = false
    private var spaceWaiters: [CheckedContinuation<Void, Never>] = []
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    /// The after-commit actions of the newest batch still running (each batch's run in order, in
    /// a task of their own: a level-up's REST calls must not hold up the next commit).
    private var afterCommit: Task<Void, Never>?
    private(set) var committed = 0
    private(set) var failed = 0
    private(set) var transactions = 0
    /// Arrival-to-commit latencies of the newest writes, in ms.
    private var latencies = LatencyWindow(capacity: 4096)

    init(database: SafeDatabase, logger: Logger, maximumBatch: Int = 1024, maximumQueued: Int = 4096) {
        self.database = database
        self.logger = logger
        self.maximumBatch = maximumBatch
        self.maximumQueued = maximumQueued
    }

    /// Queues `write`; returns once it is queued (not committed). `receivedAt` is when the event
    /// that caused it arrived, the start of its measured latency.
    func submit(_ operation: String, receivedAt: ContinuousClock.Instant = .now, _ write: @escaping Write) async {
        await enqueue(Pending(operation: operation, write: write, receivedAt: receivedAt))
    }

    /// An event is being handled: what is queued from now on waits for its position.
    func beginEvent() {
        eventStart = queue.count
    }

    /// Ends the event `beginEvent` began: every write of the events up to `position` is queued (an
    /// event with no write at all advances it too). The position is written in the same
    /// transaction as the event's writes, after them: the stored position never runs ahead of the
    /// data it stands for nor behind it, and a new worker resumes from it.
    func advance(to position: GatewayPosition) async {
        await enqueue(Pending(operation: "core.gateway-position", write: nil, receivedAt: .now, position: position))
        eventStart = nil
        startFlush()
    }

    /// Queues `pending` once there is room, and starts a flush unless one runs.
    private func enqueue(_ item: Pending) async {
        var pending = item
        pending.ofEvent = eventStart != nil && pending.position == nil
        while queue.count >= maximumQueued {
            // An event with more writes than the queue holds (a guild of tens of thousands
            // re-evaluated) must not wait for itself: its writes then commit in several batches.
            if eventStart != nil {
                eventStart = nil
                startFlush()
            }
            await withCheckedContinuation { spaceWaiters.append($0) }
        }
        queue.append(pending)
        startFlush()
    }

    private func startFlush() {
        if !flushing {
            flushing = true
            // Unstructured on purpose: `submit` returns once the write is queued, so the flush
            // cannot be a child of the submitter's task, and the batcher has no loop of its own to
            // own one (it is no service: it is idle, with no task at all, between bursts). There is
            // at most one flush at a time (`flushing`), it ends when the queue is empty, and
            // `drain` waits for it.
            Task { await self.flush() }
        }
    }

    /// Returns once everything submitted so far is committed (or failed) and its after-commit
    /// actions have run.
    func drain() async {
        if flushing || !queue.isEmpty {
            await withCheckedContinuation { idleWaiters.append($0) }
        }
        await afterCommit?.value
    }

    var latencyPercentiles: (p50: Double, p99: Double)? { latencies.percentiles() }
    var queued: Int { queue.count }

    private func flush() async {
        while true {
            let limit = min(eventStart ?? queue.count, queue.count)
            var available = min(limit, maximumBatch)
            guard available > 0 else { break }
            // Not between an event's writes and its position.
            while available < limit, queue[available - 1].ofEvent { available += 1 }
            let batch = Array(queue.prefix(available))
            queue.removeFirst(available)
            if let start = eventStart { eventStart = start - available }
            for waiter in spaceWaiters { waiter.resume() }
            spaceWaiters.removeAll()
            await commit(batch)
        }
        flushing = false
        // Writes held for an open event are flushed once its position is queued.
        guard queue.isEmpty else { return }
        for waiter in idleWaiters { waiter.resume() }
        idleWaiters.removeAll()
    }

    private func commit(_ batch: [Pending]) async {
        let logger = self.logger
        let writes = batch.compactMap { pending in pending.write.map { (pending.operation, $0) } }
        // The newest position of each shard in the batch.
        var newest: [Int: GatewayPosition] = [:]
        for case let position? in batch.map(\.position) { newest[position.shard] = position }
        let positions = newest
        do {
            let outcome = try await database.write("group-commit", logLevel: .debug) { db -> (after: [AfterCommit], failed: Int) in
                var after: [AfterCommit] = []
                var failed = 0
                for (operation, write) in writes {
                    do {
                        try Self.inSavepoint(db) {
                            if let action = try write(db) { after.append(action) }
                        }
                    } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                        failed += 1
                        logger.error("write refused by a constraint; the other writes of its batch commit", metadata: [
                            "operation": "\(operation)", "error": "\(error.message ?? "\(error.resultCode)")",
                        ])
                    } catch let error as DatabaseError {
                        throw error  // the transaction itself is in trouble: fail the whole batch
                    } catch {
                        failed += 1
                        logger.error("write failed; the other writes of its batch commit", metadata: ["operation": "\(operation)", "error": "\(error)"])
                    }
                }
                for position in positions.values { try position.store(db) }
                return (after, failed)
            }
            let now = ContinuousClock.now
            for pending in batch where pending.write != nil { latencies.add(now - pending.receivedAt) }
            transactions += 1
            committed += writes.count - outcome.value.failed
            failed += outcome.value.failed
            let actions = outcome.value.after
            if !actions.isEmpty {
                let previous = afterCommit
                // Unstructured for the same reason as the flush: the actions run after the commit
                // that returned them, off the flush. They form one chain (each batch's waits for the
                // one before), so at most one task holds them, and `drain` waits for it.
                afterCommit = Task {
                    await previous?.value
                    for action in actions { await action() }
                }
            }
        } catch {
            failed += batch.count
            logger.error("group commit failed: \(batch.count) writes lost", metadata: ["error": "\(error)"])
        }
    }
}

extension WriteBatcher {
    /// `body` in a savepoint of the open transaction, rolled back alone when it throws: what
    /// GRDB's `inSavepoint` does, with the three statements prepared once per connection
    /// (`cachedStatement`) instead of at every write. GRDB tracks a cached statement's savepoint
    /// as it does any other (its transaction effect is known from its preparation).
    static func inSavepoint(_ db: Database, _ body: () throws -> Void) throws {
        try db.cachedStatement(sql: "SAVEPOINT batched_write").execute()
        do {
            try body()
        } catch {
            try db.cachedStatement(sql: "ROLLBACK TRANSACTION TO SAVEPOINT batched_write").execute()
            try db.cachedStatement(sql: "RELEASE SAVEPOINT batched_write").execute()
            throw error
        }
        try db.cachedStatement(sql: "RELEASE SAVEPOINT batched_write").execute()
    }
}

/// The newest `capacity` latencies, for percentiles.
struct LatencyWindow: Sendable {
    private var samples: [Double] = []
    private var next = 0
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        samples.reserveCapacity(capacity)
    }

    mutating func add(_ duration: Duration) {
        let ms = duration.fractionalMilliseconds
        if samples.count < capacity {
            samples.append(ms)
        } else {
            samples[next] = ms
            next = (next + 1) % capacity
        }
    }

    func percentiles() -> (p50: Double, p99: Double)? {
        guard !samples.isEmpty else { return nil }
        let sorted = samples.sorted()
        func at(_ q: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
        return (at(0.5), at(0.99))
    }
}
