/* keys.c: the key set of one process: loading by mode (HS256 secret, key
 * file, keys folder), the refresh-derivation key, JWKS. */
#include "sec/sec_int.h"
#include "sec/jwtlib.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "repo.h"

#define HS256_MIN_SECRET 32
#define HS256_KID_BYTES 16
#define LABEL_REFRESH "auth-serve refresh-token derivation v1"
#define LABEL_HS_KID "auth-serve hs256 key id v1"

void sec_why(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;

    if (!why || why_len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

const char *sec_alg_name(enum cfg_alg a)
{
    switch (a) {
    case CFG_ALG_ES256: return "ES256";
    case CFG_ALG_RS256: return "RS256";
    case CFG_ALG_HS256: return "HS256";
    }
    return "?";
}

jwt_alg_t sec_alg_jwt(enum cfg_alg a)
{
    switch (a) {
    case CFG_ALG_ES256: return JWT_ALG_ES256;
    case CFG_ALG_RS256: return JWT_ALG_RS256;
    case CFG_ALG_HS256: return JWT_ALG_HS256;
    }
    return JWT_ALG_INVAL;
}

void sec_derive(const void *material, size_t len, const char *label,
                uint8_t out[32])
{
    crypto_auth_hmacsha256_state st;

    crypto_auth_hmacsha256_init(&st, material, len);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)label,
                                  strlen(label));
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

/* Grows `k->keys` by one zeroed slot; its index goes to `*index`. */
static enum as_err grow(struct sec_keys *k, size_t *index)
{
    struct sec_key *more = realloc(k->keys, (k->n_keys + 1) * sizeof *more);

    if (!more)
        return AS_ERR_NOMEM;
    k->keys = more;
    memset(&more[k->n_keys], 0, sizeof *more);
    *index = k->n_keys;
    return AS_OK;
}

enum as_err sec_keys_add(struct sec_keys *k, EVP_PKEY *pk, size_t *index)
{
    struct sec_key key = { .until = INT64_MAX };
    enum as_err err = AS_ERR_INTERNAL;

    key.jwk = sec_pkey_jwk(pk, k->alg, key.kid);
    /* The public half only, so that a retired key's private half is not
     * kept (jwt.c verifies with it). */
    key.pkey = sec_pkey_public(pk);
    if (key.jwk && key.pkey)
        err = grow(k, index);
    if (err != AS_OK) {
        json_decref(key.jwk);
        EVP_PKEY_free(key.pkey);
        return err;
    }
    k->keys[k->n_keys++] = key;
    return AS_OK;
}

const struct sec_key *sec_keys_find(const struct sec_keys *k,
                                    const char *kid)
{
    size_t i;

    for (i = 0; k && kid && i < k->n_keys; i++)
        if (strcmp(k->keys[i].kid, kid) == 0)
            return &k->keys[i];
    return NULL;
}

/* A malloc'd copy of `n` secret bytes with a NUL appended. */
static unsigned char *secret_dup(const void *p, size_t n)
{
    unsigned char *out = malloc(n + 1);

    if (out) {
        memcpy(out, p, n);
        out[n] = '\0';
    }
    return out;
}

/* gcc 12's analyzer loses track of the copies stored into `k`, which
 * sec_keys_free() releases on every path; LeakSanitizer covers it. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif
static enum as_err load_hs256(const struct cfg *cfg, struct sec_keys *k,
                              char *why, size_t why_len)
{
    const char *secret = cfg->jwt_secret;
    size_t n = secret ? strlen(secret) : 0, i = 0;
    uint8_t id[32];
    enum as_err err;

    const char *lib;

    if (n < HS256_MIN_SECRET) {
        sec_why(why, why_len, "AUTH_JWT_SECRET must be at least %d bytes "
                "for HS256", HS256_MIN_SECRET);
        return AS_ERR_INTERNAL;
    }
    if (!jwtlib_load(&lib)) {
        sec_why(why, why_len, "HS256 needs libjwt: %s", lib);
        return AS_ERR_INTERNAL;
    }
    err = grow(k, &i);
    if (err != AS_OK)
        return err;
    k->n_keys = 1;
    k->keys[0].until = INT64_MAX;
    k->keys[0].verify = secret_dup(secret, n);
    k->sign = secret_dup(secret, n);
    if (!k->keys[0].verify || !k->sign)
        return AS_ERR_NOMEM;
    k->keys[0].verify_len = k->sign_len = n;
    sec_derive(secret, n, LABEL_HS_KID, id);
    sec_b64url_encode(id, HS256_KID_BYTES, k->keys[0].kid, SEC_KID_MAX);
    sec_derive(secret, n, LABEL_REFRESH, k->refresh_key);
    return AS_OK;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

static void warn_if_readable(const char *path)
{
    struct stat st;

    if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
        log_event(LOG_WARN, "keys.file_permissions",
                  NULL, json_pack("{s:s, s:s}", "path", path, "hint",
                                  "the key file is readable by others; "
                                  "chmod 600 it"));
}

/* The refresh-derivation key of a configured key file: derived from the
 * canonical PKCS#8 form of its private key, so every instance given the
 * same key agrees whatever PEM flavour the file uses. */
static enum as_err refresh_from_pkey(EVP_PKEY *pk, struct sec_keys *k)
{
    size_t len = 0;
    unsigned char *pem = sec_pkey_private_pem(pk, &len);
    uint8_t digest[32];

    if (!pem)
        return AS_ERR_INTERNAL;
    crypto_hash_sha256(digest, pem, len);
    sec_derive(digest, sizeof digest, LABEL_REFRESH, k->refresh_key);
    sodium_memzero(digest, sizeof digest);
    sodium_memzero(pem, len);
    free(pem);
    return AS_OK;
}

static enum as_err load_key_file(const struct cfg *cfg, struct sec_keys *k,
                                 char *why, size_t why_len)
{
    const char *path = cfg->jwt_key_file, *others = NULL;
    char fit[200];
    EVP_PKEY *pk = NULL;
    enum as_err err = AS_ERR_INTERNAL;
    /* mounted secrets are links; whoever can write the key signs as the
     * daemon (README "Keys and rotation"): refused, as a keys folder
     * others can write is */
    int rc = sec_file_read_linked(path, SEC_KEY_FILE_MAX, &k->sign,
                                  &k->sign_len, &others);

    if (rc != 0) {
        sec_why(why, why_len, "AUTH_JWT_KEY_FILE %s: %s", path,
                others ? others : sec_file_error(rc));
        goto out;
    }
    /* Which of two keys would sign is OpenSSL's choice, not the
     * operator's: refused. */
    if (sec_pkey_count(k->sign, k->sign_len) > 1) {
        sec_why(why, why_len, "AUTH_JWT_KEY_FILE %s holds more than one "
                "private key: give the one to sign with", path);
        goto out;
    }
    pk = sec_pkey_parse(k->sign, k->sign_len, k->alg);
    if (!pk && sec_pkey_encrypted(k->sign, k->sign_len)) {
        sec_why(why, why_len, "AUTH_JWT_KEY_FILE %s is encrypted: give an "
                "unencrypted key (auth-serve cannot ask for a passphrase)",
                path);
        goto out;
    }
    if (!pk) {
        sec_why(why, why_len, "AUTH_JWT_KEY_FILE %s: not a PEM private "
                "key", path);
        goto out;
    }
    if (!sec_pkey_fits(pk, k->alg, fit, sizeof fit)) {
        sec_why(why, why_len, "AUTH_JWT_KEY_FILE %s does not match "
                "AUTH_JWT_ALG: %s", path, fit);
        goto out;
    }
    err = sec_keys_add(k, pk, &k->signer);
    if (err == AS_OK)
        err = refresh_from_pkey(pk, k);
    if (err != AS_OK)
        sec_why(why, why_len, "AUTH_JWT_KEY_FILE %s: cannot use the key",
                path);
    warn_if_readable(path);
out:
    EVP_PKEY_free(pk);
    return err;
}

/* True when the keys live in the database of `r` (PostgreSQL, and
 * neither HS256 nor a key file). */
static bool in_db(const struct cfg *cfg, struct repo *r)
{
    return r && strcmp(repo_backend(r), "postgres") == 0 &&
           cfg->jwt_alg != CFG_ALG_HS256 &&
           !(cfg->jwt_key_file && cfg->jwt_key_file[0]);
}

static const char *source_name(const struct cfg *cfg, struct repo *r)
{
    if (cfg->jwt_alg == CFG_ALG_HS256)
        return "secret";
    if (in_db(cfg, r))
        return "database";
    return cfg->jwt_key_file ? "key_file" : "keys_dir";
}

static enum as_err load_by_mode(const struct cfg *cfg, struct repo *r,
                                const struct sec_keys *prev, int64_t now_ms,
                                struct sec_keys *k, char *why,
                                size_t why_len)
{
    if (sec_alg_jwt(cfg->jwt_alg) == JWT_ALG_INVAL) {
        sec_why(why, why_len, "unknown AUTH_JWT_ALG");
        return AS_ERR_INTERNAL;
    }
    if (cfg->jwt_alg == CFG_ALG_HS256)
        return load_hs256(cfg, k, why, why_len);
    if (cfg->jwt_key_file && cfg->jwt_key_file[0])
        return load_key_file(cfg, k, why, why_len);
    if (in_db(cfg, r))
        return sec_db_load(cfg, r, k, now_ms, why, why_len);
    return sec_store_load(cfg, k, prev ? sec_keys_kid(prev) : NULL,
                          now_ms / 1000, why, why_len);
}

enum as_err sec_keys_load(const struct cfg *cfg, struct sec_keys **out,
                          char *why, size_t why_len)
{
    return sec_keys_open(cfg, NULL, NULL, (int64_t)time(NULL) * 1000, out,
                         why, why_len);
}

/* A set loaded from the configuration (`publish`: the keys folder's new
 * keys, the signer kept), or NULL with `why` set. */
static enum as_err open_set(const struct cfg *cfg, struct repo *r,
                            const struct sec_keys *prev, bool publish,
                            int64_t now_ms, struct sec_keys **out, char *why,
                            size_t why_len)
{
    struct sec_keys *k = calloc(1, sizeof *k);
    enum as_err err = k ? AS_OK : AS_ERR_NOMEM;
    const struct sec_key *had;
    bool fresh;
    size_t i;

    *out = NULL;
    sec_why(why, why_len, "%s", "");
    if (err == AS_OK && sodium_init() < 0)
        err = AS_ERR_INTERNAL;
    if (err == AS_OK) {
        k->alg = cfg->jwt_alg;
        k->jwt_alg = sec_alg_jwt(cfg->jwt_alg);
        err = publish ? sec_store_publish(cfg, k, sec_keys_kid(prev),
                                          now_ms / 1000, why, why_len)
                      : load_by_mode(cfg, r, prev, now_ms, k, why, why_len);
    }
    if (err == AS_OK && k->n_keys == 0)
        err = AS_ERR_INTERNAL;
    if (err != AS_OK) {
        if (why && why_len && !why[0])
            sec_why(why, why_len, "cannot load the signing keys");
        sec_keys_free(k);
        return err;
    }
    for (i = 0, fresh = false; i < k->n_keys; i++) {
        had = prev ? sec_keys_find(prev, k->keys[i].kid) : NULL;
        k->keys[i].listed_at = had ? had->listed_at : now_ms / 1000;
        fresh = fresh || !had;
    }
    /* A key the folder holds but that no set takes (of another type than
     * AUTH_JWT_ALG): nothing new to publish, nor to log every poll. */
    if (publish && !fresh) {
        sec_keys_free(k);
        return AS_OK;
    }
    log_event(LOG_INFO, publish ? "keys.published" : "keys.loaded", NULL,
              json_pack("{s:s, s:s, s:s, s:I}", "alg", sec_alg_name(k->alg),
                        "kid", sec_keys_kid(k), "source", source_name(cfg, r),
                        "verification_keys", (json_int_t)k->n_keys));
    *out = k;
    return AS_OK;
}

enum as_err sec_keys_open(const struct cfg *cfg, struct repo *r,
                          const struct sec_keys *prev, int64_t now_ms,
                          struct sec_keys **out, char *why, size_t why_len)
{
    return open_set(cfg, r, prev, false, now_ms, out, why, why_len);
}

/* A few minutes, but never past the moment a key a resource server has
 * not seen yet may sign: AUTH_KEY_PUBLISH_SECONDS after the rotation,
 * less the time an instance takes to list the new key (a poll every 2 s,
 * or a NOTIFY; JWKS_LIST_SLACK_S with room to spare). */
#define JWKS_MAX_AGE_S 300u
#define JWKS_LIST_SLACK_S 10u

unsigned sec_jwks_max_age(unsigned publish_s)
{
    unsigned age = publish_s > JWKS_LIST_SLACK_S
                       ? publish_s - JWKS_LIST_SLACK_S : 0;

    return age < JWKS_MAX_AGE_S ? age : JWKS_MAX_AGE_S;
}

int64_t sec_keys_listed_for(const struct sec_keys *k, int64_t now_s)
{
    const struct sec_key *s = k && k->signer < k->n_keys
                                  ? &k->keys[k->signer] : NULL;

    return s ? now_s - s->listed_at : 0;
}

enum as_err sec_keys_poll(const struct cfg *cfg, struct repo *r,
                          const struct sec_keys *cur, int64_t now_ms,
                          struct sec_keys **out, bool *read, char *why,
                          size_t why_len)
{
    bool changed = false;
    enum as_err err = AS_OK;

    *out = NULL;
    if (in_db(cfg, r))
        err = sec_db_changed(cfg, r, cur, now_ms, &changed);
    if (read)
        *read = err == AS_OK;
    if (err == AS_OK && changed)
        err = sec_keys_open(cfg, r, cur, now_ms, out, why, why_len);
    /* The keys folder: a key `keys rotate` made since is published at
     * once, and signs from the next start or SIGHUP (README "Keys and
     * rotation"). */
    if (!in_db(cfg, r) && cfg->jwt_alg != CFG_ALG_HS256 &&
        !(cfg->jwt_key_file && cfg->jwt_key_file[0]) &&
        sec_store_unlisted(cfg, cur, now_ms / 1000))
        err = open_set(cfg, r, cur, true, now_ms, out, why, why_len);
    return err;
}

static void wipe_free(unsigned char *p, size_t n)
{
    if (p) {
        sodium_memzero(p, n);
        free(p);
    }
}

void sec_keys_free(struct sec_keys *k)
{
    size_t i;

    if (!k)
        return;
    for (i = 0; i < k->n_keys; i++) {
        wipe_free(k->keys[i].verify, k->keys[i].verify_len);
        json_decref(k->keys[i].jwk);
        EVP_PKEY_free(k->keys[i].pkey);
    }
    free(k->keys);
    wipe_free(k->sign, k->sign_len);
    sodium_memzero(k, sizeof *k);
    free(k);
}

const char *sec_keys_kid(const struct sec_keys *k)
{
    if (!k || k->signer >= k->n_keys)
        return "";
    return k->keys[k->signer].kid;
}

json_t *sec_jwks(const struct sec_keys *k, int64_t now_s)
{
    json_t *keys = json_array();
    size_t i;

    for (i = 0; keys && k && i < k->n_keys; i++) {
        if (!k->keys[i].jwk || k->keys[i].until < now_s)
            continue;                     /* HS256: nothing is public */
        if (json_array_append_new(keys,
                                  json_deep_copy(k->keys[i].jwk)) != 0) {
            json_decref(keys);
            return NULL;
        }
    }
    return keys ? json_pack("{s:o}", "keys", keys) : NULL;
}
