/* tokens.c: /api/v1/auth — refresh rotation, logout, verify for gateways,
 * password change, sessions, RFC 7662 introspection, RFC 7009 revoke. */
#include "hx.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"

#include "authn.h"
#include "cfg.h"
#include "clock.h"
#include "jsonw.h"
#include "log.h"
#include "password.h"
#include "ratelimit.h"
#include "scache.h"
#include "sec.h"
#include "uuid.h"
#include "validate.h"

/* Reads the "refresh_token" field: 422 when absent or not a string, 401
 * when shapeless. A string of any length (an access token, say) that
 * cannot be a refresh token is just an invalid one; the request body's
 * cap bounds it. */
static enum as_err refresh_field(struct req_ctx *rc, json_t *in,
                                 const char **out)
{
    if (!v_string(&rc->res, in, "refresh_token", true, SIZE_MAX, out))
        return AS_ERR_VALIDATION;
    if (!sec_token_valid(*out))
        return res_fail(&rc->res, AS_ERR_INVALID_TOKEN,
                        "The refresh token is invalid or expired.");
    return AS_OK;
}

enum as_err h_refresh(struct req_ctx *rc, struct response *res)
{
    struct core c = hx_core(rc);
    json_t *in = NULL;
    const char *tok;
    char child[SEC_TOKEN_LEN + 1] = "";
    struct session s;
    struct user u;
    bool reused = false;
    enum as_err err = hx_keys_current(rc);

    if (err == AS_OK)
        err = req_json(rc, &in);
    if (err == AS_OK)
        err = refresh_field(rc, in, &tok);
    if (err == AS_OK)
        err = core_refresh(&c, tok, child, &s, &u, &reused, rc->arena);
    if (reused)
        hx_audit(rc, "refresh_reuse_detected", s.user_id,
                 json_pack("{s:s}", "session_id", s.id));
    if (err == AS_OK)
        err = hx_token_pair(rc, &u, s.id, child, s.expires_at, s.amr);
    else if (err == AS_ERR_INVALID_TOKEN)
        err = res_fail(res, err, "The refresh token is invalid or expired.");
    crypt_wipe(child, sizeof child);
    json_decref(in);
    return err;
}

enum as_err h_logout(struct req_ctx *rc, struct response *res)
{
    struct core c = hx_core(rc);
    json_t *in = NULL;
    const char *tok;
    struct session s;
    enum as_err err = req_json(rc, &in);

    if (err == AS_OK)
        err = refresh_field(rc, in, &tok);
    if (err != AS_OK)
        goto out;
    err = core_logout(&c, tok, &s, rc->arena);
    if (err == AS_ERR_NOT_FOUND) {
        err = res_fail(res, AS_ERR_INVALID_TOKEN,
                       "The refresh token is invalid or expired.");
        goto out;
    }
    if (err != AS_OK)
        goto out;
    hx_audit(rc, "logout", s.user_id, json_pack("{s:s}", "session_id",
                                                s.id));
    res_json(res, 204, NULL);
out:
    json_decref(in);
    return err;
}

enum as_err h_logout_all(struct req_ctx *rc, struct response *res)
{
    struct core c = hx_core(rc);
    enum as_err err = core_logout_all(&c, rc->claims.sub);

    if (err != AS_OK)
        return err;
    hx_audit(rc, "logout_all", rc->claims.sub, NULL);
    return res_json(res, 204, NULL);
}

/* The verified claims as JSON (for /verify and introspection). */
static json_t *claims_json(const struct req_ctx *rc,
                           const struct sec_claims *c)
{
    const struct cfg *cfg = rc->app->cfg;

    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s}",
                     "sub", c->sub, "email", c->email, "role", c->role,
                     "sid", c->sid, "jti", c->jti, "iss", cfg->jwt_issuer,
                     "iat", (json_int_t)c->iat, "nbf", (json_int_t)c->nbf,
                     "exp", (json_int_t)c->exp, "aud", cfg->jwt_audience);
}

/* The claims of /verify, with the session's amr. */
static json_t *verify_json(const struct req_ctx *rc,
                           const struct sec_claims *c)
{
    json_t *doc = claims_json(rc, c);

    if (doc)
        json_object_set_new(doc, "amr", sec_amr_json(c->amr));
    return doc;
}

/* The "amr" array of `amr` as compact JSON, made once per combination of
 * the four methods and kept for the life of the process (a /verify
 * otherwise spent a tenth of its instructions building and dumping it).
 * NULL when out of memory. The caller frees the result only when
 * *owned is set (a combination beyond the four methods). */
#define AMR_TEXTS 16
static char *amr_texts[AMR_TEXTS];

static const char *amr_text(unsigned amr, bool *owned)
{
    json_t *arr = NULL;
    char *text = NULL, *expected = NULL;

    *owned = false;
    if (amr < AMR_TEXTS) {
        text = __atomic_load_n(&amr_texts[amr], __ATOMIC_ACQUIRE);
        if (text)
            return text;
    }
    arr = sec_amr_json(amr);
    text = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    if (!text || amr >= AMR_TEXTS) {
        *owned = text != NULL;
        return text;
    }
    if (!__atomic_compare_exchange_n(&amr_texts[amr], &expected, text, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        free(text);                     /* another thread's is the same */
        text = expected;
    }
    return text;
}

/* `n` in decimal, as jansson writes it, at the end of `buf`; returns the
 * first digit (snprintf was a sixth of the answer's writing). */
static const char *decimal(char buf[24], int64_t n)
{
    char *p = buf + 23;
    uint64_t u = n < 0 ? 0u - (uint64_t)n : (uint64_t)n;

    *p = '\0';
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (n < 0)
        *--p = '-';
    return p;
}

/* verify_json() as text, written without building a tree: /verify is
 * the hottest route (README.md, "Performance"). NULL when out of
 * memory. */
static char *verify_text(const struct req_ctx *rc, const struct sec_claims *c)
{
    const struct cfg *cfg = rc->app->cfg;
    bool owned = false;
    const char *amr = amr_text(c->amr, &owned);
    char num[24];
    struct jw w;

    jw_begin(&w);
    jw_str(&w, "sub", c->sub);
    jw_str(&w, "email", c->email);
    jw_str(&w, "role", c->role);
    jw_str(&w, "sid", c->sid);
    jw_str(&w, "jti", c->jti);
    jw_str(&w, "iss", cfg->jwt_issuer);
    jw_raw(&w, "iat", decimal(num, c->iat));
    jw_raw(&w, "nbf", decimal(num, c->nbf));
    jw_raw(&w, "exp", decimal(num, c->exp));
    jw_str(&w, "aud", cfg->jwt_audience);
    jw_raw(&w, "amr", amr);
    if (owned)
        free((char *)amr);
    return jw_finish(&w);
}

enum as_err h_verify(struct req_ctx *rc, struct response *res)
{
    /* the claims live in rc and its arena until the answer is sent */
    res_header_ref(rc, "X-Auth-User-Id", rc->claims.sub);
    res_header_ref(rc, "X-Auth-Email", rc->claims.email);
    res_header_ref(rc, "X-Auth-Role", rc->claims.role);
    res_header_ref(rc, "X-Auth-MFA",
                   rc->claims.amr & (SEC_AMR_OTP | SEC_AMR_MFA) ? "true"
                                                                : "false");
    res_header_ref(rc, "Cache-Control", "no-store");
    free(res->raw);
    res->raw = verify_text(rc, &rc->claims);
    res->raw_type = "application/json";
    if (!res->raw)
        return res_json(res, 200, verify_json(rc, &rc->claims));
    res->status = 200;
    return AS_OK;
}

enum as_err h_password_change(struct req_ctx *rc, struct response *res)
{
    struct core c = hx_core(rc);
    json_t *in = NULL;
    const char *cur = NULL, *fresh = NULL, *why;
    struct user u;
    enum as_err err = req_json(rc, &in);

    if (err != AS_OK)
        goto out;
    v_string(res, in, "current_password", true, HX_MAX_PASSWORD_BYTES,
             &cur);
    v_string(res, in, "new_password", true, HX_MAX_PASSWORD_BYTES, &fresh);
    if (res->errors) {
        err = AS_ERR_VALIDATION;
        goto out;
    }
    err = hx_caller(rc, &u);
    if (err == AS_OK)
        err = hx_check_password(rc, &u, cur);
    if (err != AS_OK)
        goto out;
    why = pw_policy_check(fresh, u.email,
                          rc->app->cfg->password_min_length);
    if (why) {
        err = res_field(res, "new_password", why);
        goto out;
    }
    /* Every other session of the user ends (core_user_set_password). */
    err = core_user_set_password(&c, u.id, fresh, rc->claims.sid);
    if (err == AS_ERR_NOT_FOUND)        /* deleted since hx_caller() */
        err = res_fail(res, AS_ERR_INVALID_TOKEN,
                       "The account no longer exists.");
    if (err != AS_OK)
        goto out;
    hx_audit(rc, "password_changed", u.id, NULL);
    res_json(res, 204, NULL);
out:
    json_decref(in);
    return err;
}

enum as_err h_sessions_list(struct req_ctx *rc, struct response *res)
{
    struct core core = hx_core(rc);
    struct session *list = NULL;
    size_t n = 0, i;
    json_t *items;
    enum as_err err = core_sessions_list(&core, rc->claims.sub, &list,
                                         &n, rc->arena);

    if (err != AS_OK)
        return err;
    items = json_array();
    for (i = 0; i < n; i++) {
        char c[32], l[32], e[32];

        clock_rfc3339(list[i].created_at, c);
        clock_rfc3339(list[i].last_used_at, l);
        clock_rfc3339(list[i].expires_at, e);
        json_array_append_new(items, json_pack(
            "{s:s, s:s, s:s, s:s, s:s?, s:s?, s:b}", "id", list[i].id,
            "created_at", c, "last_used_at", l, "expires_at", e, "ip",
            list[i].ip, "user_agent", list[i].user_agent, "current",
            strcmp(list[i].id, rc->claims.sid) == 0));
    }
    return res_json(res, 200, json_pack("{s:o}", "items", items));
}

enum as_err h_session_delete(struct req_ctx *rc, struct response *res)
{
    struct core c = hx_core(rc);
    enum as_err err = core_session_revoke(&c, rc->param_id, rc->claims.sub);

    if (err == AS_ERR_NOT_FOUND)
        return res_fail(res, err, "You have no such session.");
    if (err != AS_OK)
        return err;
    hx_audit(rc, "session_revoked", rc->claims.sub,
             json_pack("{s:s}", "session_id", rc->param_id));
    return res_json(res, 204, NULL);
}

/* The "token" parameter of a form or JSON body (RFC 7009 / 7662).
 * Missing or empty: 400. One that no token of ours can be (longer than
 * any, or holding U+0000) is AS_ERR_NOT_FOUND with nothing answered: an
 * invalid token, which both RFCs answer 200 (revoked; inactive). */
static enum as_err token_param(struct req_ctx *rc, json_t **in,
                               const char **tok)
{
    enum as_err err = req_json_nul_ok(rc, in);
    json_t *t;

    *tok = NULL;
    if (err != AS_OK)
        return err;
    t = json_object_get(*in, "token");
    if (t && !json_is_string(t)) {      /* JSON only: a form's is text */
        res_field(&rc->res, "token", "must be a string");
        return AS_ERR_VALIDATION;
    }
    *tok = json_string_value(t);
    /* Empty is missing; a token that only starts with U+0000 is an
     * invalid one (below), not a missing one. */
    if (!*tok || json_string_length(t) == 0)
        return res_fail(&rc->res, AS_ERR_INVALID_REQUEST,
                        "The token parameter is required.");
    if (json_string_length(t) > SEC_MAX_JWT_BYTES ||
        strlen(*tok) != json_string_length(t))
        return AS_ERR_NOT_FOUND;
    return AS_OK;
}

/* Checks the introspection caller's secret. A wrong one costs the
 * address a token of its credential rate limit, and an address whose
 * bucket is empty is refused (429) before any comparison, so secrets
 * cannot be guessed faster than AUTH_RATE_LIMIT_PER_MINUTE. The token is
 * taken before the comparison and given back after a right one: requests
 * of one address running at once cannot all be compared on its last
 * token. */
static enum as_err caller_secret_check(struct req_ctx *rc, const char *got,
                                       const char *want)
{
    unsigned retry = 0;
    char value[16];

    if (ratelimit_take(rc->app->limiter, rc->ip, clock_mono_ms(), &retry)) {
        if (sec_secret_equal(got, want)) {
            ratelimit_give_back(rc->app->limiter, rc->ip);
            return AS_OK;
        }
        if (got)                        /* RFC 6750 s3.1: one was sent */
            res_header(rc, "WWW-Authenticate", WWW_AUTH_INVALID);
        return res_fail(&rc->res, AS_ERR_UNAUTHORIZED,
                        "Introspection needs the configured bearer "
                        "secret.");
    }
    snprintf(value, sizeof value, "%u", retry ? retry : 1);
    res_header(rc, "Retry-After", value);
    return res_fail(&rc->res, AS_ERR_RATE_LIMITED,
                    "Too many wrong introspection secrets from this "
                    "address; retry later.");
}

enum as_err h_introspect(struct req_ctx *rc, struct response *res)
{
    const char *want = rc->app->cfg->introspection_token;
    const char *got = authn_bearer_token(req_header(rc, "Authorization"),
                                         rc->arena);
    struct core c = hx_core(rc);
    json_t *in = NULL;
    const char *tok;
    struct session s;
    struct sec_claims claims;
    enum role role = ROLE_USER;
    struct user u;
    bool is_access;
    enum as_err err;

    if (!want)
        return res_fail(res, AS_ERR_NOT_FOUND,
                        "Introspection is not enabled on this server.");
    err = caller_secret_check(rc, got, want);
    if (err == AS_OK)
        err = token_param(rc, &in, &tok);
    if (err == AS_OK)
        err = core_token_session(&c, tok, false, &s, &claims, &role,
                                 &is_access, rc->arena);
    if (err == AS_OK && !is_access)
        err = core_user_get(&c, s.user_id, &u, rc->arena);
    if (err == AS_ERR_NOT_FOUND || (err == AS_OK && !is_access &&
                                    !u.is_active)) {
        err = res_json(res, 200, json_pack("{s:b}", "active", 0));
    } else if (err == AS_OK && is_access) {
        json_t *j;

        claims.role = role_name(role);            /* the account's now */
        j = claims_json(rc, &claims);

        json_object_set_new(j, "active", json_true());
        json_object_set_new(j, "token_type", json_string("Bearer"));
        res_json(res, 200, j);
    } else if (err == AS_OK) {
        /* An unused refresh token is its session's newest: issued when
         * the session was created or last rotated (last_used_at). */
        res_json(res, 200, json_pack(
            "{s:b, s:s, s:s, s:s, s:s, s:I, s:I, s:s}", "active", 1, "sub",
            u.id, "email", u.email, "role", role_name(u.role), "sid", s.id,
            "exp", (json_int_t)(s.expires_at / 1000), "iat",
            (json_int_t)(s.last_used_at / 1000), "token_type",
            "refresh_token"));
    }
    json_decref(in);            /* no-store: the route's (src/router.c) */
    return err;
}

enum as_err h_revoke(struct req_ctx *rc, struct response *res)
{
    struct core c = hx_core(rc);
    json_t *in = NULL;
    const char *tok;
    struct session s;
    struct sec_claims claims;
    enum role role = ROLE_USER;
    bool is_access;
    enum as_err err = token_param(rc, &in, &tok);

    if (err == AS_OK)
        err = core_token_session(&c, tok, true, &s, &claims, &role,
                                 &is_access, rc->arena);
    if (err == AS_OK)
        err = core_session_revoke(&c, s.id, NULL);
    if (err == AS_OK) {
        hx_audit(rc, "token_revoked", s.user_id,
                 json_pack("{s:s}", "session_id", s.id));
    }
    if (err == AS_ERR_NOT_FOUND || err == AS_OK)  /* RFC 7009 s2.2 */
        err = res_json(res, 200, NULL);
    json_decref(in);
    return err;
}
