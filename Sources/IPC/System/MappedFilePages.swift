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

    /// A service that unmaps the clean file pages `first` after it starts, when start-up's code
    /// has run, then every `every`: what ran once (a backup, a restore, a deploy, a page of the
    /// dashboard) stops counting, and what the idle loop uses is mapped back at its next turn.
    public struct Tidy: Service {
        let first: Duration
        let every: Duration

        public init(first: Duration = .seconds(60), every: Duration = .seconds(300)) {
            self.first = first
            self.every = every
        }

        public func run() async throws {
            await cancelWhenGracefulShutdown {
                var wait = first
                while (try? await Task.sleep(for: wait)) != nil {
                    MappedFilePages.unmapClean()
                    wait = every
                }
            }
        }
    }
}
