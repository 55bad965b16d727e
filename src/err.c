/* err.c: the error table's lookups. */
#include "err.h"

#include <stddef.h>

struct err_row {
    int status;
    const char *code;
    const char *title;
};

static const struct err_row rows[] = {
#define X(c, status, name, title) [c] = { status, name, title },
    AS_ERR_TABLE(X)
#undef X
};

static const struct err_row *row(enum as_err e)
{
    if ((size_t)e >= sizeof rows / sizeof rows[0])
        return &rows[AS_ERR_INTERNAL];
    return &rows[e];
}

int as_err_http_status(enum as_err e)
{
    return row(e)->status;
}

const char *as_err_code(enum as_err e)
{
    return row(e)->code;
}

const char *as_err_title(enum as_err e)
{
    return row(e)->title;
}

int as_err_is_infra(enum as_err e)
{
    return row(e)->status >= 500 && e != AS_ERR_LOCK_CONFLICT;
}
