#ifndef AUTH_FORM_H              /* form.h: x-www-form-urlencoded bodies */
#define AUTH_FORM_H
#include <jansson.h>
#include <stddef.h>
#include "arena.h"

/* Decodes one x-www-form-urlencoded component of `len` bytes ('+' is a
 * space, %XX a byte) into a NUL-terminated arena copy of *out_len bytes
 * (which may hold a NUL, from %00). NULL when a '%' is not followed by
 * two hex digits, or when out of memory. */
char *form_decode(struct arena *a, const char *s, size_t len,
                  size_t *out_len);
/* The form body `body[0..len)` (need not be NUL-terminated) as a JSON
 * object of strings; a name without '=' gets "". A value may hold U+0000
 * (%00), as a JSON string may: req_json() refuses it, naming the field.
 * NULL when a component is malformed, a name is empty, repeated or holds
 * %00, a value is not UTF-8, or when out of memory. New reference; the
 * caller decrefs. */
json_t *form_parse(struct arena *a, const char *body, size_t len);

#endif
