/* passkeys.c: the rules of passkeys: ceremony options, single-use
 * challenges, registration and login. No HTTP, no SQL: the repository
 * stores, src/sec/webauthn.c verifies. The JSON forms are WebAuthn Level
 * 3's (README.md, "Passkeys"; src/openapi.json). */
#include "passkeys.h"

#include <openssl/sha.h>
#include <string.h>

#include "clock.h"
#include "crypto.h"
#include "scache.h"
#include "uuid.h"

#define MAX_TRANSPORTS 8
#define USER_HANDLE_LEN 16

/* Sets a refusal and returns `err`. */
static enum as_err refuse(struct passkey_refusal *why, enum wa_result r,
                          const char *reason, enum as_err err)
{
    why->why = r;
    why->reason = reason;
    return err;
}

/* The 16 bytes of UUID text `id`. */
static bool uuid_bytes(const char *id, uint8_t out[USER_HANDLE_LEN])
{
    char hex[33];
    size_t i, n = 0, got = 0;

    if (!id || !uuid_valid(id))
        return false;
    for (i = 0; id[i] && n < 32; i++)
        if (id[i] != '-')
            hex[n++] = id[i];
    hex[n] = '\0';
    return crypt_hex_decode(hex, n, out, USER_HANDLE_LEN, &got) &&
           got == USER_HANDLE_LEN;
}

const char *passkey_user_handle(struct arena *a, const char *user_id)
{
    uint8_t b[USER_HANDLE_LEN];

    return uuid_bytes(user_id, b) ? wa_b64url(a, b, sizeof b) : NULL;
}

/* A fresh challenge: stored (hash only) for `ceremony` and `user_id`,
 * answered in base64url in `b64` (arena). */
static enum as_err challenge_new(const struct passkey_env *e,
                                 enum passkey_ceremony ceremony,
                                 const char *user_id, struct arena *a,
                                 const char **b64)
{
    uint8_t c[WA_CHALLENGE_LEN], h[REPO_HASH_LEN];

    crypt_random(c, sizeof c);
    SHA256(c, sizeof c, h);
    *b64 = wa_b64url(a, c, sizeof c);
    if (!*b64)
        return AS_ERR_NOMEM;
    return repo_passkey_challenge_put(e->repo, h, ceremony, user_id,
                                      ceremony == PK_REGISTER
                                          ? PASSKEY_OPEN_REGISTRATIONS
                                          : 0,
                                      e->now_ms,
                                      e->now_ms + PASSKEY_CHALLENGE_TTL_MS);
}

/* The {type, id[, transports]} descriptor of a stored passkey. */
static json_t *descriptor(const struct passkey *p)
{
    json_t *d = json_pack("{s:s, s:s}", "type", "public-key", "id",
                          p->cred_id);
    json_t *t = p->transports ? json_loads(p->transports, 0, NULL) : NULL;

    if (d && json_is_array(t) && json_array_size(t))
        json_object_set(d, "transports", t);
    json_decref(t);
    return d;
}

enum as_err passkey_register_options(const struct passkey_env *e,
                                     const struct user *u, json_t **out,
                                     struct arena *a)
{
    struct passkey *have = NULL;
    const char *challenge = NULL;
    const char *handle = passkey_user_handle(a, u->id);
    json_t *exclude = json_array();
    size_t n = 0, i;
    enum as_err err = handle && exclude ? AS_OK : AS_ERR_NOMEM;

    *out = NULL;
    if (err == AS_OK)
        err = repo_passkey_list(e->repo, u->id, &have, &n, a);
    if (err == AS_OK && n >= PASSKEY_MAX_PER_USER)
        err = AS_ERR_CONFLICT;
    for (i = 0; err == AS_OK && i < n; i++)
        if (json_array_append_new(exclude, descriptor(&have[i])) != 0)
            err = AS_ERR_NOMEM;
    if (err == AS_OK)
        err = challenge_new(e, PK_REGISTER, u->id, a, &challenge);
    if (err == AS_OK)
        *out = json_pack(
            "{s:{s:s, s:s}, s:{s:s, s:s, s:s}, s:s, s:[{s:s, s:i}, "
            "{s:s, s:i}, {s:s, s:i}], s:i, s:O, s:{s:s, s:b, s:s}, s:s}",
            "rp", "id", e->rp.rp_id, "name", e->rp_name,
            "user", "id", handle, "name", u->email, "displayName",
            u->full_name ? u->full_name : u->email,
            "challenge", challenge,
            "pubKeyCredParams", "type", "public-key", "alg", WA_ALG_ES256,
            "type", "public-key", "alg", WA_ALG_EDDSA,
            "type", "public-key", "alg", WA_ALG_RS256,
            "timeout", PASSKEY_CHALLENGE_TTL_MS,
            "excludeCredentials", exclude,
            "authenticatorSelection", "residentKey", "required",
            "requireResidentKey", 1, "userVerification", "required",
            "attestation", "none");
    if (err == AS_OK && !*out)
        err = AS_ERR_NOMEM;
    json_decref(exclude);
    return err;
}

enum as_err passkey_login_options(const struct passkey_env *e,
                                  json_t **out)
{
    struct arena *a = arena_new();
    const char *challenge = NULL;
    enum as_err err = a ? challenge_new(e, PK_LOGIN, NULL, a, &challenge)
                        : AS_ERR_NOMEM;

    *out = NULL;
    if (err == AS_OK)
        *out = json_pack("{s:s, s:i, s:s, s:[], s:s}", "challenge",
                         challenge, "timeout", PASSKEY_CHALLENGE_TTL_MS,
                         "rpId", e->rp.rp_id, "allowCredentials",
                         "userVerification", "required");
    if (err == AS_OK && !*out)
        err = AS_ERR_NOMEM;
    arena_free(a);
    return err;
}

/* The parts of a credential JSON both ceremonies read: type, id equal to
 * rawId (decoded into `id`), the response object and its clientDataJSON
 * (decoded into `cdj`) and the challenge it carries, used up now for
 * `ceremony` (`bound` gets its user, "" for none). */
struct parsed {
    const json_t *resp;
    const uint8_t *id, *cdj;
    size_t id_len, cdj_len;
    char bound[UUID_STR_LEN];
};

static enum as_err parse_common(const struct passkey_env *e,
                                const json_t *cred,
                                enum passkey_ceremony ceremony,
                                const char *owner,
                                struct parsed *p, struct passkey_refusal *why,
                                enum as_err refusal, struct arena *a)
{
    const char *type = json_string_value(json_object_get(cred, "type"));
    const char *id = json_string_value(json_object_get(cred, "id"));
    const char *raw = json_string_value(json_object_get(cred, "rawId"));
    uint8_t c[WA_CHALLENGE_LEN], h[REPO_HASH_LEN];
    enum as_err err;

    memset(p, 0, sizeof *p);
    p->resp = json_object_get(cred, "response");
    if (!json_is_object(cred) || !type || strcmp(type, "public-key") != 0 ||
        !json_is_object(p->resp))
        return refuse(why, WA_BAD_FORMAT, "not a public-key credential",
                      refusal);
    if (!id || !raw || strcmp(id, raw) != 0 ||
        !wa_unb64url(a, raw, WA_CRED_ID_MAX, &p->id, &p->id_len) ||
        p->id_len == 0)
        return refuse(why, WA_BAD_FORMAT, "bad credential id", refusal);
    if (!wa_unb64url(a, json_string_value(json_object_get(
                            p->resp, "clientDataJSON")),
                     WA_CLIENT_DATA_MAX, &p->cdj, &p->cdj_len) ||
        !wa_client_challenge(p->cdj, p->cdj_len, c))
        return refuse(why, WA_BAD_FORMAT, "bad clientDataJSON", refusal);
    SHA256(c, sizeof c, h);
    err = repo_passkey_challenge_take(e->repo, h, ceremony, owner,
                                      e->now_ms, p->bound);
    if (err == AS_ERR_NOT_FOUND)
        return refuse(why, WA_BAD_CHALLENGE,
                      "challenge unknown, used or expired", refusal);
    return err;
}

/* The transports a registration lists, as a JSON array text in `a`:
 * the known values only, at most MAX_TRANSPORTS. */
static const char *transports_of(const json_t *resp, struct arena *a)
{
    static const char *const known[] = { "usb", "nfc", "ble", "internal",
                                         "hybrid", "smart-card" };
    const json_t *in = json_object_get(resp, "transports");
    json_t *out = json_array(), *v;
    char *text = NULL, *copy;
    size_t i, k;

    json_array_foreach(in, i, v) {
        const char *s = json_string_value(v);

        for (k = 0; s && k < sizeof known / sizeof known[0]; k++)
            if (strcmp(s, known[k]) == 0 &&
                json_array_size(out) < MAX_TRANSPORTS)
                json_array_append_new(out, json_string(known[k]));
    }
    if (out)
        text = json_dumps(out, JSON_COMPACT);
    copy = arena_strdup(a, text ? text : "[]");
    free(text);
    json_decref(out);
    return copy;
}

enum as_err passkey_register_finish(const struct passkey_env *e,
                                    const struct user *u, const json_t *cred,
                                    const char *name, struct passkey *out,
                                    struct passkey_refusal *why,
                                    struct arena *a)
{
    struct parsed p;
    struct wa_cred wc;
    const uint8_t *att = NULL;
    size_t att_len = 0;
    uint8_t challenge[WA_CHALLENGE_LEN];
    char *notice = arena_alloc(a, UUID_STR_LEN);
    enum wa_result r;
    enum as_err err;

    memset(out, 0, sizeof *out);
    memset(why, 0, sizeof *why);
    if (!wa_available())        /* logged; the challenge stays for later */
        return refuse(why, WA_UNAVAILABLE, "libcbor unavailable",
                      AS_ERR_INTERNAL);
    /* Only the caller's own challenge is used up: someone else's
     * response with it is refused and leaves it to its user. */
    err = parse_common(e, cred, PK_REGISTER, u->id, &p, why,
                       AS_ERR_BAD_PASSKEY, a);
    if (err != AS_OK)
        return err;
    if (strcmp(p.bound, u->id) != 0)
        return refuse(why, WA_BAD_CHALLENGE, "challenge of another user",
                      AS_ERR_BAD_PASSKEY);
    if (!wa_unb64url(a, json_string_value(json_object_get(
                            p.resp, "attestationObject")),
                     16384, &att, &att_len))
        return refuse(why, WA_BAD_FORMAT, "bad attestationObject",
                      AS_ERR_BAD_PASSKEY);
    wa_client_challenge(p.cdj, p.cdj_len, challenge);
    r = wa_register_verify(&e->rp, challenge, p.cdj, p.cdj_len, att,
                           att_len, &wc, a);
    if (r != WA_OK)
        return refuse(why, r, wa_result_name(r), AS_ERR_BAD_PASSKEY);
    if (wc.id_len != p.id_len || memcmp(wc.id, p.id, p.id_len) != 0)
        return refuse(why, WA_BAD_FORMAT, "rawId is not the credential's",
                      AS_ERR_BAD_PASSKEY);
    uuid_v7_new(out->id);
    snprintf(out->user_id, sizeof out->user_id, "%s", u->id);
    out->cred_id = wa_b64url(a, wc.id, wc.id_len);
    out->public_key = wa_b64url(a, wc.cose, wc.cose_len);
    out->sign_count = wc.sign_count;
    out->transports = transports_of(p.resp, a);
    out->name = arena_strdup(a, name ? name : PASSKEY_NAME_DEFAULT);
    out->created_at = e->now_ms;
    /* The owner hears of every passkey added, in the same transaction:
     * an access token alone adds one (the contract asks no password), so
     * a stolen token's passkey must not go unnoticed (README.md,
     * "Passkeys"). */
    if (!notice || !out->cred_id || !out->public_key || !out->transports ||
        !out->name)
        return AS_ERR_NOMEM;
    uuid_v7_new(notice);
    out->notice_id = notice;
    err = repo_passkey_insert(e->repo, out, PASSKEY_MAX_PER_USER);
    if (err == AS_ERR_CONFLICT)
        return refuse(why, WA_OK, "credential registered already",
                      AS_ERR_BAD_PASSKEY);
    if (err == AS_ERR_TOO_LARGE)  /* others finished since the options */
        return refuse(why, WA_OK, "most passkeys held", AS_ERR_CONFLICT);
    return err;
}

/* Reads the assertion's authenticatorData, signature and userHandle. */
static bool assertion_parts(const json_t *resp, struct arena *a,
                            const uint8_t **ad, size_t *ad_len,
                            const uint8_t **sig, size_t *sig_len,
                            const char **handle)
{
    *handle = json_string_value(json_object_get(resp, "userHandle"));
    return wa_unb64url(a, json_string_value(json_object_get(
                              resp, "authenticatorData")),
                       4096, ad, ad_len) &&
           wa_unb64url(a, json_string_value(json_object_get(resp,
                                                            "signature")),
                       1024, sig, sig_len);
}

/* Why storing the new counter of passkey `pk` changed nothing, read
 * again now: deleted meanwhile (a refusal, but no sign of a clone), or a
 * counter at or above the new one was stored first (counters only grow),
 * so in the order the store made this use came after one as far ahead:
 * what a clone does. */
static enum as_err use_refused(const struct passkey_env *e,
                               const struct passkey *pk,
                               struct passkey_refusal *why, struct arena *a)
{
    struct passkey now;
    enum as_err err = repo_passkey_by_cred(e->repo, pk->cred_id, &now, a);

    if (err == AS_ERR_NOT_FOUND ||
        (err == AS_OK && strcmp(now.id, pk->id) != 0))
        return refuse(why, WA_OK, "passkey deleted meanwhile",
                      AS_ERR_PASSKEY_REFUSED);
    if (err != AS_OK)
        return err;
    why->found = now;
    return refuse(why, WA_CLONED, "counter not above the stored one",
                  AS_ERR_PASSKEY_REFUSED);
}

enum as_err passkey_login_finish(const struct passkey_env *e,
                                 const json_t *cred, struct passkey *out,
                                 struct user *user,
                                 struct passkey_refusal *why,
                                 struct arena *a)
{
    struct parsed p;
    const uint8_t *ad = NULL, *sig = NULL, *cose = NULL;
    size_t ad_len = 0, sig_len = 0, cose_len = 0;
    const char *handle = NULL, *want, *cred_id;
    uint8_t challenge[WA_CHALLENGE_LEN];
    uint32_t count = 0;
    enum wa_result r;
    enum as_err err;

    memset(out, 0, sizeof *out);
    memset(why, 0, sizeof *why);
    if (!wa_available())        /* logged; the challenge stays for later */
        return refuse(why, WA_UNAVAILABLE, "libcbor unavailable",
                      AS_ERR_INTERNAL);
    err = parse_common(e, cred, PK_LOGIN, NULL, &p, why,
                       AS_ERR_PASSKEY_REFUSED, a);
    if (err != AS_OK)
        return err;
    if (!assertion_parts(p.resp, a, &ad, &ad_len, &sig, &sig_len, &handle))
        return refuse(why, WA_BAD_FORMAT, "bad assertion",
                      AS_ERR_PASSKEY_REFUSED);
    cred_id = wa_b64url(a, p.id, p.id_len);
    err = cred_id ? repo_passkey_by_cred(e->repo, cred_id, out, a)
                  : AS_ERR_NOMEM;
    if (err == AS_ERR_NOT_FOUND)
        return refuse(why, WA_OK, "unknown credential",
                      AS_ERR_PASSKEY_REFUSED);
    if (err != AS_OK)
        return err;
    why->found = *out;
    want = passkey_user_handle(a, out->user_id);
    if (!handle || !want || strcmp(handle, want) != 0)
        return refuse(why, WA_OK, "userHandle is not the passkey's user",
                      AS_ERR_PASSKEY_REFUSED);
    /* The account as it is before the passkey is checked and used: the
     * session is stored only while its password is the one read here
     * (core_session_start), so a reset or password change committing
     * after this read (one that deletes the passkey, or ends every
     * session) refuses the login rather than being outlived by it. */
    err = repo_user_by_id(e->repo, out->user_id, user, a);
    if (err == AS_ERR_NOT_FOUND)
        return refuse(why, WA_OK, "the passkey's account is gone",
                      AS_ERR_PASSKEY_REFUSED);
    if (err != AS_OK)
        return err;
    if (!wa_unb64url(a, out->public_key, WA_COSE_MAX, &cose, &cose_len))
        return AS_ERR_INTERNAL;
    wa_client_challenge(p.cdj, p.cdj_len, challenge);
    r = wa_assert_verify(&e->rp, challenge, p.cdj, p.cdj_len, ad, ad_len,
                         sig, sig_len, cose, cose_len,
                         (uint32_t)out->sign_count, &count);
    if (r != WA_OK)
        return refuse(why, r, wa_result_name(r), AS_ERR_PASSKEY_REFUSED);
    err = repo_passkey_use(e->repo, out->id, count, e->now_ms);
    if (err == AS_ERR_NOT_FOUND)
        return use_refused(e, out, why, a);
    out->sign_count = count;
    out->last_used_at = e->now_ms;
    return err;
}

json_t *passkey_json(const struct passkey *p)
{
    char created[32], used[32];
    json_t *t = json_loads(p->transports ? p->transports : "[]", 0, NULL);

    clock_rfc3339(p->created_at, created);
    clock_rfc3339(p->last_used_at, used);
    if (!json_is_array(t)) {
        json_decref(t);
        t = json_array();
    }
    return json_pack("{s:s, s:s, s:s, s:s?, s:o}", "id", p->id, "name",
                     p->name, "created_at", created, "last_used_at",
                     p->last_used_at ? used : NULL, "transports", t);
}

enum as_err passkey_list_own(const struct passkey_env *e,
                             const char *user_id, struct passkey **out,
                             size_t *n, struct arena *a)
{
    return repo_passkey_list(e->repo, user_id, out, n, a);
}

enum as_err passkey_delete_own(const struct passkey_env *e, const char *id,
                               const char *user_id)
{
    enum as_err err = uuid_valid(id) ? repo_passkey_delete(e->repo, id,
                                                           user_id, e->now_ms)
                                     : AS_ERR_NOT_FOUND;

    if (err == AS_OK && e->cache)       /* the sessions it started */
        scache_forget_user(e->cache, user_id);
    return err;
}
