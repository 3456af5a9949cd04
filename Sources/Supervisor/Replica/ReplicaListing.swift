import BotData
import FoundationEssentials

/// What a replica holds, read from its object listing (no object opened): the whole snapshots
/// (both the data object and, written last, its manifest) and the journal pieces of each segment,
/// with the plaintext range each covers. Pure.
struct ReplicaListing: Sendable, Equatable {
    /// Journal bytes `[offset, offset + length)` of one segment, in one object.
    struct Piece: Sendable, Equatable {
        var object: String
        var offset: Int
        var length: Int
        var end: Int { offset + length }
    }

    /// Ids of whole snapshots, newest first.
    var snapshots: [String] = []
    /// `"<timeline>/<segment file>"` → its pieces, by offset.
    var segments: [String: [Piece]] = [:]
    /// Objects that are neither: a half-shipped snapshot, or something else under the path.
    var other: [String] = []
    var totalBytes: Int64 = 0

    static func parse(_ entries: [RcloneRemote.Entry]) -> ReplicaListing {
        var listing = ReplicaListing()
        var data = Set<String>()
        var manifests = Set<String>()
        for entry in entries {
            listing.totalBytes += Int64(entry.Size)
            let parts = entry.Path.split(separator: "/").map(String.init)
            if parts.count == 2, parts[0] == "snapshots", parts[1].hasSuffix(".sqlite.enc") {
                data.insert(String(parts[1].dropLast(".sqlite.enc".count)))
            } else if parts.count == 2, parts[0] == "snapshots", parts[1].hasSuffix(".json.enc") {
                manifests.insert(String(parts[1].dropLast(".json.enc".count)))
            } else if parts.count == 4, parts[0] == "journal", parts[2].hasSuffix(JournalLayout.fileExtension),
                      parts[3].hasSuffix(".enc"), let offset = Int(parts[3].dropLast(4)),
                      let length = ReplicaCipher.plaintextLength(ofSealed: entry.Size) {
                listing.segments[parts[1] + "/" + parts[2], default: []].append(Piece(object: entry.Path, offset: offset, length: length))
            } else {
                listing.other.append(entry.Path)
            }
        }
        listing.snapshots = data.intersection(manifests).sorted(by: >)
        listing.other += data.symmetricDifference(manifests).sorted().map { "snapshots/\($0) (only one of its two objects)" }
        for key in listing.segments.keys { listing.segments[key]!.sort { ($0.offset, $0.length) < ($1.offset, $1.length) } }
        return listing
    }

    /// The segment files of `timeline` the replica has pieces of, oldest first.
    func segmentNames(timeline: String) -> [String] {
        segments.keys.filter { $0.hasPrefix(timeline + "/") }.map { String($0.dropFirst(timeline.count + 1)) }.sorted()
    }

    /// How far the pieces of a segment reach without a hole from byte 0, and where the first
    /// hole is when later pieces exist.
    static func contiguousEnd(_ pieces: [Piece]) -> (end: Int, holeAt: Int?) {
        var end = 0
        for piece in pieces.sorted(by: { $0.offset < $1.offset }) {
            if piece.offset > end { return (end, end) }
            end = max(end, piece.end)
        }
        return (end, nil)
    }

    /// The segments of `timeline` that can hold entries after `sequence`: a segment's name starts
    /// with the sequence its first entry follows, so the last one starting at or before it and
    /// every one after.
    static func segmentsAfter(_ sequence: Int64, names: [String]) -> [String] {
        let bases = names.map { name in (name, Int64(name.prefix(16)) ?? 0) }
        let before = bases.lastIndex { $0.1 <= sequence } ?? 0
        return bases.enumerated().filter { $0.offset >= before }.map(\.element.0)
    }
}

/// Which piece supplies the journal bytes from `position` of a segment: of the pieces that hold
/// that byte and are not known bad, the first source's (in the order the sources were given),
/// reaching furthest. Nil when none does: a hole.
struct SegmentAssembly: Sendable {
    struct Candidate: Sendable, Equatable {
        var source: Int
        var piece: ReplicaListing.Piece
    }

    var candidates: [Candidate]
    var bad: Set<String> = []

    func next(at position: Int) -> Candidate? {
        candidates.filter { $0.piece.offset <= position && $0.piece.end > position && !bad.contains(Self.key($0)) }
            .min { ($0.source, -$0.piece.end) < ($1.source, -$1.piece.end) }
    }

    /// The furthest any piece reaches: bytes before it exist somewhere.
    var reach: Int { candidates.filter { !bad.contains(Self.key($0)) }.map(\.piece.end).max() ?? 0 }

    mutating func markBad(_ candidate: Candidate) { bad.insert(Self.key(candidate)) }

    static func key(_ candidate: Candidate) -> String { "\(candidate.source):\(candidate.piece.object)" }
}
