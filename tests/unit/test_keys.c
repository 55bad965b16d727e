/* test_keys.c: key generation, the keys folder, rotation, key files,
 * HS256, JWKS and the refresh-derivation key. */
#include "sec.h"
#include "vcache.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "sec/sec_int.h"

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

static char issuer[] = "auth-serve", audience[] = "auth-serve";

struct fx {
    char root[PATH_MAX];
    char dir[PATH_MAX + 32];     /* a fresh data dir per test */
    char keys[PATH_MAX + 64];    /* its keys folder */
    struct cfg cfg;
    struct arena *a;
    int n;
};

/* ---- fixtures ---- */

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    const char *base = getenv("AUTH_TEST_TMP");

    if (!f || sodium_init() < 0)
        return -1;
    if (!base || !base[0])
        base = "/tmp";
    if (mkdir(base, 0700) != 0 && errno != EEXIST)
        return -1;
    snprintf(f->root, sizeof f->root, "%s/test_keys-XXXXXX", base);
    if (!mkdtemp(f->root))
        return -1;
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct fx *f = *state;

    nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static int setup(void **state)
{
    struct fx *f = *state;

    snprintf(f->dir, sizeof f->dir, "%s/data%d", f->root, ++f->n);
    snprintf(f->keys, sizeof f->keys, "%s/keys", f->dir);
    memset(&f->cfg, 0, sizeof f->cfg);
    f->cfg.jwt_alg = CFG_ALG_ES256;
    f->cfg.data_dir = f->dir;
    f->cfg.jwt_issuer = issuer;
    f->cfg.jwt_audience = audience;
    f->cfg.access_ttl = 900;
    f->a = arena_new();
    return f->a ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    arena_free(f->a);
    f->a = NULL;
    return 0;
}

/* ---- helpers ---- */

static struct sec_keys *load(const struct cfg *c)
{
    struct sec_keys *k = NULL;
    char why[512] = "";

    if (sec_keys_load(c, &k, why, sizeof why) != AS_OK)
        fail_msg("sec_keys_load: %s", why);
    return k;
}

/* Loads expecting failure; returns `why`. */
static const char *load_fails(const struct cfg *c)
{
    static char why[512];
    struct sec_keys *k = (struct sec_keys *)1;

    why[0] = '\0';
    assert_int_not_equal(sec_keys_load(c, &k, why, sizeof why), AS_OK);
    assert_null(k);
    assert_true(why[0] != '\0');
    return why;
}

/* Runs `auth-serve keys <verb>`, capturing stdout into `out`. */
static int run_cli(const struct cfg *c, const char *verb, char *out,
                   size_t out_len)
{
    int fds[2], saved, rc;
    ssize_t n;

    fflush(stdout);
    assert_int_equal(pipe(fds), 0);
    saved = dup(STDOUT_FILENO);
    dup2(fds[1], STDOUT_FILENO);
    close(fds[1]);
    rc = sec_keys_cli(c, NULL, verb);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    n = read(fds[0], out, out_len - 1);
    close(fds[0]);
    out[n > 0 ? n : 0] = '\0';
    return rc;
}

static mode_t mode_of(const char *path)
{
    struct stat st;

    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode & 07777;
}

static void path_in(char out[PATH_MAX], const char *dir, const char *name,
                    const char *suffix)
{
    assert_true(snprintf(out, PATH_MAX, "%s/%s%s", dir, name, suffix) <
                PATH_MAX);
}

static int count_suffix(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    size_t sn = strlen(suffix);

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        n += len > sn && strcmp(e->d_name + len - sn, suffix) == 0;
    }
    closedir(d);
    return n;
}

static int count_containing(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, needle) != NULL;
    closedir(d);
    return n;
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

/* Signs a fresh token into the caller's *token (the caller frees it).
 * The pointer lives in the caller's frame: returning a local that
 * sec_jwt_sign() received by address made gcc 12 at -O3 suspect it
 * pointed into this dead frame (-Wdangling-pointer). */
static void sign_now(const struct sec_keys *k, const struct cfg *c,
                     char **token)
{
    struct sec_claims cl;
    int64_t now = (int64_t)time(NULL);

    memset(&cl, 0, sizeof cl);
    uuid_v7_new(cl.sub);
    uuid_v7_new(cl.sid);
    uuid_v7_new(cl.jti);
    cl.email = "ada@example.com";
    cl.role = "admin";
    cl.iat = cl.nbf = now;
    cl.exp = now + 900;
    *token = NULL;
    assert_int_equal(sec_jwt_sign(k, c, &cl, token), AS_OK);
}

static enum as_err verify_now(const struct sec_keys *k, const struct cfg *c,
                              const char *token, struct arena *a)
{
    struct sec_claims out;

    return sec_jwt_verify(k, c, token, (int64_t)time(NULL), &out, a);
}

/* The kid in the header of `token`. */
static void header_kid(const char *token, char kid[SEC_KID_MAX])
{
    unsigned char buf[512];
    size_t got = 0;
    json_t *h;

    assert_int_equal(sodium_base642bin(buf, sizeof buf, token,
                                       (size_t)(strchr(token, '.') - token),
                                       NULL, &got, NULL, B64), 0);
    h = json_loadb((const char *)buf, got, 0, NULL);
    assert_non_null(h);
    snprintf(kid, SEC_KID_MAX, "%s",
             json_string_value(json_object_get(h, "kid")));
    json_decref(h);
}

static void child_of(const struct sec_keys *k, char out[SEC_TOKEN_LEN + 1])
{
    sec_token_child(k, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", out);
}

/* Writes a private key of `type`/`param` as PEM: PKCS#8 or traditional. */
static void write_key(const char *path, const char *type, const char *param,
                      bool pkcs8)
{
    EVP_PKEY *pk = strcmp(type, "RSA") == 0
                       ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                       : EVP_PKEY_Q_keygen(NULL, NULL, "EC", param);
    BIO *out = BIO_new_file(path, "w");
    int ok;

    assert_non_null(pk);
    assert_non_null(out);
    ok = pkcs8 ? PEM_write_bio_PrivateKey(out, pk, NULL, NULL, 0, NULL, NULL)
               : PEM_write_bio_PrivateKey_traditional(out, pk, NULL, NULL,
                                                      0, NULL, NULL);
    assert_int_equal(ok, 1);
    BIO_free(out);
    EVP_PKEY_free(pk);
}

/* Rewrites the PEM at `from` into `to` in the other PEM flavour. */
static void convert_key(const char *from, const char *to)
{
    BIO *in = BIO_new_file(from, "r"), *out = BIO_new_file(to, "w");
    EVP_PKEY *pk;

    assert_non_null(in);
    assert_non_null(out);
    pk = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
    assert_non_null(pk);
    assert_int_equal(PEM_write_bio_PrivateKey_traditional(out, pk, NULL,
                                                          NULL, 0, NULL,
                                                          NULL), 1);
    BIO_free(in);
    BIO_free(out);
    EVP_PKEY_free(pk);
}

static size_t b64_len(const char *s)
{
    unsigned char buf[1024];
    size_t got = 0;

    assert_non_null(s);
    assert_int_equal(sodium_base642bin(buf, sizeof buf, s, strlen(s), NULL,
                                       &got, NULL, B64), 0);
    return got;
}

/* ---- first start ---- */

static void first_start_generates_private_files(void **state)
{
    struct fx *f = *state;
    struct sec_keys *k = load(&f->cfg), *again;
    const char *kid = sec_keys_kid(k);
    char path[PATH_MAX], c1[SEC_TOKEN_LEN + 1], c2[SEC_TOKEN_LEN + 1];
    unsigned char *data = NULL;
    size_t len = 0;

    assert_int_equal(strlen(kid), 43);
    assert_int_equal(mode_of(f->keys), 0700);
    path_in(path, f->keys, kid, ".pem");
    assert_int_equal(mode_of(path), 0600);
    path_in(path, f->keys, "current", "");
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(sec_file_read(path, 100, &data, &len), 0);
    assert_int_equal(len, 44);
    assert_memory_equal(data, kid, 43);
    free(data);
    path_in(path, f->keys, "refresh.key", "");
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(sec_file_read(path, 100, &data, &len), 0);
    assert_int_equal(len, 32);
    free(data);
    assert_int_equal(count_containing(f->keys, ".tmp-"), 0);

    again = load(&f->cfg);                   /* reload: same key */
    assert_string_equal(sec_keys_kid(again), kid);
    assert_int_equal(count_suffix(f->keys, ".pem"), 1);
    child_of(k, c1);
    child_of(again, c2);
    assert_string_equal(c1, c2);
    sec_keys_free(k);
    sec_keys_free(again);
}

static void first_start_race_has_one_winner(void **state)
{
    enum { N = 4 };
    struct fx *f = *state;
    int gate[2], result[2], i, status;
    char kids[N][SEC_KID_MAX];
    pid_t pids[N];

    assert_int_equal(pipe(gate), 0);
    assert_int_equal(pipe(result), 0);
    fflush(stdout);
    fflush(stderr);
    for (i = 0; i < N; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char c, line[SEC_KID_MAX] = "";
            struct sec_keys *k = NULL;

            close(gate[1]);
            (void)!read(gate[0], &c, 1);     /* returns when parent closes */
            if (sec_keys_load(&f->cfg, &k, NULL, 0) == AS_OK)
                snprintf(line, sizeof line, "%s", sec_keys_kid(k));
            (void)!write(result[1], line, sizeof line);
            sec_keys_free(k);
            _exit(0);
        }
    }
    close(gate[0]);
    close(gate[1]);                          /* all children go at once */
    close(result[1]);
    for (i = 0; i < N; i++) {
        assert_int_equal(read(result[0], kids[i], SEC_KID_MAX),
                         SEC_KID_MAX);
        assert_int_equal(strlen(kids[i]), 43);
        assert_string_equal(kids[i], kids[0]);
    }
    close(result[0]);
    for (i = 0; i < N; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(count_suffix(f->keys, ".pem"), 1);
}

/* ---- kid and JWKS ---- */

static void thumbprint_matches_rfc7638(void **state)
{
    /* RFC 7638 section 3.1. */
    json_t *jwk = json_pack(
        "{s:s, s:s, s:s, s:s}", "kty", "RSA", "e", "AQAB", "alg", "RS256",
        "n", "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86"
             "zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-"
             "5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368"
             "QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qN"
             "Lyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls"
             "1jF44-csFCur-kEgU8awapJzKnqDKgw");
    char kid[SEC_KID_MAX];

    (void)state;
    assert_non_null(jwk);
    assert_true(sec_jwk_thumbprint(jwk, kid));
    assert_string_equal(kid, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    json_object_del(jwk, "e");
    assert_false(sec_jwk_thumbprint(jwk, kid));
    json_decref(jwk);
}

static void jwks_es256_shape(void **state)
{
    struct fx *f = *state;
    struct sec_keys *k = load(&f->cfg);
    json_t *jwks = sec_jwks(k, time(NULL)), *key;
    char kid[SEC_KID_MAX];

    assert_int_equal(json_object_size(jwks), 1);
    assert_int_equal(json_array_size(json_object_get(jwks, "keys")), 1);
    key = json_array_get(json_object_get(jwks, "keys"), 0);
    assert_int_equal(json_object_size(key), 7);
    assert_string_equal(json_string_value(json_object_get(key, "kty")),
                        "EC");
    assert_string_equal(json_string_value(json_object_get(key, "crv")),
                        "P-256");
    assert_string_equal(json_string_value(json_object_get(key, "use")),
                        "sig");
    assert_string_equal(json_string_value(json_object_get(key, "alg")),
                        "ES256");
    assert_string_equal(json_string_value(json_object_get(key, "kid")),
                        sec_keys_kid(k));
    assert_int_equal(b64_len(json_string_value(json_object_get(key, "x"))),
                     32);
    assert_int_equal(b64_len(json_string_value(json_object_get(key, "y"))),
                     32);
    assert_null(json_object_get(key, "d"));
    assert_true(sec_jwk_thumbprint(key, kid));
    assert_string_equal(kid, sec_keys_kid(k));
    json_decref(jwks);
    sec_keys_free(k);
}

static void jwks_rs256_shape(void **state)
{
    struct fx *f = *state;
    struct sec_keys *k;
    json_t *jwks, *key;
    char kid[SEC_KID_MAX];

    f->cfg.jwt_alg = CFG_ALG_RS256;
    k = load(&f->cfg);
    jwks = sec_jwks(k, time(NULL));
    key = json_array_get(json_object_get(jwks, "keys"), 0);
    assert_int_equal(json_array_size(json_object_get(jwks, "keys")), 1);
    assert_int_equal(json_object_size(key), 6);
    assert_string_equal(json_string_value(json_object_get(key, "kty")),
                        "RSA");
    assert_string_equal(json_string_value(json_object_get(key, "e")),
                        "AQAB");
    assert_int_equal(b64_len(json_string_value(json_object_get(key, "n"))),
                     256);
    assert_string_equal(json_string_value(json_object_get(key, "alg")),
                        "RS256");
    assert_string_equal(json_string_value(json_object_get(key, "use")),
                        "sig");
    assert_null(json_object_get(key, "d"));
    assert_null(json_object_get(key, "p"));
    assert_true(sec_jwk_thumbprint(key, kid));
    assert_string_equal(kid, sec_keys_kid(k));
    json_decref(jwks);
    sec_keys_free(k);
}

static void hs256_secret(void **state)
{
    struct fx *f = *state;
    char good[] = "0123456789abcdef0123456789abcdef";
    char shorter[] = "0123456789abcdef0123456789abcde";
    struct sec_keys *k, *again;
    json_t *jwks;
    char *text;

    f->cfg.jwt_alg = CFG_ALG_HS256;
    assert_non_null(strstr(load_fails(&f->cfg), "AUTH_JWT_SECRET"));
    f->cfg.jwt_secret = shorter;
    assert_non_null(strstr(load_fails(&f->cfg), "32"));
    f->cfg.jwt_secret = good;
    k = load(&f->cfg);
    again = load(&f->cfg);
    assert_string_equal(sec_keys_kid(k), sec_keys_kid(again));
    assert_null(strstr(sec_keys_kid(k), good));
    jwks = sec_jwks(k, time(NULL));
    text = json_dumps(jwks, JSON_COMPACT);
    assert_string_equal(text, "{\"keys\":[]}");
    assert_int_equal(access(f->dir, F_OK), -1);  /* no folder under HS256 */
    free(text);
    json_decref(jwks);
    sec_keys_free(k);
    sec_keys_free(again);
}

/* ---- rotation ---- */

static void rotate_keeps_old_tokens_valid(void **state)
{
    struct fx *f = *state;
    struct sec_keys *k1 = load(&f->cfg), *k2;
    char old[SEC_KID_MAX], out[128], path[PATH_MAX], kid[SEC_KID_MAX];
    char c1[SEC_TOKEN_LEN + 1], c2[SEC_TOKEN_LEN + 1];
    char *t1, *t2;
    json_t *jwks;

    sign_now(k1, &f->cfg, &t1);
    snprintf(old, sizeof old, "%s", sec_keys_kid(k1));
    assert_int_equal(run_cli(&f->cfg, "rotate", out, sizeof out), 0);
    assert_int_equal(strlen(out), 44);               /* kid and newline */
    path_in(path, f->keys, old, ".retired");
    assert_int_equal(access(path, F_OK), -1);  /* it still signs: k1 */

    k2 = load(&f->cfg);
    assert_int_equal(access(path, F_OK), 0);   /* retired by the reload */
    assert_string_not_equal(sec_keys_kid(k2), old);
    assert_memory_equal(out, sec_keys_kid(k2), 43);
    assert_int_equal(verify_now(k2, &f->cfg, t1, f->a), AS_OK);
    sign_now(k2, &f->cfg, &t2);
    header_kid(t2, kid);
    assert_string_equal(kid, sec_keys_kid(k2));
    assert_int_equal(verify_now(k2, &f->cfg, t2, f->a), AS_OK);
    assert_int_equal(verify_now(k1, &f->cfg, t2, f->a),
                     AS_ERR_INVALID_TOKEN);  /* k1 predates the new key */
    jwks = sec_jwks(k2, time(NULL));
    assert_int_equal(json_array_size(json_object_get(jwks, "keys")), 2);
    child_of(k1, c1);
    child_of(k2, c2);
    assert_string_equal(c1, c2);           /* refresh tokens survive it */
    json_decref(jwks);
    free(t1);
    free(t2);
    sec_keys_free(k1);
    sec_keys_free(k2);
}

/* A key retires when it stops signing (at the reload), not when it is
 * rotated out: a reload long after `keys rotate` keeps the key that signed
 * until then for access TTL + 60 s, and only then drops it. */
static void late_reload_keeps_the_last_signer(void **state)
{
    struct fx *f = *state;
    struct sec_keys *k1, *k2, *k3;
    char old[SEC_KID_MAX], out[128], why[512] = "";
    int64_t t0 = (int64_t)time(NULL) * 1000, late;
    char *tok;

    f->cfg.access_ttl = 30;
    k1 = load(&f->cfg);
    snprintf(old, sizeof old, "%s", sec_keys_kid(k1));
    assert_int_equal(run_cli(&f->cfg, "rotate", out, sizeof out), 0);
    sign_now(k1, &f->cfg, &tok);    /* k1 signs on until the reload */
    late = t0 + (30 + 60 + 3600) * 1000;
    assert_int_equal(sec_keys_open(&f->cfg, NULL, k1, late, &k2, why,
                                   sizeof why), AS_OK);
    assert_string_not_equal(sec_keys_kid(k2), old);
    assert_non_null(sec_keys_find(k2, old));
    assert_int_equal(verify_now(k2, &f->cfg, tok, f->a), AS_OK);
    /* The next rotation leaves it too. */
    assert_int_equal(run_cli(&f->cfg, "rotate", out, sizeof out), 0);
    sec_keys_free(k2);
    assert_int_equal(sec_keys_open(&f->cfg, NULL, NULL, late + 1000, &k2,
                                   why, sizeof why), AS_OK);
    assert_non_null(sec_keys_find(k2, old));
    /* Access TTL + 60 s after that reload it is gone. */
    assert_int_equal(sec_keys_open(&f->cfg, NULL, k2,
                                   late + (30 + 61) * 1000, &k3, why,
                                   sizeof why), AS_OK);
    assert_null(sec_keys_find(k3, old));
    free(tok);
    sec_keys_free(k1);
    sec_keys_free(k2);
    sec_keys_free(k3);
}

static void retired_keys_expire_and_are_pruned(void **state)
{
    struct fx *f = *state;
    struct sec_keys *k1 = load(&f->cfg), *k2, *k3;
    char first[SEC_KID_MAX], second[SEC_KID_MAX], out[128];
    char path[PATH_MAX], when[32];
    char *t1;
    json_t *jwks;

    sign_now(k1, &f->cfg, &t1);
    snprintf(first, sizeof first, "%s", sec_keys_kid(k1));
    assert_int_equal(run_cli(&f->cfg, "rotate", out, sizeof out), 0);
    snprintf(second, sizeof second, "%.43s", out);
    /* The first key retired longer ago than access TTL + 60 s. */
    snprintf(when, sizeof when, "%lld\n",
             (long long)time(NULL) - f->cfg.access_ttl - 61);
    path_in(path, f->keys, first, ".retired");
    write_text(path, when);
    k2 = load(&f->cfg);
    jwks = sec_jwks(k2, time(NULL));
    assert_int_equal(json_array_size(json_object_get(jwks, "keys")), 1);
    assert_int_equal(verify_now(k2, &f->cfg, t1, f->a),
                     AS_ERR_INVALID_TOKEN);
    json_decref(jwks);

    /* `keys rotate` does not know the daemon's lifetime (its own
     * environment may hold another): it keeps the file for the longest
     * one, where it deleted it at its own before. */
    assert_int_equal(run_cli(&f->cfg, "rotate", out, sizeof out), 0);
    path_in(path, f->keys, first, ".pem");
    assert_int_equal(access(path, F_OK), 0);             /* kept */
    snprintf(when, sizeof when, "%lld\n",
             (long long)time(NULL) - CFG_ACCESS_TTL_MAX - 61);
    path_in(path, f->keys, first, ".retired");
    write_text(path, when);
    assert_int_equal(run_cli(&f->cfg, "rotate", out, sizeof out), 0);
    path_in(path, f->keys, first, ".pem");
    assert_int_equal(access(path, F_OK), -1);            /* pruned */
    path_in(path, f->keys, first, ".retired");
    assert_int_equal(access(path, F_OK), -1);
    path_in(path, f->keys, second, ".pem");
    assert_int_equal(access(path, F_OK), 0);             /* still fresh */
    k3 = load(&f->cfg);
    jwks = sec_jwks(k3, time(NULL));
    /* the second, the one of the rotation that kept the first (it never
     * signed, so it is not retired), and the newest */
    assert_int_equal(json_array_size(json_object_get(jwks, "keys")), 3);
    assert_non_null(sec_keys_find(k3, second));
    json_decref(jwks);
    free(t1);
    sec_keys_free(k1);
    sec_keys_free(k2);
    sec_keys_free(k3);
}

/* A retired key loaded inside its window stops verifying, and is no
 * longer published, when the window ends, without waiting for the next
 * load (a key rotated out because it leaked must not verify past it). */
static void retired_keys_end_without_a_reload(void **state)
{
    struct fx *f = *state;
    struct sec_keys *k1 = load(&f->cfg), *k2;
    char first[SEC_KID_MAX], out[128], path[PATH_MAX], when[32];
    struct sec_claims cl;
    int64_t retired = (int64_t)time(NULL) - 100, end;
    uint64_t hits = 0, misses = 0;
    struct vcache *vc;
    char *t1;
    json_t *jwks;

    sign_now(k1, &f->cfg, &t1);
    snprintf(first, sizeof first, "%s", sec_keys_kid(k1));
    assert_int_equal(run_cli(&f->cfg, "rotate", out, sizeof out), 0);
    snprintf(when, sizeof when, "%lld\n", (long long)retired);
    path_in(path, f->keys, first, ".retired");
    write_text(path, when);
    k2 = load(&f->cfg);
    end = retired + f->cfg.access_ttl + 60;
    /* t1 expires at its exp; check the key alone: verify at a time its
     * claims still allow, once inside the window and once past it */
    assert_int_equal(sec_jwt_verify(k2, &f->cfg, t1, end, &cl, f->a),
                     AS_OK);
    assert_int_equal(sec_jwt_verify(k2, &f->cfg, t1, end + 1, &cl, f->a),
                     AS_ERR_INVALID_TOKEN);
    /* nor through the verified-token cache, which held it since */
    vc = vcache_new(64);
    assert_non_null(vc);
    assert_int_equal(vcache_verify(vc, k2, &f->cfg, t1, end, &cl, f->a),
                     AS_OK);
    assert_int_equal(vcache_verify(vc, k2, &f->cfg, t1, end, &cl, f->a),
                     AS_OK);
    vcache_stats(vc, &hits, &misses);
    assert_int_equal(hits, 1);
    assert_int_equal(vcache_verify(vc, k2, &f->cfg, t1, end + 1, &cl,
                                   f->a),
                     AS_ERR_INVALID_TOKEN);
    vcache_free(vc);
    jwks = sec_jwks(k2, end);
    assert_int_equal(json_array_size(json_object_get(jwks, "keys")), 2);
    json_decref(jwks);
    jwks = sec_jwks(k2, end + 1);
    assert_int_equal(json_array_size(json_object_get(jwks, "keys")), 1);
    json_decref(jwks);
    free(t1);
    sec_keys_free(k1);
    sec_keys_free(k2);
}

static void cli_generate_is_idempotent(void **state)
{
    struct fx *f = *state;
    char out1[128], out2[128];
    struct sec_keys *k;

    assert_int_equal(run_cli(&f->cfg, "generate", out1, sizeof out1), 0);
    assert_int_equal(strlen(out1), 44);
    assert_int_equal(run_cli(&f->cfg, "generate", out2, sizeof out2), 0);
    assert_string_equal(out1, out2);
    assert_int_equal(count_suffix(f->keys, ".pem"), 1);
    k = load(&f->cfg);
    assert_memory_equal(out1, sec_keys_kid(k), 43);
    sec_keys_free(k);
}

static void cli_errors_exit_2(void **state)
{
    struct fx *f = *state;
    char out[128], secret[] = "0123456789abcdef0123456789abcdef";
    char file[] = "/nonexistent/key.pem";
    struct cfg c = f->cfg;

    assert_int_equal(run_cli(&c, "explode", out, sizeof out), 2);
    assert_string_equal(out, "");
    assert_int_equal(run_cli(&c, NULL, out, sizeof out), 2);
    c.jwt_alg = CFG_ALG_HS256;
    c.jwt_secret = secret;
    assert_int_equal(run_cli(&c, "rotate", out, sizeof out), 2);
    c = f->cfg;
    c.jwt_key_file = file;
    assert_int_equal(run_cli(&c, "generate", out, sizeof out), 2);
    c = f->cfg;
    c.data_dir = NULL;
    assert_int_equal(run_cli(&c, "generate", out, sizeof out), 2);
    assert_int_equal(access(f->dir, F_OK), -1);
}

/* ---- folder trouble ---- */

static void algorithm_change_needs_rotate(void **state)
{
    struct fx *f = *state;
    struct sec_keys *k = load(&f->cfg);
    char out[128];
    json_t *jwks;

    sec_keys_free(k);
    f->cfg.jwt_alg = CFG_ALG_RS256;
    assert_non_null(strstr(load_fails(&f->cfg), "rotate"));
    assert_int_equal(run_cli(&f->cfg, "rotate", out, sizeof out), 0);
    k = load(&f->cfg);
    jwks = sec_jwks(k, time(NULL));
    assert_int_equal(json_array_size(json_object_get(jwks, "keys")), 1);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(jwks, "keys"), 0),
                            "kty")), "RSA");
    json_decref(jwks);
    sec_keys_free(k);
}

static void damaged_folder_refused(void **state)
{
    struct fx *f = *state;
    struct sec_keys *k = load(&f->cfg);
    char path[PATH_MAX], to[PATH_MAX], kid[SEC_KID_MAX];
    const char *fake = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    snprintf(kid, sizeof kid, "%s", sec_keys_kid(k));
    sec_keys_free(k);
    path_in(path, f->keys, "current", "");
    write_text(path, "../../etc/passwd\n");
    load_fails(&f->cfg);
    write_text(path, "\n");
    load_fails(&f->cfg);
    /* `current` names a file that holds another key. */
    path_in(path, f->keys, kid, ".pem");
    path_in(to, f->keys, fake, ".pem");
    assert_int_equal(rename(path, to), 0);
    path_in(path, f->keys, "current", "");
    write_text(path, fake);
    assert_non_null(strstr(load_fails(&f->cfg), fake));
    /* `current` names a missing key. */
    assert_int_equal(unlink(to), 0);
    load_fails(&f->cfg);
    /* refresh.key of the wrong size. */
    assert_int_equal(unlink(path), 0);
    path_in(path, f->keys, "refresh.key", "");
    write_text(path, "short");
    assert_non_null(strstr(load_fails(&f->cfg), "32 bytes"));
}

/* ---- AUTH_JWT_KEY_FILE ---- */

static void key_file_is_used_as_is(void **state)
{
    struct fx *f = *state;
    char pkcs8[PATH_MAX], sec1[PATH_MAX];
    char c1[SEC_TOKEN_LEN + 1], c2[SEC_TOKEN_LEN + 1];
    struct sec_keys *k1, *k2;
    char *token;

    assert_int_equal(mkdir(f->dir, 0700), 0);
    path_in(pkcs8, f->dir, "es", ".pem");
    path_in(sec1, f->dir, "es-sec1", ".pem");
    write_key(pkcs8, "EC", "P-256", true);
    convert_key(pkcs8, sec1);
    f->cfg.jwt_key_file = pkcs8;
    k1 = load(&f->cfg);
    f->cfg.jwt_key_file = sec1;
    k2 = load(&f->cfg);
    assert_string_equal(sec_keys_kid(k1), sec_keys_kid(k2));
    child_of(k1, c1);
    child_of(k2, c2);
    assert_string_equal(c1, c2);      /* derived from the key, not bytes */
    sign_now(k1, &f->cfg, &token);
    assert_int_equal(verify_now(k2, &f->cfg, token, f->a), AS_OK);
    assert_int_equal(access(f->keys, F_OK), -1);   /* nothing generated */
    free(token);
    sec_keys_free(k1);
    sec_keys_free(k2);
}

static void key_file_rs256(void **state)
{
    struct fx *f = *state;
    char file[PATH_MAX];
    struct sec_keys *k;
    char *token;

    assert_int_equal(mkdir(f->dir, 0700), 0);
    path_in(file, f->dir, "rs", ".pem");
    write_key(file, "RSA", NULL, false);
    f->cfg.jwt_alg = CFG_ALG_RS256;
    f->cfg.jwt_key_file = file;
    k = load(&f->cfg);
    sign_now(k, &f->cfg, &token);
    assert_int_equal(verify_now(k, &f->cfg, token, f->a), AS_OK);
    free(token);
    sec_keys_free(k);
}

static void key_file_mismatch_refused(void **state)
{
    struct fx *f = *state;
    char ec[PATH_MAX], p384[PATH_MAX], junk[PATH_MAX];
    char missing[PATH_MAX];

    assert_int_equal(mkdir(f->dir, 0700), 0);
    path_in(ec, f->dir, "ec", ".pem");
    path_in(p384, f->dir, "p384", ".pem");
    path_in(junk, f->dir, "junk", ".pem");
    path_in(missing, f->dir, "missing", ".pem");
    write_key(ec, "EC", "P-256", true);
    write_key(p384, "EC", "P-384", true);
    write_text(junk, "-----BEGIN PRIVATE KEY-----\nnope\n");
    f->cfg.jwt_alg = CFG_ALG_RS256;
    f->cfg.jwt_key_file = ec;
    assert_non_null(strstr(load_fails(&f->cfg), "RS256"));
    f->cfg.jwt_alg = CFG_ALG_ES256;
    f->cfg.jwt_key_file = p384;
    assert_non_null(strstr(load_fails(&f->cfg), "P-256"));
    f->cfg.jwt_key_file = junk;
    assert_non_null(strstr(load_fails(&f->cfg), "not a PEM private key"));
    f->cfg.jwt_key_file = missing;
    assert_non_null(strstr(load_fails(&f->cfg), missing));
}

/* AUTH_JWT_KEY_FILE may be a symbolic link, as a mounted secret is
 * (name -> ..data/name, ..data -> a timestamped folder). */
static void key_file_may_be_a_link(void **state)
{
    struct fx *f = *state;
    char real_dir[PATH_MAX], real[PATH_MAX], data[PATH_MAX];
    char link_path[PATH_MAX];
    struct sec_keys *k1, *k2;

    assert_int_equal(mkdir(f->dir, 0700), 0);
    path_in(real_dir, f->dir, "..2026_12_01", "");
    assert_int_equal(mkdir(real_dir, 0700), 0);
    path_in(real, real_dir, "key", ".pem");
    write_key(real, "EC", "P-256", true);
    path_in(data, f->dir, "..data", "");
    assert_int_equal(symlink("..2026_12_01", data), 0);
    path_in(link_path, f->dir, "key", ".pem");
    assert_int_equal(symlink("..data/key.pem", link_path), 0);
    f->cfg.jwt_key_file = real;
    k1 = load(&f->cfg);
    f->cfg.jwt_key_file = link_path;
    k2 = load(&f->cfg);
    assert_string_equal(sec_keys_kid(k1), sec_keys_kid(k2));
    sec_keys_free(k1);
    sec_keys_free(k2);
    /* A link to something that is not a regular file is still refused. */
    assert_int_equal(unlink(link_path), 0);
    assert_int_equal(symlink("..data", link_path), 0);
    load_fails(&f->cfg);
}

/* Inside the generated keys folder a symbolic link is never followed:
 * not for a key, not for `current`, not for refresh.key. */
static void keys_folder_links_refused(void **state)
{
    struct fx *f = *state;
    struct sec_keys *k = load(&f->cfg);
    char path[PATH_MAX], outside[PATH_MAX], kid[SEC_KID_MAX];
    const char *names[][2] = { { "", ".pem" }, { "current", "" },
                               { "refresh.key", "" } };
    size_t i;

    snprintf(kid, sizeof kid, "%s", sec_keys_kid(k));
    sec_keys_free(k);
    names[0][0] = kid;
    for (i = 0; i < 3; i++) {
        path_in(path, f->keys, names[i][0], names[i][1]);
        path_in(outside, f->dir, names[i][0], names[i][1]);
        assert_int_equal(rename(path, outside), 0);
        assert_int_equal(symlink(outside, path), 0);
        load_fails(&f->cfg);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rename(outside, path), 0);
        k = load(&f->cfg);                  /* the real file: fine again */
        sec_keys_free(k);
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(first_start_generates_private_files),
        T(first_start_race_has_one_winner),
        T(thumbprint_matches_rfc7638),
        T(jwks_es256_shape),
        T(jwks_rs256_shape),
        T(hs256_secret),
        T(rotate_keeps_old_tokens_valid),
        T(retired_keys_expire_and_are_pruned),
        T(retired_keys_end_without_a_reload),
        T(late_reload_keeps_the_last_signer),
        T(cli_generate_is_idempotent),
        T(cli_errors_exit_2),
        T(algorithm_change_needs_rotate),
        T(damaged_folder_refused),
        T(key_file_is_used_as_is),
        T(key_file_rs256),
        T(key_file_mismatch_refused),
        T(key_file_may_be_a_link),
        T(keys_folder_links_refused),
    };
#undef T

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
