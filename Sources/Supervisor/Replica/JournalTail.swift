import BotData

/// The records in the bytes of a journal segment that a replica has not received yet: where the
/// last complete one ends, and the entries (sequence, commit time) among them. Pure, on bytes
/// already read; the format is `JournalRecord`'s.
struct JournalTail: Sendable, Equatable {
    struct Entry: Sendable, Equatable {
        var sequence: Int64
        var committedAtMs: Int64
    }

    /// How many of the bytes form complete records (with the signature, at offset 0).
    var completeLength: Int
    var entries: [Entry]

    /// `bytes` are the segment's from `offset`, which is 0 or the end of a record.
    static func scan(_ bytes: [UInt8], offset: Int) -> JournalTail {
        var position = 0
        if offset == 0 {
            guard bytes.count >= JournalRecord.magic.count else { return JournalTail(completeLength: 0, entries: []) }
            position = JournalRecord.magic.count
        }
        var entries: [Entry] = []
        let frame = JournalRecord.frameHeaderSize
        while bytes.count - position >= frame {
            let length = Int(readUInt32(bytes, position))
            guard bytes.count - position - frame >= length else { break }
            if bytes[position + 4] == 2, length >= 16 {
                entries.append(Entry(sequence: readInt64(bytes, position + frame), committedAtMs: readInt64(bytes, position + frame + 8)))
            }
            position += frame + length
        }
        return JournalTail(completeLength: position, entries: entries)
    }

    private static func readUInt32(_ bytes: [UInt8], _ index: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[index + $1]) << UInt32(8 * $1) }
    }

    private static func readInt64(_ bytes: [UInt8], _ index: Int) -> Int64 {
        Int64(bitPattern: (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[index + $1]) << UInt64(8 * $1) })
    }
}
