import BotData
import FoundationEssentials
import GRDB
import Glibc
import IPC
import Logging
import Synchronization

/// Writes the change journal: every committed write transaction of the worker, as SQLite's
/// changeset, to every backup location, so that a restore loses nothing that committed.
///
/// For each journaled transaction (SafeDatabase calls these on the writer connection, in order):
/// 1. `record` — inside the transaction, before COMMIT: the next sequence is stored in
///    `journal_state`, the changeset taken, and the entry appended to every location's segment
///    and fdatasync'ed there. A committed transaction therefore always has its entry.
/// 2. COMMIT.
/// 3. `committed` — right after COMMIT, on the writer's queue (GRDB's `afterNextTransaction`), a
///    commit record is appended (fsynced with the next entry): from then on the
///    entry is known to have committed. A crash between 1 and 3 leaves an entry that a restore
///    recognises as uncommitted and never applies (see `LocationJournal`).
///
/// A location that fails (a full disk, a vanished mount) is left out, logged and reported; the
/// others go on. Every 10 s it is tried again with a new segment, and the supervisor is asked for a
/// snapshot so that its journal has a base again.
final class JournalWriter: Sendable {
    private struct Location {
        var path: String
        var fd: Int32 = -1
        var segmentBytes = 0
        /// Every segment of the timeline in this location, for the report.
        var sizeBytes = 0
        var segments = 0
        var lastSequence: Int64 = 0
        var error: String?
        var failedAt: ContinuousClock.Instant?
        var isOK: Bool { fd >= 0 }
    }

    private struct State {
        var locations: [Location]
        var position: JournalPosition
        /// The entry written whose transaction has not committed yet.
        var pending: (sequence: Int64, committedAtMs: Int64)?
        var rotationRequested = false
        var unjournaled: Int64 = 0
        var closed = false
    }

    private let state: Mutex<State>
    private let databaseID: String
    private let segmentMaxBytes: Int
    private let logger: Logger
    private let onNeedSnapshot: @Sendable (String) -> Void
    static let retryInterval = Duration.seconds(10)

    /// Opens a new segment in every location, after `position` (the database as it is now).
    init(settings: JournalSettings, databaseID: String, position: JournalPosition, logger: Logger, onNeedSnapshot: @escaping @Sendable (String) -> Void) {
        self.databaseID = databaseID
        segmentMaxBytes = settings.segmentMaxBytes
        self.logger = logger
        self.onNeedSnapshot = onNeedSnapshot
        var state = State(locations: settings.locations.map { Location(path: $0, lastSequence: position.sequence) }, position: position)
        for index in state.locations.indices {
            Self.open(&state.locations[index], databaseID: databaseID, position: position, logger: logger)
        }
        self.state = Mutex(state)
    }

    /// Inside the transaction, before its COMMIT: stores the next sequence in `journal_state`,
    /// takes the changeset and makes the entry durable in every location.
    func record(_ db: Database, _ recorder: ChangeRecorder) throws {
        let (sequence, committedAtMs) = state.withLock { state in
            (state.position.sequence + 1, max(Timestamp.milliseconds(), state.position.committedAtMs))
        }
        try JournalState.advance(db, to: sequence, committedAtMs: committedAtMs)
        let entry = JournalEntry(sequence: sequence, committedAtMs: committedAtMs, changeset: try recorder.changeset())
        append(entry)
        // On the writer's queue, before the next transaction can begin: the next one must see
        // this one's sequence (or reuse it, when this one rolled back).
        db.afterNextTransaction(onCommit: { [self] _ in committed(sequence) }, onRollback: { [self] _ in abandonPending() })
    }

    private func append(_ entry: JournalEntry) {
        let frame = JournalRecord.entry(entry).encoded()
        var recovered: [String] = []
        state.withLock { state in
            let rotate = state.rotationRequested
            state.rotationRequested = false
            for index in state.locations.indices {
                var location = state.locations[index]
                if location.isOK, rotate || location.segmentBytes + frame.count > segmentMaxBytes {
                    // A segment deleted under us took entries with it: once a new one is open, the
                    // location needs a new snapshot to be complete again.
                    let lost = Self.isDeleted(location.fd)
                    Self.close(&location)
                    Self.open(&location, databaseID: databaseID, position: state.position, logger: logger)
                    if lost, location.isOK { recovered.append(location.path) }
                } else if !location.isOK, let failedAt = location.failedAt, ContinuousClock.now - failedAt >= Self.retryInterval {
                    Self.open(&location, databaseID: databaseID, position: state.position, logger: logger)
                    if location.isOK { recovered.append(location.path) }
                }
                if location.isOK {
                    if let problem = Self.write(frame, to: location.fd, sync: true) {
                        Self.fail(&location, problem, logger: logger)
                    } else if Self.isDeleted(location.fd) {
                        // The location was deleted or unmounted: writes to the open file succeed
                        // and reach nothing. Failed, it is made again at the next retry.
                        Self.fail(&location, "its journal segment was deleted (the location removed or unmounted?)", logger: logger)
                    } else {
                        location.segmentBytes += frame.count
                        location.sizeBytes += frame.count
                        location.lastSequence = entry.sequence
                    }
                }
                state.locations[index] = location
            }
            state.pending = (entry.sequence, entry.committedAtMs)
            if !state.locations.contains(where: \.isOK) {
                state.unjournaled += 1
                if state.unjournaled == 1 || state.unjournaled % 1000 == 0 {
                    logger.critical("no journal location takes writes: committed transactions are protected only by the next backup", metadata: [
                        "sequence": "\(entry.sequence)", "unjournaled": "\(state.unjournaled)",
                    ])
                }
            }
        }
        for path in recovered {
            onNeedSnapshot("the journal in \(path) takes writes again")
        }
    }

    /// After COMMIT: the entry is known to have committed.
    private func committed(_ sequence: Int64) {
        let frame = JournalRecord.commit(sequence: sequence).encoded()
        state.withLock { state in
            guard let pending = state.pending, pending.sequence == sequence else { return }
            state.pending = nil
            // As `journal_state` now says.
            state.position.sequence = pending.sequence
            state.position.committedAtMs = pending.committedAtMs
            for index in state.locations.indices where state.locations[index].isOK {
                if let problem = Self.write(frame, to: state.locations[index].fd, sync: false) {
                    Self.fail(&state.locations[index], problem, logger: logger)
                } else {
                    state.locations[index].segmentBytes += frame.count
                    state.locations[index].sizeBytes += frame.count
                }
            }
        }
    }

    /// The transaction of the recorded entry did not commit: its sequence is used again.
    private func abandonPending() {
        state.withLock { $0.pending = nil }
    }

    /// A snapshot was taken: the next entry starts a new segment (so that old segments can go
    /// with the snapshots they follow).
    func snapshotTaken() {
        state.withLock { $0.rotationRequested = true }
    }

    /// On a graceful stop: everything written is fsynced and the files closed.
    func close() {
        state.withLock { state in
            guard !state.closed else { return }
            state.closed = true
            for index in state.locations.indices where state.locations[index].isOK {
                Self.close(&state.locations[index])
            }
        }
    }

    func report() -> JournalReport {
        state.withLock { state in
            JournalReport(
                enabled: true, timeline: state.position.timeline, sequence: state.position.sequence,
                lastCommitAt: state.position.committedAtMs > 0 ? Timestamp.string(Date(timeIntervalSince1970: Double(state.position.committedAtMs) / 1000)) : nil,
                unjournaled: state.unjournaled,
                locations: state.locations.map { location in
                    .init(
                        path: location.path, state: location.isOK ? "ok" : "failed", lastSequence: location.lastSequence,
                        lag: max(0, state.position.sequence - location.lastSequence), sizeBytes: location.sizeBytes,
                        segments: location.segments, error: location.error
                    )
                }
            )
        }
    }

    // MARK: - Files

    private static func open(_ location: inout Location, databaseID: String, position: JournalPosition, logger: Logger) {
        let directory = JournalLayout.timelineDirectory(location.path, timeline: position.timeline)
        do {
            let created = !FileManager.default.fileExists(atPath: directory)
            try makeDirectories(directory)
            if created {
                // The new folders must survive a power cut as much as the files in them.
                for folder in [JournalLayout.root(of: location.path), location.path] { fsyncPath(folder) }
            }
            let name = JournalLayout.segmentName(baseSequence: position.sequence, stamp: Timestamp.compact(Date()), pid: getpid())
            let path = directory + "/" + name
            let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o640)
            guard fd >= 0 else { throw Failure("create \(path): \(String(cString: strerror(errno)))") }
            let header = JournalRecord.header(JournalSegmentHeader(
                databaseID: databaseID, timeline: position.timeline, baseSequence: position.sequence, startedAt: Timestamp.string(), pid: getpid()
            )).encoded()
            if let problem = write(JournalRecord.magic + header, to: fd, sync: true) {
                Glibc.close(fd)
                throw Failure(problem)
            }
            fsyncPath(directory)
            let wasFailed = location.error != nil
            location.fd = fd
            location.segmentBytes = JournalRecord.magic.count + header.count
            location.error = nil
            location.failedAt = nil
            let existing = JournalLayout.segments(location.path, timeline: position.timeline)
            location.segments = existing.count
            location.sizeBytes = existing.reduce(0) { $0 + (fileSize($1) ?? 0) }
            location.lastSequence = position.sequence
            logger.info(wasFailed ? "journal location takes writes again" : "journal segment opened", metadata: [
                "path": "\(path)", "sequence": "\(position.sequence)",
            ])
        } catch {
            fail(&location, "\(error)", logger: logger)
        }
    }

    /// Whether the file open at `fd` has no name left (unlinked, or its directory removed).
    private static func isDeleted(_ fd: Int32) -> Bool {
        var info = stat()
        return fstat(fd, &info) == 0 && info.st_nlink == 0
    }

    private static func close(_ location: inout Location) {
        guard location.fd >= 0 else { return }
        _ = fdatasync(location.fd)
        Glibc.close(location.fd)
        location.fd = -1
    }

    private static func fail(_ location: inout Location, _ problem: String, logger: Logger) {
        if location.fd >= 0 { Glibc.close(location.fd) }
        location.fd = -1
        if location.error == nil {
            logger.error("journal location failed; the other locations go on", metadata: ["path": "\(location.path)", "error": "\(problem)"])
        }
        location.error = problem
        location.failedAt = .now
    }

    /// Appends `bytes`; with `sync`, also fdatasync. Returns what went wrong, or nil.
    private static func write(_ bytes: [UInt8], to fd: Int32, sync: Bool) -> String? {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { return "write: \(String(cString: strerror(errno)))" }
            offset += written
        }
        if sync, fdatasync(fd) != 0 { return "fdatasync: \(String(cString: strerror(errno)))" }
        return nil
    }

    /// mkdir -p, with the system's own words when it fails.
    private static func makeDirectories(_ path: String) throws {
        var current = ""
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            current += "/" + component
            if mkdir(current, 0o750) != 0, errno != EEXIST {
                throw Failure("cannot create \(current): \(String(cString: strerror(errno)))")
            }
        }
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw Failure("\(path) is not a directory")
        }
    }

    private static func fsyncPath(_ path: String) {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        Glibc.close(fd)
    }

    private static func fileSize(_ path: String) -> Int? {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : nil
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
