import CSupport
import ServiceLifecycle

/// The clean pages of files a process has mapped: its executable's code and read-only data and
/// those of the shared libraries.
///
/// Once a page of code has run, the kernel leaves it mapped (and, at each fault, the cached pages
/// around it, or the whole large page-cache folio it was read into) until memory runs short, and
/// VmRSS counts it. Start-up, a backup or a restore run once and leave tens of MB mapped that the
/// idle process never touches again. Unmapping them costs nothing to keep: the pages stay in the
/// page cache, and the next use of one maps it back with a minor fault, microseconds, no disk.
public enum MappedFilePages {
    /// Unmaps every clean, read-only mapping of a file from this process (see
    /// `csupport_unmap_clean_file_pages`: writable, locked mappings and mappings holding a
    /// copy-on-write page are left alone). Returns how many mappings were unmapped, or nil when
    /// /proc/self/smaps cannot be read.
    @discardableResult
    public static func unmapClean() -> Int? {
        let unmapped = csupport_unmap_clean_file_pages()
        return unmapped < 0 ? nil : unmapped
    }

    /// Cuts each clean view of a file into one mapping per page, so that each fault maps only the
    /// page it needs (see `csupport_split_clean_file_views`); only those within `region`, when
    /// given. Returns how many views were cut, or nil when /proc/self/smaps cannot be read.
    @discardableResult
    public static func splitClean(within region: UnsafeRawBufferPointer? = nil) -> Int? {
        let (from, to) = bounds(of: region)
        let split = csupport_split_clean_file_views(from, to)
        return split < 0 ? nil : split
    }

    /// Joins the views `splitClean` cut and fences off, as mappings of their own, the runs of pages
    /// mapped since: the pages in use (see `csupport_fence_used_file_pages`). Returns how many runs
    /// were fenced, or nil when /proc/self/smaps or /proc/self/pagemap cannot be read. Only views
    /// within `region`, when given.
    @discardableResult
    public static func fenceUsed(within region: UnsafeRawBufferPointer? = nil) -> Int? {
        let (from, to) = bounds(of: region)
        let runs = csupport_fence_used_file_pages(from, to)
        return runs < 0 ? nil : runs
    }

    /// Makes this executable's read-only data read-only: the linker leaves .rodata writable when a
    /// Swift object's constant descriptors mark it so (see `csupport_writable_read_only_data`),
    /// and the pages of a writable mapping cannot be dropped like the rest of the executable's:
    /// a page written would be lost. Nothing writes there (the descriptors are constants of the
    /// Swift ABI, and no dynamic relocation points into it), so each page not written by now is
    /// made read-only, and the page-dropping of `unmapClean`, `splitClean` and `fenceUsed` then
    /// reaches it. A page written by now, which none should be, stays writable. Returns the pages
    /// made read-only (0 when .rodata is read-only already), or nil when /proc/self/exe or
    /// /proc/self/pagemap cannot be read.
    @discardableResult
    public static func sealReadOnlyData() -> Int? {
        var from: UInt = 0, to: UInt = 0
        switch csupport_writable_read_only_data(&from, &to) {
        case 1: return sealUnwritten(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: from), count: Int(to - from)))
        case 0: return 0
        default: return nil
        }
    }

    /// Makes read-only each run of pages of `region` (page-aligned, in one private mapping of a
    /// file) not written by this process (see `csupport_seal_unwritten_pages`). Returns the pages
    /// made read-only, or nil when /proc/self/pagemap cannot be read.
    @discardableResult
    public static func sealUnwritten(_ region: UnsafeRawBufferPointer) -> Int? {
        let (from, to) = bounds(of: region)
        let sealed = csupport_seal_unwritten_pages(from, to)
        return sealed < 0 ? nil : sealed
    }

    /// The range of this executable's .rodata that `sealReadOnlyData` seals, nil when it is
    /// read-only already or cannot be read.
    public static func writableReadOnlyData() -> ClosedRange<UInt>? {
        var from: UInt = 0, to: UInt = 0
        guard csupport_writable_read_only_data(&from, &to) == 1 else { return nil }
        return from...(to - 1)
    }

    private static func bounds(of region: UnsafeRawBufferPointer?) -> (UInt, UInt) {
        guard let region, let base = region.baseAddress else { return (0, UInt.max) }
        let from = UInt(bitPattern: base)
        return (from, from + UInt(region.count))
    }

    /// A service that unmaps the clean file pages `first` after it starts, when start-up's code
    /// has run, then every `every`: what ran once (a backup, a restore, a deploy, a page of the
    /// dashboard) stops counting, and what the idle loop uses is mapped back at its next turn.
    ///
    /// At each fault the kernel maps, besides the page needed, the cached pages around it, up to
    /// 64 KiB (fault-around): the idle loop's few hundred faults would map back 15 MB of code it
    /// does not run. So at the first unmapping the views are also cut into one mapping per page
    /// for `learning`; the pages mapped back by then are the ones in use, and each run of them is
    /// fenced off as a mapping of its own, which later faults map whole and no fault elsewhere
    /// spills into. That costs two kernel mappings per run, the run and the gap after it (about
    /// a thousand in the supervisor, 192 bytes each), and one per page while learning.
    public struct Tidy: Service {
        let first: Duration
        let learning: Duration
        let every: Duration

        public init(first: Duration = .seconds(60), learning: Duration = .seconds(60), every: Duration = .seconds(300)) {
            self.first = first
            self.learning = learning
            self.every = every
        }

        public func run() async throws {
            await cancelWhenGracefulShutdown {
                guard (try? await Task.sleep(for: first)) != nil else { return }
                // Seal first: the read-only data becomes a clean view like the code. Then cut, then
                // unmap: a fault between the two would map its neighbours, and they would look in
                // use.
                MappedFilePages.sealReadOnlyData()
                MappedFilePages.splitClean()
                MappedFilePages.unmapClean()
                guard (try? await Task.sleep(for: learning)) != nil else { return }
                MappedFilePages.fenceUsed()
                while (try? await Task.sleep(for: every)) != nil {
                    MappedFilePages.unmapClean()
                }
            }
        }
    }
}
