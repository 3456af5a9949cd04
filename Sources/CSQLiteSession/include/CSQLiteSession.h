#ifndef CSQLITESESSION_H
#define CSQLITESESSION_H

/// SQLite's session extension, for the change journal. Debian's libsqlite3 is built with
/// SQLITE_ENABLE_SESSION and SQLITE_ENABLE_PREUPDATE_HOOK, but sqlite3.h declares the API only
/// when both are defined; this shim defines them in its own translation unit, so that Swift sees
/// only these few functions with opaque pointers (`db` is a `sqlite3 *`, from GRDB's
/// `Database.sqliteConnection`).

/// Starts recording every change to every table of `db`'s main database. On success returns 0
/// (SQLITE_OK) and the session in `*session`; otherwise an SQLite result code.
int csession_begin(void *db, void **session);

/// The changeset of what `session` recorded so far, read from `db` as it is now (inside the
/// open transaction): `*size` bytes at `*bytes`, to release with `csession_free`. A change that a
/// rolled-back savepoint undid is not in it. Returns 0 or an SQLite result code.
int csession_changeset(void *session, int *size, void **bytes);

/// Whether the session recorded no change at all (1) or some (0).
int csession_is_empty(void *session);

/// Ends the session.
void csession_end(void *session);

/// Releases memory SQLite allocated (a changeset).
void csession_free(void *bytes);

/// Applies a changeset to `db` inside a savepoint. Any conflict (a row not as the changeset
/// expects, a constraint, a foreign key) aborts the whole changeset and leaves `db` as it was:
/// the journal is replayed only onto exactly the state it was recorded against. On a conflict,
/// `*conflict` is its kind (SQLITE_CHANGESET_DATA 1, NOTFOUND 2, CONFLICT 3, CONSTRAINT 4,
/// FOREIGN_KEY 5) and `table` receives the table's name (up to `table_size` bytes); the
/// result is SQLITE_ABORT (4). Returns 0 when every change applied.
int csession_apply(void *db, int size, const void *bytes, int *conflict, char *table, int table_size);

/// The number of changes (rows) in a changeset, or -1 when it does not parse.
int csession_count(int size, const void *bytes);

#endif
