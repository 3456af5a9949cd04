import FoundationEssentials
import IPC

/// Where the database stands in its change journal: the last journaled transaction it contains.
///
/// The same transaction that writes a journal entry stores its sequence in `journal_state`, so a
/// snapshot (a backup) knows exactly which entries come after it. A `timeline` is one unbroken
/// history of transactions: a restore or a migration starts a new one, and entries are replayed
/// only onto a snapshot of their own timeline.
public struct JournalPosition: Codable, Sendable, Equatable {
    public var timeline: String
    public var sequence: Int64
    /// When transaction `sequence` committed, in ms since 1970 (0 before the first one).
    public var committedAtMs: Int64

    public init(timeline: String, sequence: Int64, committedAtMs: Int64) {
        self.timeline = timeline
        self.sequence = sequence
        self.committedAtMs = committedAtMs
    }
}

/// One committed write transaction of the worker, as SQLite's session extension recorded it.
public struct JournalEntry: Sendable, Equatable {
    public var sequence: Int64
    public var committedAtMs: Int64
    /// A changeset (sqlite3session_changeset): every row the transaction inserted, updated or
    /// deleted, with the old values an update or delete expects to find.
    public var changeset: [UInt8]

    public init(sequence: Int64, committedAtMs: Int64, changeset: [UInt8]) {
        self.sequence = sequence
        self.committedAtMs = committedAtMs
        self.changeset = changeset
    }
}

/// What a segment says of itself in its first record.
public struct JournalSegmentHeader: Codable, Sendable, Equatable {
    public var format: Int
    public var databaseID: String
    public var timeline: String
    /// The database's sequence when the segment was opened: every entry up to it had committed.
    public var baseSequence: Int64
    public var startedAt: String
    public var pid: Int32

    public init(databaseID: String, timeline: String, baseSequence: Int64, startedAt: String, pid: Int32) {
        format = JournalRecord.formatVersion
        self.databaseID = databaseID
        self.timeline = timeline
        self.baseSequence = baseSequence
        self.startedAt = startedAt
        self.pid = pid
    }
}

/// The records of a journal segment file.
///
/// A segment starts with the 8 bytes `BOTJRNL1`, then records, each
/// `[payload length: u32 LE][type: u8][CRC-32 of type and payload: u32 LE][payload]`:
/// - `header` (1): JSON, `JournalSegmentHeader`;
/// - `entry` (2): sequence (i64 LE), commit time in ms (i64 LE), the changeset;
/// - `commit` (3): sequence (i64 LE), appended once the entry's transaction committed.
///
/// An entry is written and fsynced before its transaction commits, so a committed transaction
/// always has its entry; an entry is known to have committed when its `commit` record, the next
/// entry, or a later segment whose `baseSequence` covers it follows.
public enum JournalRecord: Sendable, Equatable {
    case header(JournalSegmentHeader)
    case entry(JournalEntry)
    case commit(sequence: Int64)

    public static let magic: [UInt8] = Array("BOTJRNL1".utf8)
    public static let formatVersion = 1
    public static let frameHeaderSize = 9
    /// No record is larger; a length above it is damage, not an entry.
    public static let maximumPayload = 256 << 20

    enum Kind: UInt8 {
        case header = 1
        case entry = 2
        case commit = 3
    }

    /// The record as it is written to the file.
    public func encoded() -> [UInt8] {
        var payload: [UInt8] = []
        let kind: Kind
        switch self {
        case .header(let header):
            kind = .header
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            payload = Array((try? encoder.encode(header)) ?? Data())
        case .entry(let entry):
            kind = .entry
            payload.reserveCapacity(16 + entry.changeset.count)
            Self.append(entry.sequence, to: &payload)
            Self.append(entry.committedAtMs, to: &payload)
            payload.append(contentsOf: entry.changeset)
        case .commit(let sequence):
            kind = .commit
            Self.append(sequence, to: &payload)
        }
        var crc = CRC32()
        crc.update([kind.rawValue])
        crc.update(payload)
        var frame: [UInt8] = []
        frame.reserveCapacity(Self.frameHeaderSize + payload.count)
        Self.append(UInt32(payload.count), to: &frame)
        frame.append(kind.rawValue)
        Self.append(crc.value, to: &frame)
        frame.append(contentsOf: payload)
        return frame
    }

    /// Decodes the payload of a frame whose CRC matched; nil when it does not make sense.
    static func decode(kind rawKind: UInt8, payload: ArraySlice<UInt8>) -> JournalRecord? {
        guard let kind = Kind(rawValue: rawKind) else { return nil }
        switch kind {
        case .header:
            guard let header = try? JSONLine.decode(JournalSegmentHeader.self, from: Data(payload)) else { return nil }
            return .header(header)
        case .entry:
            guard payload.count >= 16 else { return nil }
            let start = payload.startIndex
            return .entry(JournalEntry(
                sequence: readInt64(payload, at: start),
                committedAtMs: readInt64(payload, at: start + 8),
                changeset: Array(payload[(start + 16)...])
            ))
        case .commit:
            guard payload.count == 8 else { return nil }
            return .commit(sequence: readInt64(payload, at: payload.startIndex))
        }
    }

    static func append(_ value: Int64, to bytes: inout [UInt8]) {
        append(UInt64(bitPattern: value), to: &bytes)
    }

    static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    static func append(_ value: UInt32, to bytes: inout [UInt8]) {
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    static func readInt64(_ bytes: ArraySlice<UInt8>, at index: Int) -> Int64 {
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(bytes[index + i]) << UInt64(8 * i) }
        return Int64(bitPattern: value)
    }

    static func readUInt32(_ bytes: [UInt8], at index: Int) -> UInt32 {
        var value: UInt32 = 0
        for i in 0..<4 { value |= UInt32(bytes[index + i]) << UInt32(8 * i) }
        return value
    }
}

/// CRC-32 (IEEE 802.3, the zlib one), table-driven.
public struct CRC32: Sendable {
    private static let table: [UInt32] = (0..<256).map { index in
        var c = UInt32(index)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    private var state: UInt32 = 0xFFFF_FFFF

    public init() {}

    public mutating func update(_ bytes: some Collection<UInt8>) {
        var c = state
        Self.table.withUnsafeBufferPointer { table in
            for byte in bytes { c = table[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        }
        state = c
    }

    public var value: UInt32 { state ^ 0xFFFF_FFFF }
}
