/* A QEMU TCG plugin (user mode, plugin API version 1, as in Debian 12's qemu-user 7.2) that counts
 * the guest instructions a process executes, all its threads together, and keeps the running total
 * in a file, so that a benchmark can read it before and after a piece of work:
 *
 *     cc -shared -fPIC -O2 -o qemu-insn.so benchmarks/qemu-insn.c -lpthread
 *     qemu-x86_64 -plugin ./qemu-insn.so,out=/tmp/count bot-worker ...
 *
 * The file holds one decimal number and a newline, rewritten every 5 ms and at exit. The count is
 * exact for the translated blocks run to their end, which is nearly all of them: it is the figure
 * valgrind's callgrind would give, whatever else the machine does.
 *
 * With profile=PATH as well, the instructions are also counted by function (the symbol of each
 * translated block's first instruction, from the executable's symbol table; code of a shared
 * library, which QEMU has no symbols for, counts as the library, "(libc.so.6)"). Writing "reset" to
 * PATH.request zeroes that profile; writing "dump" makes the plugin write it to PATH, one
 * "instructions symbol" line per function, and remove PATH.request when done.
 *
 * The few declarations of QEMU's plugin API used here are written out below, so that no QEMU
 * source is needed to build it. */
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn;
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const char *qemu_plugin_insn_symbol(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t executed;
static int out = -1;

/* The profile: one record per translated block, its symbol, size and runs. */
typedef struct block {
    const char *symbol;
    uint64_t vaddr, instructions, runs;
    struct block *next;
} block;
static const char *profile_path;
static block *blocks;
static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;

static int by_instructions(const void *a, const void *b) {
    const block *x = a, *y = b;
    return x->instructions < y->instructions ? 1 : x->instructions > y->instructions ? -1 : 0;
}

/* The guest's mappings of shared libraries, as this process sees them: QEMU runs a 64-bit guest
 * on a 64-bit host at the same addresses (guest_base 0) when it can. */
typedef struct { uint64_t start, end; char *name; } library;
static library *libraries;
static size_t library_count;

static void read_libraries(void) {
    FILE *maps = fopen("/proc/self/maps", "r");
    if (maps == NULL) return;
    char line[4096];
    while (fgets(line, sizeof line, maps) != NULL) {
        unsigned long long start, end;
        char perms[8], path[4000] = "";
        if (sscanf(line, "%llx-%llx %7s %*s %*s %*s %3999s", &start, &end, perms, path) < 4) continue;
        const char *base = strrchr(path, '/');
        if (base == NULL || strstr(base, ".so") == NULL || strstr(base, "qemu") != NULL) continue;
        library *grown = realloc(libraries, (library_count + 1) * sizeof *grown);
        if (grown == NULL) break;
        libraries = grown;
        char *name = malloc(strlen(base) + 3);
        if (name == NULL) break;
        sprintf(name, "(%s)", base + 1);
        libraries[library_count++] = (library){start, end, name};
    }
    fclose(maps);
}

static const char *library_of(uint64_t vaddr) {
    for (size_t i = 0; i < library_count; i++) {
        if (vaddr >= libraries[i].start && vaddr < libraries[i].end) return libraries[i].name;
    }
    return "(a shared library)";
}

static int by_symbol(const void *a, const void *b) {
    const block *x = a, *y = b;
    return x->symbol < y->symbol ? -1 : x->symbol > y->symbol ? 1 : 0;
}

/* Sums the blocks by symbol (the same pointer: QEMU hands out one string per symbol) and writes
 * the functions, most instructions first. */
static void dump_profile(void) {
    size_t count = 0;
    pthread_mutex_lock(&blocks_lock);
    for (block *b = blocks; b != NULL; b = b->next) count++;
    block *sums = calloc(count ? count : 1, sizeof *sums);
    size_t n = 0;
    if (libraries == NULL) read_libraries();
    for (block *b = blocks; sums != NULL && b != NULL; b = b->next) {
        sums[n].symbol = b->symbol ? b->symbol : library_of(b->vaddr);
        sums[n++].instructions = __atomic_load_n(&b->runs, __ATOMIC_RELAXED) * b->instructions;
    }
    pthread_mutex_unlock(&blocks_lock);
    if (sums == NULL) return;
    qsort(sums, n, sizeof *sums, by_symbol);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        if (distinct > 0 && sums[distinct - 1].symbol == sums[i].symbol) {
            sums[distinct - 1].instructions += sums[i].instructions;
        } else {
            sums[distinct++] = sums[i];
        }
    }
    qsort(sums, distinct, sizeof *sums, by_instructions);
    char temporary[4096];
    snprintf(temporary, sizeof temporary, "%s.partial", profile_path);
    FILE *file = fopen(temporary, "w");
    if (file != NULL) {
        for (size_t i = 0; i < distinct && sums[i].instructions > 0; i++) {
            fprintf(file, "%llu %s\n", (unsigned long long)sums[i].instructions, sums[i].symbol);
        }
        fclose(file);
        rename(temporary, profile_path);
    }
    free(sums);
}

static void serve_profile_request(void) {
    char path[4096], request[16] = {0};
    snprintf(path, sizeof path, "%s.request", profile_path);
    FILE *file = fopen(path, "r");
    if (file == NULL) return;
    size_t n = fread(request, 1, sizeof request - 1, file);
    fclose(file);
    request[n] = '\0';
    if (strncmp(request, "reset", 5) == 0) {
        pthread_mutex_lock(&blocks_lock);
        for (block *b = blocks; b != NULL; b = b->next) __atomic_store_n(&b->runs, 0, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&blocks_lock);
    } else if (strncmp(request, "dump", 4) == 0) {
        dump_profile();
    } else {
        return; /* not all written yet */
    }
    unlink(path);
}

static void write_count(void) {
    char line[32];
    int n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)__atomic_load_n(&executed, __ATOMIC_RELAXED));
    /* One pwrite of a line no shorter than the last: a reader sees an old or a new figure. */
    if (pwrite(out, line, (size_t)n, 0) < 0) { /* the benchmark reports a missing figure */ }
}

static void *writer(void *unused) {
    (void)unused;
    struct timespec pause = { 0, 5 * 1000 * 1000 };
    for (;;) {
        write_count();
        if (profile_path != NULL) serve_profile_request();
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static void on_exec(unsigned int vcpu, void *instructions) {
    (void)vcpu;
    __atomic_add_fetch(&executed, (uint64_t)(uintptr_t)instructions, __ATOMIC_RELAXED);
}

static void on_exec_profiled(unsigned int vcpu, void *record) {
    (void)vcpu;
    block *b = record;
    __atomic_add_fetch(&executed, b->instructions, __ATOMIC_RELAXED);
    __atomic_add_fetch(&b->runs, 1, __ATOMIC_RELAXED);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t instructions = qemu_plugin_tb_n_insns(tb);
    block *b = profile_path != NULL && instructions > 0 ? calloc(1, sizeof *b) : NULL;
    if (b == NULL) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)instructions);
        return;
    }
    b->symbol = qemu_plugin_insn_symbol(qemu_plugin_tb_get_insn(tb, 0));
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->instructions = instructions;
    pthread_mutex_lock(&blocks_lock);
    b->next = blocks;
    blocks = b;
    pthread_mutex_unlock(&blocks_lock);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec_profiled, QEMU_PLUGIN_CB_NO_REGS, b);
}

static void on_exit_(qemu_plugin_id_t id, void *unused) {
    (void)id; (void)unused;
    write_count();
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) path = argv[i] + 4;
        if (strncmp(argv[i], "profile=", 8) == 0) profile_path = argv[i] + 8;
    }
    if (path == NULL) {
        fprintf(stderr, "qemu-insn: give the counter's file as out=PATH\n");
        return -1;
    }
    out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        fprintf(stderr, "qemu-insn: cannot open %s\n", path);
        return -1;
    }
    pthread_t thread;
    if (pthread_create(&thread, NULL, writer, NULL) != 0) return -1;
    pthread_detach(thread);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit_, NULL);
    return 0;
}
