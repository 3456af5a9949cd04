import BotData
import FoundationEssentials
import Glibc
import IPC
import Logging
import ServiceLifecycle

/// Runs the restore drills: every `replicas.drillIntervalHours` for each replica (the first once
/// it has a snapshot), and at once on `bot-supervisor drill`. One drill runs at a time, in one
/// loop; a request that comes in while drills run is answered by the next round. Each result is
/// kept in `<dataDir>/replicas/<name>.drill.json` (a restart does not forget it or drill again
/// early), published in the status, and a failure is a critical alert naming the replica.
final class ReplicaDrills: Service, Sendable {
    private enum Request: Sendable {
        case tick
        case now(CheckedContinuation<[ReplicaDrill.Report], Never>)
    }

    private let drills: [ReplicaDrill]
    private let interval: TimeInterval
    private let dataDir: String
    private let store: StatusStore
    private let logger: Logger
    private let requests: AsyncStream<Request>
    private let submit: AsyncStream<Request>.Continuation
    /// How often the schedule is looked at: every minute, or more often for a short interval.
    private let tick: Duration

    init(config: SupervisorConfig, key: ReplicaKey, store: StatusStore, logger: Logger) {
        let cipher = ReplicaCipher(key: key)
        drills = config.replicas.targets.map { target in
            ReplicaDrill(
                target: target, remote: RcloneRemote(remote: target.remote, configFile: config.replicas.rcloneConfig),
                cipher: cipher, dataDir: config.dataDir, locations: config.backup.locations
            )
        }
        interval = config.replicas.drillIntervalHours * 3600
        tick = .milliseconds(Int64(min(60, max(1, interval / 4)) * 1000))
        dataDir = config.dataDir
        self.store = store
        self.logger = logger
        (requests, submit) = AsyncStream.makeStream(of: Request.self)
    }

    /// `bot-supervisor drill`: every replica, now.
    func drillNow() async -> [ReplicaDrill.Report] {
        await withCheckedContinuation { continuation in
            if case .terminated = submit.yield(.now(continuation)) { continuation.resume(returning: []) }
        }
    }

    func run() async throws {
        for drill in drills {
            if let last = Self.load(dataDir: dataDir, name: drill.target.name) { await store.publish(drill: last.status, replica: last.replica) }
        }
        await withDiscardingTaskGroup { group in
            group.addTask { [submit, tick] in
                while (try? await Task.sleep(for: tick)) != nil { submit.yield(.tick) }
            }
            // A drill under way when the supervisor stops is abandoned (its scratch folder is
            // cleared at the next one).
            await cancelWhenGracefulShutdown { await self.serve() }
            group.cancelAll()
        }
    }

    private func serve() async {
        for await request in requests {
            switch request {
            case .tick:
                let due = drills.filter { isDue($0) }
                for drill in due { _ = await perform(drill, reason: "scheduled") }
            case .now(let continuation):
                var reports: [ReplicaDrill.Report] = []
                for drill in drills { reports.append(await perform(drill, reason: "asked for")) }
                continuation.resume(returning: reports)
            }
        }
    }

    private func isDue(_ drill: ReplicaDrill) -> Bool {
        guard let last = Self.load(dataDir: dataDir, name: drill.target.name) else {
            // The first drill, once something was shipped.
            return !(ReplicaState.load(ReplicaState.path(dataDir: dataDir, name: drill.target.name))?.snapshots.isEmpty ?? true)
        }
        return Timestamp.date(last.at).map { Date().timeIntervalSince($0) >= interval } ?? true
    }

    private func perform(_ drill: ReplicaDrill, reason: String) async -> ReplicaDrill.Report {
        logger.info("restore drill starting", metadata: [LogKey.replica: "\(drill.target.name)", LogKey.reason: "\(reason)"])
        let report = await drill.run()
        do {
            try Self.save(report, dataDir: dataDir)
        } catch {
            logger.error("cannot save the drill's result", metadata: [LogKey.replica: "\(drill.target.name)", LogKey.error: "\(error)"])
        }
        await store.publish(drill: report.status, replica: report.replica)
        if report.ok {
            logger.info("restore drill passed", metadata: [LogKey.replica: "\(report.replica)", "sequence": "\(report.sequence ?? 0)", "durationMs": "\(report.durationMs)"])
        } else {
            logger.error("restore drill failed", metadata: [LogKey.replica: "\(report.replica)", LogKey.error: "\(report.detail)"])
            store.post(.critical, "the restore drill of replica \(report.replica) failed: \(report.detail)")
        }
        return report
    }

    static func load(dataDir: String, name: String) -> ReplicaDrill.Report? {
        guard let data = FileManager.default.contents(atPath: ReplicaDrill.reportPath(dataDir: dataDir, name: name)) else { return nil }
        return try? JSONDecoder().decode(ReplicaDrill.Report.self, from: data)
    }

    static func save(_ report: ReplicaDrill.Report, dataDir: String) throws {
        let path = ReplicaDrill.reportPath(dataDir: dataDir, name: report.replica)
        try FileManager.default.createDirectory(atPath: ReplicaState.directory(dataDir: dataDir), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        try DurableFile.write(try encoder.encode(report), to: path + ".tmp")
        try DurableFile.rename(path + ".tmp", to: path)
    }
}
