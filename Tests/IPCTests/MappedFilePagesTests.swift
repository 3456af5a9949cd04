import FoundationEssentials
import IPC
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `MappedFilePages.unmapClean` on mappings of a scratch file, read through /proc/self/smaps: a
/// clean read-only view is unmapped and reads back the file; a view holding a page of the
/// process's own (written, then made read-only, as the loader does to relocated data) and a
/// writable view are left as they were. Serialized: each test unmaps the whole process's views.
@Suite(.serialized) struct MappedFilePagesTests {
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    static let pages = 64

    @Test func cleanReadOnlyViewIsUnmappedAndReadsBackTheFile() throws {
        try withScratchMapping(protection: PROT_READ) { view, expected in
            #expect(touchAll(view) == expected)
            #expect(residentKB(of: view) == Self.pages * Self.pageSize / 1024)

            #expect((MappedFilePages.unmapClean() ?? 0) > 0)
            #expect(residentKB(of: view) == 0)
            // The next read maps the file's pages back, unchanged.
            #expect(touchAll(view) == expected)
            #expect(residentKB(of: view) == Self.pages * Self.pageSize / 1024)
        }
    }

    @Test func viewWithAPageOfItsOwnIsLeftAlone() throws {
        try withScratchMapping(protection: PROT_READ | PROT_WRITE) { view, expected in
            _ = touchAll(view)
            view.storeBytes(of: 0xAB, toByteOffset: 5, as: UInt8.self)
            #expect(mprotect(view.baseAddress, view.count, PROT_READ) == 0)
            let before = residentKB(of: view)

            MappedFilePages.unmapClean()
            #expect(residentKB(of: view) == before)
            #expect(view.load(fromByteOffset: 5, as: UInt8.self) == 0xAB)
            var changed = expected
            changed[5] = 0xAB
            #expect(touchAll(view) == changed)
        }
    }

    @Test func writableViewIsLeftAlone() throws {
        try withScratchMapping(protection: PROT_READ | PROT_WRITE) { view, expected in
            #expect(touchAll(view) == expected)
            let before = residentKB(of: view)
            #expect(before > 0)

            MappedFilePages.unmapClean()
            #expect(residentKB(of: view) == before)
        }
    }

    /// Maps a scratch file of `pages` pages of known bytes, private, with `protection`; hands the
    /// view and the file's bytes to `body`; unmaps and deletes it after.
    private func withScratchMapping(protection: Int32, _ body: (UnsafeMutableRawBufferPointer, [UInt8]) throws -> Void) throws {
        let path = "/tmp/mapped-pages-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let size = Self.pages * Self.pageSize
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        let address = mmap(nil, size, protection, MAP_PRIVATE, descriptor, 0)
        try #require(address != MAP_FAILED)
        defer { munmap(address, size) }
        try body(UnsafeMutableRawBufferPointer(start: address, count: size), bytes)
    }

    /// Reads every byte of the view (each page faulted in).
    private func touchAll(_ view: UnsafeMutableRawBufferPointer) -> [UInt8] { Array(view) }

    /// The view's Rss in /proc/self/smaps, in kB.
    private func residentKB(of view: UnsafeMutableRawBufferPointer) -> Int {
        let start = UInt(bitPattern: view.baseAddress)
        // Read to the end: /proc files say their size is 0.
        var smaps = [UInt8]()
        let descriptor = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return -1 }
        defer { close(descriptor) }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while case let count = chunk.withUnsafeMutableBytes({ read(descriptor, $0.baseAddress, $0.count) }), count > 0 {
            smaps += chunk[..<count]
        }
        var inView = false
        for line in String(decoding: smaps, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = fields.first else { continue }
            if !first.hasSuffix(":"), let dash = first.firstIndex(of: "-") {
                inView = UInt(first[..<dash], radix: 16) == start
            } else if inView, first == "Rss:", fields.count > 1 {
                return Int(fields[1]) ?? -1
            }
        }
        return -1
    }
}
