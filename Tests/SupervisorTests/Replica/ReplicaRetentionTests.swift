import Foundation
import Glibc
import IPC
import Logging
import Testing

@testable import Supervisor

/// `DataWork.prune` on real files: what a replica's state file does not list stays.
@Suite struct ReplicaRetentionTests {
    func backup(_ daysAgo: Double, in location: String) throws -> String {
        let created = Date().addingTimeInterval(-daysAgo * 86_400)
        let id = BackupManifest.makeID(at: created, reason: .daily)
        let manifest = BackupManifest(
            id: id, createdAt: Timestamp.string(created), reason: .daily, sizeBytes: 1, pageSize: 4096, pageCount: 1,
            schemaVersion: "v1", databaseID: "d", sha256: "x",
            verification: .init(at: Timestamp.string(created), result: "ok", check: "integrity_check")
        )
        try JSONEncoder().encode(manifest).write(to: URL(fileURLWithPath: location + "/" + id + ".json"))
        try Data([1]).write(to: URL(fileURLWithPath: location + "/" + id + ".sqlite"))
        return id
    }

    @Test func anOldBackupAReplicaLacksIsKeptUntilItHasIt() throws {
        let dataDir = NSTemporaryDirectory() + "prune-\(UUID().uuidString)"
        let location = dataDir + "/backups"
        try FileManager.default.createDirectory(atPath: ReplicaState.directory(dataDir: dataDir), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: location, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let old = try backup(20, in: location)
        let new = try backup(0, in: location)
        let work = DataWork(dataDir: dataDir, keepDays: 7, tracker: OperationTracker(), logger: Logger(label: "test"), replicaNames: ["offsite"])
        func exists(_ id: String) -> Bool { FileManager.default.fileExists(atPath: location + "/" + id + ".sqlite") }

        // No state yet: the replica has nothing, so nothing goes.
        work.prune([location], liveTimeline: nil)
        #expect(exists(old))
        try ReplicaState(snapshots: [new]).save(ReplicaState.path(dataDir: dataDir, name: "offsite"))
        work.prune([location], liveTimeline: nil)
        #expect(exists(old))
        try ReplicaState(snapshots: [old, new]).save(ReplicaState.path(dataDir: dataDir, name: "offsite"))
        work.prune([location], liveTimeline: nil)
        #expect(!exists(old) && exists(new))
    }
}
