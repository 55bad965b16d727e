/* store.c: the keys folder shared by every instance on one data dir.
 *
 * data_dir/keys/ (mode 0700) holds <kid>.pem private keys (0600), the file
 * `current` naming the signing kid, <kid>.retired with the Unix time a key
 * stopped signing, and refresh.key (32 random bytes). Every file is written
 * to a temporary name and then renamed (or linked, when the first writer
 * must win), so readers never see half a file and two instances starting
 * together settle on one signing key. A key is stamped retired when a
 * process that loads the folder finds it no longer current: `keys rotate`
 * only switches `current`, the daemon keeps signing with the old key until
 * its next start or SIGHUP, and that load is when the old key stops
 * signing (README.md, "Key rotation"). */
#include "sec/sec_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define KID_LEN 43               /* base64url of a SHA-256 thumbprint */

struct store {
    char dir[PATH_MAX];          /* data_dir/keys */
    enum cfg_alg alg;
    int64_t keep_s;              /* how long a retired key still verifies */
};

/* A keys folder made by hand may let others in. Where others can write
 * to it, or it is another user's, they can put a key of theirs in it and
 * make it the current one (the next reload signs with it): refused.
 * Where they can only read it: said, nothing changed. */
static bool folder_ours(const char *dir, char *why, size_t why_len)
{
    struct stat st;

    if (stat(dir, &st) != 0)
        return true;                    /* sec_dir_ensure() made it */
    if ((st.st_mode & 022) != 0 ||
        (st.st_uid != geteuid() && st.st_uid != 0)) {
        sec_why(why, why_len, "%s can be written by others (another "
                "user's, or group or world writable): chown it to this "
                "user and chmod 700 it", dir);
        return false;
    }
    if ((st.st_mode & 077) != 0)
        log_event(LOG_WARN, "keys.folder_permissions", NULL,
                  json_pack("{s:s, s:s}", "path", dir, "hint",
                            "others can open the keys folder; chmod 700 "
                            "it"));
    return true;
}

/* Names the keys folder of `cfg` in `s`, touching nothing on disk;
 * false without a data folder or when the path does not fit. */
static bool store_at(const struct cfg *cfg, struct store *s)
{
    s->alg = cfg->jwt_alg;
    s->keep_s = (int64_t)cfg->access_ttl + SEC_RETIRE_GRACE_S;
    return cfg->data_dir && cfg->data_dir[0] &&
           snprintf(s->dir, sizeof s->dir, "%s/keys", cfg->data_dir) <
               (int)sizeof s->dir;
}

static enum as_err store_open(const struct cfg *cfg, struct store *s,
                              char *why, size_t why_len)
{
    int rc;

    if (!store_at(cfg, s)) {
        sec_why(why, why_len, "AUTH_DATA_DIR is %s",
                cfg->data_dir && cfg->data_dir[0] ? "too long" : "not set");
        return AS_ERR_INTERNAL;
    }
    rc = sec_dir_ensure(cfg->data_dir);
    if (rc == 0)
        rc = sec_dir_ensure(s->dir);
    if (rc != 0) {
        sec_why(why, why_len, "cannot create %s: %s", s->dir, strerror(rc));
        return AS_ERR_INTERNAL;
    }
    return folder_ours(s->dir, why, why_len) ? AS_OK : AS_ERR_INTERNAL;
}

/* dir/<name><suffix>; false when it does not fit. */
static bool store_path(const struct store *s, const char *name,
                       const char *suffix, char out[PATH_MAX])
{
    return snprintf(out, PATH_MAX, "%s/%s%s", s->dir, name, suffix) <
           PATH_MAX;
}

static bool kid_shaped(const char *s, size_t n)
{
    return n == KID_LEN && sec_b64url_alphabet(s, n);
}

/* The kid of a directory entry named <kid><suffix>, if it is one. */
static bool name_kid(const char *name, const char *suffix,
                     char kid[SEC_KID_MAX])
{
    size_t n = strlen(name), sn = strlen(suffix);

    if (n <= sn || strcmp(name + n - sn, suffix) != 0 ||
        !kid_shaped(name, n - sn))
        return false;
    memcpy(kid, name, n - sn);
    kid[n - sn] = '\0';
    return true;
}

/* Reads a one-line file of at most 64 bytes without its newline. */
static int small_read(const struct store *s, const char *name,
                      const char *suffix, char out[64])
{
    char path[PATH_MAX];
    unsigned char *data = NULL;
    size_t len = 0;
    int rc;

    if (!store_path(s, name, suffix, path))
        return ENAMETOOLONG;
    rc = sec_file_read(path, 63, &data, &len);
    if (rc != 0)
        return rc == EFBIG ? EINVAL : rc;
    if (len > 0 && data[len - 1] == '\n')
        len--;
    memcpy(out, data, len);
    out[len] = '\0';
    free(data);
    return strlen(out) == len ? 0 : EINVAL;
}

static int current_read(const struct store *s, char kid[SEC_KID_MAX])
{
    char line[64];
    int rc = small_read(s, "current", "", line);

    if (rc != 0)
        return rc;
    if (!kid_shaped(line, strlen(line)))
        return EINVAL;
    memcpy(kid, line, strlen(line) + 1);
    return 0;
}

static int current_write(const struct store *s, const char *kid,
                         bool replace)
{
    char path[PATH_MAX], line[SEC_KID_MAX + 1];
    int n = snprintf(line, sizeof line, "%s\n", kid);

    if (!store_path(s, "current", "", path))
        return ENAMETOOLONG;
    return sec_file_put(path, line, (size_t)n, replace);
}

static int retired_read(const struct store *s, const char *kid,
                        int64_t *when)
{
    char line[64], *end = NULL;
    long long v;
    int rc = small_read(s, kid, ".retired", line);

    if (rc != 0)
        return rc;
    errno = 0;
    v = strtoll(line, &end, 10);
    if (errno != 0 || end == line || *end != '\0' || v < 0)
        return EINVAL;
    *when = (int64_t)v;
    return 0;
}

static int retired_write(const struct store *s, const char *kid,
                         int64_t when)
{
    char path[PATH_MAX], line[32];
    int n = snprintf(line, sizeof line, "%" PRId64 "\n", when);

    if (!store_path(s, kid, ".retired", path))
        return ENAMETOOLONG;
    return sec_file_put(path, line, (size_t)n, true);
}

/* True when `kid` was retired long enough ago that no token it signed can
 * still be valid. A malformed .retired file counts as not retired. */
static bool is_expired(const struct store *s, const char *kid, int64_t now)
{
    int64_t when = 0;

    return retired_read(s, kid, &when) == 0 && when + s->keep_s < now;
}

/* Generates a key, writes it as <kid>.pem, and returns its kid. */
static enum as_err key_write_new(const struct store *s,
                                 char kid[SEC_KID_MAX], char *why,
                                 size_t why_len)
{
    EVP_PKEY *pk = sec_pkey_generate(s->alg);
    json_t *jwk = pk ? sec_pkey_jwk(pk, s->alg, kid) : NULL;
    size_t len = 0;
    unsigned char *pem = jwk ? sec_pkey_private_pem(pk, &len) : NULL;
    char path[PATH_MAX];
    int rc = pem ? 0 : EIO;

    if (rc == 0 && !store_path(s, kid, ".pem", path))
        rc = ENAMETOOLONG;
    if (rc == 0)
        rc = sec_file_put(path, pem, len, false);
    if (rc != 0)
        sec_why(why, why_len, "cannot write a new %s key in %s: %s",
                sec_alg_name(s->alg), s->dir, strerror(rc));
    if (pem)
        sodium_memzero(pem, len);
    free(pem);
    json_decref(jwk);
    EVP_PKEY_free(pk);
    return rc == 0 ? AS_OK : AS_ERR_INTERNAL;
}

/* First start: makes a key and links `current` to it, unless another
 * process got there first, in which case its key is used instead. */
static enum as_err first_key(const struct store *s, char kid[SEC_KID_MAX],
                             char *why, size_t why_len)
{
    char mine[SEC_KID_MAX], path[PATH_MAX];
    enum as_err err = key_write_new(s, mine, why, why_len);
    int rc;

    if (err != AS_OK)
        return err;
    rc = current_write(s, mine, false);
    if (rc == 0) {
        memcpy(kid, mine, sizeof mine);
        log_event(LOG_INFO, "keys.generated", NULL,
                  json_pack("{s:s, s:s}", "kid", kid,
                            "alg", sec_alg_name(s->alg)));
        return AS_OK;
    }
    if (store_path(s, mine, ".pem", path))
        unlink(path);                    /* never signed anything */
    if (rc == EEXIST)
        rc = current_read(s, kid);
    if (rc != 0) {
        sec_why(why, why_len, "cannot set the current key in %s: %s",
                s->dir, strerror(rc));
        return AS_ERR_INTERNAL;
    }
    return AS_OK;
}

/* Reads refresh.key, making it (first writer wins) when missing and
 * `make`. */
static enum as_err refresh_key(const struct store *s, bool make,
                               uint8_t out[SEC_REFRESH_KEY_LEN], char *why,
                               size_t why_len)
{
    char path[PATH_MAX];
    uint8_t fresh[SEC_REFRESH_KEY_LEN];
    unsigned char *data = NULL;
    size_t len = 0;
    int rc = store_path(s, "refresh.key", "", path) ? 0 : ENAMETOOLONG;

    if (rc == 0)
        rc = sec_file_read(path, SEC_REFRESH_KEY_LEN, &data, &len);
    if (rc == ENOENT && !make) {
        sec_why(why, why_len, "%s is gone; a reload makes no keys (the "
                "TOTP secrets and refresh tokens need this one): put it "
                "back", path);
        return AS_ERR_INTERNAL;
    }
    if (rc == ENOENT) {
        randombytes_buf(fresh, sizeof fresh);
        rc = sec_file_put(path, fresh, sizeof fresh, false);
        sodium_memzero(fresh, sizeof fresh);
        if (rc == 0 || rc == EEXIST)
            rc = sec_file_read(path, SEC_REFRESH_KEY_LEN, &data, &len);
    }
    if (rc == 0 && len != SEC_REFRESH_KEY_LEN)
        rc = EINVAL;
    if (rc == 0)
        memcpy(out, data, SEC_REFRESH_KEY_LEN);
    if (data)
        sodium_memzero(data, len);
    free(data);
    if (rc != 0)
        sec_why(why, why_len, "%s: %s", path,
                rc == EFBIG || rc == EINVAL ? "must hold exactly 32 bytes"
                                            : sec_file_error(rc));
    return rc == 0 ? AS_OK : AS_ERR_INTERNAL;
}

/* Makes the parsed key of <kid>.pem a verification key of `k` (and the
 * signing key when `current`). A key of another type than the configured
 * algorithm is skipped, unless it is the current one. */
static enum as_err load_parsed(const struct store *s, struct sec_keys *k,
                               EVP_PKEY *pk, const char *kid, bool current,
                               char *why, size_t why_len)
{
    char fit[200], got[SEC_KID_MAX];
    json_t *jwk;
    size_t index = 0;
    enum as_err err;

    if (!sec_pkey_fits(pk, s->alg, fit, sizeof fit)) {
        if (!current)
            return AS_OK;
        sec_why(why, why_len, "current key %s in %s: %s (run `auth-serve "
                "keys rotate` after changing AUTH_JWT_ALG)", kid, s->dir,
                fit);
        return AS_ERR_INTERNAL;
    }
    jwk = sec_pkey_jwk(pk, s->alg, got);
    json_decref(jwk);
    if (!jwk || strcmp(got, kid) != 0) {
        sec_why(why, why_len, "%s/%s.pem does not hold the key its name "
                "says", s->dir, kid);
        return AS_ERR_INTERNAL;
    }
    err = sec_keys_add(k, pk, &index);
    if (err == AS_OK && current)
        k->signer = index;
    return err;
}

/* Loads <kid>.pem into `k`. A file removed meanwhile is skipped. */
static enum as_err load_one(const struct store *s, struct sec_keys *k,
                            const char *kid, bool current, char *why,
                            size_t why_len)
{
    char path[PATH_MAX];
    unsigned char *pem = NULL;
    size_t len = 0;
    EVP_PKEY *pk = NULL;
    enum as_err err = AS_ERR_INTERNAL;
    int rc = store_path(s, kid, ".pem", path) ? 0 : ENAMETOOLONG;

    if (rc == 0)
        rc = sec_file_read(path, SEC_KEY_FILE_MAX, &pem, &len);
    if (rc == ENOENT && !current) {
        err = AS_OK;
        goto out;
    }
    if (rc != 0) {
        sec_why(why, why_len, "%s: %s", path, sec_file_error(rc));
        goto out;
    }
    pk = sec_pkey_parse(pem, len, s->alg);
    if (!pk && sec_pkey_encrypted(pem, len)) {
        sec_why(why, why_len, "%s is encrypted: give an unencrypted key "
                "(auth-serve cannot ask for a passphrase)", path);
        goto out;
    }
    if (!pk) {
        sec_why(why, why_len, "%s: not a PEM private key", path);
        goto out;
    }
    err = load_parsed(s, k, pk, kid, current, why, why_len);
    if (err == AS_OK && current) {
        k->sign = pem;                   /* the signer keeps its PEM */
        k->sign_len = len;
        pem = NULL;
    }
out:
    EVP_PKEY_free(pk);
    if (pem)
        sodium_memzero(pem, len);
    free(pem);
    return err;
}

/* Stamps `kid` retired at `now` when it has no stamp yet, or when it is
 * `prev` (the key this process signed with until now: a later stamp
 * keeps it as long as its last tokens need). Failing to stamp is only
 * logged: the key stays listed meanwhile. */
static void stamp_retired(const struct store *s, const char *kid,
                          const char *prev, int64_t now)
{
    int64_t when = 0;
    int rc = retired_read(s, kid, &when);

    if (rc == 0 && (!prev || strcmp(kid, prev) != 0 || when >= now))
        return;
    rc = retired_write(s, kid, now);
    if (rc != 0)
        log_event(LOG_WARN, "keys.retire_failed", NULL,
                  json_pack("{s:s, s:s}", "kid", kid, "error",
                            strerror(rc)));
}

/* Loads the current key and every other key not yet past retirement,
 * first stamping the keys that stopped signing (see stamp_retired) unless
 * `publish` (the signer stays, nothing stopped signing). */
static enum as_err load_all(const struct store *s, struct sec_keys *k,
                            const char *current, const char *prev,
                            bool publish, int64_t now, char *why,
                            size_t why_len)
{
    DIR *d = opendir(s->dir);
    struct dirent *e;
    char kid[SEC_KID_MAX];
    enum as_err err = AS_OK;

    if (!d) {
        sec_why(why, why_len, "%s: %s", s->dir, strerror(errno));
        return AS_ERR_INTERNAL;
    }
    err = load_one(s, k, current, true, why, why_len);
    while (err == AS_OK && (e = readdir(d)) != NULL) {
        if (!name_kid(e->d_name, ".pem", kid) || strcmp(kid, current) == 0)
            continue;
        if (!publish)
            stamp_retired(s, kid, prev, now);
        if (!is_expired(s, kid, now)) {
            size_t had = k->n_keys;
            int64_t when = 0;

            err = load_one(s, k, kid, false, why, why_len);
            /* it verifies until its window ends, not until the next load */
            if (err == AS_OK && k->n_keys > had &&
                retired_read(s, kid, &when) == 0)
                k->keys[had].until = when + s->keep_s;
        }
    }
    closedir(d);
    return err;
}

/* A start that signs with a key made by a `keys rotate` less than the
 * JWKS max-age ago (its file's time): no instance can have listed it
 * for longer, so a resource server's cached key set may lack it (a
 * reload says the same in src/main.c, from when it was listed). */
static void warn_if_unpublished(const struct cfg *cfg, const struct store *s,
                                const char *kid, int64_t now)
{
    char path[PATH_MAX];
    struct stat st;
    unsigned age = sec_jwks_max_age(cfg->key_publish_seconds);

    if (store_path(s, kid, ".pem", path) && stat(path, &st) == 0 &&
        now - (int64_t)st.st_mtime < (int64_t)age)
        log_event(LOG_WARN, "keys.signs_unpublished", NULL,
                  json_pack("{s:s, s:I, s:I, s:s}", "kid", kid,
                            "published_seconds",
                            (json_int_t)(now - (int64_t)st.st_mtime),
                            "jwks_max_age_seconds", (json_int_t)age,
                            "hint", "the key was made that long ago by "
                            "`keys rotate`: wait the max-age before the "
                            "restart"));
}

enum as_err sec_store_load(const struct cfg *cfg, struct sec_keys *k,
                           const char *prev, int64_t now, char *why,
                           size_t why_len)
{
    struct store s;
    char kid[SEC_KID_MAX];
    enum as_err err = store_open(cfg, &s, why, why_len);
    int rc;

    if (err != AS_OK)
        return err;
    rc = current_read(&s, kid);
    /* Keys are made at the first start only. A reload (`prev` set) that
     * finds them gone is refused, and the daemon goes on with the keys
     * it holds: made anew, they would end every session's access token
     * at once (the contract keeps the last signer's for the access
     * token's lifetime), and a new refresh.key every refresh token and
     * stored TOTP secret. */
    if (rc == ENOENT && prev) {
        sec_why(why, why_len, "%s/current is gone; a reload makes no "
                "keys: put it back, or run `auth-serve keys rotate`",
                s.dir);
        err = AS_ERR_INTERNAL;
    } else if (rc == ENOENT)
        err = first_key(&s, kid, why, why_len);
    else if (rc != 0) {
        sec_why(why, why_len, "%s/current: %s", s.dir,
                rc == EINVAL ? "not a key id" : sec_file_error(rc));
        err = AS_ERR_INTERNAL;
    }
    if (err == AS_OK)
        err = refresh_key(&s, !prev, k->refresh_key, why, why_len);
    if (err == AS_OK)
        err = load_all(&s, k, kid, prev, false, now, why, why_len);
    if (err == AS_OK && !prev && k->n_keys > 1)
        warn_if_unpublished(cfg, &s, kid, now);
    return err;
}

bool sec_store_unlisted(const struct cfg *cfg, const struct sec_keys *held,
                        int64_t now)
{
    struct store s;
    struct dirent *e;
    char kid[SEC_KID_MAX];
    bool found = false;
    DIR *d;

    if (!store_at(cfg, &s) || !(d = opendir(s.dir)))
        return false;
    while (!found && (e = readdir(d)) != NULL)
        found = name_kid(e->d_name, ".pem", kid) &&
                !sec_keys_find(held, kid) && !is_expired(&s, kid, now);
    closedir(d);
    return found;
}

enum as_err sec_store_publish(const struct cfg *cfg, struct sec_keys *k,
                              const char *signer, int64_t now, char *why,
                              size_t why_len)
{
    struct store s;
    enum as_err err = store_open(cfg, &s, why, why_len);

    if (err == AS_OK)
        err = refresh_key(&s, false, k->refresh_key, why, why_len);
    if (err == AS_OK)
        err = load_all(&s, k, signer, NULL, true, now, why, why_len);
    return err;
}

/* Hands <kid>.pem to `fn`; a file removed meanwhile is skipped. */
static enum as_err export_one(const struct store *s, const char *kid,
                              bool current, sec_store_each_fn fn, void *arg,
                              char *why, size_t why_len)
{
    char path[PATH_MAX];
    unsigned char *pem = NULL;
    size_t len = 0;
    int64_t when = 0;
    enum as_err err = AS_OK;
    int rc = store_path(s, kid, ".pem", path) ? 0 : ENAMETOOLONG;

    if (rc == 0)
        rc = sec_file_read(path, SEC_KEY_FILE_MAX, &pem, &len);
    if (rc != 0 && (rc != ENOENT || current)) {
        sec_why(why, why_len, "%s: %s", path, sec_file_error(rc));
        err = AS_ERR_INTERNAL;
    }
    if (rc == 0 && !current && retired_read(s, kid, &when) != 0)
        when = 0;
    if (rc == 0)
        err = fn(arg, kid, pem, len, current, when);
    if (pem)
        sodium_memzero(pem, len);
    free(pem);
    return err;
}

enum as_err sec_store_export(const struct cfg *cfg, sec_store_each_fn fn,
                             void *arg, uint8_t refresh[SEC_REFRESH_KEY_LEN],
                             char *why, size_t why_len)
{
    struct store s;
    char current[SEC_KID_MAX], kid[SEC_KID_MAX];
    struct dirent *e;
    DIR *d;
    enum as_err err;

    if (!store_at(cfg, &s) || current_read(&s, current) != 0)
        return AS_ERR_NOT_FOUND;
    err = refresh_key(&s, true, refresh, why, why_len);
    if (err == AS_OK)
        err = export_one(&s, current, true, fn, arg, why, why_len);
    d = err == AS_OK ? opendir(s.dir) : NULL;
    if (err == AS_OK && !d) {
        sec_why(why, why_len, "%s: %s", s.dir, strerror(errno));
        err = AS_ERR_INTERNAL;
    }
    while (err == AS_OK && (e = readdir(d)) != NULL)
        if (name_kid(e->d_name, ".pem", kid) && strcmp(kid, current) != 0)
            err = export_one(&s, kid, false, fn, arg, why, why_len);
    if (d)
        closedir(d);
    return err;
}

/* ---- the `auth-serve keys` verbs ---- */

/* Takes an exclusive lock on the folder for one CLI verb; -1 on error. */
static int store_lock(const struct store *s, char *why, size_t why_len)
{
    char path[PATH_MAX];
    int fd = -1, rc = ENAMETOOLONG;

    if (store_path(s, ".lock", "", path)) {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        rc = errno;
    }
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        rc = errno;
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        sec_why(why, why_len, "cannot lock %s: %s", s->dir, strerror(rc));
    return fd;
}

/* Deletes keys retired long enough ago, never `current`. The command
 * runs with its own environment, which need not hold the daemon's
 * AUTH_ACCESS_TOKEN_TTL (the shipped unit hands the daemon its settings
 * as a credential): a shorter one there deleted a key whose tokens the
 * daemon still accepted, and the next reload refused them. So a key is
 * kept for the longest lifetime a daemon may give its tokens; the daemon
 * itself stops listing and accepting it after its own (load_all()). */
static void prune(const struct store *s, const char *current, int64_t now)
{
    struct store longest = *s;
    DIR *d = opendir(s->dir);
    struct dirent *e;
    char kid[SEC_KID_MAX], path[PATH_MAX];

    longest.keep_s = (int64_t)CFG_ACCESS_TTL_MAX + SEC_RETIRE_GRACE_S;
    while (d && (e = readdir(d)) != NULL) {
        if (!name_kid(e->d_name, ".retired", kid) ||
            strcmp(kid, current) == 0 || !is_expired(&longest, kid, now))
            continue;
        if (store_path(s, kid, ".pem", path))
            unlink(path);
        if (store_path(s, kid, ".retired", path))
            unlink(path);
        log_event(LOG_INFO, "keys.pruned", NULL,
                  json_pack("{s:s}", "kid", kid));
    }
    if (d)
        closedir(d);
}

static enum as_err cli_generate(const struct store *s,
                                char kid[SEC_KID_MAX], char *why,
                                size_t why_len)
{
    int rc = current_read(s, kid);

    if (rc == ENOENT)
        return first_key(s, kid, why, why_len);
    if (rc != 0) {
        sec_why(why, why_len, "%s/current: %s", s->dir,
                rc == EINVAL ? "not a key id" : sec_file_error(rc));
        return AS_ERR_INTERNAL;
    }
    return AS_OK;
}

static enum as_err cli_rotate(const struct store *s, char kid[SEC_KID_MAX],
                              char *why, size_t why_len)
{
    char old[SEC_KID_MAX];
    int64_t now = (int64_t)time(NULL);
    int had = current_read(s, old), rc;
    enum as_err err;

    if (had != 0 && had != ENOENT) {
        sec_why(why, why_len, "%s/current: %s", s->dir,
                sec_file_error(had));
        return AS_ERR_INTERNAL;
    }
    err = key_write_new(s, kid, why, why_len);
    if (err != AS_OK)
        return err;
    rc = current_write(s, kid, true);   /* `old` retires at the reload */
    if (rc != 0) {
        sec_why(why, why_len, "cannot switch %s to the new key: %s",
                s->dir, strerror(rc));
        return AS_ERR_INTERNAL;
    }
    log_event(LOG_INFO, "keys.rotated", NULL,
              json_pack("{s:s, s:s?}", "kid", kid,
                        "previous", had == 0 ? old : NULL));
    prune(s, kid, now);
    return AS_OK;
}

/* Whether the keys folder of `s` has a current key to rotate from;
 * why not into `why`. */
static bool rotatable(const struct store *s, char *why, size_t why_len)
{
    char path[PATH_MAX];
    struct stat st;

    /* lstat: a `current` that is a link to nothing is there (and refused
     * by the rotation, which says why) */
    if (!store_path(s, "current", "", path) || lstat(path, &st) == 0 ||
        errno != ENOENT)
        return true;                    /* the rotation says what fails */
    sec_why(why, why_len, "no key to rotate in %s (check AUTH_DATA_DIR and "
            "the working folder: the default is ./data; `keys generate` "
            "makes the first)", s->dir);
    return false;
}

static enum as_err cli_run(const struct cfg *cfg, const char *verb,
                           char kid[SEC_KID_MAX], char *why, size_t why_len)
{
    struct store s;
    enum as_err err;
    int lock;

    if (cfg->jwt_alg == CFG_ALG_HS256) {
        sec_why(why, why_len, "AUTH_JWT_ALG is HS256: there are no keys "
                "to manage");
        return AS_ERR_BAD_REQUEST;
    }
    if (cfg->jwt_key_file && cfg->jwt_key_file[0]) {
        sec_why(why, why_len, "AUTH_JWT_KEY_FILE is set: that file is the "
                "only key");
        return AS_ERR_BAD_REQUEST;
    }
    /* Run from the wrong folder, or with a mistyped AUTH_DATA_DIR,
     * `rotate` made a new keys folder there and said it had rotated,
     * the daemon's keys untouched (a review). A first key is
     * `generate`'s. */
    if (strcmp(verb, "rotate") == 0 && store_at(cfg, &s) &&
        !rotatable(&s, why, why_len))
        return AS_ERR_BAD_REQUEST;
    err = store_open(cfg, &s, why, why_len);
    if (err != AS_OK)
        return err;
    lock = store_lock(&s, why, why_len);
    if (lock < 0)
        return AS_ERR_INTERNAL;
    if (strcmp(verb, "generate") == 0)
        err = cli_generate(&s, kid, why, why_len);
    else
        err = cli_rotate(&s, kid, why, why_len);
    if (err == AS_OK) {
        uint8_t rk[SEC_REFRESH_KEY_LEN];
        err = refresh_key(&s, true, rk, why, why_len);
        sodium_memzero(rk, sizeof rk);
    }
    close(lock);
    return err;
}

int sec_keys_cli(const struct cfg *cfg, struct repo *r, const char *verb)
{
    char kid[SEC_KID_MAX], why[512] = "";
    enum as_err err;

    if (!verb || (strcmp(verb, "generate") != 0 &&
                  strcmp(verb, "rotate") != 0)) {
        fprintf(stderr, "auth-serve: keys: expected `generate` or "
                "`rotate`\n");
        return 2;
    }
    if (sodium_init() < 0)
        err = AS_ERR_INTERNAL;
    else if (r && cfg->jwt_alg != CFG_ALG_HS256 &&
             !(cfg->jwt_key_file && cfg->jwt_key_file[0]))
        err = sec_db_cli(cfg, r, verb, kid, why, sizeof why);
    else
        err = cli_run(cfg, verb, kid, why, sizeof why);
    if (err != AS_OK) {
        fprintf(stderr, "auth-serve: keys %s: %s\n", verb,
                why[0] ? why : "failed");
        return 2;
    }
    printf("%s\n", kid);
    fflush(stdout);
    return 0;
}
