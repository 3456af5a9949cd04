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

    @Test func splitViewMapsOnlyThePagesTouched() throws {
        try withScratchMapping(protection: PROT_READ) { view, expected in
            // Every page in the page cache, then unmapped: a fault could map its neighbours.
            #expect(touchAll(view) == expected)
            #expect(MappedFilePages.unmapClean() != nil)
            let region = UnsafeRawBufferPointer(view)

            #expect(MappedFilePages.splitClean(within: region) == 1)
            #expect(mappings(of: view).count == Self.pages)
            #expect(residentKB(of: view) == 0)
            #expect(view[3 * Self.pageSize] == expected[3 * Self.pageSize])
            #expect(view[33 * Self.pageSize + 7] == expected[33 * Self.pageSize + 7])
            #expect(residentKB(of: view) == 2 * Self.pageSize / 1024)
            #expect(touchAll(view) == expected)
        }
    }

    @Test func fenceJoinsTheViewAndFencesTheRunsInUse() throws {
        try withScratchMapping(protection: PROT_READ) { view, expected in
            #expect(touchAll(view) == expected)
            #expect(MappedFilePages.unmapClean() != nil)
            let region = UnsafeRawBufferPointer(view)
            #expect(MappedFilePages.splitClean(within: region) == 1)
            // In use: pages 0-2 and 40.
            for page in [0, 1, 2, 40] { #expect(view[page * Self.pageSize] == expected[page * Self.pageSize]) }

            #expect(MappedFilePages.fenceUsed(within: region) == 2)
            let layout = mappings(of: view)
            #expect(layout.map(\.page) == [0, 3, 40, 41])
            #expect(layout.map(\.pages) == [3, 37, 1, 23])
            #expect(layout.map(\.dontDump) == [true, false, true, false])
            // The pages in use stay mapped; nothing else was mapped by the fence.
            #expect(residentKB(of: view) == 4 * Self.pageSize / 1024)

            // Unmapped again, a fault elsewhere maps nothing of the fenced runs.
            #expect(MappedFilePages.unmapClean() != nil)
            #expect(view[39 * Self.pageSize] == expected[39 * Self.pageSize])
            #expect(view[41 * Self.pageSize] == expected[41 * Self.pageSize])
            let after = mappings(of: view)
            #expect(after[0].rssKB == 0)
            #expect(after[2].rssKB == 0)
            // A second split leaves a fenced view as it is.
            #expect(MappedFilePages.splitClean(within: region) == 0)
            #expect(mappings(of: view).count == 4)
            #expect(touchAll(view) == expected)
        }
    }

    @Test func sealMakesTheUnwrittenPagesReadOnlyAndKeepsTheWrittenOnes() throws {
        try withScratchMapping(protection: PROT_READ | PROT_WRITE) { view, expected in
            // Pages 0-9 read, page 5 written (a copy of the process's own), the rest untouched.
            for page in 0..<10 { #expect(view[page * Self.pageSize] == expected[page * Self.pageSize]) }
            view[5 * Self.pageSize + 7] = 0xAB
            let region = UnsafeRawBufferPointer(view)

            #expect(MappedFilePages.sealUnwritten(region) == Self.pages - 1)
            let layout = mappings(of: view)
            #expect(layout.map(\.page) == [0, 5, 6])
            #expect(layout.map(\.writable) == [false, true, false])
            var changed = expected
            changed[5 * Self.pageSize + 7] = 0xAB
            #expect(touchAll(view) == changed)
            // The written page is still writable.
            view[5 * Self.pageSize + 8] = 0xCD
            #expect(view[5 * Self.pageSize + 8] == 0xCD)

            // Sealed, the unwritten pages are clean views: dropped like code, read back the file.
            #expect(MappedFilePages.unmapClean() != nil)
            let after = mappings(of: view)
            #expect(after[0].rssKB == 0 && after[2].rssKB == 0)
            #expect(after[1].rssKB == Self.pageSize / 1024)
            changed[5 * Self.pageSize + 8] = 0xCD
            #expect(touchAll(view) == changed)
        }
    }

    @Test func executablesReadOnlyDataIsFoundAndHoldsItsConstants() throws {
        // Swift's conformance descriptors make the linker's .rodata writable, in this test
        // executable as in ours; a string literal is read-only data, so it lies there.
        let range = try #require(MappedFilePages.writableReadOnlyData())
        let literal: StaticString = "a constant of MappedFilePagesTests, kept in .rodata"
        let page = UInt(Self.pageSize)
        #expect(range.lowerBound % page == 0 && (range.upperBound + 1) % page == 0)
        #expect(range.contains(UInt(bitPattern: literal.utf8Start)))
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

    /// The view's Rss in /proc/self/smaps, in kB: the sum over the mappings it is made of.
    private func residentKB(of view: UnsafeMutableRawBufferPointer) -> Int {
        mappings(of: view).reduce(0) { $0 + $1.rssKB }
    }

    /// The mappings in /proc/self/smaps that make up the view, in address order: first page,
    /// pages, Rss in kB, whether it is marked MADV_DONTDUMP (its VmFlags have "dd"), and whether
    /// it is writable.
    private func mappings(of view: UnsafeMutableRawBufferPointer) -> [(page: Int, pages: Int, rssKB: Int, dontDump: Bool, writable: Bool)] {
        let start = UInt(bitPattern: view.baseAddress)
        let end = start + UInt(view.count)
        // Read to the end: /proc files say their size is 0.
        var smaps = [UInt8]()
        let descriptor = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return [] }
        defer { close(descriptor) }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while case let count = chunk.withUnsafeMutableBytes({ read(descriptor, $0.baseAddress, $0.count) }), count > 0 {
            smaps += chunk[..<count]
        }
        var found: [(page: Int, pages: Int, rssKB: Int, dontDump: Bool, writable: Bool)] = []
        var inView = false
        for line in String(decoding: smaps, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = fields.first else { continue }
            if !first.hasSuffix(":"), let dash = first.firstIndex(of: "-"),
               let from = UInt(first[..<dash], radix: 16), let to = UInt(first[first.index(after: dash)...], radix: 16) {
                inView = from >= start && to <= end
                if inView {
                    let page = UInt(Self.pageSize)
                    let writable = fields.count > 1 && fields[1].dropFirst().first == "w"
                    found.append((Int((from - start) / page), Int((to - from) / page), 0, false, writable))
                }
            } else if inView, first == "Rss:", fields.count > 1 {
                found[found.count - 1].rssKB = Int(fields[1]) ?? -1
            } else if inView, first == "VmFlags:" {
                found[found.count - 1].dontDump = fields.contains("dd")
            }
        }
        return found
    }
}
