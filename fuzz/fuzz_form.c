/* fuzz_form.c: the application/x-www-form-urlencoded body parser
 * (form_parse, form_decode). The body is handed over without a trailing
 * NUL, in a buffer of exactly its size, so that any read past its end is
 * caught. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "form.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every member is a non-empty name with a string value. */
static void check_object(json_t *obj, size_t size)
{
    const char *k;
    json_t *v;

    if (!json_is_object(obj))
        abort();
    json_object_foreach(obj, k, v) {
        if (!k[0] || strlen(k) > size || !json_is_string(v) ||
            json_string_length(v) > size)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arena *a = arena_new();
    char *body = malloc(size ? size : 1);
    json_t *obj;
    size_t n = SIZE_MAX;
    char *one;

    if (!a || !body)
        abort();
    memcpy(body, data, size);
    obj = form_parse(a, body, size);
    if (obj)
        check_object(obj, size);
    json_decref(obj);
    one = form_decode(a, body, size, &n);
    if (one && (n > size || one[n] != '\0' || strlen(one) > n))
        abort();
    free(body);
    arena_free(a);
    return 0;
}
