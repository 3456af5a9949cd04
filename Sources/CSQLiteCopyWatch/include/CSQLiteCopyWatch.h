#ifndef CSQLITECOPYWATCH_H
#define CSQLITECOPYWATCH_H

/// A pass-through SQLite VFS ("copy-watch", over the default one) that tells a waiting thread
/// which bytes of one file have been written and will not change: the backup hashes its copy on
/// another thread while SQLite's backup API is still writing it.
///
/// A watch covers the file from `page_size` on (page 1 is rewritten at every commit and is
/// checked separately). Its `settled` count grows while every write lands exactly at its end:
/// each byte below it was written once and is now in the file. The one page SQLite never writes,
/// the lock-byte page at 1 GiB, may be skipped: it stays a hole, read as zeros. Any other write (a gap, a
/// rewrite), a truncation below it, or a failed write marks the watch out of order for good: the
/// caller then hashes the finished file instead.

typedef struct copywatch copywatch;

/// Registers the VFS once (thread-safe). Returns 0 (SQLITE_OK) or an SQLite result code.
int copywatch_register(void);

/// The VFS's name, for a URI filename's `vfs=` parameter.
const char *copywatch_vfs_name(void);

/// sqlite3_libversion_number(): the version SQLite writes into a database header it commits.
int copywatch_sqlite_version(void);

/// Starts watching the file at `path` (as SQLite will open it: the same string), whose pages are
/// `page_size` bytes. NULL when out of memory or when another watch has that path.
copywatch *copywatch_begin(const char *path, int page_size);

/// Waits until `settled` reaches `target` or the watch is finished, and returns `settled` (bytes
/// from offset 0: page 1's size plus the settled bytes after it); `*finished` tells which.
long long copywatch_wait(copywatch *watch, long long target, int *finished);

/// What the VFS does after each write to the watched file (`ok` 0 when the write failed); tests
/// call it directly.
void copywatch_note_write(copywatch *watch, long long offset, long long length, int ok);

/// Marks the watch finished (after the database connection closed): waiters return.
void copywatch_finish(copywatch *watch);

/// 1 while every write past page 1 landed in order, else 0.
int copywatch_in_order(copywatch *watch);

/// Stops watching (after finish, once no thread waits on it); the watch is freed once the file
/// SQLite opened with it is closed too.
void copywatch_end(copywatch *watch);

#endif
