import BotData
import FoundationEssentials
import Glibc
import IPC
import Logging
import ServiceLifecycle
import Synchronization

/// Ships one replica: every verified snapshot and the change journal, encrypted, to an rclone
/// remote, asynchronously (a commit never waits for it) and resumably (`ReplicaState`).
///
/// Two lanes run side by side: the journal lane looks at the journal of the first backup location
/// every second and uploads what is new as `journal/<timeline>/<segment>/<offset>.enc`; the
/// snapshot lane looks at the catalog every few seconds and uploads each verified snapshot it
/// lacks as `snapshots/<id>.sqlite.enc` then `snapshots/<id>.json.enc` (the manifest last: its
/// presence means the snapshot is whole). A failure is retried with backoff (1 s … 60 s) and
/// resumes where shipping stopped. `ReplicaShippingMachine` decides; this performs.
final class Replicator: Service, Sendable {
    private let target: SupervisorConfig.Replicas.Target
    private let order: Int
    private let locations: [String]
    private let statePath: String
    private let scratch: String
    private let cipher: ReplicaCipher
    private let remote: RcloneRemote
    private let store: StatusStore
    private let logger: Logger
    private let state: Mutex<ReplicaState>
    private let machine: Mutex<ReplicaShippingMachine>
    private let maxLagSeconds: Double
    /// The commit time of the oldest journal entry not shipped, as last seen.
    private let oldestUnshipped = Mutex<Int64?>(nil)
    /// When the journal lane last found nothing it had not shipped (the status's lag is counted from it).
    private let caughtUpAt = Mutex<Date?>(nil)
    /// Whether what the replica already holds opens with this key (checked before the first upload).
    private let keyChecked = Mutex(false)
    private let wrongKeyAlerted = Mutex(false)
    /// When this replicator began: a replica with no snapshot yet lags from then.
    private let startedAt = Date()
    static let journalInterval = Duration.seconds(1)
    static let snapshotInterval = Duration.seconds(5)

    init(target: SupervisorConfig.Replicas.Target, order: Int, config: SupervisorConfig, key: ReplicaKey, store: StatusStore, logger: Logger) {
        self.target = target
        self.order = order
        locations = config.backup.locations
        statePath = ReplicaState.path(dataDir: config.dataDir, name: target.name)
        scratch = ReplicaState.directory(dataDir: config.dataDir) + "/.tmp-" + target.name
        cipher = ReplicaCipher(key: key)
        remote = RcloneRemote(remote: target.remote, configFile: config.replicas.rcloneConfig)
        self.store = store
        var logger = logger
        logger[metadataKey: LogKey.replica] = "\(target.name)"
        self.logger = logger
        state = Mutex(ReplicaState.load(statePath) ?? ReplicaState())
        machine = Mutex(ReplicaShippingMachine(maxLagSeconds: config.replicas.maxLagSeconds))
        maxLagSeconds = config.replicas.maxLagSeconds
    }

    func run() async throws {
        try? FileManager.default.removeItem(atPath: scratch)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        logger.info("replica shipping starting", metadata: ["remote": "\(target.remote)"])
        await publish()
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.lane(.journal, every: Self.journalInterval) { try await self.checkKey(); return try await self.shipJournal() } }
                group.addTask { await self.lane(.snapshots, every: Self.snapshotInterval) { try await self.checkKey(); return try await self.shipSnapshots() } }
            }
        }
    }

    /// Runs `step` every `interval` (at once again when it says there is more), or after the
    /// machine's backoff when it fails, until cancelled.
    ///
    /// The interval is a period, counted from the start of the step: a step that took 0.8 s of a
    /// 1 s interval is followed by 0.2 s of wait, not a full second. A replica's lag under load is
    /// about one period plus one step; as a wait after the step it was one wait plus two steps,
    /// and past the bound on a loaded machine whose uploads took 2 s.
    private func lane(_ lane: ReplicaShippingMachine.Lane, every interval: Duration, _ step: @Sendable () async throws -> Bool) async {
        let clock = ContinuousClock()
        while !Task.isCancelled {
            let began = clock.now
            var delay = interval
            do {
                let more = try await step()
                delay = max(.zero, interval - began.duration(to: clock.now))
                let wasDown = machine.withLock { machine in
                    defer { machine.succeeded(lane) }
                    return machine.failures[lane] != nil
                }
                if wasDown { logger.info("replica reachable again", metadata: ["lane": "\(lane.rawValue)"]) }
                if more { delay = .zero }
            } catch {
                let message = "\(error)"
                delay = machine.withLock { $0.failed(lane, error: message, now: Date()) }
                logger.warning("replica shipping failed", metadata: ["lane": "\(lane.rawValue)", LogKey.error: "\(message)", LogKey.delay: "\(delay)"])
            }
            await publish()
            if delay > .zero {
                guard (try? await Task.sleep(for: delay)) != nil else { return }
            }
        }
    }

    private func publish() async {
        let now = Date()
        let shipped = state.withLock { $0 }
        var lag = ReplicaShippingMachine.lagSeconds(oldestUnshippedCommitMs: oldestUnshipped.withLock { $0 }, now: now)
        if shipped.snapshots.isEmpty { lag = ReplicaShippingMachine.seedingLagSeconds(since: startedAt, journalLag: lag, now: now) }
        let status = machine.withLock { $0.status(name: target.name, lagSeconds: lag, shipped: shipped) }
        await store.publish(replica: status, order: order, caughtUpAt: caughtUpAt.withLock { $0 }, maxLagSeconds: maxLagSeconds)
    }

    // MARK: - The key

    /// Before anything is added to a replica that already holds snapshots: its newest manifest
    /// must open with this key. A replica written with another key (a key regenerated after it
    /// was lost) would otherwise mix objects no one key opens; it stays down, with the reason.
    private func checkKey() async throws {
        guard !keyChecked.withLock({ $0 }) else { return }
        let listing = ReplicaListing.parse(try await remote.list("snapshots").map { RcloneRemote.Entry(Path: "snapshots/" + $0.Path, Size: $0.Size) })
        if let newest = listing.snapshots.first {
            let object = "snapshots/" + newest + ".json.enc"
            let file = scratch + "/key-check.enc"
            defer { unlink(file) }
            try await remote.download(object, to: file)
            do {
                _ = try await BlockingPool.shared.run("checking the replica key", deadline: .seconds(60)) { [cipher] in
                    try cipher.open(Array(try Data(contentsOf: URL(fileURLWithPath: file))), name: object)
                }
            } catch let error as ReplicaError {
                if case .wrongKey = error {
                    let alerted = wrongKeyAlerted.withLock { alerted in
                        defer { alerted = true }
                        return alerted
                    }
                    if !alerted { store.post(.critical, "replica \(target.name) holds snapshots sealed with another key than \(cipher.key.file); nothing more is shipped to it: put back the key it was written with, or point it at a new path") }
                    throw ReplicaError.io("\(error); nothing is shipped to this replica until the key matches")
                }
                // A damaged manifest is the drills' business; it says nothing about the key.
            }
        }
        keyChecked.withLock { $0 = true }
    }

    // MARK: - The journal

    /// Ships the next piece of new journal bytes; true when more is waiting.
    private func shipJournal() async throws -> Bool {
        guard let location = locations.first else { return false }
        let shipped = state.withLock { $0.segments }
        // Everything committed before this read began is in the files read.
        let readAt = Date()
        // The first segment with bytes the replica lacks, and what they hold.
        let next = try await BlockingPool.shared.run("reading the journal to ship", deadline: .seconds(60)) { () -> (path: String, offset: Int, bytes: [UInt8], newest: Bool)? in
            for timeline in JournalLayout.timelines(in: location) {
                let segments = JournalLayout.segments(location, timeline: timeline)
                for (index, path) in segments.enumerated() {
                    let offset = shipped[ReplicaState.segmentKey(path)] ?? 0
                    guard let size = DurableFile.size(of: path), size > offset else { continue }
                    let bytes = try ReplicaFile(reading: path).read(min(size - offset, ReplicaShippingMachine.maxJournalObject), at: offset)
                    return (path, offset, bytes, index == segments.count - 1)
                }
            }
            return nil
        }
        guard let next else {
            oldestUnshipped.withLock { $0 = nil }
            caughtUpAt.withLock { $0 = readAt }
            return false
        }
        let tail = JournalTail.scan(next.bytes, offset: next.offset)
        oldestUnshipped.withLock { $0 = tail.entries.first?.committedAtMs }
        let length = ReplicaShippingMachine.journalObjectLength(read: next.bytes.count, completeLength: tail.completeLength, isNewestSegment: next.newest)
        // Read to the end of the newest segment: once its complete records are shipped, the
        // replica holds everything committed before `readAt`. A torn last record is the worker
        // appending an entry whose transaction has not committed yet; it is not something the
        // replica lacks, and not a reason to look again at once (looking again found the same
        // torn bytes, returned without marking the replica caught up, and its lag grew to 5 s
        // under load while it shipped every second).
        let readToEnd = next.newest && next.bytes.count < ReplicaShippingMachine.maxJournalObject
        guard length > 0 else {
            if readToEnd { caughtUpAt.withLock { $0 = readAt } }
            return false
        }
        let key = ReplicaState.segmentKey(next.path)
        let digits = String(next.offset)
        let object = "journal/" + key + "/" + String(repeating: "0", count: max(0, 16 - digits.count)) + digits + ".enc"
        let sealed = try await upload(object) { [cipher] file in
            try cipher.encryptFile(next.path, offset: next.offset, length: length, name: object, to: file)
        }
        let sequence = tail.entries.filter { $0.sequence > 0 }.map(\.sequence).max()
        try await record { state in
            state.segments[key] = next.offset + length
            if let sequence { state.lastSequence = max(state.lastSequence ?? 0, sequence) }
            state.bytes += Int64(sealed)
        }
        // What is left of this read shows how far behind the rest is.
        let rest = JournalTail.scan(Array(next.bytes[length...]), offset: next.offset + length)
        oldestUnshipped.withLock { $0 = rest.entries.first?.committedAtMs }
        if readToEnd { caughtUpAt.withLock { $0 = readAt } }
        return !readToEnd
    }

    // MARK: - Snapshots

    /// Ships the newest verified snapshot the replica lacks; true when another is waiting.
    private func shipSnapshots() async throws -> Bool {
        let locations = self.locations
        let catalog = try await BlockingPool.shared.run("reading the backup catalog", deadline: .seconds(60)) { BackupCatalog.scan(locations) }
        let done = Set(state.withLock { $0.snapshots })
        // Newest first; each from the first location (in config order) that holds it.
        let missing = catalog.summaries.filter { $0.verified && !done.contains($0.id) }
        guard let summary = missing.first,
              let copy = locations.lazy.compactMap({ location in catalog.copies.first { $0.manifest.id == summary.id && $0.location == location } }).first
        else { return false }
        let id = summary.id
        let manifestPath = copy.location + "/" + id + ".json"
        var sent = 0
        let dataObject = "snapshots/" + id + ".sqlite.enc"
        sent += try await upload(dataObject) { [cipher] file in
            guard let size = DurableFile.size(of: copy.file) else { throw ReplicaError.io("\(copy.file) is gone") }
            try cipher.encryptFile(copy.file, length: size, name: dataObject, to: file)
        }
        let manifestObject = "snapshots/" + id + ".json.enc"
        sent += try await upload(manifestObject) { [cipher] file in
            guard let size = DurableFile.size(of: manifestPath) else { throw ReplicaError.io("\(manifestPath) is gone") }
            try cipher.encryptFile(manifestPath, length: size, name: manifestObject, to: file)
        }
        let total = sent
        try await record { state in
            state.snapshots.append(id)
            state.snapshots.sort()
            state.bytes += Int64(total)
        }
        logger.info("snapshot shipped to replica", metadata: ["id": "\(id)", "bytes": "\(total)"])
        return missing.count > 1
    }

    // MARK: - Shared steps

    /// Encrypts into a scratch file (`seal` writes it), uploads it as `object`, and returns its size.
    private func upload(_ object: String, _ seal: @escaping @Sendable (String) throws -> Void) async throws -> Int {
        let file = scratch + "/" + object.replacingOccurrences(of: "/", with: "_")
        defer { unlink(file) }
        try await BlockingPool.shared.run("encrypting \(object)", deadline: .seconds(3600)) { try seal(file) }
        try await remote.upload(file, as: object)
        return DurableFile.size(of: file) ?? 0
    }

    /// Changes the shipped state and writes it to its file before anyone relies on it.
    private func record(_ change: @escaping @Sendable (inout ReplicaState) -> Void) async throws {
        let path = statePath
        try await BlockingPool.shared.run("saving the replica state", deadline: .seconds(60)) {
            try self.state.withLock { state in
                var next = state
                change(&next)
                next.lastShippedAt = Timestamp.string()
                try next.save(path)
                state = next
            }
        }
    }
}
