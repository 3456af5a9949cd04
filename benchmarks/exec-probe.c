/* exec-probe: the trivial worker of `benchmarks/restart-latency`'s side-by-side part.
 *
 * Its first action is to read CLOCK_MONOTONIC (the clock every process of the machine shares,
 * Python's time.monotonic), the moment it was exec'd as near as a program can tell; then it sends
 * "<tag> <pid> <nanoseconds>" as one datagram to the Unix socket named by EXEC_PROBE_SOCKET, with
 * the tag from EXEC_PROBE_TAG, and waits to be killed. It never talks to the supervisor: both
 * runsv and bot-supervisor see a process that starts and runs until a signal ends it.
 *
 * The benchmark compiles it with `cc -O2 -static` (dynamic when static linking is not available):
 * nothing is loaded between exec and the clock read, and the same binary runs under both.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    const char *path = getenv("EXEC_PROBE_SOCKET");
    const char *tag = getenv("EXEC_PROBE_TAG");
    if (path == NULL || tag == NULL) {
        fputs("exec-probe: EXEC_PROBE_SOCKET and EXEC_PROBE_TAG must be set\n", stderr);
        return 64;
    }
    char report[128];
    int length = snprintf(report, sizeof report, "%s %ld %lld", tag, (long)getpid(),
                          (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof address.sun_path) {
        fputs("exec-probe: EXEC_PROBE_SOCKET is too long for a Unix socket path\n", stderr);
        return 64;
    }
    strcpy(address.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || sendto(fd, report, (size_t)length, 0, (struct sockaddr *)&address, sizeof address) != length) {
        perror("exec-probe: cannot report to EXEC_PROBE_SOCKET");
        return 1;
    }
    close(fd);
    for (;;) pause();  /* until SIGKILL, or SIGTERM at the end of the run */
}
