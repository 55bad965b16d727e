#ifndef AUTH_ROLE_H              /* role.h: an account's role, and its name */
#define AUTH_ROLE_H
#include <stdbool.h>

enum role { ROLE_USER = 0, ROLE_ADMIN = 1 };

/* The name of `r` wherever a role is text (JSON bodies, the "role" claim
 * of a token, the database column, the CLI): "user" or "admin"; NULL for
 * a value outside enum role. Static storage. */
const char *role_name(enum role r);
/* The role named `s` (exactly "user" or "admin": no other case, no
 * blanks) into `*out`. False, `*out` untouched, for anything else,
 * NULL included. */
bool role_parse(const char *s, enum role *out);

#endif
