/* fuzz_validate.c: the request-field validators and the password policy.
 * The input is used twice: as one raw string (as a field's value), and
 * as a request body validated the way the register handler does it. */
#include <ctype.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "http.h"
#include "password.h"
#include "validate.h"

#define MAX_PW_BYTES 512          /* the handlers' HX_MAX_PASSWORD_BYTES */
#define MAX_FIELD 1024            /* the handlers' cap on other strings */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A normalised email: trimmed, lower case, one '@', at most 254 bytes. */
static void check_email(const char *e)
{
    const char *at = strchr(e, '@');
    size_t i, n = strlen(e);

    if (n == 0 || n > V_MAX_EMAIL || !at || strchr(at + 1, '@') ||
        isspace((unsigned char)e[0]) || isspace((unsigned char)e[n - 1]))
        abort();
    for (i = 0; i < n; i++)
        if (isupper((unsigned char)e[i]))
            abort();
}

static void check_printable(const char *p, size_t max)
{
    size_t i, n = strlen(p);

    if (n > max)
        abort();
    for (i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] >= 0x7f)
            abort();
}

/* The input as a single field value. */
static void raw_string(struct arena *a, const char *s, unsigned min_chars)
{
    const char *email = v_email(a, s), *p;
    enum role r;

    if (email) {
        check_email(email);
        if (v_email(a, email) == NULL)      /* normalising is idempotent */
            abort();
    }
    (void)v_full_name(s);
    p = v_printable(a, s, 64);
    if (p)
        check_printable(p, 64);
    if (role_parse(s, &r) && strcmp(role_name(r), s) != 0)
        abort();
    (void)pw_policy_check(s, email ? email : s, min_chars);
    (void)pw_policy_check(s, NULL, min_chars);
    (void)pw_is_common(s);
}

/* The input as a JSON body: types first, then shapes (handlers' order). */
static void body(struct arena *a, const uint8_t *data, size_t size,
                 unsigned min_chars)
{
    json_t *in = json_loadb((const char *)data, size,
                            JSON_REJECT_DUPLICATES, NULL);
    struct response res;
    const char *raw = NULL, *pw = NULL, *name = NULL, *role = NULL;
    const char *email = NULL;
    bool name_null = false, active = false, present = false;
    enum role r;

    if (!json_is_object(in))
        goto out;
    memset(&res, 0, sizeof res);
    v_string(&res, in, "email", true, MAX_FIELD, &raw);
    v_string(&res, in, "password", true, MAX_PW_BYTES, &pw);
    v_string_or_null(&res, in, "full_name", MAX_FIELD, &name, &name_null);
    v_string(&res, in, "role", false, 16, &role);
    v_bool(&res, in, "is_active", &active, &present);
    if (raw) {
        email = v_email(a, raw);
        if (email)
            check_email(email);
    }
    if (name)
        (void)v_full_name(name);
    if (role)
        (void)role_parse(role, &r);
    if (pw)
        (void)pw_policy_check(pw, email, min_chars);
    if (res.errors && !json_is_array(res.errors))
        abort();
    json_decref(res.errors);
out:
    json_decref(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arena *a = arena_new();
    char *s = malloc(size + 1);
    /* AUTH_PASSWORD_MIN_LENGTH is 1..128; the last byte picks one. */
    unsigned min_chars = size ? 1u + data[size - 1] % 128u : 8u;

    if (!a || !s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    raw_string(a, s, min_chars);
    body(a, data, size, min_chars);
    free(s);
    arena_free(a);
    return 0;
}
