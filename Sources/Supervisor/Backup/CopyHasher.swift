import CSQLiteCopyWatch
import Crypto
import Glibc

/// The SHA-256 of a backup's copy, taken on another thread while SQLite's backup API still writes
/// the copy, so that the hash costs no time of its own after the copy.
///
/// SHA-256 reads a file from its first byte, and page 1 is the one page SQLite writes last (its
/// header changes at each commit). So the hash begins with the page 1 the copy will have: the
/// snapshot's own page 1 (`SnapshotPages.firstPage`) with the header fields the backup API and
/// the change of journal mode set (`expectedFirstPage`). The rest is read back from the copy as
/// the copy-watch VFS reports it settled: every byte after page 1 written once, in order.
///
/// `finish()` gives the digest only when it is the digest of the finished file: every write after
/// page 1 landed in order, the file ends where the hash ends, and its page 1 is byte for byte the
/// one hashed first. Otherwise it gives nil, and the caller hashes the file as usual.
final class CopyHasher: @unchecked Sendable {  // `watch` is thread-safe; the rest is immutable
    /// The file name to open the copy with: a URI naming the copy-watch VFS.
    let uri: String
    private let path: String
    private let expected: [UInt8]
    private let watch: OpaquePointer
    private var hashing: ConcurrentResult<(digest: String, bytes: Int64)>?

    /// Watches the copy about to be created at `path` (absolute, no symbolic links: as SQLite
    /// names the file it opens), whose page 1 should be `expectedFirstPage`. Nil when the VFS is
    /// not available. Call `start()` once SQLite has created the file.
    init?(path: String, expectedFirstPage: [UInt8]) {
        guard copywatch_register() == 0, !expectedFirstPage.isEmpty,
              let watch = copywatch_begin(path, CInt(expectedFirstPage.count))
        else { return nil }
        self.watch = watch
        self.path = path
        self.expected = expectedFirstPage
        // A URI path: `%`, `?` and `#` are escaped, the rest is taken as it is.
        let escaped = path.utf8.reduce(into: "") { text, byte in
            switch byte {
            case UInt8(ascii: "%"): text += "%25"
            case UInt8(ascii: "?"): text += "%3f"
            case UInt8(ascii: "#"): text += "%23"
            default: text.unicodeScalars.append(Unicode.Scalar(byte))
            }
        }
        uri = "file:" + escaped + "?vfs=" + String(cString: copywatch_vfs_name())
    }

    deinit {
        copywatch_finish(watch)
        _ = try? hashing?.value()
        copywatch_end(watch)
    }

    /// Starts hashing on a thread of its own; `bytes` reports the bytes hashed.
    func start(bytes: @escaping @Sendable (Int64) -> Void) {
        let (watch, path, first) = (Watch(pointer: self.watch), self.path, self.expected)
        hashing = ConcurrentResult(.backupWork) {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw DurableFile.Failure(description: "open \(path): \(DurableFile.errorText())") }
            defer { close(fd) }
            var hasher = SHA256()
            hasher.update(data: first)
            var hashed = Int64(first.count)
            let chunk = 4 << 20
            var buffer = [UInt8](repeating: 0, count: chunk)
            var finished: CInt = 0
            repeat {
                let settled = copywatch_wait(watch.pointer, hashed + Int64(chunk), &finished)
                while hashed < settled {
                    let want = Int(min(Int64(chunk), settled - hashed))
                    let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(hashed)) }
                    if count < 0, errno == EINTR { continue }
                    guard count > 0 else { throw DurableFile.Failure(description: "read \(path): \(DurableFile.errorText())") }
                    buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<count])) }
                    hashed += Int64(count)
                    bytes(hashed)
                }
            } while finished == 0
            return (DurableFile.hex(hasher.finalize()), hashed)
        }
    }

    /// The watch, for the hashing thread: copywatch's calls lock it.
    private struct Watch: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    /// After SQLite closed the copy: its SHA-256 when the hash provably covers exactly the
    /// finished file's bytes, else nil (with the reason, for the log).
    func finish() -> (digest: String?, reason: String) {
        copywatch_finish(watch)
        guard let hashing else { return (nil, "the hash never started") }
        guard let result = try? hashing.value() else { return (nil, "the copy could not be read back") }
        let (digest, hashed) = result
        guard copywatch_in_order(watch) == 1 else { return (nil, "SQLite wrote the copy out of order") }
        guard let size = DurableFile.size(of: path), Int64(size) == hashed else {
            return (nil, "the copy is \(DurableFile.size(of: path) ?? -1) bytes, the hash covers \(hashed)")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return (nil, "the copy could not be opened") }
        defer { close(fd) }
        var page = [UInt8](repeating: 0, count: expected.count)
        let count = page.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count == expected.count, page == expected else { return (nil, "its page 1 is not the one expected") }
        return (digest, "hashed while copied")
    }

    /// The page 1 a copy made by `BackupEngine` ends with, from the snapshot's own page 1:
    /// - the backup API sets the schema cookie to 1 (one more than the empty copy's) and commits
    ///   once; from a WAL snapshot (file format 2), the copy opens in WAL mode and its change to
    ///   rollback mode commits once more: change counter and its copy ("version-valid-for") 1 or
    ///   2, and the version of SQLite that wrote it;
    /// - the copy is in rollback-journal mode (file format bytes 1, 1, not WAL's 2, 2);
    /// - its size in pages is the snapshot's.
    /// If another SQLite did otherwise, `finish()` finds the page different and the file is hashed
    /// as usual: this only decides whether the fast path is taken.
    static func expectedFirstPage(snapshotFirstPage page: [UInt8], pageCount: Int) -> [UInt8] {
        var page = page
        guard page.count >= 100 else { return page }
        func put(_ value: UInt32, at offset: Int) {
            for index in 0..<4 { page[offset + index] = UInt8(truncatingIfNeeded: value >> (24 - 8 * index)) }
        }
        let commits: UInt32 = page[18] == 2 || page[19] == 2 ? 2 : 1
        page[18] = 1
        page[19] = 1
        put(commits, at: 24)
        put(UInt32(truncatingIfNeeded: pageCount), at: 28)
        put(1, at: 40)
        put(commits, at: 92)
        put(UInt32(truncatingIfNeeded: copywatch_sqlite_version()), at: 96)
        return page
    }
}
