#ifndef AUTH_VALIDATE_H          /* validate.h: checks on request fields */
#define AUTH_VALIDATE_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "arena.h"
#include "http.h"
#include "repo.h"

#define V_MAX_EMAIL 254
#define V_MAX_NAME 200           /* code points of full_name */

/* Reads string field `name` of `in` into *out (borrowed from `in`).
 * Absent: *out = NULL, and a field error when `required`. Present but
 * not a string, containing NUL, or longer than `max_bytes`: a field
 * error. Returns false when it added an error. */
bool v_string(struct response *res, json_t *in, const char *name,
              bool required, size_t max_bytes, const char **out);
/* Like v_string, and JSON null is accepted as "clear" (*is_null). */
bool v_string_or_null(struct response *res, json_t *in, const char *name,
                      size_t max_bytes, const char **out, bool *is_null);
/* Reads boolean field `name` when present (*present). */
bool v_bool(struct response *res, json_t *in, const char *name, bool *out,
            bool *present);
/* Trims and lower-cases `raw` into the arena and checks its shape (one @,
 * a dotted domain, RFC 5322 atoms, at most 254 bytes). NULL when invalid
 * or out of memory. */
const char *v_email(struct arena *a, const char *raw);
/* v_email() of an address to store (registration, an email change, `user
 * create`): NULL also when its domain does not end in a name. */
const char *v_new_email(struct arena *a, const char *raw);
/* True when `name` is an acceptable full name: 1-200 code points, no
 * control characters. */
bool v_full_name(const char *name);
/* User agent or IP text safe to store and echo: printable ASCII, at most
 * `max` bytes (arena copy; NULL for NULL). */
const char *v_printable(struct arena *a, const char *s, size_t max);
/* The user object (`User` in src/openapi.json). New reference. */
json_t *v_user_json(const struct user *u);
/* v_user_json() as compact text, written without building a tree (for
 * /api/v1/users/me); the caller frees it. NULL when out of memory. */
char *v_user_text(const struct user *u);

#endif
