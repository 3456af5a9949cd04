#include "CSQLiteCopyWatch.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

/* SQLite's lock-byte page starts at this offset (1 GiB) in every database larger than that; the
 * backup API skips it. */
#define PENDING_BYTE 0x40000000LL

struct copywatch {
    char *path;
    long long page_size;
    long long settled;  /* bytes from offset 0; starts at page_size */
    long long target;   /* what the waiting thread waits for: it is woken once, not per page */
    int in_order;
    int finished;
    int references;  /* the caller's, and one per open file; under watches_lock */
    pthread_mutex_t lock;
    pthread_cond_t moved;
    copywatch *next;
};

static pthread_mutex_t watches_lock = PTHREAD_MUTEX_INITIALIZER;
static copywatch *watches = NULL;

static sqlite3_vfs *below = NULL;  /* the default VFS, which does the real work */
static sqlite3_vfs vfs;
static int registered = SQLITE_ERROR;
static pthread_once_t once = PTHREAD_ONCE_INIT;

typedef struct {
    sqlite3_file base;
    copywatch *watch;    /* NULL for a file nobody watches */
    sqlite3_file *real;  /* the default VFS's file, allocated right after this struct */
} watched_file;

#define REAL(file) (((watched_file *)(file))->real)

void copywatch_note_write(copywatch *watch, long long offset, long long length, int ok) {
    pthread_mutex_lock(&watch->lock);
    if (!ok) {
        watch->in_order = 0;
    } else if (offset + length > watch->page_size) {
        long long at = watch->settled;
        if (at == PENDING_BYTE && offset == at + watch->page_size) {
            at = offset;  /* the lock-byte page: SQLite never writes it, it stays a hole of zeros */
        }
        if (offset == at) {
            long long before = watch->settled;
            watch->settled = at + length;
            if (before < watch->target && watch->settled >= watch->target) {
                pthread_cond_broadcast(&watch->moved);
            }
        } else {
            watch->in_order = 0;  /* a gap, or bytes below `settled` written again */
        }
    }
    pthread_mutex_unlock(&watch->lock);
}

static void release(copywatch *watch) {
    pthread_mutex_lock(&watches_lock);
    int left = --watch->references;
    pthread_mutex_unlock(&watches_lock);
    if (left == 0) {
        pthread_mutex_destroy(&watch->lock);
        pthread_cond_destroy(&watch->moved);
        free(watch->path);
        free(watch);
    }
}

static int w_close(sqlite3_file *file) {
    int rc = REAL(file)->pMethods ? REAL(file)->pMethods->xClose(REAL(file)) : SQLITE_OK;
    if (((watched_file *)file)->watch) {
        release(((watched_file *)file)->watch);
        ((watched_file *)file)->watch = NULL;
    }
    file->pMethods = NULL;
    return rc;
}

static int w_read(sqlite3_file *file, void *buffer, int amount, sqlite3_int64 offset) {
    return REAL(file)->pMethods->xRead(REAL(file), buffer, amount, offset);
}

static int w_write(sqlite3_file *file, const void *buffer, int amount, sqlite3_int64 offset) {
    int rc = REAL(file)->pMethods->xWrite(REAL(file), buffer, amount, offset);
    copywatch *watch = ((watched_file *)file)->watch;
    if (watch) {
        copywatch_note_write(watch, offset, amount, rc == SQLITE_OK);
    }
    return rc;
}

static int w_truncate(sqlite3_file *file, sqlite3_int64 size) {
    copywatch *watch = ((watched_file *)file)->watch;
    if (watch) {
        pthread_mutex_lock(&watch->lock);
        if (size < watch->settled) {
            watch->in_order = 0;
        }
        pthread_mutex_unlock(&watch->lock);
    }
    return REAL(file)->pMethods->xTruncate(REAL(file), size);
}

static int w_sync(sqlite3_file *file, int flags) { return REAL(file)->pMethods->xSync(REAL(file), flags); }
static int w_file_size(sqlite3_file *file, sqlite3_int64 *size) { return REAL(file)->pMethods->xFileSize(REAL(file), size); }
static int w_lock(sqlite3_file *file, int level) { return REAL(file)->pMethods->xLock(REAL(file), level); }
static int w_unlock(sqlite3_file *file, int level) { return REAL(file)->pMethods->xUnlock(REAL(file), level); }
static int w_check_reserved(sqlite3_file *file, int *out) { return REAL(file)->pMethods->xCheckReservedLock(REAL(file), out); }
static int w_file_control(sqlite3_file *file, int op, void *arg) { return REAL(file)->pMethods->xFileControl(REAL(file), op, arg); }
static int w_sector_size(sqlite3_file *file) { return REAL(file)->pMethods->xSectorSize(REAL(file)); }
static int w_device(sqlite3_file *file) { return REAL(file)->pMethods->xDeviceCharacteristics(REAL(file)); }
static int w_shm_map(sqlite3_file *file, int region, int size, int extend, void volatile **out) {
    return REAL(file)->pMethods->xShmMap(REAL(file), region, size, extend, out);
}
static int w_shm_lock(sqlite3_file *file, int offset, int n, int flags) { return REAL(file)->pMethods->xShmLock(REAL(file), offset, n, flags); }
static void w_shm_barrier(sqlite3_file *file) { REAL(file)->pMethods->xShmBarrier(REAL(file)); }
static int w_shm_unmap(sqlite3_file *file, int delete_flag) { return REAL(file)->pMethods->xShmUnmap(REAL(file), delete_flag); }

/* No memory-mapped I/O through this VFS: every page is read and written with xRead/xWrite, so
 * every write is seen. */
static int w_fetch(sqlite3_file *file, sqlite3_int64 offset, int amount, void **out) {
    (void)file; (void)offset; (void)amount;
    *out = NULL;
    return SQLITE_OK;
}
static int w_unfetch(sqlite3_file *file, sqlite3_int64 offset, void *pointer) {
    (void)file; (void)offset; (void)pointer;
    return SQLITE_OK;
}

static const sqlite3_io_methods methods = {
    3, w_close, w_read, w_write, w_truncate, w_sync, w_file_size, w_lock, w_unlock, w_check_reserved,
    w_file_control, w_sector_size, w_device, w_shm_map, w_shm_lock, w_shm_barrier, w_shm_unmap, w_fetch, w_unfetch,
};

/* The watch of `path`, with one more reference when `retain`. */
static copywatch *find_watch(const char *path, int retain) {
    copywatch *found = NULL;
    pthread_mutex_lock(&watches_lock);
    for (copywatch *watch = watches; watch && path; watch = watch->next) {
        if (strcmp(watch->path, path) == 0) {
            found = watch;
            found->references += retain;
            break;
        }
    }
    pthread_mutex_unlock(&watches_lock);
    return found;
}

static int w_open(sqlite3_vfs *self, const char *name, sqlite3_file *file, int flags, int *out_flags) {
    (void)self;
    watched_file *wrapped = (watched_file *)file;
    wrapped->real = (sqlite3_file *)&wrapped[1];
    wrapped->watch = (flags & SQLITE_OPEN_MAIN_DB) ? find_watch(name, 1) : NULL;
    int rc = below->xOpen(below, name, wrapped->real, flags, out_flags);
    file->pMethods = wrapped->real->pMethods ? &methods : NULL;
    if (!file->pMethods && wrapped->watch) {  /* not opened: SQLite will not close it */
        release(wrapped->watch);
        wrapped->watch = NULL;
    }
    return rc;
}

static int w_delete(sqlite3_vfs *self, const char *name, int sync_dir) { (void)self; return below->xDelete(below, name, sync_dir); }
static int w_access(sqlite3_vfs *self, const char *name, int flags, int *out) { (void)self; return below->xAccess(below, name, flags, out); }
static int w_full_pathname(sqlite3_vfs *self, const char *name, int size, char *out) { (void)self; return below->xFullPathname(below, name, size, out); }
static void *w_dl_open(sqlite3_vfs *self, const char *name) { (void)self; return below->xDlOpen(below, name); }
static void w_dl_error(sqlite3_vfs *self, int size, char *out) { (void)self; below->xDlError(below, size, out); }
static void (*w_dl_sym(sqlite3_vfs *self, void *handle, const char *symbol))(void) { (void)self; return below->xDlSym(below, handle, symbol); }
static void w_dl_close(sqlite3_vfs *self, void *handle) { (void)self; below->xDlClose(below, handle); }
static int w_randomness(sqlite3_vfs *self, int size, char *out) { (void)self; return below->xRandomness(below, size, out); }
static int w_sleep(sqlite3_vfs *self, int microseconds) { (void)self; return below->xSleep(below, microseconds); }
static int w_current_time(sqlite3_vfs *self, double *out) { (void)self; return below->xCurrentTime(below, out); }
static int w_last_error(sqlite3_vfs *self, int size, char *out) { (void)self; return below->xGetLastError ? below->xGetLastError(below, size, out) : 0; }
static int w_current_time_int64(sqlite3_vfs *self, sqlite3_int64 *out) { (void)self; return below->xCurrentTimeInt64(below, out); }

static void register_once(void) {
    below = sqlite3_vfs_find(NULL);
    if (!below || below->iVersion < 2) {
        return;
    }
    memset(&vfs, 0, sizeof vfs);
    vfs.iVersion = 2;
    vfs.szOsFile = (int)sizeof(watched_file) + below->szOsFile;
    vfs.mxPathname = below->mxPathname;
    vfs.zName = "copy-watch";
    vfs.xOpen = w_open;
    vfs.xDelete = w_delete;
    vfs.xAccess = w_access;
    vfs.xFullPathname = w_full_pathname;
    vfs.xDlOpen = w_dl_open;
    vfs.xDlError = w_dl_error;
    vfs.xDlSym = w_dl_sym;
    vfs.xDlClose = w_dl_close;
    vfs.xRandomness = w_randomness;
    vfs.xSleep = w_sleep;
    vfs.xCurrentTime = w_current_time;
    vfs.xGetLastError = w_last_error;
    vfs.xCurrentTimeInt64 = w_current_time_int64;
    registered = sqlite3_vfs_register(&vfs, 0);
}

int copywatch_register(void) {
    pthread_once(&once, register_once);
    return registered;
}

const char *copywatch_vfs_name(void) { return "copy-watch"; }

int copywatch_sqlite_version(void) { return sqlite3_libversion_number(); }

copywatch *copywatch_begin(const char *path, int page_size) {
    if (page_size <= 0 || find_watch(path, 0)) {
        return NULL;
    }
    copywatch *watch = calloc(1, sizeof *watch);
    if (!watch || !(watch->path = strdup(path))) {
        free(watch);
        return NULL;
    }
    watch->page_size = page_size;
    watch->settled = page_size;
    watch->in_order = 1;
    watch->references = 1;
    pthread_mutex_init(&watch->lock, NULL);
    pthread_cond_init(&watch->moved, NULL);
    pthread_mutex_lock(&watches_lock);
    watch->next = watches;
    watches = watch;
    pthread_mutex_unlock(&watches_lock);
    return watch;
}

long long copywatch_wait(copywatch *watch, long long target, int *finished) {
    pthread_mutex_lock(&watch->lock);
    watch->target = target;
    while (watch->settled < target && !watch->finished) {
        pthread_cond_wait(&watch->moved, &watch->lock);
    }
    long long settled = watch->settled;
    *finished = watch->finished;
    pthread_mutex_unlock(&watch->lock);
    return settled;
}

void copywatch_finish(copywatch *watch) {
    pthread_mutex_lock(&watch->lock);
    watch->finished = 1;
    pthread_cond_broadcast(&watch->moved);
    pthread_mutex_unlock(&watch->lock);
}

int copywatch_in_order(copywatch *watch) {
    pthread_mutex_lock(&watch->lock);
    int in_order = watch->in_order;
    pthread_mutex_unlock(&watch->lock);
    return in_order;
}

void copywatch_end(copywatch *watch) {
    pthread_mutex_lock(&watches_lock);
    for (copywatch **link = &watches; *link; link = &(*link)->next) {
        if (*link == watch) {
            *link = watch->next;
            break;
        }
    }
    pthread_mutex_unlock(&watches_lock);
    release(watch);
}
