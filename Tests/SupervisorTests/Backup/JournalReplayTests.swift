import BotData
import Foundation
import GRDB
import Glibc
import IPC
import Testing

@testable import Supervisor

/// The change journal's format, the rules that tell committed entries from the others, and the
/// replay onto a real SQLite file.
@Suite struct JournalReplayTests {
    /// A scratch directory with a database of one table and its journal position.
    final class Scratch {
        let dir: String
        let timeline = "20261201T120000000Z-test0001"

        init() throws {
            var template = Array("/tmp/jrXXXXXX".utf8CString)
            dir = String(cString: mkdtemp(&template)!)
        }

        deinit { try? FileManager.default.removeItem(atPath: dir) }

        func database(_ name: String = "db.sqlite") throws -> DatabaseQueue {
            let queue = try DatabaseQueue(path: dir + "/" + name)
            try queue.write { db in
                try db.execute(sql: "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL)")
                try JournalState.create(db)
                try db.execute(sql: "UPDATE journal_state SET timeline = ?", arguments: [timeline])
            }
            return queue
        }

        /// Runs `body` as journaled transaction `sequence` (as SafeDatabase does) and returns its entry.
        func transaction(_ queue: DatabaseQueue, _ sequence: Int64, at ms: Int64 = 1000, _ body: (Database) throws -> Void) throws -> JournalEntry {
            try queue.write { db in
                let recorder = try ChangeRecorder(db)
                try body(db)
                try JournalState.advance(db, to: sequence, committedAtMs: ms + sequence)
                return JournalEntry(sequence: sequence, committedAtMs: ms + sequence, changeset: try recorder.changeset())
            }
        }

        /// Writes one segment of `records` (after its header) into `location`.
        @discardableResult
        func segment(_ location: String, base: Int64, stamp: String = "20261201T120000000Z", _ records: [JournalRecord], tail: [UInt8] = []) throws -> String {
            let directory = JournalLayout.timelineDirectory(dir + "/" + location, timeline: timeline)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let path = directory + "/" + JournalLayout.segmentName(baseSequence: base, stamp: stamp, pid: 1)
            var bytes = JournalRecord.magic + JournalRecord.header(JournalSegmentHeader(databaseID: "d", timeline: timeline, baseSequence: base, startedAt: "x", pid: 1)).encoded()
            for record in records { bytes += record.encoded() }
            bytes += tail
            FileManager.default.createFile(atPath: path, contents: Data(bytes))
            return path
        }

        func rows(_ path: String) throws -> [String] {
            let queue = try DatabaseQueue(path: dir + "/" + path)
            return try queue.read { db in
                try Row.fetchAll(db, sql: "SELECT id, name, qty FROM items ORDER BY id").map { "\($0["id"] as Int64) \($0["name"] as String) \($0["qty"] as Int64)" }
            }
        }

        func copy(_ from: String, to: String) throws {
            try? FileManager.default.removeItem(atPath: dir + "/" + to)
            try FileManager.default.copyItem(atPath: dir + "/" + from, toPath: dir + "/" + to)
        }

        var start: JournalPosition { JournalPosition(timeline: timeline, sequence: 0, committedAtMs: 0) }
    }

    func entries(_ scratch: Scratch, _ queue: DatabaseQueue) throws -> [JournalEntry] {
        [
            try scratch.transaction(queue, 1) { try $0.execute(sql: "INSERT INTO items (id, name, qty) VALUES (1, 'apple', 3), (2, 'pear', 5)") },
            try scratch.transaction(queue, 2) { db in
                try db.execute(sql: "UPDATE items SET qty = qty + 10 WHERE id = 1")
                // A savepoint rolled back (as a failed write of a group commit is): not in the changeset.
                try? db.inSavepoint {
                    try db.execute(sql: "INSERT INTO items (id, name, qty) VALUES (3, 'ghost', 0)")
                    return .rollback
                }
            },
            try scratch.transaction(queue, 3) { try $0.execute(sql: "DELETE FROM items WHERE id = 2") },
            try scratch.transaction(queue, 4) { try $0.execute(sql: "INSERT INTO items (id, name, qty) VALUES (4, 'plum', 7)") },
        ]
    }

    @Test func aReplayOntoTheSnapshotGivesExactlyTheRowsThatCommitted() throws {
        let scratch = try Scratch()
        let live = try scratch.database()
        try live.close()
        try scratch.copy("db.sqlite", to: "snapshot.sqlite")
        let queue = try DatabaseQueue(path: scratch.dir + "/db.sqlite")
        let written = try entries(scratch, queue)
        try queue.close()
        #expect(try scratch.rows("db.sqlite") == ["1 apple 13", "4 plum 7"])

        try scratch.segment("b1", base: 0, written.flatMap { [JournalRecord.entry($0), .commit(sequence: $0.sequence)] })
        try scratch.copy("snapshot.sqlite", to: "restored.sqlite")
        let engine = RestoreEngine(dataDir: scratch.dir, livePath: scratch.dir + "/unused", locations: [scratch.dir + "/b1"])
        let replay = try engine.replay(after: scratch.start, untilMs: nil, onto: scratch.dir + "/restored.sqlite")
        #expect(replay.entries == 4 && replay.toSequence == 4 && replay.stop == "end-of-journal")
        #expect(try scratch.rows("restored.sqlite") == ["1 apple 13", "4 plum 7"])
        #expect(try DatabaseQueue(path: scratch.dir + "/restored.sqlite").read { try JournalState.read($0) }?.sequence == 4)

        // Point in time: only what committed by then (entry n commits at 1000 + n ms).
        try scratch.copy("snapshot.sqlite", to: "restored.sqlite")
        let earlier = try engine.replay(after: scratch.start, untilMs: 1002, onto: scratch.dir + "/restored.sqlite")
        #expect(earlier.toSequence == 2 && earlier.stop == "point-in-time")
        #expect(try scratch.rows("restored.sqlite") == ["1 apple 13", "2 pear 5"])
    }

    @Test func anEntryAppliedOutOfOrderConflictsAndChangesNothing() throws {
        let scratch = try Scratch()
        let queue = try scratch.database()
        let written = try entries(scratch, queue)
        try queue.close()
        let fresh = try scratch.database("other.sqlite")
        try fresh.write { db in
            #expect(throws: Changeset.Conflict.self) { try Changeset.apply(written[2].changeset, to: db) }
        }
        #expect(try scratch.rows("other.sqlite").isEmpty)
        #expect(Changeset.count(written[0].changeset) == 3)  // two rows and journal_state
    }

    @Test func recordsRoundTripAndATornEndIsNotDamage() throws {
        let entry = JournalEntry(sequence: 7, committedAtMs: 123, changeset: [1, 2, 3])
        let good = JournalRecord.magic + JournalRecord.header(JournalSegmentHeader(databaseID: "d", timeline: "t", baseSequence: 6, startedAt: "x", pid: 1)).encoded()
            + JournalRecord.entry(entry).encoded() + JournalRecord.commit(sequence: 7).encoded()
        let parsed = JournalSegmentFile.parse(good, path: "p")
        #expect(parsed.header?.baseSequence == 6 && parsed.records == [.entry(entry), .commit(sequence: 7)] && parsed.ending == .clean)

        // Cut in half at the end: torn, and what came before is intact.
        let next = JournalRecord.entry(JournalEntry(sequence: 8, committedAtMs: 124, changeset: Array(repeating: 9, count: 40))).encoded()
        let torn = JournalSegmentFile.parse(good + next.prefix(next.count / 2), path: "p")
        #expect(torn.records.count == 2)
        guard case .torn = torn.ending else { Issue.record("expected a torn end, got \(torn.ending)"); return }

        // A flipped byte inside an entry that more records follow: damage.
        var damaged = good + next + JournalRecord.commit(sequence: 8).encoded()
        damaged[good.count + JournalRecord.frameHeaderSize + 20] ^= 0xFF
        let broken = JournalSegmentFile.parse(damaged, path: "p")
        #expect(broken.records.count == 2)
        guard case .damaged = broken.ending else { Issue.record("expected damage, got \(broken.ending)"); return }
    }

    @Test func theRulesThatTellCommittedEntriesFromTheOthers() throws {
        func entry(_ n: Int64) -> JournalEntry { JournalEntry(sequence: n, committedAtMs: n, changeset: [UInt8(n)]) }
        func file(_ base: Int64, _ records: [JournalRecord], ending: JournalSegmentFile.Ending = .clean) -> JournalSegmentFile {
            JournalSegmentFile(path: "s\(base)", sizeBytes: 1, header: JournalSegmentHeader(databaseID: "d", timeline: "t", baseSequence: base, startedAt: "x", pid: 1), records: records, ending: ending)
        }
        // 1 has its commit record; 2 is followed by 3; 3 was retried (its first commit failed),
        // the retry committed; 4 is the last entry, with no commit record: tentative.
        let one = LocationJournal.build(location: "a", timeline: "t", files: [
            file(0, [.entry(entry(1)), .commit(sequence: 1), .entry(entry(2)), .entry(entry(3)), .entry(entry(3)), .commit(sequence: 3), .entry(entry(4))]),
        ])
        #expect(one.committed.keys.sorted() == [1, 2, 3] && one.tentative?.sequence == 4 && one.problems.isEmpty)

        // The worker died after writing 4; the next worker found the database at 3 (4 never
        // committed) and journals a new 4; a third found it at 5 (5 committed without its record).
        let restarted = LocationJournal.build(location: "a", timeline: "t", files: [
            file(0, [.entry(entry(1)), .commit(sequence: 1), .entry(entry(2)), .commit(sequence: 2), .entry(entry(3)), .commit(sequence: 3), .entry(JournalEntry(sequence: 4, committedAtMs: 4, changeset: [99]))]),
            file(3, [.entry(entry(4)), .commit(sequence: 4), .entry(entry(5))]),
            file(5, []),
        ])
        #expect(restarted.committed.keys.sorted() == [1, 2, 3, 4, 5] && restarted.tentative == nil)
        #expect(restarted.committed[4]?.changeset == [4])

        let plan = ReplayPlan.make(after: JournalPosition(timeline: "t", sequence: 0, committedAtMs: 0), journals: [one])
        #expect(plan.entries.map(\.sequence) == [1, 2, 3] && plan.stop == .endOfJournal && plan.ignoredUncommitted == 4)

        // Damage after 2 in one location is made up for by the other; in both, the replay stops.
        let damaged = LocationJournal.build(location: "b", timeline: "t", files: [
            file(0, [.entry(entry(1)), .commit(sequence: 1), .entry(entry(2)), .commit(sequence: 2)], ending: .damaged(offset: 99, detail: "checksum")),
        ])
        let repaired = ReplayPlan.make(after: JournalPosition(timeline: "t", sequence: 1, committedAtMs: 1), journals: [damaged, restarted])
        #expect(repaired.entries.map(\.sequence) == [2, 3, 4, 5] && repaired.stop == .endOfJournal && repaired.repaired.count == 1)
        let lost = ReplayPlan.make(after: JournalPosition(timeline: "t", sequence: 0, committedAtMs: 0), journals: [damaged])
        #expect(lost.entries.map(\.sequence) == [1, 2])
        guard case .damaged(let sequence, _) = lost.stop else { Issue.record("expected a damaged stop, got \(lost.stop)"); return }
        #expect(sequence == 3)
    }

    @Test func segmentsGoWithTheSnapshotsTheyFollow() throws {
        let scratch = try Scratch()
        let location = scratch.dir + "/b1"
        let first = try scratch.segment("b1", base: 0, stamp: "20261201T120000000Z", [])
        let second = try scratch.segment("b1", base: 10, stamp: "20261201T130000000Z", [])
        let third = try scratch.segment("b1", base: 20, stamp: "20261201T140000000Z", [])
        func snapshot(_ sequence: Int64) -> BackupCatalog.Copy {
            var manifest = BackupManifest(
                id: "s\(sequence)", createdAt: "x", reason: .daily, sizeBytes: 1, pageSize: 1, pageCount: 1, schemaVersion: "v", databaseID: "d", sha256: "x",
                verification: .init(at: "x", result: "ok", check: "integrity_check")
            )
            manifest.journal = JournalPosition(timeline: scratch.timeline, sequence: sequence, committedAtMs: 0)
            return BackupCatalog.Copy(manifest: manifest, location: location, file: "")
        }
        #expect(JournalRetention.expired(locations: [location], copies: [snapshot(5)], liveTimeline: scratch.timeline).isEmpty)
        #expect(JournalRetention.expired(locations: [location], copies: [snapshot(12)], liveTimeline: scratch.timeline) == [first])
        // The newest segment stays, however old the snapshots.
        #expect(JournalRetention.expired(locations: [location], copies: [snapshot(25)], liveTimeline: scratch.timeline) == [first, second])
        // A timeline that is not live and has no snapshot left goes whole.
        let gone = JournalRetention.expired(locations: [location], copies: [], liveTimeline: "another")
        #expect(gone.contains(third) && gone.last == JournalLayout.timelineDirectory(location, timeline: scratch.timeline))
    }

    @Test func aTimelineNamesWhenItStarted() {
        #expect(JournalState.start(of: "20261201T120000123Z-abcdef12") == Timestamp.date("2026-12-01T12:00:00.123Z"))
        #expect(JournalState.start(of: "nonsense") == nil)
    }
}
