import FoundationEssentials

/// The committed transactions one backup location's journal holds for one timeline, worked out
/// from its segments: a pure function of what is on disk.
///
/// An entry counts as committed when its `commit` record follows it, when the next entry follows
/// it (the worker writes entry n+1 only after n committed, or reuses n when n's commit failed),
/// or when a later segment's `baseSequence` covers it (the database had it when the worker
/// started again). The last entry with none of these is `tentative`: its transaction may never
/// have committed, so it is never applied.
public struct LocationJournal: Sendable, Equatable {
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public var segment: String
        /// The last sequence read intact before the problem (the segment's base when none).
        public var afterSequence: Int64
        public var detail: String
        public var description: String { "\(segment): \(detail) (after sequence \(afterSequence))" }
    }

    public var location: String
    public var timeline: String
    public var committed: [Int64: JournalEntry] = [:]
    public var tentative: JournalEntry?
    /// Damage: records that should be readable and are not.
    public var problems: [Problem] = []
    /// Incomplete last records, a normal leftover of a worker that died mid-write.
    public var tornEnds: [String] = []
    public var segments = 0
    public var sizeBytes = 0

    public var lastCommitted: Int64? { committed.keys.max() }

    public static func scan(location: String, timeline: String) -> LocationJournal {
        let files = JournalLayout.segments(location, timeline: timeline).map { JournalSegmentFile.read(path: $0) }
        return build(location: location, timeline: timeline, files: files)
    }

    public static func build(location: String, timeline: String, files: [JournalSegmentFile]) -> LocationJournal {
        var journal = LocationJournal(location: location, timeline: timeline)
        var pending: JournalEntry?
        for file in files {
            journal.segments += 1
            journal.sizeBytes += file.sizeBytes
            let name = file.path.split(separator: "/").last.map(String.init) ?? file.path
            guard let header = file.header, header.timeline == timeline else {
                if case .torn = file.ending, file.records.isEmpty, file.header == nil {
                    journal.tornEnds.append("\(name): \(file.ending)")
                } else {
                    journal.problems.append(Problem(segment: name, afterSequence: journal.lastCommitted ?? 0, detail: file.header == nil ? "no readable header" : "belongs to timeline \(file.header!.timeline)"))
                }
                continue
            }
            // Everything up to the base had committed when this segment was opened; a pending
            // entry above it never did.
            if let entry = pending {
                if entry.sequence <= header.baseSequence { journal.committed[entry.sequence] = entry }
                pending = nil
            }
            var last = header.baseSequence
            for record in file.records {
                switch record {
                case .entry(let entry):
                    if let previous = pending {
                        if entry.sequence == previous.sequence + 1 {
                            journal.committed[previous.sequence] = previous
                        } else if entry.sequence != previous.sequence {
                            journal.problems.append(Problem(segment: name, afterSequence: last, detail: "entry \(entry.sequence) follows entry \(previous.sequence)"))
                        }
                        // The same sequence again: the earlier attempt's commit failed.
                    } else if entry.sequence != last + 1 {
                        journal.problems.append(Problem(segment: name, afterSequence: last, detail: "entry \(entry.sequence) does not follow sequence \(last)"))
                    }
                    pending = entry
                    last = entry.sequence - 1
                case .commit(let sequence):
                    if let entry = pending, entry.sequence == sequence {
                        journal.committed[sequence] = entry
                        pending = nil
                        last = sequence
                    }
                case .header:
                    journal.problems.append(Problem(segment: name, afterSequence: last, detail: "a second header"))
                }
            }
            switch file.ending {
            case .clean: break
            case .torn(_, let detail): journal.tornEnds.append("\(name): \(detail)")
            case .damaged(_, let detail):
                journal.problems.append(Problem(segment: name, afterSequence: last, detail: detail))
            }
        }
        journal.tentative = pending
        return journal
    }
}

/// What a restore replays after its snapshot: the committed entries of the snapshot's timeline
/// that follow it, from every location (a damaged entry in one location is taken from another),
/// in order, without a gap, up to a point in time if one is asked for.
public struct ReplayPlan: Sendable, Equatable {
    public enum Stop: Sendable, Equatable {
        /// Every committed entry is in the plan.
        case endOfJournal
        /// The next entry is after the requested point in time.
        case pointInTime
        /// The next entry exists in no location intact: the replay stops before it.
        case damaged(sequence: Int64, detail: String)
        /// No location has the next entry, though one has entries after it.
        case gap(sequence: Int64)
    }

    public var timeline: String
    public var fromSequence: Int64
    public var entries: [JournalEntry]
    public var stop: Stop
    /// An entry written whose transaction never committed (a crash between the two), ignored.
    public var ignoredUncommitted: Int64?
    /// Damage that a copy in another location made up for.
    public var repaired: [String]
    public var tornEnds: [String]

    public var lastSequence: Int64 { entries.last?.sequence ?? fromSequence }
    public var lastCommittedAtMs: Int64? { entries.last?.committedAtMs }

    /// - Parameter untilMs: the point in time: entries that committed after it are left out.
    /// - Parameter untilSequence: entries after this sequence are left out (a drill's comparison point).
    public static func make(after position: JournalPosition, journals: [LocationJournal], untilMs: Int64? = nil, untilSequence: Int64? = nil) -> ReplayPlan {
        let journals = journals.filter { $0.timeline == position.timeline }
        var plan = ReplayPlan(
            timeline: position.timeline, fromSequence: position.sequence, entries: [], stop: .endOfJournal,
            ignoredUncommitted: nil, repaired: [], tornEnds: journals.flatMap(\.tornEnds)
        )
        var next = position.sequence + 1
        while true {
            if let untilSequence, next > untilSequence {
                plan.stop = .pointInTime
                break
            }
            if let entry = journals.lazy.compactMap({ $0.committed[next] }).first {
                if let untilMs, entry.committedAtMs > untilMs {
                    plan.stop = .pointInTime
                    break
                }
                for journal in journals where journal.committed[next] == nil {
                    for problem in journal.problems where problem.afterSequence == next - 1 {
                        plan.repaired.append("\(journal.location): \(problem)")
                    }
                }
                plan.entries.append(entry)
                next += 1
                continue
            }
            if let tentative = journals.compactMap(\.tentative).first(where: { $0.sequence == next }) {
                plan.ignoredUncommitted = tentative.sequence
            }
            let problems = journals.flatMap { journal in journal.problems.filter { $0.afterSequence == next - 1 }.map { "\(journal.location)/\(journal.timeline)/\($0)" } }
            if !problems.isEmpty {
                plan.stop = .damaged(sequence: next, detail: problems.joined(separator: "; "))
            } else if journals.contains(where: { ($0.lastCommitted ?? 0) > next }) {
                plan.stop = .gap(sequence: next)
            }
            break
        }
        plan.repaired = Array(Set(plan.repaired)).sorted()
        return plan
    }
}
