/* form.c: application/x-www-form-urlencoded bodies (RFC 6749 s4.3 login,
 * RFC 7662 introspection, RFC 7009 revocation) as JSON objects. */
#include "form.h"

#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *form_decode(struct arena *a, const char *s, size_t len,
                  size_t *out_len)
{
    char *out = arena_alloc(a, len + 1);
    size_t i, o = 0;

    if (!out)
        return NULL;
    for (i = 0; i < len; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] != '%') {
            out[o++] = s[i];
        } else if (len - i < 3 || hexval(s[i + 1]) < 0 ||
                   hexval(s[i + 2]) < 0) {
            return NULL;
        } else {
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

json_t *form_parse(struct arena *a, const char *body, size_t len)
{
    json_t *obj = json_object();
    const char *p = body, *end = body + len;

    while (obj && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        size_t klen = 0, vlen = 0;
        char *k, *v;

        if (stop > p) {
            k = form_decode(a, p, (size_t)((eq ? eq : stop) - p), &klen);
            v = eq ? form_decode(a, eq + 1, (size_t)(stop - eq - 1), &vlen)
                   : arena_strdup(a, "");
            /* A value keeps a decoded NUL (the caller refuses it, naming
             * the field, as in a JSON string); a name cannot hold one. */
            if (!k || !v || !*k || strlen(k) != klen ||
                json_object_get(obj, k) ||
                json_object_set_new(obj, k, json_stringn(v, vlen)) != 0) {
                json_decref(obj);
                return NULL;
            }
        }
        p = stop + 1;
    }
    return obj;
}
