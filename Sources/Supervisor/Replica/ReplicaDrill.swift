import BotData
import FoundationEssentials
import GRDB
import Glibc
import IPC

/// One restore drill of one replica: everything the replicator recorded as shipped is restored
/// from that replica alone into a scratch folder, rolled forward with the local journal to the
/// live database's sequence, and compared with it row for row (`DatabaseDigest`), in one read
/// transaction of the live file. Blocking parts run on the `BlockingPool`; the live file is only
/// read.
///
/// It fails, naming what, when: an object shipped is missing or does not open; the replica's
/// journal stops short of what was shipped; the snapshot does not verify; the restored data
/// differs from the live data at the same sequence.
struct ReplicaDrill: Sendable {
    struct Report: Codable, Sendable, Equatable {
        var replica: String
        var at: String
        /// `ok` or `failed`.
        var result: String
        var detail: String
        /// The journal sequence the comparison was made at.
        var sequence: Int64?
        var snapshotID: String?
        /// Journal entries restored from the replica itself (before the local roll-forward).
        var entriesFromReplica: Int?
        var tables: Int?
        var durationMs: Int

        var ok: Bool { result == "ok" }
        var status: ReplicaStatus.Drill { ReplicaStatus.Drill(at: at, result: result, detail: detail, sequence: sequence) }
    }

    let target: SupervisorConfig.Replicas.Target
    let remote: RcloneRemote
    let cipher: ReplicaCipher
    let dataDir: String
    /// The local backup locations: their journal rolls the restored copy forward.
    let locations: [String]

    var livePath: String { dataDir + "/" + BotDatabase.fileName }
    var scratch: String { dataDir + "/drills/" + target.name }

    static func reportPath(dataDir: String, name: String) -> String { ReplicaState.directory(dataDir: dataDir) + "/" + name + ".drill.json" }

    func run(now: Date = Date()) async -> Report {
        let started = ContinuousClock.now
        var report = Report(replica: target.name, at: Timestamp.string(now), result: "failed", detail: "", durationMs: 0)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        do {
            try? FileManager.default.removeItem(atPath: scratch)
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            report = try await drill(report)
        } catch {
            report.detail = "\(error)"
        }
        report.durationMs = Int((ContinuousClock.now - started) / .milliseconds(1))
        return report
    }

    private func drill(_ start: Report) async throws -> Report {
        var report = start
        guard let state = ReplicaState.load(ReplicaState.path(dataDir: dataDir, name: target.name)), !state.snapshots.isEmpty else {
            report.detail = "nothing has been shipped to this replica yet (no snapshot): there is nothing to restore"
            return report
        }
        let recovery = ReplicaRecovery(
            sources: [.init(name: target.name, remote: remote)], cipher: cipher, location: scratch + "/replica",
            shipped: .init(snapshots: Set(state.snapshots), segments: state.segments)
        )
        let fetched = try await recovery.fetch(.latest)
        report.snapshotID = fetched.copy.manifest.id
        let locations = self.locations
        let livePath = self.livePath
        let copyPath = scratch + "/drill.sqlite"
        let replicaLocation = scratch + "/replica"
        let scratch = self.scratch
        let outcome = try await BlockingPool.shared.run("the drill of replica \(target.name)", deadline: .seconds(6 * 3600)) { () -> (sequence: Int64, entries: Int, tables: Int, mismatch: [String]) in
            try DurableFile.rename(fetched.copy.file, to: copyPath)
            var sequence: Int64 = 0
            var entries = 0
            if let position = fetched.copy.manifest.journal {
                let replay = try RestoreEngine(dataDir: scratch, livePath: copyPath, locations: [replicaLocation]).replay(after: position, untilMs: nil, onto: copyPath)
                if replay.stop == "conflict" { throw ReplicaError.io("the replica's journal does not apply to its snapshot: \(replay.detail ?? "")") }
                sequence = replay.toSequence
                entries = replay.entries
            }
            // The live data, in one read transaction; the copy is rolled forward to its sequence.
            var configuration = Configuration()
            configuration.readonly = true
            configuration.label = "drill-live"
            let live = try DatabaseQueue(path: livePath, configuration: configuration)
            defer { try? live.close() }
            let (livePosition, liveDigest) = try live.read { db in (try JournalState.read(db), try DatabaseDigest.compute(db)) }
            if let position = fetched.copy.manifest.journal, let livePosition {
                guard livePosition.timeline == position.timeline else {
                    throw ReplicaError.io("the replica's newest snapshot is of timeline \(position.timeline), the live database is on \(livePosition.timeline) (restored or migrated since) and its first snapshot is not on the replica yet")
                }
                guard livePosition.sequence >= sequence else {
                    throw ReplicaError.io("the replica holds sequence \(sequence), ahead of the live database's \(livePosition.sequence)")
                }
                if livePosition.sequence > sequence {
                    let local = RestoreEngine(dataDir: scratch, livePath: copyPath, locations: locations)
                    let forward = try local.replay(after: JournalPosition(timeline: position.timeline, sequence: sequence, committedAtMs: 0), untilMs: nil, untilSequence: livePosition.sequence, onto: copyPath)
                    guard forward.toSequence == livePosition.sequence else {
                        throw ReplicaError.io("the local journal cannot roll the replica's copy from sequence \(sequence) to the live \(livePosition.sequence): \(forward.detail ?? forward.stop)")
                    }
                }
                sequence = livePosition.sequence
            }
            let copy = try DatabaseQueue(path: copyPath)
            defer { try? copy.close() }
            let copyDigest = try copy.read { try DatabaseDigest.compute($0) }
            return (sequence, entries, liveDigest.tables.count, copyDigest.differences(from: liveDigest, mine: "the replica's copy", theirs: "the live database"))
        }
        report.sequence = outcome.sequence
        report.entriesFromReplica = outcome.entries
        report.tables = outcome.tables
        let faults = fetched.missing + fetched.problems + outcome.mismatch
        if faults.isEmpty {
            report.result = "ok"
            report.detail = "snapshot \(fetched.copy.manifest.id) and \(outcome.entries) journal entries restored from the replica; every row of \(outcome.tables) tables matches the live database at sequence \(outcome.sequence)"
        } else {
            report.detail = faults.joined(separator: "; ")
        }
        return report
    }
}
