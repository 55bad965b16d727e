#ifndef AUTH_SEC_INT_H           /* sec_int.h: shared inside src/sec/ only */
#define AUTH_SEC_INT_H
#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cfg.h"
#include "sec.h"

struct repo;

#define SEC_KID_MAX 48           /* a thumbprint kid is 43 characters */
#define SEC_REFRESH_KEY_LEN 32
#define SEC_KEY_FILE_MAX (64 * 1024)
#define SEC_RETIRE_GRACE_S 60    /* kept past access TTL after retirement */

struct sec_key {                 /* one key accepted for verification */
    char kid[SEC_KID_MAX];
    unsigned char *verify;       /* the HS256 secret; NULL otherwise */
    size_t verify_len;
    EVP_PKEY *pkey;              /* the public key (ES256, RS256) */
    json_t *jwk;                 /* public JWK; NULL under HS256 */
    int64_t until;               /* Unix s past which it verifies nothing
                                    and is not published (a retired key:
                                    retirement + access TTL + 60 s, even
                                    before the next load drops it);
                                    INT64_MAX: no end */
    int64_t listed_at;           /* Unix s this process first published
                                    it (kept from set to set) */
};

struct sec_keys {
    enum cfg_alg alg;
    jwt_alg_t jwt_alg;
    struct sec_key *keys;        /* every verification key */
    size_t n_keys;
    size_t signer;               /* index of the signing key in `keys` */
    unsigned char *sign;         /* private PEM, or the HS256 secret */
    size_t sign_len;
    uint8_t refresh_key[SEC_REFRESH_KEY_LEN];
    uint8_t db_state[32];        /* keys in PostgreSQL: what was loaded */
};

/* Writes a formatted message into `why` (may be NULL or empty). */
void sec_why(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- keys.c ---- */
/* "ES256", "RS256" or "HS256"; the libjwt value of the same. */
const char *sec_alg_name(enum cfg_alg a);
jwt_alg_t sec_alg_jwt(enum cfg_alg a);
/* Appends the public half of `pk` (already checked with sec_pkey_fits) as a
 * verification key; its index goes to `*index`. AS_ERR_NOMEM or
 * AS_ERR_INTERNAL on failure, `k` unchanged. Does not take `pk`. */
enum as_err sec_keys_add(struct sec_keys *k, EVP_PKEY *pk, size_t *index);
/* The key named `kid`, or NULL. Borrowed from `k`. */
const struct sec_key *sec_keys_find(const struct sec_keys *k,
                                    const char *kid);
/* HMAC-SHA-256 of `label` keyed by `material` (any length) into `out`. */
void sec_derive(const void *material, size_t len, const char *label,
                uint8_t out[32]);

/* ---- pkey.c: OpenSSL key handling ---- */
/* Parses a PEM private key; NULL when it is not one. `alg` is the key
 * type tried first (the cheap path); a key of any other type or form is
 * parsed all the same. Free with EVP_PKEY_free(). */
EVP_PKEY *sec_pkey_parse(const unsigned char *pem, size_t len,
                         enum cfg_alg alg);
/* True when `pem` is an encrypted private key (PKCS#8 "ENCRYPTED
 * PRIVATE KEY", or a "Proc-Type: 4,ENCRYPTED" header), which
 * sec_pkey_parse() refuses without asking for its passphrase: the
 * refusal can then say why. */
bool sec_pkey_encrypted(const unsigned char *pem, size_t len);
/* How many PEM blocks of `pem` hold a private key ("-----BEGIN PRIVATE
 * KEY-----", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE
 * KEY"; other blocks, such as EC parameters or a certificate, are not
 * counted). */
size_t sec_pkey_count(const unsigned char *pem, size_t len);
/* The fast path of sec_pkey_parse() for ES256 (pkey.c says which forms
 * it reads); NULL for text of any other form, and NULL with *bad set for
 * a key of those forms whose scalar or point is wrong. */
EVP_PKEY *sec_pkey_parse_p256(const unsigned char *pem, size_t len,
                              bool *bad);
/* The public half of key pair `pk` as a key of its own (no private
 * half); NULL on failure. Free with EVP_PKEY_free(). */
EVP_PKEY *sec_pkey_public(EVP_PKEY *pk);
/* A fresh P-256 key (ES256) or 2048-bit RSA key (RS256); NULL on
 * failure. Free with EVP_PKEY_free(). */
EVP_PKEY *sec_pkey_generate(enum cfg_alg alg);
/* True when `pk` suits `alg`: P-256 for ES256, RSA of 2048 bits or more
 * for RS256. Otherwise false and `why` names the mismatch. */
bool sec_pkey_fits(EVP_PKEY *pk, enum cfg_alg alg, char *why,
                   size_t why_len);
/* PKCS#8 PEM of the private key, NUL-terminated (not counted in *len);
 * NULL on failure. Caller wipes it with sodium_memzero and frees it. */
unsigned char *sec_pkey_private_pem(EVP_PKEY *pk, size_t *len);
/* Public JWK of `pk` with "kid" (its RFC 7638 thumbprint, also copied to
 * `kid`), "use" and "alg"; NULL on failure. Caller decrefs. */
json_t *sec_pkey_jwk(EVP_PKEY *pk, enum cfg_alg alg, char kid[SEC_KID_MAX]);
/* RFC 7638 thumbprint of the required members of `jwk` (EC or RSA),
 * base64url without padding. False when a member is missing. */
bool sec_jwk_thumbprint(const json_t *jwk, char kid[SEC_KID_MAX]);

/* ---- store.c: the keys folder ---- */
/* Loads every usable key of data_dir/keys into `k`, generating the first
 * key and the refresh-derivation key when missing. Keys that are no
 * longer current are stamped retired at `now` (Unix seconds) when they
 * have no stamp yet, and `prev` (the kid this process signed with until
 * now, or NULL) is stamped again at `now`: a key retires when it stops
 * signing, not when it is rotated out. */
enum as_err sec_store_load(const struct cfg *cfg, struct sec_keys *k,
                           const char *prev, int64_t now, char *why,
                           size_t why_len);
/* True when data_dir/keys holds a key that `held` lacks and that is not
 * past its retirement window at `now` (Unix s): one `keys rotate` made
 * since the set was loaded. */
bool sec_store_unlisted(const struct cfg *cfg, const struct sec_keys *held,
                        int64_t now);
/* Loads data_dir/keys into `k` as sec_store_load() does, but with
 * `signer` (the kid this process signs with) signing whatever `current`
 * names, and nothing stamped retired: the keys made since are published
 * and verify, the switch waits for the next start or SIGHUP. */
enum as_err sec_store_publish(const struct cfg *cfg, struct sec_keys *k,
                              const char *signer, int64_t now, char *why,
                              size_t why_len);
/* One key of a keys folder, for the import into PostgreSQL. `pem` is
 * borrowed for the call only. `retired` is the Unix time it stopped
 * signing, 0 while current or never stamped. */
typedef enum as_err (*sec_store_each_fn)(void *arg, const char *kid,
                                         const unsigned char *pem,
                                         size_t len, bool current,
                                         int64_t retired);
/* Calls `fn` for every key of an existing data_dir/keys folder and puts
 * its refresh-derivation key into `refresh`. AS_ERR_NOT_FOUND (nothing
 * called) when there is no folder with a current key. */
enum as_err sec_store_export(const struct cfg *cfg, sec_store_each_fn fn,
                             void *arg, uint8_t refresh[SEC_REFRESH_KEY_LEN],
                             char *why, size_t why_len);

/* ---- dbstore.c: keys in PostgreSQL ---- */
/* Loads the keys stored in the database of `r` into `k` at `now_ms`,
 * storing the first key (imported from the keys folder when there is one,
 * else generated) when the database has none. */
enum as_err sec_db_load(const struct cfg *cfg, struct repo *r,
                        struct sec_keys *k, int64_t now_ms, char *why,
                        size_t why_len);
/* Whether the database's keys at `now_ms` differ from those `k` was loaded
 * from (a new key, a switch of signer, a key pruned). */
enum as_err sec_db_changed(const struct cfg *cfg, struct repo *r,
                           const struct sec_keys *k, int64_t now_ms,
                           bool *changed);
/* `auth-serve keys generate|rotate` on PostgreSQL; prints nothing. */
enum as_err sec_db_cli(const struct cfg *cfg, struct repo *r,
                       const char *verb, char kid[SEC_KID_MAX], char *why,
                       size_t why_len);

/* ---- file.c: small files written atomically ---- */
/* sec_file_read's answer for a path that names no regular file (a
 * directory, FIFO, device or socket): outside errno's range. */
#define SEC_FILE_NOT_REGULAR 0x10000
/* Reads the regular file `path` (never a symbolic link: ELOOP), at most
 * `max` bytes, into a malloc'd buffer with a NUL appended (not counted).
 * Returns 0, SEC_FILE_NOT_REGULAR, or an errno value: ENOENT when
 * missing, EFBIG when larger than `max`. Caller wipes when secret and
 * frees with free(). */
int sec_file_read(const char *path, size_t max, unsigned char **out,
                  size_t *len);
/* An answer of sec_file_read_linked(): others could write or replace the
 * file (fsperm.h); *others then says how. */
#define SEC_FILE_OTHERS 0x10001
/* sec_file_read, except that `path` may be a symbolic link (to a regular
 * file): for AUTH_JWT_KEY_FILE, which mounted secrets present as links.
 * The file is refused (SEC_FILE_OTHERS, the reason in *others) where
 * others could write or replace it, checked on what was opened, which is
 * what is read. Files of the generated keys folder are read with
 * sec_file_read. */
int sec_file_read_linked(const char *path, size_t max, unsigned char **out,
                         size_t *len, const char **others);
/* What an answer of sec_file_read*() other than 0 means, in words. */
const char *sec_file_error(int rc);
/* Writes `data` to a new temporary file beside `path` (O_EXCL, mode 0600),
 * fsyncs it, then either renames it over `path` (replace) or links it as
 * `path` only when `path` does not exist yet (EEXIST otherwise). Returns 0
 * or an errno value; the temporary file never stays behind. */
int sec_file_put(const char *path, const void *data, size_t len,
                 bool replace);
/* Creates the directory `path` with mode 0700 when missing. Returns 0, or
 * an errno value (ENOTDIR when it exists as something else). */
int sec_dir_ensure(const char *path);

/* ---- b64.c ---- */
/* base64url without padding of `n` bytes into `out` (NUL-terminated);
 * false when `out_len` is too small. */
bool sec_b64url_encode(const void *in, size_t n, char *out, size_t out_len);
/* Strict base64url (no padding, no stray characters) of `in[0..n)` into
 * `out`; false on any malformed input or when it does not fit. */
bool sec_b64url_decode(const char *in, size_t n, unsigned char *out,
                       size_t out_len, size_t *got);
/* True when every one of the `n` bytes is in the base64url alphabet. */
bool sec_b64url_alphabet(const char *s, size_t n);

#endif
