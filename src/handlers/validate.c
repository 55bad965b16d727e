/* validate.c: type and shape checks on request fields, and the user
 * object's JSON form. */
#include "validate.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "clock.h"
#include "jsonw.h"

static bool field_error(struct response *res, const char *name,
                        const char *msg)
{
    res_field(res, name, msg);
    return false;
}

bool v_string(struct response *res, json_t *in, const char *name,
              bool required, size_t max_bytes, const char **out)
{
    json_t *v = json_object_get(in, name);

    *out = NULL;
    if (!v)
        return required ? field_error(res, name, "is required") : true;
    if (!json_is_string(v))
        return field_error(res, name, "must be a string");
    if (json_string_length(v) != strlen(json_string_value(v)))
        return field_error(res, name, "must not contain NUL characters");
    if (json_string_length(v) > max_bytes)
        return field_error(res, name, "is too long");
    *out = json_string_value(v);
    return true;
}

bool v_string_or_null(struct response *res, json_t *in, const char *name,
                      size_t max_bytes, const char **out, bool *is_null)
{
    *is_null = json_is_null(json_object_get(in, name));
    if (*is_null) {
        *out = NULL;
        return true;
    }
    return v_string(res, in, name, false, max_bytes, out);
}

bool v_bool(struct response *res, json_t *in, const char *name, bool *out,
            bool *present)
{
    json_t *v = json_object_get(in, name);

    *present = v != NULL;
    if (!v)
        return true;
    if (!json_is_boolean(v))
        return field_error(res, name, "must be true or false");
    *out = json_is_true(v);
    return true;
}

static bool atext(char c)
{
    return isalnum((unsigned char)c) || (c && strchr("!#$%&'*+/=?^_`{|}~-",
                                                     c));
}

static bool local_ok(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > 64 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (i = 0; i < n; i++) {
        if (s[i] == '.' ? s[i + 1] == '.' : !atext(s[i]))
            return false;
    }
    return true;
}

static bool domain_ok(const char *s, size_t n)
{
    size_t i, label = 0;
    bool dot = false;

    if (n == 0 || n > 253)
        return false;
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            dot = true;
        } else if (isalnum((unsigned char)c) || c == '-') {
            if (label == 0 && c == '-')
                return false;
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return dot && label > 0 && s[n - 1] != '-';
}

const char *v_email(struct arena *a, const char *raw)
{
    const char *b = raw, *e = raw + strlen(raw), *at;
    char *out;
    size_t n, i;

    while (b < e && isspace((unsigned char)*b))
        b++;
    while (e > b && isspace((unsigned char)e[-1]))
        e--;
    n = (size_t)(e - b);
    if (n == 0 || n > V_MAX_EMAIL)
        return NULL;
    at = memchr(b, '@', n);
    if (!at || memchr(at + 1, '@', (size_t)(e - at - 1)) ||
        !local_ok(b, (size_t)(at - b)) ||
        !domain_ok(at + 1, (size_t)(e - at - 1)))
        return NULL;
    out = arena_strndup(a, b, n);
    if (!out)
        return NULL;
    for (i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)out[i]);
    return out;
}

/* A new address must name a host a relay looks up: its last label
 * begins with a letter (RFC 1123 s2.1: a host name's highest label is
 * alphabetic, so it never reads as a dotted number; every top-level
 * domain, "xn--" ones included, does). `p@10.0.0.5`, `p@1.0x7f` or
 * `p@999.999.999.999` would have a relay that reads numbers as an
 * address connect where the address says. Lookups (login, forgot) keep
 * v_email() alone, so an account made before still signs in. */
const char *v_new_email(struct arena *a, const char *raw)
{
    const char *e = v_email(a, raw), *tld = e ? strrchr(e, '.') : NULL;

    return tld && isalpha((unsigned char)tld[1]) ? e : NULL;
}

/* The code point of the (valid) UTF-8 at `p`; *len its bytes. */
static uint32_t code_point(const unsigned char *p, size_t *len)
{
    if (p[0] < 0x80) {
        *len = 1;
        return p[0];
    }
    if (p[0] < 0xe0) {
        *len = 2;
        return (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
    }
    if (p[0] < 0xf0) {
        *len = 3;
        return (uint32_t)(p[0] & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 |
               (p[2] & 0x3f);
    }
    *len = 4;
    return (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 |
           (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
}

/* Not in a name: control characters (C0, DEL, C1), the line and
 * paragraph separators, the bidirectional embeddings, overrides and
 * isolates (Unicode TR #9: they reorder what follows them, so a name
 * could show as someone else's text in a list or a mail), the byte order
 * mark, and noncharacters. */
static bool refused_in_name(uint32_t c)
{
    return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x2028 ||
           c == 0x2029 || (c >= 0x202a && c <= 0x202e) ||
           (c >= 0x2066 && c <= 0x2069) || c == 0xfeff ||
           (c >= 0xfdd0 && c <= 0xfdef) || (c & 0xfffe) == 0xfffe;
}

/* Shows as nothing, or as a blank: a name of only these is no name. */
static bool blank_in_name(uint32_t c)
{
    return c == ' ' || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200f) || c == 0x202f || c == 0x205f ||
           c == 0x2060 || c == 0x3000 || c == 0x3164 || c == 0x115f ||
           c == 0x1160 || c == 0xffa0 || c == 0x2800 || c == 0xad;
}

bool v_full_name(const char *s)
{
    size_t chars = 0, len;
    const unsigned char *p = (const unsigned char *)s;
    bool seen = false;
    json_t *utf8;

    /* JSON bodies are UTF-8 by the time they get here; a name from the
     * command line may not be, and would make every answer that shows it
     * JSON that is not */
    utf8 = json_string(s);              /* NULL unless strict UTF-8 */
    json_decref(utf8);
    if (!utf8)
        return false;
    for (; *p; p += len, chars++) {
        uint32_t c = code_point(p, &len);

        if (refused_in_name(c))
            return false;
        seen = seen || !blank_in_name(c);
    }
    return seen && chars <= V_MAX_NAME;
}

const char *v_printable(struct arena *a, const char *s, size_t max)
{
    char *out;
    size_t i, n;

    if (!s)
        return NULL;
    n = strnlen(s, max);
    out = arena_strndup(a, s, n);
    if (!out)
        return NULL;
    for (i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] >= 0x7f)
            out[i] = '?';
    return out;
}

char *v_user_text(const struct user *u)
{
    char created[32], updated[32];
    struct jw w;

    clock_rfc3339(u->created_at, created);
    clock_rfc3339(u->updated_at, updated);
    jw_begin(&w);
    jw_str(&w, "id", u->id);
    jw_str(&w, "email", u->email);
    jw_str(&w, "full_name", u->full_name);
    jw_str(&w, "role", role_name(u->role));
    jw_bool(&w, "is_active", u->is_active);
    jw_bool(&w, "is_verified", u->is_verified);
    jw_bool(&w, "mfa_enabled", u->mfa_enabled);
    jw_str(&w, "created_at", created);
    jw_str(&w, "updated_at", updated);
    return jw_finish(&w);
}

json_t *v_user_json(const struct user *u)
{
    char created[32], updated[32];

    clock_rfc3339(u->created_at, created);
    clock_rfc3339(u->updated_at, updated);
    return json_pack("{s:s, s:s, s:s?, s:s, s:b, s:b, s:b, s:s, s:s}",
                     "id", u->id, "email", u->email,
                     "full_name", u->full_name,
                     "role", role_name(u->role),
                     "is_active", u->is_active,
                     "is_verified", u->is_verified,
                     "mfa_enabled", u->mfa_enabled,
                     "created_at", created, "updated_at", updated);
}
