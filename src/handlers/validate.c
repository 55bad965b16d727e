/* validate.c: type and shape checks on request fields, and the user
 * object's JSON form. */
#include "validate.h"

#include <ctype.h>
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

/* True when the UTF-8 at `p` starts with a control character of C1
 * (U+0080-U+009F), a line or paragraph separator (U+2028, U+2029), or a
 * bidirectional embedding, override or isolate (U+202A-U+202E,
 * U+2066-U+2069: Unicode TR #9; they reorder what follows them, so a name
 * could show as someone else's text in a list or a mail). */
static bool format_char(const unsigned char *p)
{
    if (p[0] == 0xc2)
        return p[1] >= 0x80 && p[1] <= 0x9f;
    if (p[0] != 0xe2 || !p[1])
        return false;
    return (p[1] == 0x80 && p[2] >= 0xa8 && p[2] <= 0xae) ||
           (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9);
}

bool v_full_name(const char *s)
{
    size_t chars = 0;
    const unsigned char *p = (const unsigned char *)s;
    json_t *utf8;

    for (; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || format_char(p))
            return false;
        if ((*p & 0xc0) != 0x80)
            chars++;
    }
    if (chars < 1 || chars > V_MAX_NAME)
        return false;
    /* JSON bodies are UTF-8 by the time they get here; a name from the
     * command line may not be, and would make every answer that shows it
     * JSON that is not */
    utf8 = json_string(s);              /* NULL unless strict UTF-8 */
    json_decref(utf8);
    return utf8 != NULL;
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
