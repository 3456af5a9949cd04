#define _GNU_SOURCE
#include "CSupport.h"

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/prctl.h>
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

int csupport_start_writeback(int fd) {
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

int csupport_tune_allocator(int mmap_threshold, int arena_max) {
    return mallopt(M_MMAP_THRESHOLD, mmap_threshold) && mallopt(M_ARENA_MAX, arena_max);
}

int csupport_release_free_memory(void) {
    return malloc_trim(0);
}
