import BotData
import FoundationEssentials

/// Which journal segments may go: those no retained snapshot needs. A pure decision on what is
/// on disk.
///
/// - A timeline's segment is needed while some snapshot of that timeline (in any location: a
///   replay takes entries from every location) is older than the segment's last entry.
/// - The newest segment of a timeline is never deleted (the worker may be writing it), nor is
///   anything of the live timeline before its first snapshot exists.
/// - A timeline that is not live and has no snapshot left anywhere goes whole.
enum JournalRetention {
    static func expired(locations: [String], copies: [BackupCatalog.Copy], liveTimeline: String?) -> [String] {
        var doomed: [String] = []
        for location in locations {
            for timeline in JournalLayout.timelines(in: location) {
                let bases = copies.filter { $0.manifest.journal?.timeline == timeline }.compactMap { $0.manifest.journal?.sequence }
                let segments = JournalLayout.segments(location, timeline: timeline)
                guard let oldest = bases.min() else {
                    if timeline != liveTimeline {
                        doomed.append(contentsOf: segments)
                        doomed.append(JournalLayout.timelineDirectory(location, timeline: timeline))
                    }
                    continue
                }
                // Segment i holds entries up to the next segment's base (and perhaps one
                // uncommitted entry after it, which no replay applies).
                for (index, segment) in segments.enumerated().dropLast() {
                    guard let nextBase = baseSequence(of: segments[index + 1]), nextBase <= oldest else { break }
                    doomed.append(segment)
                }
            }
        }
        return doomed
    }

    /// The base sequence a segment's name starts with.
    static func baseSequence(of path: String) -> Int64? {
        guard let name = path.split(separator: "/").last, let dash = name.firstIndex(of: "-") else { return nil }
        return Int64(name[..<dash])
    }
}
