/* dbstore.c: signing keys and the refresh-derivation key in PostgreSQL,
 * shared by every instance on one database (README.md, "Several
 * instances").
 *
 * Each row of auth_keys holds a private key sealed with
 * XChaCha20-Poly1305 under a key derived from AUTH_KEYS_SECRET, its kid
 * as associated data (a sealed key moved to another row does not open).
 * A signing key signs from its `signs_from` until a later key's
 * `signs_from` has come; then it is retired and still verifies for the
 * access-token lifetime + 60 s, after which it is neither loaded nor
 * kept. `keys rotate` adds a key whose `signs_from` is
 * AUTH_KEY_PUBLISH_SECONDS ahead, so every instance lists it in its JWKS
 * (they poll the table) before any of them signs with it. */
#include "sec/sec_int.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "log.h"
#include "repo.h"

#define SEAL_LABEL "auth-serve keys at rest v1"
#define SEAL_NONCE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define SEAL_ABYTES crypto_aead_xchacha20poly1305_ietf_ABYTES

/* What a load of the table takes: which rows, which one signs. */
struct pick {
    bool use[REPO_KEYS_MAX];     /* listed for verification */
    size_t signer;               /* index of the signing row */
    bool has_signer, has_refresh;
    size_t refresh;              /* index of the refresh row */
    uint8_t state[32];           /* digest of the above, for polling */
};

/* The AEAD key of AUTH_KEYS_SECRET. False when the secret is unset. */
static bool seal_key(const struct cfg *cfg,
                     uint8_t key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES])
{
    const char *s = cfg->keys_secret;

    if (!s || !s[0])
        return false;
    crypto_generichash(key, crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
                       (const unsigned char *)s, strlen(s),
                       (const unsigned char *)SEAL_LABEL,
                       sizeof SEAL_LABEL - 1);
    return true;
}

/* nonce || ciphertext of `len` bytes of `plain`, bound to `kid`. Caller
 * frees; NULL when out of memory. */
static uint8_t *seal(const uint8_t *key, const char *kid,
                     const unsigned char *plain, size_t len,
                     size_t *out_len)
{
    uint8_t *out = malloc(SEAL_NONCE + len + SEAL_ABYTES);
    unsigned long long clen = 0;

    if (!out)
        return NULL;
    randombytes_buf(out, SEAL_NONCE);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        out + SEAL_NONCE, &clen, plain, len, (const unsigned char *)kid,
        strlen(kid), NULL, out, key);
    *out_len = SEAL_NONCE + (size_t)clen;
    return out;
}

/* The plaintext of a sealed row, NUL-terminated (not counted); NULL when
 * it does not open with `key` (another secret, or tampered). Caller
 * wipes and frees. */
static unsigned char *unseal(const uint8_t *key, const struct key_row *row,
                             size_t *len)
{
    unsigned char *out;
    unsigned long long plen = 0;
    size_t n = row->sealed_len;

    if (n < SEAL_NONCE + SEAL_ABYTES || n > SEC_KEY_FILE_MAX)
        return NULL;
    out = malloc(n - SEAL_NONCE - SEAL_ABYTES + 1);
    if (!out)
        return NULL;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            out, &plen, NULL, row->sealed + SEAL_NONCE, n - SEAL_NONCE,
            (const unsigned char *)row->kid, strlen(row->kid), row->sealed,
            key) != 0) {
        free(out);
        return NULL;
    }
    out[plen] = '\0';
    *len = (size_t)plen;
    return out;
}

static bool is_refresh(const struct key_row *row)
{
    return strcmp(row->kid, REPO_KEY_REFRESH) == 0;
}

/* Chooses the rows of a load at `now` (rows ordered by signs_from): the
 * signer is the last signing row whose time has come (the first one if
 * none has: a clock far behind); rows after it are published ahead of
 * signing; rows before it are kept while retired less than `keep_ms`. */
static void pick_rows(const struct key_row *rows, size_t n, int64_t now,
                      int64_t keep_ms, struct pick *p)
{
    crypto_generichash_state st;
    size_t i, prev = 0;
    bool have_prev = false;

    memset(p, 0, sizeof *p);
    for (i = 0; i < n; i++) {
        if (is_refresh(&rows[i])) {
            p->has_refresh = true;
            p->refresh = i;
        } else if (!p->has_signer || rows[i].signs_from <= now) {
            p->has_signer = true;
            p->signer = i;
        }
    }
    for (i = 0; i < n; i++) {
        if (is_refresh(&rows[i]))
            continue;
        /* rows[prev] retired when rows[i] started signing */
        if (have_prev && prev < p->signer)
            p->use[prev] = rows[i].signs_from + keep_ms >= now;
        p->use[i] = i >= p->signer;
        prev = i;
        have_prev = true;
    }
    crypto_generichash_init(&st, NULL, 0, sizeof p->state);
    for (i = 0; i < n; i++) {
        if (!p->use[i] && !(p->has_signer && i == p->signer))
            continue;
        crypto_generichash_update(&st, (const unsigned char *)rows[i].kid,
                                  strlen(rows[i].kid) + 1);
        crypto_generichash_update(&st, (const unsigned char *)(i == p->signer
                                                                  ? "s" : "v"),
                                  1);
    }
    crypto_generichash_final(&st, p->state, sizeof p->state);
}

/* Adds one unsealed signing key to `k`. A key of another algorithm than
 * the configured one is skipped, unless it is the signer. */
static enum as_err add_row(const struct cfg *cfg, const uint8_t *key,
                           const struct key_row *row, bool signer,
                           struct sec_keys *k, char *why, size_t why_len)
{
    size_t len = 0, index = 0;
    unsigned char *pem = unseal(key, row, &len);
    EVP_PKEY *pk = pem ? sec_pkey_parse(pem, len, cfg->jwt_alg) : NULL;
    char fit[200], got[SEC_KID_MAX];
    json_t *jwk = NULL;
    enum as_err err = AS_ERR_INTERNAL;

    if (!pem)
        sec_why(why, why_len, "AUTH_KEYS_SECRET does not open key %s "
                "stored in the database (a different secret?)", row->kid);
    else if (!pk)
        sec_why(why, why_len, "key %s in the database is not a PEM "
                "private key", row->kid);
    else if (!sec_pkey_fits(pk, cfg->jwt_alg, fit, sizeof fit)) {
        if (!signer)
            err = AS_OK;
        else
            sec_why(why, why_len, "signing key %s in the database: %s "
                    "(run `AUTH_KEY_PUBLISH_SECONDS=0 auth-serve keys "
                    "rotate` after changing AUTH_JWT_ALG)", row->kid, fit);
        goto out;
    } else if ((jwk = sec_pkey_jwk(pk, cfg->jwt_alg, got)) == NULL ||
               strcmp(got, row->kid) != 0)
        sec_why(why, why_len, "key %s in the database does not hold the "
                "key its kid says", row->kid);
    else
        err = sec_keys_add(k, pk, &index);
    if (err == AS_OK && signer) {
        k->signer = index;
        k->sign = pem;
        k->sign_len = len;
        pem = NULL;
    }
out:
    json_decref(jwk);
    EVP_PKEY_free(pk);
    if (pem)
        sodium_memzero(pem, len);
    free(pem);
    return err;
}

/* The refresh-derivation key from its row. */
static enum as_err refresh_row(const uint8_t *key, const struct key_row *row,
                               struct sec_keys *k, char *why, size_t why_len)
{
    size_t len = 0;
    unsigned char *raw = unseal(key, row, &len);
    enum as_err err = AS_ERR_INTERNAL;

    if (raw && len == SEC_REFRESH_KEY_LEN) {
        memcpy(k->refresh_key, raw, SEC_REFRESH_KEY_LEN);
        err = AS_OK;
    } else
        sec_why(why, why_len, "AUTH_KEYS_SECRET does not open the "
                "refresh-derivation key stored in the database");
    if (raw)
        sodium_memzero(raw, len);
    free(raw);
    return err;
}

/* ---- the first key: imported from the keys folder, or generated ---- */

struct first {
    struct key_row rows[REPO_KEYS_MAX];
    uint8_t *sealed[REPO_KEYS_MAX];
    int64_t retired[REPO_KEYS_MAX];  /* Unix ms; current: INT64_MAX */
    size_t n;
    const uint8_t *key;
    int64_t now;
};

/* Seals one key into the next row of `f`. */
static enum as_err first_add(struct first *f, const char *kid,
                             const unsigned char *plain, size_t len,
                             int64_t retired)
{
    size_t i = f->n;

    if (i >= REPO_KEYS_MAX - 1 || strlen(kid) >= sizeof f->rows[i].kid)
        return AS_OK;                    /* more than we keep: left out */
    f->sealed[i] = seal(f->key, kid, plain, len, &f->rows[i].sealed_len);
    if (!f->sealed[i])
        return AS_ERR_NOMEM;
    memcpy(f->rows[i].kid, kid, strlen(kid) + 1);
    f->rows[i].sealed = f->sealed[i];
    f->rows[i].created_at = f->now;
    f->retired[i] = retired;
    f->n++;
    return AS_OK;
}

/* sec_store_each_fn: one key of the folder being imported. A key that is
 * not current and has no retirement stamp may still sign in a process
 * not reloaded yet: it counts as retired now. */
static enum as_err import_one(void *arg, const char *kid,
                              const unsigned char *pem, size_t len,
                              bool current, int64_t retired)
{
    struct first *f = arg;

    if (current)
        retired = INT64_MAX;
    else if (retired == 0)
        retired = f->now;
    else
        retired *= 1000;
    return first_add(f, kid, pem, len, retired);
}

static int by_retired(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* Gives imported keys times that keep their retirement: sorted by when
 * they retired, each one signs from when the one before it retired. */
static void first_order(struct first *f)
{
    struct { int64_t retired; size_t i; } ord[REPO_KEYS_MAX];
    size_t j;
    int64_t from = 0;

    for (j = 0; j < f->n; j++) {
        ord[j].retired = f->retired[j];
        ord[j].i = j;
    }
    qsort(ord, f->n, sizeof ord[0], by_retired);
    for (j = 0; j < f->n; j++) {
        f->rows[ord[j].i].signs_from = from;
        from = ord[j].retired;
    }
}

/* A fresh key of the configured algorithm as the only signing key. */
static enum as_err first_generate(const struct cfg *cfg, struct first *f,
                                  char *why, size_t why_len)
{
    EVP_PKEY *pk = sec_pkey_generate(cfg->jwt_alg);
    char kid[SEC_KID_MAX];
    json_t *jwk = pk ? sec_pkey_jwk(pk, cfg->jwt_alg, kid) : NULL;
    size_t len = 0;
    unsigned char *pem = jwk ? sec_pkey_private_pem(pk, &len) : NULL;
    enum as_err err = pem ? first_add(f, kid, pem, len, INT64_MAX)
                          : AS_ERR_INTERNAL;

    if (err != AS_OK)
        sec_why(why, why_len, "cannot make a new %s key",
                sec_alg_name(cfg->jwt_alg));
    if (pem)
        sodium_memzero(pem, len);
    free(pem);
    json_decref(jwk);
    EVP_PKEY_free(pk);
    return err;
}

/* Stores the first keys when the database has none: those of the keys
 * folder (and its refresh key) when there is one, else a new key and a
 * new refresh key. Another instance doing the same at once wins or loses
 * as a whole (repo_keys_add under its lock). */
static enum as_err bootstrap(const struct cfg *cfg, struct repo *r,
                             const uint8_t *key, int64_t now, char *why,
                             size_t why_len)
{
    struct first *f = calloc(1, sizeof *f);
    uint8_t refresh[SEC_REFRESH_KEY_LEN];
    bool added = false, imported = false;
    enum as_err err = f ? AS_OK : AS_ERR_NOMEM;
    size_t i;

    if (err == AS_OK) {
        f->key = key;
        f->now = now;
        err = sec_store_export(cfg, import_one, f, refresh, why, why_len);
        imported = err == AS_OK;
        if (err == AS_ERR_NOT_FOUND) {
            randombytes_buf(refresh, sizeof refresh);
            err = first_generate(cfg, f, why, why_len);
        }
    }
    if (err == AS_OK) {
        first_order(f);
        err = first_add(f, REPO_KEY_REFRESH, refresh, sizeof refresh,
                        INT64_MAX);
    }
    sodium_memzero(refresh, sizeof refresh);
    if (err == AS_OK) {
        err = repo_keys_add(r, f->rows, f->n, true, &added);
        if (err != AS_OK)
            sec_why(why, why_len, "cannot store the first key in the "
                    "database (%s)", as_err_code(err));
    }
    if (err == AS_OK && added)
        log_event(LOG_INFO, imported ? "keys.imported" : "keys.generated",
                  NULL, json_pack("{s:s, s:I}", "store", "database",
                                  "keys", (json_int_t)f->n - 1));
    for (i = 0; f && i < f->n; i++)
        free(f->sealed[i]);
    free(f);
    return err;
}

/* Lists the table into `rows` (sealed bytes in `a`), storing the first
 * keys when it holds no signing key. */
static enum as_err list_rows(const struct cfg *cfg, struct repo *r,
                             const uint8_t *key, int64_t now,
                             struct key_row *rows, size_t *n,
                             struct arena *a, char *why, size_t why_len)
{
    enum as_err err = repo_keys_list(r, rows, REPO_KEYS_MAX, n, a);
    struct pick p;

    if (err == AS_OK) {
        pick_rows(rows, *n, now, 0, &p);
        if (!p.has_signer || !p.has_refresh) {
            err = bootstrap(cfg, r, key, now, why, why_len);
            if (err == AS_OK)
                err = repo_keys_list(r, rows, REPO_KEYS_MAX, n, a);
        }
    }
    if (err != AS_OK && why && why_len && !why[0])
        sec_why(why, why_len, "cannot read the keys from the database "
                "(%s)", as_err_code(err));
    return err;
}

/* How long after its successor's signs_from a key stays listed: the
 * tokens it signed live AUTH_ACCESS_TOKEN_TTL plus the verifiers' leeway
 * (SEC_RETIRE_GRACE_S), counted from its last token, which an instance
 * signs up to a reload later than signs_from (a poll every 2 s, or a
 * NOTIFY): RELOAD_SLACK_S covers that, with room for a slow poll. Counted
 * from signs_from alone, a review saw a key dropped 119.1 s after its
 * last token with a 60 s lifetime. */
#define RELOAD_SLACK_S 10

static int64_t keep_ms(const struct cfg *cfg)
{
    return ((int64_t)cfg->access_ttl + SEC_RETIRE_GRACE_S + RELOAD_SLACK_S) *
           1000;
}

enum as_err sec_db_load(const struct cfg *cfg, struct repo *r,
                        struct sec_keys *k, int64_t now_ms, char *why,
                        size_t why_len)
{
    uint8_t key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    struct key_row *rows = calloc(REPO_KEYS_MAX, sizeof *rows);
    struct arena *a = arena_new();
    struct pick p;
    size_t n = 0, i;
    enum as_err err = rows && a ? AS_OK : AS_ERR_NOMEM;

    if (err == AS_OK && !seal_key(cfg, key)) {
        sec_why(why, why_len, "AUTH_KEYS_SECRET is not set: it is needed "
                "to keep the signing keys in PostgreSQL");
        err = AS_ERR_INTERNAL;
    }
    if (err == AS_OK)
        err = list_rows(cfg, r, key, now_ms, rows, &n, a, why, why_len);
    if (err == AS_OK) {
        pick_rows(rows, n, now_ms, keep_ms(cfg), &p);
        if (!p.has_signer || !p.has_refresh)
            err = AS_ERR_INTERNAL;
    }
    if (err == AS_OK)
        err = add_row(cfg, key, &rows[p.signer], true, k, why, why_len);
    for (i = 0; err == AS_OK && i < n; i++)
        if (p.use[i] && i != p.signer)
            err = add_row(cfg, key, &rows[i], false, k, why, why_len);
    if (err == AS_OK)
        err = refresh_row(key, &rows[p.refresh], k, why, why_len);
    if (err == AS_OK) {
        memcpy(k->db_state, p.state, sizeof p.state);
        repo_keys_prune(r, now_ms, now_ms - keep_ms(cfg));
    }
    sodium_memzero(key, sizeof key);
    arena_free(a);
    free(rows);
    return err;
}

enum as_err sec_db_changed(const struct cfg *cfg, struct repo *r,
                           const struct sec_keys *k, int64_t now_ms,
                           bool *changed)
{
    struct key_row *rows = calloc(REPO_KEYS_MAX, sizeof *rows);
    struct arena *a = arena_new();
    struct pick p;
    size_t n = 0;
    enum as_err err = rows && a ? AS_OK : AS_ERR_NOMEM;

    *changed = false;
    if (err == AS_OK)
        err = repo_keys_list(r, rows, REPO_KEYS_MAX, &n, a);
    if (err == AS_OK) {
        pick_rows(rows, n, now_ms, keep_ms(cfg), &p);
        *changed = p.has_signer &&
                   sodium_memcmp(p.state, k->db_state, sizeof p.state) != 0;
    }
    arena_free(a);
    free(rows);
    return err;
}

/* `keys rotate`: a new key that signs AUTH_KEY_PUBLISH_SECONDS from now.
 * It deletes no key: how long a retired key must keep verifying depends
 * on the lifetime of the tokens it signed, which the serving instances
 * know (they delete at each load, sec_db_load()) and an admin host
 * running this with only the database settings does not (with the
 * default lifetime it deleted a key whose tokens still had most of a
 * longer lifetime left, on every instance at once). */
/* Why a rotation was refused when the database holds `n` keys, as many
 * as the instances read (REPO_KEYS_MAX). */
static void full_why(char *why, size_t why_len, size_t n)
{
    sec_why(why, why_len, "the database holds %zu keys, the most the "
            "instances read; retired keys are deleted once the tokens they "
            "signed have expired (AUTH_ACCESS_TOKEN_TTL plus a minute): "
            "rotate again then", n);
}

static enum as_err db_rotate(const struct cfg *cfg, struct repo *r,
                             const uint8_t *key, int64_t now,
                             char kid[SEC_KID_MAX], char *why,
                             size_t why_len)
{
    struct first *f = calloc(1, sizeof *f);
    bool added = false;
    enum as_err err = f ? AS_OK : AS_ERR_NOMEM;

    if (err == AS_OK) {
        f->key = key;
        f->now = now;
        err = first_generate(cfg, f, why, why_len);
    }
    if (err == AS_OK && f->n == 1) {
        f->rows[0].signs_from = now +
                                (int64_t)cfg->key_publish_seconds * 1000;
        memcpy(kid, f->rows[0].kid, strlen(f->rows[0].kid) + 1);
        err = repo_keys_add(r, f->rows, 1, false, &added);
        if (err == AS_ERR_CONFLICT)     /* another rotation filled it */
            full_why(why, why_len, REPO_KEYS_MAX);
        else if (err != AS_OK)
            sec_why(why, why_len, "cannot store the new key in the "
                    "database (%s)", as_err_code(err));
    }
    if (err == AS_OK) {
        log_event(LOG_INFO, "keys.rotated", NULL,
                  json_pack("{s:s, s:s, s:I}", "kid", kid, "store",
                            "database", "signs_from_ms",
                            (json_int_t)f->rows[0].signs_from));
    }
    if (f && f->n == 1)
        free(f->sealed[0]);
    free(f);
    return err;
}

/* AS_OK when `key` opens both rows; otherwise says so in `why`. */
static enum as_err opens(const uint8_t *key, const struct key_row *signer,
                         const struct key_row *refresh, char *why,
                         size_t why_len)
{
    const struct key_row *rows[2] = { signer, refresh };
    enum as_err err = AS_OK;
    size_t i, len = 0;

    for (i = 0; err == AS_OK && i < 2; i++) {
        unsigned char *plain = unseal(key, rows[i], &len);

        if (!plain) {
            sec_why(why, why_len, "AUTH_KEYS_SECRET does not open key %s "
                    "stored in the database (a different secret?)",
                    rows[i]->kid);
            err = AS_ERR_BAD_REQUEST;
        } else {
            sodium_memzero(plain, len);
            free(plain);
        }
    }
    return err;
}

enum as_err sec_db_cli(const struct cfg *cfg, struct repo *r,
                       const char *verb, char kid[SEC_KID_MAX], char *why,
                       size_t why_len)
{
    uint8_t key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    struct key_row *rows = calloc(REPO_KEYS_MAX, sizeof *rows);
    struct arena *a = arena_new();
    int64_t now = (int64_t)time(NULL) * 1000;
    struct pick p;
    size_t n = 0;
    enum as_err err = rows && a ? AS_OK : AS_ERR_NOMEM;

    if (err == AS_OK && !seal_key(cfg, key)) {
        sec_why(why, why_len, "AUTH_KEYS_SECRET is not set: it is needed "
                "to keep the signing keys in PostgreSQL");
        err = AS_ERR_BAD_REQUEST;
    }
    if (err == AS_OK)
        err = list_rows(cfg, r, key, now, rows, &n, a, why, why_len);
    if (err == AS_OK) {
        pick_rows(rows, n, now, keep_ms(cfg), &p);
        err = p.has_signer && p.has_refresh ? AS_OK : AS_ERR_INTERNAL;
    }
    if (err == AS_OK)                /* the secret must be the others' */
        err = opens(key, &rows[p.signer], &rows[p.refresh], why, why_len);
    /* The instances read at most REPO_KEYS_MAX keys, oldest signs_from
     * first: one more would be a signer none of them ever loads. */
    if (err == AS_OK && strcmp(verb, "rotate") == 0 && n >= REPO_KEYS_MAX) {
        full_why(why, why_len, n);
        err = AS_ERR_CONFLICT;
    }
    if (err == AS_OK && strcmp(verb, "rotate") == 0)
        err = db_rotate(cfg, r, key, now, kid, why, why_len);
    else if (err == AS_OK)
        memcpy(kid, rows[p.signer].kid, strlen(rows[p.signer].kid) + 1);
    sodium_memzero(key, sizeof key);
    arena_free(a);
    free(rows);
    return err;
}
