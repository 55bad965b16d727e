/* keys.c: the signing-key area of the repository, written over the
 * driver (driver.h). The keys table exists on PostgreSQL only (several
 * instances share their keys through it; see src/sec/dbstore.c), so its
 * statements are PostgreSQL's alone and only pg.c lists this area in its
 * repo_ops. */
#include "flows.h"

#include <string.h>

enum { K_LIST, K_LOCK, K_ANY, K_COUNT, K_ADD, K_PRUNE, K_NSTMT };

static struct db_stmt sql[K_NSTMT] = {
    [K_LIST] = DB_PG_ONLY("SELECT kid, sealed, created_at, signs_from "
                          "FROM auth_keys ORDER BY signs_from, kid "
                          "LIMIT $1"),
    /* Instances starting at once on an empty database queue here, so
     * that one first key is stored. (The count gives the lock's void
     * result a type.) */
    [K_LOCK] = DB_PG_ONLY("SELECT count(*) FROM "
                          "(SELECT pg_advisory_xact_lock(4242000101)) l"),
    [K_ANY] = DB_PG_ONLY("SELECT 1 FROM auth_keys WHERE kid <> '"
                         REPO_KEY_REFRESH "' LIMIT 1"),
    [K_COUNT] = DB_PG_ONLY("SELECT count(*) FROM auth_keys"),
    [K_ADD] = DB_PG_ONLY("INSERT INTO auth_keys (kid, sealed, created_at, "
                         "signs_from) VALUES ($1, $2, $3, $4) "
                         "ON CONFLICT (kid) DO NOTHING"),
    /* A signing key goes once its successor has signed (from at or
     * before $1) since before $2; the refresh-derivation key stays. */
    [K_PRUNE] = DB_PG_ONLY("DELETE FROM auth_keys k WHERE k.kid <> '"
                           REPO_KEY_REFRESH "' AND (SELECT "
                           "min(n.signs_from) FROM auth_keys n WHERE "
                           "n.kid <> '" REPO_KEY_REFRESH "' AND "
                           "n.signs_from > k.signs_from AND "
                           "n.signs_from <= $1) < $2"),
};

enum as_err db_keys_list(void *impl, struct key_row *out, size_t cap,
                         size_t *n, struct arena *a)
{
    const struct db_val *kid, *sealed;
    struct db_rows r;
    struct db_tx t;
    size_t i;

    db_open(&t, impl, "keys_list", false, a);
    if (DB_RUN(&t, &sql[K_LIST], &r, db_int((int64_t)cap)) && r.n > cap)
        db_refuse(&t, AS_ERR_INTERNAL);
    for (i = 0; t.err == AS_OK && i < r.n; i++) {
        kid = db_at(&r, i, 0);
        sealed = db_at(&r, i, 1);
        if (!db_str(kid) || kid->len >= sizeof out[i].kid ||
            sealed->null || sealed->type != DB_BLOB) {
            db_refuse(&t, AS_ERR_INTERNAL);
            break;
        }
        memcpy(out[i].kid, kid->s, kid->len + 1);
        out[i].sealed = sealed->b;
        out[i].sealed_len = sealed->len;
        out[i].created_at = db_i64(db_at(&r, i, 2));
        out[i].signs_from = db_i64(db_at(&r, i, 3));
        *n = i + 1;
    }
    return db_close(&t);
}

enum as_err db_keys_add(void *impl, const struct key_row *rows, size_t n,
                        bool only_if_empty, bool *added)
{
    struct db_rows r;
    struct db_tx t;
    bool have = false;
    size_t i;
    enum as_err err;

    db_open(&t, impl, "keys_add", true, NULL);
    db_run(&t, &sql[K_LOCK], NULL, 0, &r);
    if (only_if_empty && db_run(&t, &sql[K_ANY], NULL, 0, &r))
        have = r.n > 0;
    /* The instances read at most REPO_KEYS_MAX keys: counted under the
     * lock, or two rotations at once, each counting before the other's
     * insert, stored one more, a signer no instance loaded until older
     * keys were pruned, when it signed at once, never published. */
    if (!only_if_empty && db_run(&t, &sql[K_COUNT], NULL, 0, &r) &&
        r.n == 1 && (uint64_t)db_i64(db_at(&r, 0, 0)) + n > REPO_KEYS_MAX)
        db_refuse(&t, AS_ERR_CONFLICT);
    for (i = 0; !have && i < n && t.err == AS_OK; i++)
        DB_RUN(&t, &sql[K_ADD], &r, db_text(rows[i].kid),
               db_blob(rows[i].sealed, rows[i].sealed_len),
               db_int(rows[i].created_at), db_int(rows[i].signs_from));
    err = db_close(&t);
    if (err == AS_OK)
        *added = !have;
    return err;
}

enum as_err db_keys_prune(void *impl, int64_t now, int64_t before)
{
    struct db_rows r;
    struct db_tx t;

    db_open(&t, impl, "keys_prune", true, NULL);
    DB_RUN(&t, &sql[K_PRUNE], &r, db_int(now), db_int(before));
    return db_close(&t);
}
