#define _GNU_SOURCE
#include "CSupport.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
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

/// One mapping's header line of /proc/self/smaps: "start-end perms offset dev inode [path]".
static int parse_mapping_header(const char *line, unsigned long *start, unsigned long *end,
                                char perms[5], int *has_path) {
    int consumed = 0;
    if (sscanf(line, "%lx-%lx %4s %*s %*s %*s %n", start, end, perms, &consumed) < 3) {
        return 0;
    }
    *has_path = line[consumed] == '/';
    return 1;
}

static long own_pages_kb(long anonymous_kb, long swap_kb) {
    return anonymous_kb < 0 || swap_kb < 0 ? -1 : anonymous_kb + swap_kb;
}

/// Whether a smaps "VmFlags:" line names a mapping of device memory (io: VM_IO, pf: VM_PFNMAP),
/// whose pages a driver may not map back after they are dropped.
static int maps_device(const char *flags_line) {
    // "VmFlags: rd ex mr mw me ": two letters a flag, spaces between.
    const char *flag = flags_line + strlen("VmFlags:");
    while (*flag == ' ') flag++;
    while (flag[0] != '\0' && flag[0] != '\n' && flag[1] != '\0') {
        if (strncmp(flag, "io", 2) == 0 || strncmp(flag, "pf", 2) == 0) {
            return 1;
        }
        flag += 2;
        while (*flag == ' ') flag++;
    }
    return 0;
}

static int unmap_if_clean(unsigned long start, unsigned long end, const char perms[5],
                          int has_path, long own_kb, long locked_kb, int device) {
    // Only clean views of a file: read-only, backed by a path, with no page of the process's own,
    // in memory or swapped out (a copy-on-write page, such as relocated data made read-only after
    // start, would be lost: only mappings with none are touched), not locked, not device memory.
    if (!has_path || perms[1] == 'w' || own_kb != 0 || locked_kb != 0 || device != 0 || end <= start) {
        return 0;
    }
    return madvise((void *)start, end - start, MADV_DONTNEED) == 0;
}

long csupport_unmap_clean_file_pages(void) {
    FILE *smaps = fopen("/proc/self/smaps", "re");
    if (smaps == NULL) {
        return -1;
    }
    char line[4096];
    unsigned long start = 0, end = 0;
    char perms[5] = "----";
    int has_path = 0, pending = 0;
    // Anonymous and Swap add up to the mapping's pages of the process's own: -1 until both are read.
    long anonymous_kb = -1, swap_kb = -1, locked_kb = -1, unmapped = 0;
    // -1 until the mapping's VmFlags line is read (the last of its lines): nothing is unmapped
    // without it.
    int device = -1;
    while (fgets(line, sizeof line, smaps) != NULL) {
        unsigned long next_start, next_end;
        char next_perms[5];
        int next_has_path;
        long value;
        if (parse_mapping_header(line, &next_start, &next_end, next_perms, &next_has_path)) {
            if (pending && unmap_if_clean(start, end, perms, has_path, own_pages_kb(anonymous_kb, swap_kb), locked_kb, device)) {
                unmapped++;
            }
            start = next_start; end = next_end; has_path = next_has_path;
            memcpy(perms, next_perms, sizeof perms);
            anonymous_kb = -1; swap_kb = -1; locked_kb = -1; device = -1; pending = 1;
        } else if (sscanf(line, "Anonymous: %ld kB", &value) == 1) {
            anonymous_kb = value;
        } else if (sscanf(line, "Swap: %ld kB", &value) == 1) {
            swap_kb = value;
        } else if (sscanf(line, "Locked: %ld kB", &value) == 1) {
            locked_kb = value;
        } else if (strncmp(line, "VmFlags:", strlen("VmFlags:")) == 0) {
            device = maps_device(line);
        }
    }
    if (pending && unmap_if_clean(start, end, perms, has_path, own_pages_kb(anonymous_kb, swap_kb), locked_kb, device)) {
        unmapped++;
    }
    fclose(smaps);
    return unmapped;
}
