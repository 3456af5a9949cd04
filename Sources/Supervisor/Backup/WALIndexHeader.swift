import FoundationEssentials
import Glibc

/// The header of a WAL database's wal-index (the first 48 bytes of its `-shm` file, kept twice;
/// SQLite's walformat.html §2.2.1): the last committed frame (`mxFrame`), the checksum of that
/// frame and the WAL's salts. A read transaction's snapshot is the header it read when it began;
/// every commit (and every restart of the WAL) writes a new header, a checkpoint does not.
///
/// So two read transactions that both began between two reads of an unchanged header see the same
/// snapshot: no commit happened in between. The backup uses that to check one snapshot on a second
/// connection while the first copies it. Read-only: this never writes the `-shm`.
struct WALIndexHeader: Equatable {
    /// One copy of the header, as SQLite wrote it.
    let bytes: [UInt8]
    /// How many of the WAL's frames a checkpoint had copied into the database file when the header
    /// was read (`nBackfill`, the checkpoint information that follows the two copies). Not part of
    /// the snapshot: a checkpoint changes it, not the header, so equality leaves it out.
    let backfilled: UInt32

    static let size = 48

    static func == (a: WALIndexHeader, b: WALIndexHeader) -> Bool { a.bytes == b.bytes }

    /// The current header of the database at `databasePath`, or nil when there is none to trust:
    /// no `-shm` (not in WAL mode, or no connection open), a header not initialised yet, or the
    /// two copies differing (a commit was writing it: read again).
    static func read(databasePath: String) -> WALIndexHeader? {
        let fd = open(databasePath + "-shm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 2 * size + 4)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count == buffer.count else { return nil }
        let first = Array(buffer[0..<size])
        // isInit (byte 12) is set once the header describes the WAL; SQLite writes copy 2 and then
        // copy 1, and trusts a header only when both match, as here.
        guard first[12] != 0, first == Array(buffer[size..<(2 * size)]) else { return nil }
        return WALIndexHeader(bytes: first, backfilled: native(buffer, at: 2 * size))
    }
}

extension WALIndexHeader {
    /// The last frame the header's snapshot includes (`mxFrame`, native byte order).
    var lastFrame: UInt32 { Self.native(bytes, at: 16) }

    /// The wal-index's integers are in the machine's byte order: little-endian on x86-64 and arm64.
    fileprivate static func native(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        bytes[offset..<(offset + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// Page 1 as the snapshot this header describes has it, read without SQLite: the newest WAL
    /// frame of page 1 up to `lastFrame` (from the wal-index's page-number array, walformat.html
    /// §2.2.2), else the database file's first page. Nil when it cannot be read or a frame does
    /// not belong to this WAL (its salts differ). The result is a prediction only (see
    /// `CopyHasher`): nothing trusts it unchecked.
    ///
    /// Call it while a read transaction holds the snapshot, on a header read after that
    /// transaction began (and equal to the one read before): then
    /// - if a checkpoint had copied every frame up to `lastFrame` into the file (`backfilled`),
    ///   the file is the snapshot, and stays so: a reader that began then may read the file
    ///   alone, and a writer may then restart the WAL and write over its frames, but no
    ///   checkpoint can write the file while such a reader lasts. Page 1 is read from the file;
    /// - otherwise the reader reads from the WAL, whose frames up to `lastFrame` cannot be
    ///   overwritten, nor checkpointed over, while it lasts. Page 1 is read from them.
    func snapshotFirstPage(databasePath: String, pageSize: Int) -> [UInt8]? {
        guard pageSize >= 512 else { return nil }
        var frame: UInt32 = 0
        if lastFrame > backfilled {
            guard let found = Self.newestFrame(ofPage: 1, upTo: lastFrame, shmPath: databasePath + "-shm") else { return nil }
            frame = found
        }
        if frame == 0 {
            return Self.read(databasePath, count: pageSize, at: 0)
        }
        let offset = 32 + Int64(frame - 1) * Int64(pageSize + 24)
        guard let stored = Self.read(databasePath + "-wal", count: pageSize + 24, at: offset),
              stored[0..<4] == [0, 0, 0, 1], stored[8..<16] == bytes[32..<40]
        else { return nil }
        return Array(stored[24...])
    }

    /// The newest frame at most `last` whose page is `page`, from the wal-index's page numbers:
    /// block 0 holds frames 1–4062 after the 136-byte header, each later 32 KiB block 4096 more.
    /// 0 when no frame has that page; nil when the index cannot be read.
    private static func newestFrame(ofPage page: UInt32, upTo last: UInt32, shmPath: String) -> UInt32? {
        let firstBlock = 4062, perBlock = 4096, blockSize = 32768, headerSize = 136
        var newest: UInt32 = 0
        var first = 1
        var block = 0
        while first <= Int(last) {
            let capacity = block == 0 ? firstBlock : perBlock
            let count = min(capacity, Int(last) - first + 1)
            let offset = Int64(block * blockSize + (block == 0 ? headerSize : 0))
            guard let numbers = read(shmPath, count: 4 * count, at: offset) else { return nil }
            for index in 0..<count {
                if native(numbers, at: 4 * index) == page { newest = UInt32(first + index) }
            }
            first += capacity
            block += 1
        }
        return newest
    }

    static func read(_ path: String, count: Int, at offset: Int64) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: count)
        let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return got == count ? buffer : nil
    }
}
