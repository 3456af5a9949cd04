#define SQLITE_ENABLE_SESSION 1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include <sqlite3.h>
#include <string.h>
#include "CSQLiteSession.h"

int csession_begin(void *db, void **session) {
    sqlite3_session *created = NULL;
    int rc = sqlite3session_create((sqlite3 *)db, "main", &created);
    if (rc != SQLITE_OK) return rc;
    rc = sqlite3session_attach(created, NULL);
    if (rc != SQLITE_OK) {
        sqlite3session_delete(created);
        return rc;
    }
    *session = created;
    return SQLITE_OK;
}

int csession_changeset(void *session, int *size, void **bytes) {
    return sqlite3session_changeset((sqlite3_session *)session, size, bytes);
}

int csession_is_empty(void *session) {
    return sqlite3session_isempty((sqlite3_session *)session);
}

void csession_end(void *session) {
    sqlite3session_delete((sqlite3_session *)session);
}

void csession_free(void *bytes) {
    sqlite3_free(bytes);
}

struct conflict_report {
    int kind;
    char *table;
    int table_size;
};

static int abort_on_conflict(void *context, int kind, sqlite3_changeset_iter *iterator) {
    struct conflict_report *report = context;
    if (report->kind == 0) {
        report->kind = kind;
        const char *table = NULL;
        int columns = 0, op = 0, indirect = 0;
        if (report->table && report->table_size > 0
            && sqlite3changeset_op(iterator, &table, &columns, &op, &indirect) == SQLITE_OK && table) {
            strncpy(report->table, table, (size_t)report->table_size - 1);
            report->table[report->table_size - 1] = 0;
        }
    }
    return SQLITE_CHANGESET_ABORT;
}

int csession_apply(void *db, int size, const void *bytes, int *conflict, char *table, int table_size) {
    struct conflict_report report = { 0, table, table_size };
    if (table && table_size > 0) table[0] = 0;
    int rc = sqlite3changeset_apply((sqlite3 *)db, size, (void *)bytes, NULL, abort_on_conflict, &report);
    *conflict = report.kind;
    return rc;
}

int csession_count(int size, const void *bytes) {
    sqlite3_changeset_iter *iterator = NULL;
    if (sqlite3changeset_start(&iterator, size, (void *)bytes) != SQLITE_OK) return -1;
    int count = 0;
    while (sqlite3changeset_next(iterator) == SQLITE_ROW) count++;
    int rc = sqlite3changeset_finalize(iterator);
    return rc == SQLITE_OK ? count : -1;
}
