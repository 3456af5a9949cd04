#ifndef CSUPPORT_H
#define CSUPPORT_H

#include <sys/types.h>

/// The layout of Linux `struct ucred`, which Glibc declares only under _GNU_SOURCE: the peer
/// credentials of a connected Unix socket (SO_PEERCRED), filled by the kernel at connect time.
typedef struct {
    pid_t pid;
    uid_t uid;
    gid_t gid;
} csupport_peer_credentials;

/// Asks the kernel to send `signal` to this process when its parent dies (PR_SET_PDEATHSIG).
/// Returns 0 on success, -1 with errno set otherwise.
int csupport_set_parent_death_signal(int signal);

/// Names the calling thread (pthread_setname_np, declared only under _GNU_SOURCE): at most 15
/// bytes, else ERANGE and the name is unchanged. Returns 0 or an error number.
int csupport_set_thread_name(const char *name);

/// pipe2(fds, O_CLOEXEC), which Glibc declares only under _GNU_SOURCE.
int csupport_pipe_cloexec(int fds[2]);

/// Paces a large write (sync_file_range, declared only under _GNU_SOURCE): starts write-back of every dirty page of `fd`, then waits until the pages
/// of its first `settled` bytes (whose write-back an earlier call started) are on the disk
/// (sync_file_range WRITE, then WAIT_BEFORE). Errors are left to the final fsync, which reports
/// them. Returns 0, or -1 with errno set.
int csupport_pace_writeback(int fd, long long settled);

/// Lowers the CPU priority of the calling thread alone by `increment` nice steps (Linux applies
/// setpriority(PRIO_PROCESS) to a thread id). Returns 0, or -1 with errno set.
int csupport_lower_thread_priority(int increment);

/// Fixes glibc malloc's mmap threshold at `mmap_threshold` bytes (allocations at least that large
/// get their own mapping, returned to the kernel on free; setting it also stops glibc raising the
/// threshold after each large free) and caps its arenas at `arena_max`. Returns 1 when both took.
int csupport_tune_allocator(int mmap_threshold, int arena_max);

/// Returns the free memory of every malloc arena to the kernel (malloc_trim(0)). Returns 1 when
/// some was released.
int csupport_release_free_memory(void);

/// Unmaps from this process every clean, read-only view of a file: the pages of the executable
/// and the shared libraries that ran once (start-up, a backup) and stay mapped, counted in VmRSS,
/// until memory runs short. The pages stay in the page cache: the next use of one maps it back
/// with a minor fault. A mapping is left alone when it is writable, locked, device memory (VM_IO,
/// VM_PFNMAP), or holds any page of the process's own, in memory or swapped out (copy-on-write:
/// relocated data made read-only after start). Returns the number of mappings unmapped, or -1
/// with errno set when /proc/self/smaps cannot be read.
long csupport_unmap_clean_file_pages(void);

/// Cuts every clean view of a file (as above) into one mapping per page, by marking every other
/// page MADV_DONTDUMP (file pages are not in a core dump by default, so the mark changes nothing
/// else). Until `csupport_fence_used_file_pages`, each fault then maps the one page it needs,
/// without the cached pages around it (fault-around), so the pages mapped afterwards are the pages
/// used. Skipped when the pages would take more than half the kernel's limit on a process's
/// mappings (vm.max_map_count), and for views already fenced. Returns the number of views cut, or
/// -1 with errno set when /proc/self/smaps cannot be read. Only views within [from, to) are
/// touched (0, ULONG_MAX: all).
long csupport_split_clean_file_views(unsigned long from, unsigned long to);

/// Joins each view cut by `csupport_split_clean_file_views` back into one mapping, then fences off
/// each run of its pages that is mapped now (read from /proc/self/pagemap) as a mapping of its own
/// (MADV_DONTDUMP): a later fault in a run maps pages of that run only, and a fault elsewhere maps
/// none of the run's neighbours. Only views within [from, to) are touched (0, ULONG_MAX: all).
/// Returns the number of runs fenced, or -1 with errno set when /proc/self/smaps cannot be read, or
/// /proc/self/pagemap (the views are then only joined).
long csupport_fence_used_file_pages(unsigned long from, unsigned long to);

/// The page-aligned inside of this executable's .rodata, into [*from, *to), when the linker made
/// it writable: Swift objects put constant descriptors (of protocols, conformances) in sections
/// named .rodata but flagged writable, so the whole output section, with all the read-only data
/// of the program (tens of MB with Foundation's), lands in a writable segment, which
/// `csupport_unmap_clean_file_pages` must leave alone. Returns 1 when found writable, 0 when
/// there is nothing to do (no .rodata, or read-only already), -1 with errno set when the
/// executable cannot be read.
int csupport_writable_read_only_data(unsigned long *from, unsigned long *to);

/// Makes read-only (mprotect PROT_READ) each run of pages in [from, to) that the process has not
/// written: every page except those /proc/self/pagemap shows as the process's own (a
/// copy-on-write copy, in memory or swapped out), which stay writable and keep their contents.
/// Meant for data that is constant but sits in a writable mapping: `from` and `to` must be page
/// aligned and inside one private mapping of a file. Returns the number of pages made read-only,
/// or -1 with errno set when pagemap cannot be read (then nothing is changed).
long csupport_seal_unwritten_pages(unsigned long from, unsigned long to);

#endif
