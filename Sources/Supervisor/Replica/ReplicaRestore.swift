import BotData
import FoundationEssentials
import Glibc
import IPC

/// Disaster recovery: `bot-supervisor restore --from-replica NAME [--at TIME]`. Rebuilds the data
/// dir from an off-host replica on a host that may have nothing but the config and the key: the
/// snapshot and journal are downloaded and decrypted (`ReplicaRecovery`, the other replicas
/// standing in for damaged or missing objects), then checked and replayed by `RestoreEngine`,
/// exactly as a local restore. The supervisor must not be running (its lock is taken for the
/// duration); it starts on the result.
struct ReplicaRestore: Sendable {
    struct Report: Codable, Sendable, Equatable {
        var replica: String
        var dataDir: String
        var snapshotID: String
        var snapshotCreatedAt: String
        /// The replica the snapshot came from (another one stands in when the asked one's copy is damaged).
        var snapshotFrom: String
        var replay: RestoreEngine.Replay?
        var timeline: String?
        var quarantinedTo: String?
        /// Objects that could not be used, and what stood in for them.
        var problems: [String]
        /// Other replicas that could not be consulted.
        var unavailable: [String]
        var rejected: [String]
        var durationMs: Int
        /// The restore alert's words: what came back, up to when.
        var message: String
    }

    let config: SupervisorConfig
    let key: ReplicaKey
    let name: String

    var livePath: String { config.dataDir + "/" + BotDatabase.fileName }
    var staging: String { config.dataDir + "/.replica-restore" }

    /// The sources: the named replica, then the others in config order.
    static func sources(_ config: SupervisorConfig, first name: String) throws -> [ReplicaRecovery.Source] {
        let targets = config.replicas.targets
        guard let chosen = targets.first(where: { $0.name == name }) else {
            let known = targets.isEmpty ? "replicas.targets is empty in this config" : "the replicas are " + targets.map(\.name).joined(separator: ", ")
            throw ReplicaError.io("there is no replica named \"\(name)\": \(known)")
        }
        return ([chosen] + targets.filter { $0.name != name }).map {
            ReplicaRecovery.Source(name: $0.name, remote: RcloneRemote(remote: $0.remote, configFile: config.replicas.rcloneConfig))
        }
    }

    func run(_ target: RestoreEngine.Target, progress: @escaping @Sendable (String) -> Void) async throws -> Report {
        let started = ContinuousClock.now
        let sources = try Self.sources(config, first: name)
        try FileManager.default.createDirectory(atPath: config.dataDir, withIntermediateDirectories: true)
        // The supervisor's own lock: it cannot start while this runs, and this refuses to run beside it.
        let runtime = try RuntimeDirectory(path: config.runtimeDir, lockFile: config.lockFile, sockets: [])
        defer { withExtendedLifetime(runtime) {} }
        let recovery = ReplicaRecovery(sources: sources, cipher: ReplicaCipher(key: key), location: staging)
        recovery.clear()
        defer { recovery.clear() }
        let fetched = try await recovery.fetch(target, progress: progress)
        progress("checking and replaying")
        let engine = RestoreEngine(dataDir: config.dataDir, livePath: livePath, locations: [staging])
        let reason = "restore from replica \(name)"
        let restored = try await BlockingPool.shared.run("restoring from replica \(name)", deadline: .seconds(6 * 3600)) {
            try engine.restore(from: [fetched.copy], target: target, reason: reason, preparedCandidates: true) { phase, _ in progress(phase) }
        }
        var message = RestoreMessages.describe(restored, target: target, reason: reason, reported: nil)
            .replacingOccurrences(of: "from backup ", with: "from snapshot ")
        if fetched.snapshotFrom != name { message += "; the snapshot came from replica \(fetched.snapshotFrom)" }
        if !fetched.problems.isEmpty { message += "; objects that could not be used: \(fetched.problems.joined(separator: "; "))" }
        if !fetched.unavailable.isEmpty { message += "; not consulted: \(fetched.unavailable.joined(separator: "; "))" }
        return Report(
            replica: name, dataDir: config.dataDir, snapshotID: restored.backupID, snapshotCreatedAt: restored.backupCreatedAt,
            snapshotFrom: fetched.snapshotFrom, replay: restored.replay, timeline: restored.timeline,
            quarantinedTo: restored.quarantinedTo, problems: fetched.problems, unavailable: fetched.unavailable,
            rejected: fetched.rejected + restored.rejected, durationMs: Int((ContinuousClock.now - started) / .milliseconds(1)),
            message: message
        )
    }
}

/// What the replicas hold for a data dir that has no database: `run` refuses to start a new empty
/// one over it without `--init-empty`.
enum ReplicaPresence {
    /// A sentence per replica that holds a snapshot, or cannot be asked; empty when none holds one.
    static func check(_ config: SupervisorConfig) async -> [String] {
        var found: [String] = []
        for target in config.replicas.targets {
            let remote = RcloneRemote(remote: target.remote, configFile: config.replicas.rcloneConfig, timeout: .seconds(60))
            do {
                let listing = ReplicaListing.parse(try await remote.list("snapshots").map { entry in
                    RcloneRemote.Entry(Path: "snapshots/" + entry.Path, Size: entry.Size)
                })
                guard let newest = listing.snapshots.first else { continue }
                found.append("replica \(target.name) (\(target.remote)) holds \(listing.snapshots.count) snapshot\(listing.snapshots.count == 1 ? "" : "s"), the newest \(newest)")
            } catch {
                found.append("replica \(target.name) cannot be asked what it holds (\(error))")
            }
        }
        return found
    }
}
