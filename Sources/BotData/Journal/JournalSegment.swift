import FoundationEssentials
import Glibc

/// Where a journal lives in a backup location:
/// `<location>/journal/<timeline>/<base sequence, 16 digits>-<time>-<pid>.journal`.
/// The names sort in the order the segments were opened.
public enum JournalLayout {
    public static let directoryName = "journal"
    public static let fileExtension = ".journal"

    public static func root(of location: String) -> String { location + "/" + directoryName }

    public static func timelineDirectory(_ location: String, timeline: String) -> String {
        root(of: location) + "/" + timeline
    }

    public static func segmentName(baseSequence: Int64, stamp: String, pid: Int32) -> String {
        let digits = String(baseSequence)
        return String(repeating: "0", count: max(0, 16 - digits.count)) + digits + "-" + stamp + "-" + String(pid) + fileExtension
    }

    /// The timelines that have a folder in `location`.
    public static func timelines(in location: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root(of: location))) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    /// The segment files of one timeline, oldest first.
    public static func segments(_ location: String, timeline: String) -> [String] {
        let directory = timelineDirectory(location, timeline: timeline)
        return ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(fileExtension) && !$0.hasPrefix(".") }
            .sorted()
            .map { directory + "/" + $0 }
    }
}

/// One segment file as read back: its header, its records, and how it ends.
public struct JournalSegmentFile: Sendable, Equatable {
    public enum Ending: Sendable, Equatable {
        /// The last record ends at the end of the file.
        case clean
        /// The last record is incomplete: the worker stopped while writing it. Such an entry
        /// was never fsynced, so its transaction never committed; it is ignored.
        case torn(offset: Int, detail: String)
        /// A record that should be readable is not (its CRC fails, its length makes no sense)
        /// with more of the file after it: nothing from there on can be trusted.
        case damaged(offset: Int, detail: String)
    }

    public var path: String
    public var sizeBytes: Int
    public var header: JournalSegmentHeader?
    /// Every record after the header, in file order, up to the end or the damage.
    public var records: [JournalRecord]
    public var ending: Ending

    public init(path: String, sizeBytes: Int, header: JournalSegmentHeader?, records: [JournalRecord], ending: Ending) {
        self.path = path
        self.sizeBytes = sizeBytes
        self.header = header
        self.records = records
        self.ending = ending
    }

    /// Reads and checks a whole segment.
    public static func read(path: String) -> JournalSegmentFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            return JournalSegmentFile(path: path, sizeBytes: 0, header: nil, records: [], ending: .damaged(offset: 0, detail: "the file cannot be read"))
        }
        return parse(Array(data), path: path)
    }

    public static func parse(_ bytes: [UInt8], path: String) -> JournalSegmentFile {
        var file = JournalSegmentFile(path: path, sizeBytes: bytes.count, header: nil, records: [], ending: .clean)
        let magic = JournalRecord.magic
        guard bytes.count >= magic.count else {
            file.ending = .torn(offset: 0, detail: "the file ends inside its signature")
            return file
        }
        guard Array(bytes[0..<magic.count]) == magic else {
            file.ending = .damaged(offset: 0, detail: "not a journal segment (bad signature)")
            return file
        }
        var offset = magic.count
        let frame = JournalRecord.frameHeaderSize
        while offset < bytes.count {
            let remaining = bytes.count - offset
            guard remaining >= frame else {
                file.ending = .torn(offset: offset, detail: "the last record is cut off (\(remaining) bytes of its \(frame)-byte frame)")
                return file
            }
            let length = Int(JournalRecord.readUInt32(bytes, at: offset))
            let kind = bytes[offset + 4]
            let expected = JournalRecord.readUInt32(bytes, at: offset + 5)
            guard length <= JournalRecord.maximumPayload, (1...3).contains(kind) else {
                file.ending = .damaged(offset: offset, detail: "record at byte \(offset) has an impossible frame (type \(kind), length \(length))")
                return file
            }
            guard remaining - frame >= length else {
                file.ending = .torn(offset: offset, detail: "the last record is cut off (\(remaining - frame) of \(length) bytes)")
                return file
            }
            let payload = bytes[(offset + frame)..<(offset + frame + length)]
            var crc = CRC32()
            crc.update([kind])
            crc.update(payload)
            let end = offset + frame + length
            guard crc.value == expected, let record = JournalRecord.decode(kind: kind, payload: payload) else {
                let detail = "record at byte \(offset) fails its checksum"
                // A record whose bytes were not all written when the worker died fails its CRC
                // too; if nothing follows it, it is the torn end of the file.
                file.ending = end == bytes.count && trailingZeros(bytes, from: offset + frame) ? .torn(offset: offset, detail: detail + " (its end was never written)") : .damaged(offset: offset, detail: detail)
                return file
            }
            if file.header == nil {
                guard case .header(let header) = record else {
                    file.ending = .damaged(offset: offset, detail: "the first record is not a segment header")
                    return file
                }
                file.header = header
            } else {
                file.records.append(record)
            }
            offset = end
        }
        return file
    }

    /// Whether the payload ends in zeros a file system leaves where a write never landed.
    private static func trailingZeros(_ bytes: [UInt8], from start: Int) -> Bool {
        guard bytes.count - start >= 8 else { return false }
        return bytes[(bytes.count - 8)...].allSatisfy { $0 == 0 }
    }
}
