/* role.c: the one mapping between enum role and its name. */
#include "role.h"

#include <stddef.h>
#include <string.h>

static const char *const names[] = {
    [ROLE_USER] = "user",
    [ROLE_ADMIN] = "admin",
};

const char *role_name(enum role r)
{
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : NULL;
}

bool role_parse(const char *s, enum role *out)
{
    size_t i;

    for (i = 0; s && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum role)i;
            return true;
        }
    return false;
}
