#define _GNU_SOURCE
#include "CSupport.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
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
