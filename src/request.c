/* request.c: what a handler reads of its request (headers, query
 * arguments, the body as JSON) and of the long-lived state (the keys in
 * force, the clock). Independent of libmicrohttpd: the headers come
 * through the request's source (server.c's connection, or a table in a
 * unit test). */
#include "http.h"

#include <stdatomic.h>
#include <string.h>

#include "clock.h"
#include "form.h"

const struct sec_keys *app_keys(struct app *a)
{
    return atomic_load_explicit(&a->keys, memory_order_acquire);
}

int64_t app_now_ms(const struct app *a)
{
    return a->now_ms ? a->now_ms() : clock_ms();
}

const char *req_header(struct req_ctx *rc, const char *name)
{
    return rc->source ? rc->source->header(rc, name) : NULL;
}

const char *req_query(struct req_ctx *rc, const char *name)
{
    return rc->source ? rc->source->query(rc, name) : NULL;
}

unsigned req_query_count(struct req_ctx *rc, const char *name)
{
    return rc->source ? rc->source->query_count(rc, name) : 0;
}

static bool json_holds_nul(json_t *v);

/* The first member of object `o` whose value holds U+0000 (at any
 * depth), or NULL. RFC 8259 s7 allows it in a string; every field is a C
 * string past this point, so such a field is refused, never cut short
 * (jansson refuses it in a key as malformed). Nesting is bounded by
 * jansson's parser (2048 levels). */
static const char *nul_member(json_t *o)
{
    const char *key;
    json_t *v;

    json_object_foreach(o, key, v) {
        if (json_holds_nul(v))
            return key;
    }
    return NULL;
}

static bool json_holds_nul(json_t *v)
{
    size_t i;
    json_t *e;

    if (json_is_string(v))
        return strlen(json_string_value(v)) != json_string_length(v);
    if (json_is_object(v))
        return nul_member(v) != NULL;
    json_array_foreach(v, i, e) {
        if (json_holds_nul(e))
            return true;
    }
    return false;
}

static enum as_err read_json(struct req_ctx *rc, json_t **out, bool nul_ok)
{
    json_error_t jerr;
    json_t *j;

    *out = NULL;
    if (rc->body_form)
        j = form_parse(rc->arena, rc->body ? rc->body : "", rc->body_len);
    else if (!rc->body)
        return res_fail(&rc->res, AS_ERR_MALFORMED,
                        rc->route && (rc->route->flags & RF_FORM)
                            ? "The request needs a body: a JSON object or "
                              "a form."
                            : "The request body must be a JSON object.");
    else
        j = json_loadb(rc->body, rc->body_len,
                       JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                       &jerr);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        if (rc->body_form)
            return res_fail(&rc->res, AS_ERR_MALFORMED,
                            "The form body is malformed.");
        /* Valid JSON, but over what is read: said so, not "invalid". */
        if (!j && json_error_code(&jerr) == json_error_numeric_overflow)
            return res_fail(&rc->res, AS_ERR_MALFORMED,
                            "A number in the request body is out of range "
                            "(beyond a 64-bit integer or a double), in a "
                            "member that is read or not.");
        if (!j && json_error_code(&jerr) == json_error_duplicate_key)
            return res_fail(&rc->res, AS_ERR_MALFORMED,
                            "A member name appears twice in the request "
                            "body.");
        return res_fail(&rc->res, AS_ERR_MALFORMED,
                        "The request body must be a valid JSON object.");
    }
    if (!nul_ok) {
        const char *bad = nul_member(j);     /* JSON \u0000 or form %00 */

        if (bad) {
            enum as_err err = res_field(&rc->res, bad,
                                        "must not contain U+0000");

            json_decref(j);
            return err;
        }
    }
    *out = j;
    return AS_OK;
}

enum as_err req_json(struct req_ctx *rc, json_t **out)
{
    return read_json(rc, out, false);
}

enum as_err req_json_nul_ok(struct req_ctx *rc, json_t **out)
{
    return read_json(rc, out, true);
}
