import BotData
import Foundation
import IPC
import Testing

@testable import Supervisor

@Suite struct ReplicaShippingMachineTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func retriesBackOffFromOneSecondToAMinute() {
        #expect((1...8).map { ReplicaShippingMachine.retryDelay(afterFailures: $0) } == [1, 2, 4, 8, 16, 32, 60, 60].map { Duration.seconds($0) })
    }

    @Test func downWhileALaneFailsAndBackOnceItSucceeds() {
        var machine = ReplicaShippingMachine(maxLagSeconds: 5)
        #expect(machine.state(lagSeconds: 0) == .ok)
        #expect(machine.failed(.journal, error: "rclone copyto failed: connection refused", now: now) == .seconds(1))
        #expect(machine.failed(.journal, error: "again", now: now.addingTimeInterval(1)) == .seconds(2))
        _ = machine.failed(.snapshots, error: "snap", now: now.addingTimeInterval(2))
        #expect(machine.state(lagSeconds: 0) == .down)
        #expect(machine.downSince == now)
        machine.succeeded(.journal)
        #expect(machine.state(lagSeconds: 0) == .down)
        machine.succeeded(.snapshots)
        #expect(machine.state(lagSeconds: 0) == .ok)
        #expect(machine.downSince == nil)
        // The last error stays on record, with its time, after the recovery.
        let status = machine.status(name: "offsite", lagSeconds: 7, shipped: ReplicaState(snapshots: ["s1"], lastSequence: 12, bytes: 99))
        #expect(status.state == .lagging)
        #expect(status.lastError == "snap")
        #expect(status.lastSequence == 12)
        #expect(status.drill == ReplicaStatus.Drill())
    }

    @Test func aReplicaWithoutASnapshotIsSeedingNotOk() {
        let machine = ReplicaShippingMachine(maxLagSeconds: 5)
        // The journal caught up, but nothing on the replica can be restored yet.
        let seeding = machine.status(name: "offsite", lagSeconds: 0, shipped: ReplicaState(lastSequence: 40, bytes: 900))
        #expect(seeding.state == .seeding)
        #expect(machine.status(name: "offsite", lagSeconds: 0, shipped: ReplicaState(snapshots: ["a"], lastSequence: 40)).state == .ok)
        // Its lag counts from when shipping began, and never hides a longer journal lag.
        #expect(ReplicaShippingMachine.seedingLagSeconds(since: now.addingTimeInterval(-12.34), journalLag: 0, now: now) == 12.3)
        #expect(ReplicaShippingMachine.seedingLagSeconds(since: now.addingTimeInterval(-1), journalLag: 3, now: now) == 3)
        // A failure still reads as down.
        var failing = machine
        _ = failing.failed(.snapshots, error: "refused", now: now)
        #expect(failing.state(lagSeconds: 0, hasSnapshot: false) == .down)
    }

    @Test func lagIsTheAgeOfTheOldestEntryNotShipped() {
        #expect(ReplicaShippingMachine.lagSeconds(oldestUnshippedCommitMs: nil, now: now) == 0)
        #expect(ReplicaShippingMachine.lagSeconds(oldestUnshippedCommitMs: Timestamp.milliseconds(now) - 2500, now: now) == 2.5)
    }

    @Test func theNewestSegmentShipsWholeRecordsOnly() {
        #expect(ReplicaShippingMachine.journalObjectLength(read: 100, completeLength: 80, isNewestSegment: true) == 80)
        #expect(ReplicaShippingMachine.journalObjectLength(read: 100, completeLength: 80, isNewestSegment: false) == 100)
    }

    @Test func theTailFindsCompleteRecordsAndTheirEntries() {
        let header = JournalRecord.header(JournalSegmentHeader(databaseID: "d", timeline: "t", baseSequence: 4, startedAt: "x", pid: 1)).encoded()
        let entry5 = JournalRecord.entry(JournalEntry(sequence: 5, committedAtMs: 1000, changeset: [1, 2, 3])).encoded()
        let commit5 = JournalRecord.commit(sequence: 5).encoded()
        let entry6 = JournalRecord.entry(JournalEntry(sequence: 6, committedAtMs: 2000, changeset: [4])).encoded()
        let file = JournalRecord.magic + header + entry5 + commit5 + entry6
        let whole = JournalTail.scan(file, offset: 0)
        #expect(whole.completeLength == file.count)
        #expect(whole.entries == [.init(sequence: 5, committedAtMs: 1000), .init(sequence: 6, committedAtMs: 2000)])
        let torn = JournalTail.scan(Array(file.dropLast(2)), offset: 0)
        #expect(torn.completeLength == file.count - entry6.count)
        #expect(torn.entries.map(\.sequence) == [5])
        let start = JournalRecord.magic.count + header.count + entry5.count
        let later = JournalTail.scan(Array(file[start...]), offset: start)
        #expect(later.completeLength == commit5.count + entry6.count)
        #expect(later.entries.map(\.sequence) == [6])
    }

    @Test func retentionKeepsWhatAReplicaLacks() throws {
        let directory = NSTemporaryDirectory() + "guard-\(UUID().uuidString)/journal/tl"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let segment = directory + "/0000000000000001-x-1.journal"
        try Data(count: 100).write(to: URL(fileURLWithPath: segment))
        let key = ReplicaState.segmentKey(segment)
        #expect(key == "tl/0000000000000001-x-1.journal")
        let partly = ReplicaRetentionGuard(states: [ReplicaState(segments: [key: 60])])
        #expect(partly.protects(journalPath: segment))
        #expect(partly.protects(journalPath: directory))
        let whole = ReplicaRetentionGuard(states: [ReplicaState(segments: [key: 100])])
        #expect(!whole.protects(journalPath: segment))
        #expect(!whole.protects(journalPath: directory))
        #expect(ReplicaRetentionGuard(states: [nil]).protects(journalPath: segment))
        #expect(!ReplicaRetentionGuard(states: []).protects(journalPath: segment))
    }

    @Test func aHealthCheckWarnsPastTheBoundAndIsCriticalPastTenTimes() {
        func replica(lag: Double, downFor: Double? = nil) -> ReplicaStatus {
            ReplicaStatus(name: "r", state: downFor == nil ? .ok : .down, lagSeconds: lag, lastSequence: 1, lastShippedAt: nil, bytes: 0,
                          lastError: downFor == nil ? nil : "refused", lastErrorAt: nil,
                          downSince: downFor.map { Timestamp.string(now.addingTimeInterval(-$0)) }, drill: .init())
        }
        #expect(HealthRules.replicas([replica(lag: 1)], maxLagSeconds: 5, now: now).status == .ok)
        #expect(HealthRules.replicas([replica(lag: 6)], maxLagSeconds: 5, now: now).status == .warn)
        #expect(HealthRules.replicas([replica(lag: 51)], maxLagSeconds: 5, now: now).status == .critical)
        #expect(HealthRules.replicas([replica(lag: 0, downFor: 10)], maxLagSeconds: 5, now: now).status == .warn)
        #expect(HealthRules.replicas([replica(lag: 0, downFor: 60)], maxLagSeconds: 5, now: now).status == .critical)
    }
}

@Suite struct ReplicaStatusTests {
    let status = ReplicaStatus(
        name: "offsite", state: .down, lagSeconds: 12.5, lastSequence: nil, lastShippedAt: nil, bytes: 0,
        lastError: "rclone copyto x failed: connection refused", lastErrorAt: nil, downSince: nil, drill: .init()
    )

    @Test func everyContractFieldIsPresentNullOrNot() throws {
        let object = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(status)) as? [String: Any])
        for key in ["name", "state", "lagSeconds", "lastSequence", "lastShippedAt", "bytes", "lastError", "drill"] {
            #expect(object.keys.contains(key), "\(key) missing")
        }
        #expect(object["lastSequence"] is NSNull)
        let drill = try #require(object["drill"] as? [String: Any])
        #expect(Set(drill.keys) == ["at", "result", "detail", "ageSeconds", "sequence"] && drill.values.allSatisfy { $0 is NSNull })
        #expect(object["state"] as? String == "down")
    }

    @Test func aSnapshotWithoutReplicasStillDecodes() throws {
        let snapshot = StatusSnapshot(
            supervisor: SupervisorStatus(pid: 1, version: "v", startedAt: "t", state: "running", rssBytes: nil),
            worker: WorkerStatus(pid: nil, state: .stopped, restarts: 0, startedAt: nil, lastHeartbeatAgeMs: nil, lastExit: nil)
        )
        var object = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(snapshot)) as? [String: Any])
        #expect(object["replicas"] as? [Any] != nil)
        object["replicas"] = nil
        let decoded = try JSONDecoder().decode(StatusSnapshot.self, from: JSONSerialization.data(withJSONObject: object))
        #expect(decoded.replicas.isEmpty)
    }

    @Test func metricsHaveAGaugePerReplica() {
        var snapshot = StatusSnapshot(
            supervisor: SupervisorStatus(pid: 1, version: "v", startedAt: "t", state: "running", rssBytes: nil),
            worker: WorkerStatus(pid: nil, state: .stopped, restarts: 0, startedAt: nil, lastHeartbeatAgeMs: nil, lastExit: nil)
        )
        snapshot.replicas = [status]
        let text = MetricsText.render(snapshot)
        #expect(text.contains("bot_replica_lag_seconds{replica=\"offsite\"} 12.5"))
        #expect(text.contains("bot_replica_up{replica=\"offsite\"} 0"))
        #expect(text.contains("bot_replica_bytes{replica=\"offsite\"} 0"))
    }
}

@Suite struct ReplicaLagTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func theLagGrowsBetweenStepsOnceTheWorkerCommittedAgain() {
        // Caught up 2.5 s ago, a commit since: the oldest entry missing is at most 2.5 s old.
        #expect(StatusStore.lag(published: 0, caughtUpAt: now.addingTimeInterval(-2.5), lastCommit: now.addingTimeInterval(-1), now: now) == 2.5)
        // Nothing committed since it caught up: no lag, however long ago that was.
        #expect(StatusStore.lag(published: 0, caughtUpAt: now.addingTimeInterval(-60), lastCommit: now.addingTimeInterval(-61), now: now) == 0)
        // The step's own figure stands when it is larger, or when the replica never caught up.
        #expect(StatusStore.lag(published: 7, caughtUpAt: now.addingTimeInterval(-2), lastCommit: now, now: now) == 7)
        #expect(StatusStore.lag(published: 3, caughtUpAt: nil, lastCommit: now, now: now) == 3)
    }
}
