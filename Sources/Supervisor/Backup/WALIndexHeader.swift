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

    static let size = 48

    /// The current header of the database at `databasePath`, or nil when there is none to trust:
    /// no `-shm` (not in WAL mode, or no connection open), a header not initialised yet, or the
    /// two copies differing (a commit was writing it: read again).
    static func read(databasePath: String) -> WALIndexHeader? {
        let fd = open(databasePath + "-shm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 2 * size)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count == 2 * size else { return nil }
        let first = Array(buffer[0..<size])
        // isInit (byte 12) is set once the header describes the WAL; SQLite writes copy 2 and then
        // copy 1, and trusts a header only when both match, as here.
        guard first[12] != 0, first == Array(buffer[size..<(2 * size)]) else { return nil }
        return WALIndexHeader(bytes: first)
    }
}
