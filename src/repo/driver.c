/* driver.c: the steps every storage flow is made of (see driver.h). */
#include "driver.h"

#include <string.h>

#include "log.h"

static atomic_uint next_slot;    /* slots given so far */

unsigned db_stmt_slot(struct db_stmt *st)
{
    unsigned have = atomic_load_explicit(&st->slot, memory_order_acquire);
    unsigned mine;

    if (have)
        return have - 1;
    mine = atomic_fetch_add(&next_slot, 1) + 1;
    if (mine > DB_STMT_MAX)
        return DB_STMT_MAX;
    /* Two first uses at once: the one stored first wins, the other slot
     * stays unused. */
    if (!atomic_compare_exchange_strong(&st->slot, &have, mine))
        mine = have;
    return mine - 1;
}

void db_open(struct db_tx *t, void *impl, const char *op, bool write,
             struct arena *a)
{
    memset(t, 0, sizeof *t);
    t->db = impl;
    t->a = a;
    if (!a) {
        t->own = t->a = arena_new();
        if (!t->own) {
            t->err = AS_ERR_NOMEM;
            return;
        }
    }
    t->err = t->db->drv->acquire(impl, op, &t->conn);
    if (t->err != AS_OK) {
        t->conn = NULL;
        return;
    }
    if (write) {
        t->err = t->db->drv->begin(t->conn);
        t->tx = t->err == AS_OK;
    }
}

bool db_run(struct db_tx *t, struct db_stmt *st, const struct db_val *args,
            size_t n, struct db_rows *out)
{
    memset(out, 0, sizeof *out);
    if (t->err != AS_OK)
        return false;
    t->err = t->db->drv->run(t->conn, st, args, n, out, t->a);
    if (t->err != AS_OK)
        memset(out, 0, sizeof *out);
    return t->err == AS_OK;
}

void db_refuse(struct db_tx *t, enum as_err e)
{
    if (t->err == AS_OK)
        t->err = e;
}

enum as_err db_close(struct db_tx *t)
{
    if (t->conn) {
        if (t->tx && t->err == AS_OK)
            t->err = t->db->drv->commit(t->conn);
        else if (t->tx)
            t->db->drv->rollback(t->conn);
        t->db->drv->release(t->db, t->conn);
        t->conn = NULL;
    }
    arena_free(t->own);
    t->own = NULL;
    return t->err;
}

void db_id(struct db_tx *t, const struct db_val *v, char out[UUID_STR_LEN])
{
    out[0] = '\0';
    if (t->err != AS_OK)
        return;
    if (v->null || v->type != DB_TEXT || v->len == 0 ||
        v->len >= UUID_STR_LEN) {
        log_event(LOG_ERROR, "repo.db_error", NULL,
                  json_pack("{s:s}", "message", "malformed id in a row"));
        db_refuse(t, AS_ERR_INTERNAL);
        return;
    }
    memcpy(out, v->s, v->len);
    out[v->len] = '\0';
}
