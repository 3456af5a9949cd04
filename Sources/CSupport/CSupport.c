#define _GNU_SOURCE
#include "CSupport.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int csupport_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0, 0, 0);
}

int csupport_set_thread_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

int csupport_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int csupport_pace_writeback(int fd, long long settled) {
    if (sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) != 0) {
        return -1;
    }
    return settled > 0 ? sync_file_range(fd, 0, settled, SYNC_FILE_RANGE_WAIT_BEFORE) : 0;
}

int csupport_lower_thread_priority(int increment) {
    pid_t thread = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int current = getpriority(PRIO_PROCESS, (id_t)thread);
    if (current == -1 && errno != 0) {
        return -1;
    }
    return setpriority(PRIO_PROCESS, (id_t)thread, current + increment);
}

int csupport_tune_allocator(int mmap_threshold, int arena_max) {
    return mallopt(M_MMAP_THRESHOLD, mmap_threshold) && mallopt(M_ARENA_MAX, arena_max);
}

int csupport_release_free_memory(void) {
    return malloc_trim(0);
}

/// One mapping of /proc/self/smaps, with what decides whether its pages may be dropped.
typedef struct {
    unsigned long start, end, offset, inode;
    char perms[5];
    char device_id[16];
    int has_path;
    // Anonymous + Swap: the mapping's pages of the process's own; -1 until both are read.
    long own_kb;
    long anonymous_kb, swap_kb, locked_kb;
    // -1 until the VmFlags line (the mapping's last) is read.
    int device_memory, dont_dump;
} mapping;

/// One mapping's header line of /proc/self/smaps: "start-end perms offset dev inode [path]".
static int parse_mapping_header(const char *line, mapping *m) {
    int consumed = 0;
    memset(m, 0, sizeof *m);
    if (sscanf(line, "%lx-%lx %4s %lx %15s %lu %n", &m->start, &m->end, m->perms, &m->offset,
               m->device_id, &m->inode, &consumed) < 6) {
        return 0;
    }
    m->has_path = line[consumed] == '/';
    m->anonymous_kb = m->swap_kb = m->locked_kb = m->own_kb = -1;
    m->device_memory = m->dont_dump = -1;
    return 1;
}

/// Whether a smaps "VmFlags:" line ("VmFlags: rd ex mr mw me ": two letters a flag, spaces
/// between) has `name`.
static int has_vm_flag(const char *flags_line, const char *name) {
    const char *flag = flags_line + strlen("VmFlags:");
    while (*flag == ' ') flag++;
    while (flag[0] != '\0' && flag[0] != '\n' && flag[1] != '\0') {
        if (strncmp(flag, name, 2) == 0) {
            return 1;
        }
        flag += 2;
        while (*flag == ' ') flag++;
    }
    return 0;
}

/// Whether the mapping is a clean view of a file: read-only, backed by a path, with no page of the
/// process's own, in memory or swapped out (a copy-on-write page, such as relocated data made
/// read-only after start, would be lost: only mappings with none are touched), not locked, not
/// device memory (io: VM_IO, pf: VM_PFNMAP, whose pages a driver may not map back).
static int is_clean_file_view(const mapping *m) {
    return m->has_path && m->perms[1] != 'w' && m->own_kb == 0 && m->locked_kb == 0
        && m->device_memory == 0 && m->end > m->start;
}

/// Calls `visit` with each mapping of /proc/self/smaps, once all its lines are read. Returns 0,
/// or -1 with errno set when the file cannot be read.
static int each_mapping(void (*visit)(const mapping *, void *), void *context) {
    FILE *smaps = fopen("/proc/self/smaps", "re");
    if (smaps == NULL) {
        return -1;
    }
    char line[4096];
    mapping current = {0}, next;
    int pending = 0;
    while (fgets(line, sizeof line, smaps) != NULL) {
        long value;
        if (parse_mapping_header(line, &next)) {
            if (pending) visit(&current, context);
            current = next;
            pending = 1;
        } else if (sscanf(line, "Anonymous: %ld kB", &value) == 1) {
            current.anonymous_kb = value;
        } else if (sscanf(line, "Swap: %ld kB", &value) == 1) {
            current.swap_kb = value;
        } else if (sscanf(line, "Locked: %ld kB", &value) == 1) {
            current.locked_kb = value;
        } else if (strncmp(line, "VmFlags:", strlen("VmFlags:")) == 0) {
            current.device_memory = has_vm_flag(line, "io") || has_vm_flag(line, "pf");
            current.dont_dump = has_vm_flag(line, "dd");
        }
        if (current.anonymous_kb >= 0 && current.swap_kb >= 0) {
            current.own_kb = current.anonymous_kb + current.swap_kb;
        }
    }
    if (pending) visit(&current, context);
    fclose(smaps);
    return 0;
}

static void unmap_if_clean(const mapping *m, void *context) {
    long *unmapped = context;
    if (is_clean_file_view(m) && madvise((void *)m->start, m->end - m->start, MADV_DONTNEED) == 0) {
        (*unmapped)++;
    }
}

long csupport_unmap_clean_file_pages(void) {
    long unmapped = 0;
    return each_mapping(unmap_if_clean, &unmapped) == 0 ? unmapped : -1;
}

/// The clean file views of the process, whole: the smaps entries of one view that an earlier
/// split cut into pieces (contiguous, the same file at contiguous offsets) joined again.
typedef struct {
    mapping *views;
    size_t count, capacity;
    size_t mappings; // every mapping the process has, clean or not
    unsigned long from, to; // only views within [from, to)
    int failed;
} clean_views;

static void collect_clean_view(const mapping *m, void *context) {
    clean_views *all = context;
    all->mappings++;
    if (!is_clean_file_view(m) || all->failed || m->start < all->from || m->end > all->to) {
        return;
    }
    if (all->count > 0) {
        mapping *last = &all->views[all->count - 1];
        if (last->end == m->start && last->inode == m->inode && strcmp(last->device_id, m->device_id) == 0
            && strcmp(last->perms, m->perms) == 0 && last->offset + (last->end - last->start) == m->offset) {
            last->end = m->end;
            last->dont_dump = last->dont_dump || m->dont_dump;
            return;
        }
    }
    if (all->count == all->capacity) {
        size_t capacity = all->capacity == 0 ? 64 : all->capacity * 2;
        mapping *grown = realloc(all->views, capacity * sizeof *grown);
        if (grown == NULL) {
            all->failed = 1;
            return;
        }
        all->views = grown;
        all->capacity = capacity;
    }
    all->views[all->count++] = *m;
}

/// Fills `all` with the clean views within its bounds. Returns 0, or -1 (nothing kept) when
/// /proc/self/smaps cannot be read or memory runs out.
static int collect_clean_views(clean_views *all) {
    if (each_mapping(collect_clean_view, all) != 0 || all->failed) {
        free(all->views);
        all->views = NULL;
        return -1;
    }
    return 0;
}

static long max_map_count(void) {
    long limit = 65530; // the kernel's default
    FILE *file = fopen("/proc/sys/vm/max_map_count", "re");
    if (file != NULL) {
        if (fscanf(file, "%ld", &limit) != 1) limit = 65530;
        fclose(file);
    }
    return limit;
}

long csupport_split_clean_file_views(unsigned long from, unsigned long to) {
    clean_views all = {.from = from, .to = to};
    if (collect_clean_views(&all) != 0) {
        return -1;
    }
    const unsigned long page = (unsigned long)sysconf(_SC_PAGESIZE);
    unsigned long pages = 0;
    for (size_t i = 0; i < all.count; i++) {
        pages += (all.views[i].end - all.views[i].start) / page;
    }
    long split = 0;
    // Each page becomes a mapping of its own for a while: stay within half the kernel's limit on
    // a process's mappings, so that nothing else the process maps can fail for it.
    if (all.mappings + pages <= (unsigned long)max_map_count() / 2) {
        for (size_t i = 0; i < all.count; i++) {
            const mapping *view = &all.views[i];
            if (view->dont_dump) {
                continue; // already fenced
            }
            // Every other page marked: no two neighbours have the same flags, so none merge.
            int cut = 1;
            for (unsigned long at = view->start + page; at < view->end && cut; at += 2 * page) {
                cut = madvise((void *)at, page, MADV_DONTDUMP) == 0;
            }
            if (cut) {
                split++;
            } else {
                madvise((void *)view->start, view->end - view->start, MADV_DODUMP); // whole again
            }
        }
    }
    free(all.views);
    return split;
}

/// Whether each page of [start, end) is mapped in this process (bit 63 of its /proc/self/pagemap
/// entry), into `present`. Returns 0, or -1.
static int read_present(int pagemap, unsigned long start, unsigned long end, unsigned long page,
                        unsigned char *present) {
    enum { chunk = 512 };
    uint64_t entries[chunk];
    unsigned long count = (end - start) / page;
    for (unsigned long done = 0; done < count;) {
        unsigned long want = count - done < chunk ? count - done : chunk;
        off_t at = (off_t)((start / page + done) * sizeof(uint64_t));
        ssize_t got = pread(pagemap, entries, want * sizeof(uint64_t), at);
        if (got <= 0) {
            return -1;
        }
        unsigned long read = (unsigned long)got / sizeof(uint64_t);
        for (unsigned long i = 0; i < read; i++) {
            present[done + i] = (entries[i] >> 63) & 1;
        }
        done += read;
    }
    return 0;
}

long csupport_fence_used_file_pages(unsigned long from, unsigned long to) {
    clean_views all = {.from = from, .to = to};
    if (collect_clean_views(&all) != 0) {
        return -1;
    }
    // Without /proc/self/pagemap the views are only joined again.
    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    const unsigned long page = (unsigned long)sysconf(_SC_PAGESIZE);
    long runs = pagemap < 0 ? -1 : 0;
    for (size_t i = 0; i < all.count; i++) {
        const mapping *view = &all.views[i];
        // The pages in use read first (a fault in the view once whole maps its neighbours too),
        // then one mapping again, then each run of them fenced off as a mapping of its own.
        unsigned long count = (view->end - view->start) / page;
        unsigned char *present = pagemap < 0 ? NULL : calloc(count, 1);
        int known = present != NULL && read_present(pagemap, view->start, view->end, page, present) == 0;
        madvise((void *)view->start, view->end - view->start, MADV_DODUMP);
        if (!known) {
            free(present);
            continue;
        }
        for (unsigned long first = 0; first < count;) {
            if (!present[first]) {
                first++;
                continue;
            }
            unsigned long last = first;
            while (last + 1 < count && present[last + 1]) last++;
            if (madvise((void *)(view->start + first * page), (last - first + 1) * page, MADV_DONTDUMP) == 0) {
                runs++;
            }
            first = last + 1;
        }
        free(present);
    }
    if (pagemap >= 0) close(pagemap);
    free(all.views);
    return runs;
}

/// The load address of the executable: dl_iterate_phdr reports it first.
static int record_executable_base(struct dl_phdr_info *info, size_t size, void *base) {
    (void)size;
    *(unsigned long *)base = info->dlpi_addr;
    return 1; // the first is enough
}

int csupport_writable_read_only_data(unsigned long *from, unsigned long *to) {
    int executable = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (executable < 0) {
        return -1;
    }
    int found = -1;
    Elf64_Ehdr header;
    Elf64_Shdr *sections = NULL;
    char *names = NULL;
    if (pread(executable, &header, sizeof header, 0) != (ssize_t)sizeof header
        || memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64
        || header.e_shentsize != sizeof(Elf64_Shdr) || header.e_shnum == 0 || header.e_shstrndx >= header.e_shnum) {
        errno = ENOEXEC;
        goto done;
    }
    size_t table = (size_t)header.e_shnum * sizeof *sections;
    sections = malloc(table);
    if (sections == NULL || pread(executable, sections, table, (off_t)header.e_shoff) != (ssize_t)table) {
        errno = sections == NULL ? ENOMEM : ENOEXEC;
        goto done;
    }
    const Elf64_Shdr *strings = &sections[header.e_shstrndx];
    names = malloc(strings->sh_size + 1);
    if (names == NULL || pread(executable, names, strings->sh_size, (off_t)strings->sh_offset) != (ssize_t)strings->sh_size) {
        errno = names == NULL ? ENOMEM : ENOEXEC;
        goto done;
    }
    names[strings->sh_size] = '\0';
    found = 0;
    for (size_t i = 0; i < header.e_shnum; i++) {
        const Elf64_Shdr *section = &sections[i];
        if (section->sh_name >= strings->sh_size || strcmp(names + section->sh_name, ".rodata") != 0
            || section->sh_type != SHT_PROGBITS || (section->sh_flags & (SHF_ALLOC | SHF_WRITE)) != (SHF_ALLOC | SHF_WRITE)) {
            continue;
        }
        unsigned long base = 0;
        dl_iterate_phdr(record_executable_base, &base);
        const unsigned long page = (unsigned long)sysconf(_SC_PAGESIZE);
        unsigned long start = (base + section->sh_addr + page - 1) & ~(page - 1);
        unsigned long end = (base + section->sh_addr + section->sh_size) & ~(page - 1);
        if (end > start) {
            *from = start;
            *to = end;
            found = 1;
        }
        break;
    }
done:
    free(names);
    free(sections);
    close(executable);
    return found;
}

long csupport_seal_unwritten_pages(unsigned long from, unsigned long to) {
    const unsigned long page = (unsigned long)sysconf(_SC_PAGESIZE);
    if (from % page != 0 || to % page != 0 || to < from) {
        errno = EINVAL;
        return -1;
    }
    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap < 0) {
        return -1;
    }
    // Whether each page is the process's own: present and not a file page (bit 63 set, bit 61
    // clear), or swapped out (bit 62). Read whole before anything changes.
    unsigned long count = (to - from) / page;
    unsigned char *own = calloc(count ? count : 1, 1);
    enum { chunk = 512 };
    uint64_t entries[chunk];
    for (unsigned long done = 0; own != NULL && done < count;) {
        unsigned long want = count - done < chunk ? count - done : chunk;
        ssize_t got = pread(pagemap, entries, want * sizeof(uint64_t), (off_t)((from / page + done) * sizeof(uint64_t)));
        if (got <= 0) {
            free(own);
            own = NULL;
            break;
        }
        for (unsigned long i = 0; i < (unsigned long)got / sizeof(uint64_t); i++) {
            uint64_t entry = entries[i];
            own[done + i] = (((entry >> 63) & 1) && !((entry >> 61) & 1)) || ((entry >> 62) & 1);
        }
        done += (unsigned long)got / sizeof(uint64_t);
    }
    close(pagemap);
    if (own == NULL) {
        if (errno == 0) errno = EIO;
        return -1;
    }
    long sealed = 0;
    for (unsigned long first = 0; first < count;) {
        if (own[first]) {
            first++;
            continue;
        }
        unsigned long last = first;
        while (last + 1 < count && !own[last + 1]) last++;
        if (mprotect((void *)(from + first * page), (last - first + 1) * page, PROT_READ) == 0) {
            sealed += (long)(last - first + 1);
        }
        first = last + 1;
    }
    free(own);
    return sealed;
}
