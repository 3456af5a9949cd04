import FoundationEssentials
import Glibc
import IPC
import Testing

@testable import Supervisor

@Suite struct RetentionPolicyTests {
    let now = Timestamp.date("2026-11-26T12:00:00.000Z")!

    func copy(_ daysAgo: Double, _ reason: BackupManifest.Reason = .daily, verified: Bool = true, location: String = "/b") -> BackupCatalog.Copy {
        let created = now.addingTimeInterval(-daysAgo * 86_400)
        let id = BackupManifest.makeID(at: created, reason: reason)
        let manifest = BackupManifest(
            id: id, createdAt: Timestamp.string(created), reason: reason, sizeBytes: 1, pageSize: 4096, pageCount: 1,
            schemaVersion: "v1", databaseID: "d", sha256: "x",
            verification: .init(at: Timestamp.string(created), result: verified ? "ok" : "integrity_check failed", check: "integrity_check")
        )
        return BackupCatalog.Copy(manifest: manifest, location: location, file: "\(location)/\(id).sqlite")
    }

    @Test func keepsEverythingYoungerThanKeepDays() {
        let copies = (0..<7).map { copy(Double($0)) }
        #expect(RetentionPolicy(keepDays: 7).expired(copies, now: now).isEmpty)
    }

    @Test func prunesOldBackupsOnceANewerVerifiedOneExists() {
        let copies = [copy(1), copy(8), copy(9, .preMigration), copy(30, .preDeploy)]
        let expired = RetentionPolicy(keepDays: 7).expired(copies, now: now).map(\.manifest.createdAt)
        #expect(Set(expired) == Set([copies[1], copies[2], copies[3]].map(\.manifest.createdAt)))
    }

    @Test func neverPrunesTheNewestVerifiedBackupHoweverOld() {
        // The daily backups stopped a month ago (a full disk, say): the last good one stays.
        let copies = [copy(30), copy(31), copy(2, verified: false)]
        let expired = RetentionPolicy(keepDays: 7).expired(copies, now: now)
        #expect(expired.map(\.manifest.id) == [copies[1].manifest.id])
    }

    @Test func anUnverifiedNewerBackupDoesNotCount() {
        let copies = [copy(10), copy(1, verified: false)]
        #expect(RetentionPolicy(keepDays: 7).expired(copies, now: now).isEmpty)
    }

    @Test func eachLocationKeepsItsOwnNewestVerified() {
        // Location /c failed for the last ten days: its old copy is its only good one.
        let copies = [copy(1, location: "/b"), copy(12, location: "/b"), copy(12, location: "/c")]
        let expired = RetentionPolicy(keepDays: 7).expired(copies, now: now)
        #expect(expired.map(\.location) == ["/b"])
    }

    @Test func preMigrationBackupsLiveAtLeastAsLongAsDailyOnes() {
        let copies = [copy(0.5), copy(6.9, .preMigration)]
        #expect(RetentionPolicy(keepDays: 7).expired(copies, now: now).isEmpty)
    }

    @Test func criticalDataDropsAreReportedOnlyWhenLarge() {
        #expect(CriticalDataCheck.drops(from: nil, to: ["xp": 0]).isEmpty)
        #expect(CriticalDataCheck.drops(from: ["xp": 100], to: ["xp": 95]).isEmpty)
        #expect(CriticalDataCheck.drops(from: ["xp": 20], to: ["xp": 12]).isEmpty)  // 8 rows: too few to mean anything
        #expect(CriticalDataCheck.drops(from: ["xp": 50], to: ["xp": 30]).isEmpty == false)
        #expect(CriticalDataCheck.drops(from: ["xp": 5], to: ["xp": 0]).isEmpty)
        #expect(CriticalDataCheck.drops(from: ["xp": 1000], to: [:]).first?.contains("xp has 0 rows, 1000") == true)
    }

    @Test func theDailyBackupIsScheduledForTheNextLocalTime() {
        let next = BackupScheduler.nextRun(after: now, hour: 4, minute: 0)
        #expect(next > now)
        #expect(next.timeIntervalSince(now) <= 86_400)
        let again = BackupScheduler.nextRun(after: next, hour: 4, minute: 0)
        #expect(abs(again.timeIntervalSince(next) - 86_400) <= 3600)  // a day later (DST may move it an hour)
    }

    @Test func aWallClockJumpIsToldFromTimePassing() {
        let steady = ContinuousClock.now
        let later = steady + .seconds(10)
        // Ten seconds on both clocks: no jump; a few seconds of drift: none either.
        #expect(BackupScheduler.jump(wallFrom: now, to: now + 10, steadyFrom: steady, to: later) == nil)
        #expect(BackupScheduler.jump(wallFrom: now, to: now + 40, steadyFrom: steady, to: later) == nil)
        // A day forward in ten seconds; an hour back.
        #expect(BackupScheduler.jump(wallFrom: now, to: now + 86_410, steadyFrom: steady, to: later).map { abs($0 - 86_400) < 0.01 } == true)
        #expect(BackupScheduler.jump(wallFrom: now, to: now - 3590, steadyFrom: steady, to: later).map { abs($0 + 3600) < 0.01 } == true)
        #expect(BackupScheduler.describe(86_340) == "23 h 59 min")
        #expect(BackupScheduler.describe(8 * 86_400 + 3600) == "8 days 1 h")
        #expect(BackupScheduler.describe(300) == "5 min")
    }

    @Test func aManifestOfDeeplyNestedBracketsIsSkippedNotACrash() throws {
        // A damaged (or hostile) manifest: 513 `[` and nothing after them made JSONDecoder trap.
        var template = Array("/tmp/mfXXXXXX".utf8CString)
        let location = String(cString: mkdtemp(&template)!)
        defer { try? FileManager.default.removeItem(atPath: location) }
        try Data(String(repeating: "[", count: 513).utf8).write(to: URL(fileURLWithPath: location + "/20261201T000000000Z-daily.json"))
        FileManager.default.createFile(atPath: location + "/20261201T000000000Z-daily.sqlite", contents: Data())
        #expect(BackupCatalog.scan([location]).copies.isEmpty)
    }
}
