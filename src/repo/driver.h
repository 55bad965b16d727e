#ifndef AUTH_DRIVER_H          /* driver.h: what a backend gives the flows */
#define AUTH_DRIVER_H
/* The storage flows (src/repo/users.c and the other area files) are
 * written once, above the backends, against this small interface: check
 * out a connection, maybe open a transaction, run numbered statements
 * with typed arguments, read typed rows. A backend (sqlite.c, pg.c) only
 * connects, binds, types values, classifies errors and migrates; it
 * decides nothing.
 *
 * An area file holds an enum of its statements and a table of their SQL:
 *
 *     enum { U_INSERT, U_BY_ID, U_COUNT };
 *     static struct db_stmt sql[U_COUNT] = {
 *         [U_INSERT] = DB_SQL("INSERT INTO users (id) VALUES ($1)"),
 *         [U_BY_ID]  = DB_SPLIT("SELECT ... instr(...)",      (SQLite)
 *                               "SELECT ... strpos(...)"),   (PostgreSQL)
 *         [U_LOCK]   = DB_PG_ONLY("SELECT ... FOR UPDATE"),
 *     };
 *
 * and a flow reads as a straight line, checked once at the end:
 *
 *     struct db_tx t;
 *     struct db_rows rows;
 *
 *     db_open(&t, impl, "user_delete", true, NULL);
 *     DB_RUN(&t, &sql[U_LOCK], &rows, db_text(id));
 *     if (rows.n == 0)
 *         db_refuse(&t, AS_ERR_NOT_FOUND);
 *     ...
 *     return db_close(&t);            (commit, or roll back on an error)
 *
 * Placeholders are $1..$n in both dialects (SQLite binds them by name).
 * Booleans: bind db_bool(); read with db_flag(), which also takes
 * SQLite's 0/1. A statement is prepared once per connection on both
 * backends (PostgreSQL: a named prepared statement). */
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "err.h"
#include "uuid.h"

#define DB_STMT_MAX 256          /* statements of all areas together */
#define DB_ARGS_MAX 16           /* arguments of one statement */

enum db_type { DB_TEXT, DB_INT, DB_BOOL, DB_BLOB };

/* One argument or one column value. An argument has its type even when
 * it is NULL (PostgreSQL prepares with it). Strings and bytes of a column
 * value live in the arena given to the call. */
struct db_val {
    enum db_type type;
    bool null;
    int64_t i;                   /* DB_INT; DB_BOOL: 0 or 1 */
    const char *s;               /* DB_TEXT, NUL-terminated */
    const uint8_t *b;            /* DB_BLOB */
    size_t len;                  /* bytes of s or b */
};

/* The rows a statement returned, row by row (`cols` values each), in the
 * arena; `changed` is the count of rows an INSERT, UPDATE or DELETE
 * touched (with RETURNING too). */
struct db_rows {
    size_t n, cols;
    const struct db_val *v;
    int64_t changed;
};

/* One statement of an area's table. A NULL text runs nothing on that
 * backend (zero rows): SQLite's writers already hold the database lock
 * (BEGIN IMMEDIATE), so row locks exist on PostgreSQL only. */
struct db_stmt {
    const char *sqlite;
    const char *pg;
    atomic_uint slot;            /* 1 + its cache slot, given on first use */
};

#define DB_SQL(text) { .sqlite = (text), .pg = (text) }
#define DB_SPLIT(sqlite_text, pg_text)                                     \
    { .sqlite = (sqlite_text), .pg = (pg_text) }
#define DB_PG_ONLY(pg_text) { .sqlite = NULL, .pg = (pg_text) }

/* Step (1) of the lock order (src/repo/users.c): every active admin's
 * row, in id order. */
#define DB_LOCK_ADMINS                                                     \
    DB_PG_ONLY("SELECT id FROM users WHERE role = 'admin' AND is_active "  \
               "ORDER BY id FOR NO KEY UPDATE")

struct db_conn;                  /* a backend's connection, one thread's */

/* Reads the rows of a statement sent ahead (db_driver.send): AS_OK to go
 * on, or the failure that ends the transaction. */
typedef enum as_err db_answer_fn(void *arg, const struct db_rows *rows);

/* What each backend implements. Every function returns AS_OK or an error
 * of the table (unique email -> AS_ERR_EMAIL_TAKEN, missing foreign row
 * -> AS_ERR_NOT_FOUND, lost connection or timeout -> AS_ERR_UNAVAILABLE,
 * a server that did not answer at all in time -> AS_ERR_DB_UNREACHABLE,
 * deadlock or serialization failure -> AS_ERR_LOCK_CONFLICT, which makes
 * src/repo/repo.c run the whole call again; text that PostgreSQL cannot
 * store -> AS_ERR_VALIDATION). */
struct db_driver {
    /* Checks out a connection for operation `op` (named in logs). */
    enum as_err (*acquire)(void *impl, const char *op, struct db_conn **out);
    /* Opens a write transaction: every writer of the SQLite file waits
     * for it (BEGIN IMMEDIATE); PostgreSQL's READ COMMITTED. */
    enum as_err (*begin)(struct db_conn *c);
    enum as_err (*commit)(struct db_conn *c);
    void (*rollback)(struct db_conn *c);
    /* Runs `st` with `n` arguments; `out` gets its rows, in `a`. */
    enum as_err (*run)(struct db_conn *c, struct db_stmt *st,
                       const struct db_val *args, size_t n,
                       struct db_rows *out, struct arena *a);
    /* Sends `st` inside the open transaction without waiting for its
     * answer, which comes with the next run, commit or rollback of `c`:
     * a failure then is the call's, and `fn` (NULL: nobody reads the
     * rows) gets the rows, in the order sent, before that call returns;
     * with `gate`, before any COMMIT is sent (fn may refuse). NULL: a
     * backend that runs every statement at once (driver.c runs it). */
    enum as_err (*send)(struct db_conn *c, struct db_stmt *st,
                        const struct db_val *args, size_t n,
                        db_answer_fn *fn, void *arg, bool gate,
                        struct arena *a);
    /* Gives the connection back (rolling back what is still open). */
    void (*release)(void *impl, struct db_conn *c);
};

/* The first member of each backend's state, the `impl` of its repo_ops,
 * so that the flows can reach the driver (zeroed, then `drv` set). */
struct db {
    const struct db_driver *drv;
    _Atomic int64_t prune_rest; /* sessions.c: no pruning of sessions
                                   that ended before this cut-off */
    _Atomic int64_t idle_rest;  /* login_failures.c: likewise for idle
                                   counts */
};

/* True while a pruning at cut-off `before` may skip its work: one that
 * found nothing set `rest` (its cut-off + `span` ms) and `before` is at
 * most `span` behind it (a clock set back past it prunes again). */
static inline bool db_prune_rests(_Atomic int64_t *rest, int64_t before,
                                  int64_t span)
{
    int64_t r = atomic_load(rest);

    return before < r && r - before <= span;
}

/* The cache slot of `st` (0 .. DB_STMT_MAX - 1), given on its first use;
 * DB_STMT_MAX when the slots ran out (a bug: raise DB_STMT_MAX). */
unsigned db_stmt_slot(struct db_stmt *st);

/* Round trips to a PostgreSQL server the calling thread has waited
 * for, in every flow so far (tests count them; SQLite makes none);
 * the backend counts one with db_round_trip(). */
uint64_t db_pg_round_trips(void);
void db_round_trip(void);

/* The backend could not reach the database for the calling thread's
 * call: a connect refused or failed, a connection lost or ended by the
 * server, no answer in time. Only these tell the readiness prober
 * (repo.c's settle()): a statement the server refused (a permission, a
 * statement_timeout, a full pool) says nothing of the database as a
 * whole, and counting it let one failing route keep /readyz at 503. */
void db_unreached(void);
/* Whether db_unreached() was called since the last db_take_unreached()
 * on this thread; clears it. */
bool db_take_unreached(void);

/* A backend found `version` in schema_migrations, which this build has no
 * migration of (a newer build migrated the database): logged, not
 * refused, so that instances of two builds can share one database
 * during a rolling deployment or a rollback (README.md, "Operations"). */
void db_unknown_migration(const char *backend, long long version);

/* ---- arguments ---- */

static inline struct db_val db_text(const char *s)     /* NULL: SQL NULL */
{
    return (struct db_val){ .type = DB_TEXT, .null = !s, .s = s };
}

static inline struct db_val db_int(int64_t i)
{
    return (struct db_val){ .type = DB_INT, .i = i };
}

/* An integer that is SQL NULL when 0 (an unset time). */
static inline struct db_val db_time(int64_t i)
{
    return (struct db_val){ .type = DB_INT, .null = i == 0, .i = i };
}

static inline struct db_val db_bool(bool b)
{
    return (struct db_val){ .type = DB_BOOL, .i = b };
}

static inline struct db_val db_blob(const uint8_t *b, size_t len)
{
    return (struct db_val){ .type = DB_BLOB, .null = !b, .b = b,
                            .len = len };
}

/* ---- one use of a connection by a flow ---- */

/* The state of a flow: its connection, the arena rows go to, and the
 * first failure (sticky: once set, every later step does nothing). */
struct db_tx {
    struct db *db;
    struct db_conn *conn;
    struct arena *a;             /* the caller's, or `own` */
    struct arena *own;           /* scratch arena, freed by db_close() */
    bool tx;                     /* a transaction is open */
    enum as_err err;
};

/* The caller the calling thread writes for (repo_act_as), or NULL. */
const struct repo_actor *db_actor(void);
/* Checks out a connection of backend `impl` for `op`, opening a write
 * transaction when `write`; rows go to `a` (NULL: a scratch arena). A
 * failure is kept in t->err; db_close() must follow in every case. A
 * write transaction opened for a signed-in caller (repo_act_as) first
 * checks that the caller may still write: AS_ERR_INVALID_TOKEN when its
 * session ended or its account is off, AS_ERR_FORBIDDEN when it acts as
 * an admin and is one no more. So every flow that changes something for
 * such a caller opens a write transaction, even for one statement. */
void db_open(struct db_tx *t, void *impl, const char *op, bool write,
             struct arena *a);
/* Runs `st` unless an earlier step failed; `out` (never NULL) gets its
 * rows, or none after a failure. True when it ran well. */
bool db_run(struct db_tx *t, struct db_stmt *st, const struct db_val *args,
            size_t n, struct db_rows *out);
/* Runs `st` (bound to `arg`, a delete of at most `batch` rows) in a write
 * transaction of its own, after `first` (NULL: none; bound to `arg` too,
 * a lock say), again until it deletes fewer: a large delete that never
 * holds the database for long. */
enum as_err db_run_batches(void *impl, const char *op, struct db_stmt *first,
                           struct db_stmt *st, struct db_val arg,
                           int64_t batch);
/* db_run() with its arguments listed: DB_RUN(t, st, out, db_text(id)). */
#define DB_RUN(t, st, out, ...)                                            \
    db_run((t), (st), (const struct db_val[]){ __VA_ARGS__ },              \
           sizeof((const struct db_val[]){ __VA_ARGS__ })                  \
               / sizeof(struct db_val),                                    \
           (out))
/* What a flow reads in the rows of a statement it sent ahead: a check
 * refuses with db_refuse(); a note only copies what it needs. */
typedef void db_check_fn(struct db_tx *t, const struct db_rows *r,
                         void *ctx);

/* Sends `st` ahead inside the write transaction: its answer is awaited
 * only with the flow's next db_run() or db_close(), so PostgreSQL gets
 * the statements of a transaction together, one round trip for several
 * (README.md, "Performance"); SQLite runs it at once. Its failure is the
 * flow's, from then on. DB_SEND reads no rows; DB_CHECK's `check` sees
 * them, in order, before the flow's next step or the COMMIT; DB_NOTE's
 * `note` may see them with the COMMIT (it must not refuse). A refusal
 * rolls the whole transaction back, statements sent after the checked
 * one included, so a flow sends ahead only what may run before its
 * check is seen: rows written then are undone, locks held a moment
 * longer. Outside a write transaction it is db_run(). */
void db_send(struct db_tx *t, struct db_stmt *st, const struct db_val *args,
             size_t n, db_check_fn *check, bool gate, void *ctx);
#define DB_ARGS_(...)                                                      \
    (const struct db_val[]){ __VA_ARGS__ },                                \
        sizeof((const struct db_val[]){ __VA_ARGS__ })                     \
            / sizeof(struct db_val)
#define DB_SEND(t, st, ...)                                                \
    db_send((t), (st), DB_ARGS_(__VA_ARGS__), NULL, false, NULL)
#define DB_CHECK(t, st, check, ctx, ...)                                   \
    db_send((t), (st), DB_ARGS_(__VA_ARGS__), (check), true, (ctx))
#define DB_NOTE(t, st, note, ctx, ...)                                     \
    db_send((t), (st), DB_ARGS_(__VA_ARGS__), (note), false, (ctx))
/* A note that copies the rows a statement changed into the int64_t at
 * `ctx`. */
db_check_fn db_note_changed;
/* Records failure `e` (the first one wins). */
void db_refuse(struct db_tx *t, enum as_err e);
/* Commits (or, after a failure, rolls back), gives the connection back,
 * frees the scratch arena; returns the outcome of the whole flow. */
enum as_err db_close(struct db_tx *t);

/* ---- reading values ---- */

/* Value `col` of row `row`. */
static inline const struct db_val *db_at(const struct db_rows *r,
                                         size_t row, size_t col)
{
    return &r->v[row * r->cols + col];
}

/* An integer or boolean value (SQL NULL reads 0). */
static inline int64_t db_i64(const struct db_val *v)
{
    return v->null ? 0 : v->i;
}

static inline bool db_flag(const struct db_val *v)
{
    return !v->null && v->i != 0;
}

/* A text value (in the arena); NULL for SQL NULL. */
static inline const char *db_str(const struct db_val *v)
{
    return v->null || v->type != DB_TEXT ? NULL : v->s;
}

/* Copies id value `v` into `out`; a value that cannot be an id fails the
 * flow (AS_ERR_INTERNAL, a corrupt row). */
void db_id(struct db_tx *t, const struct db_val *v, char out[UUID_STR_LEN]);

#endif
