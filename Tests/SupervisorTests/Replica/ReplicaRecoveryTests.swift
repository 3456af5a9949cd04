import BotData
import Foundation
import GRDB
import IPC
import TestSupport
import Testing

@testable import Supervisor

/// The pure parts of disaster recovery and drills: what a listing holds, which piece supplies
/// which journal bytes, the digest that compares two databases, and the drill's health check.
@Suite struct ReplicaRecoveryTests {
    func entry(_ path: String, plaintext length: Int) -> RcloneRemote.Entry {
        RcloneRemote.Entry(Path: path, Size: ReplicaCipher.sealedSize(of: length))
    }

    @Test(arguments: [0, 1, 4096, ReplicaCipher.chunkSize, ReplicaCipher.chunkSize + 1, 5 * ReplicaCipher.chunkSize - 3])
    func theSealedSizeGivesThePlaintextLengthBack(_ length: Int) {
        #expect(ReplicaCipher.plaintextLength(ofSealed: ReplicaCipher.sealedSize(of: length)) == length)
    }

    @Test func sizesNoObjectOfOursCanHaveAreRefused() {
        #expect(ReplicaCipher.plaintextLength(ofSealed: 0) == nil)
        #expect(ReplicaCipher.plaintextLength(ofSealed: ReplicaCipher.headerSize + 3) == nil)
    }

    @Test func aListingHasWholeSnapshotsAndTheJournalPiecesBySegment() {
        let listing = ReplicaListing.parse([
            entry("snapshots/20261202T100000000Z-daily.sqlite.enc", plaintext: 8192),
            entry("snapshots/20261202T100000000Z-daily.json.enc", plaintext: 500),
            entry("snapshots/20261202T120000000Z-manual.sqlite.enc", plaintext: 8192),
            entry("journal/tl1/0000000000000000-a-1.journal/0000000000000100.enc", plaintext: 50),
            entry("journal/tl1/0000000000000000-a-1.journal/0000000000000000.enc", plaintext: 100),
            entry("journal/tl1/0000000000000040-b-1.journal/0000000000000000.enc", plaintext: 70),
            entry("notes.txt", plaintext: 3),
        ])
        // The manual snapshot lacks its manifest (written last): not whole.
        #expect(listing.snapshots == ["20261202T100000000Z-daily"])
        #expect(listing.other.contains("notes.txt") && listing.other.contains { $0.contains("20261202T120000000Z-manual") })
        #expect(listing.segmentNames(timeline: "tl1") == ["0000000000000000-a-1.journal", "0000000000000040-b-1.journal"])
        #expect(listing.segments["tl1/0000000000000000-a-1.journal"]?.map(\.offset) == [0, 100])
        #expect(listing.segments["tl1/0000000000000000-a-1.journal"]?.map(\.length) == [100, 50])
    }

    @Test func onlySegmentsThatCanHoldLaterEntriesAreFetched() {
        let names = ["0000000000000000-a.journal", "0000000000000040-b.journal", "0000000000000090-c.journal"]
        #expect(ReplicaListing.segmentsAfter(39, names: names) == names)
        #expect(ReplicaListing.segmentsAfter(40, names: names) == Array(names.dropFirst()))
        #expect(ReplicaListing.segmentsAfter(95, names: names) == [names[2]])
    }

    @Test func aHoleIsFoundAndTheContiguousEndStopsThere() {
        let pieces = [ReplicaListing.Piece(object: "a", offset: 0, length: 10), .init(object: "b", offset: 20, length: 5)]
        #expect(ReplicaListing.contiguousEnd(pieces) == (10, 10))
        #expect(ReplicaListing.contiguousEnd(Array(pieces.prefix(1))) == (10, nil))
    }

    @Test func theFirstSourceSuppliesEachByteAndTheOthersFillWhatItLacksOrHoldsDamaged() {
        // Source 0 shipped [0,10) [10,20) [20,30); source 1, on its own schedule, [0,15) [15,40).
        var assembly = SegmentAssembly(candidates: [
            .init(source: 0, piece: .init(object: "p0", offset: 0, length: 10)),
            .init(source: 0, piece: .init(object: "p10", offset: 10, length: 10)),
            .init(source: 0, piece: .init(object: "p20", offset: 20, length: 10)),
            .init(source: 1, piece: .init(object: "p0", offset: 0, length: 15)),
            .init(source: 1, piece: .init(object: "p15", offset: 15, length: 25)),
        ])
        #expect(assembly.next(at: 0)?.source == 0)
        let second = try! #require(assembly.next(at: 10))
        #expect(second.source == 0 && second.piece.object == "p10")
        // p10 of source 0 is damaged: bytes 10… come from source 1's first piece, from its middle.
        assembly.markBad(second)
        let standIn = try! #require(assembly.next(at: 10))
        #expect(standIn.source == 1 && standIn.piece.offset == 0 && standIn.piece.end == 15)
        #expect(assembly.next(at: 15)?.source == 1)
        // Past what source 0 has, source 1 goes on.
        #expect(assembly.next(at: 30)?.piece.object == "p15")
        #expect(assembly.next(at: 40) == nil)
        #expect(assembly.reach == 40)
    }

    @Test func aListingLimitedToWhatWasShippedIgnoresObjectsOnTheirWay() {
        let listing = ReplicaListing.parse([
            entry("snapshots/s1.sqlite.enc", plaintext: 10), entry("snapshots/s1.json.enc", plaintext: 10),
            entry("snapshots/s2.sqlite.enc", plaintext: 10), entry("snapshots/s2.json.enc", plaintext: 10),
            entry("journal/t/0000000000000000-x.journal/0000000000000000.enc", plaintext: 100),
            entry("journal/t/0000000000000000-x.journal/0000000000000100.enc", plaintext: 100),
        ])
        let limited = listing.limited(to: .init(snapshots: ["s1"], segments: ["t/0000000000000000-x.journal": 100]))
        #expect(limited.snapshots == ["s1"])
        #expect(limited.segments["t/0000000000000000-x.journal"]?.map(\.offset) == [0])
    }

    // MARK: - The digest

    func database(_ rows: [(Int, String)], extra: Bool = false) throws -> DatabaseQueue {
        let queue = try DatabaseQueue()
        try queue.write { db in
            try db.execute(sql: "CREATE TABLE member (id INTEGER PRIMARY KEY, name TEXT, xp REAL, avatar BLOB)")
            try db.execute(sql: "CREATE TABLE setting (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID")
            for (id, name) in rows {
                try db.execute(sql: "INSERT INTO member VALUES (?, ?, ?, ?)", arguments: [id, name, Double(id) / 3, Data([UInt8(id)])])
            }
            try db.execute(sql: "INSERT INTO setting VALUES ('b', '2'), ('a', '1')")
            if extra { try db.execute(sql: "CREATE TABLE extra (x)") }
        }
        return queue
    }

    @Test func equalDataGivesEqualDigestsWhateverTheInsertOrder() throws {
        let a = try database([(1, "ann"), (2, "bob")]).read { try DatabaseDigest.compute($0) }
        let b = try database([(2, "bob"), (1, "ann")]).read { try DatabaseDigest.compute($0) }
        #expect(a == b)
        #expect(a.tables.map(\.name) == ["member", "setting"] && a.tables.map(\.rows) == [2, 2])
        #expect(a.differences(from: b, mine: "copy", theirs: "live").isEmpty)
    }

    @Test func aDifferenceNamesTheTableAndHowItDiffers() throws {
        let live = try database([(1, "ann"), (2, "bob")], extra: true).read { try DatabaseDigest.compute($0) }
        let fewer = try database([(1, "ann")]).read { try DatabaseDigest.compute($0) }
        let changed = try database([(1, "ann"), (2, "bOb")], extra: true).read { try DatabaseDigest.compute($0) }
        #expect(fewer.differences(from: live, mine: "the replica's copy", theirs: "the live database") == [
            "table extra is missing from the replica's copy",
            "table member: 1 rows in the replica's copy, 2 in the live database",
        ])
        #expect(changed.differences(from: live, mine: "copy", theirs: "live") == ["table member: 2 rows in both, with different contents"])
    }

    // MARK: - Health

    func replica(_ drill: ReplicaStatus.Drill) -> ReplicaStatus {
        ReplicaStatus(name: "offsite", state: .ok, lagSeconds: 0, lastSequence: 1, lastShippedAt: nil, bytes: 1, lastError: nil, lastErrorAt: nil, downSince: nil, drill: drill)
    }

    @Test func aFailedDrillIsCriticalAndAStaleOneAWarning() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let recent = Timestamp.string(now.addingTimeInterval(-600))
        let old = Timestamp.string(now.addingTimeInterval(-49 * 3600))
        let ok = HealthRules.drills([replica(.init(at: recent, result: "ok", detail: "matched"))], intervalHours: 24, runningFor: 100, now: now)
        #expect(ok.status == .ok && ok.detail.contains("offsite: ok"))
        let failed = HealthRules.drills([replica(.init(at: recent, result: "failed", detail: "journal/t/s/0.enc cannot be trusted"))], intervalHours: 24, runningFor: 100, now: now)
        #expect(failed.status == .critical && failed.detail.contains("journal/t/s/0.enc"))
        #expect(HealthRules.drills([replica(.init(at: old, result: "ok", detail: ""))], intervalHours: 24, runningFor: 100, now: now).status == .warn)
        #expect(HealthRules.drills([replica(.init())], intervalHours: 24, runningFor: 3600, now: now).status == .ok)
        #expect(HealthRules.drills([replica(.init())], intervalHours: 24, runningFor: 49 * 3600, now: now).status == .warn)
    }

    @Test func drillMetricsShowTheResultAndItsAge() {
        var snapshot = StatusSnapshot(
            supervisor: SupervisorStatus(pid: 1, version: "v", startedAt: "t", state: "running", rssBytes: nil),
            worker: WorkerStatus(pid: nil, state: .stopped, restarts: 0, startedAt: nil, lastHeartbeatAgeMs: nil, lastExit: nil)
        )
        snapshot.replicas = [replica(.init(at: "2026-12-02T10:00:00.000Z", result: "failed", detail: "x", ageSeconds: 42))]
        let text = MetricsText.render(snapshot)
        #expect(text.contains("bot_replica_drill_ok{replica=\"offsite\"} 0"))
        #expect(text.contains("bot_replica_drill_age_seconds{replica=\"offsite\"} 42"))
        #expect(text.contains("bot_replica_drill_timestamp_seconds{replica=\"offsite\"}"))
    }
}
