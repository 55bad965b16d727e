#ifndef AUTH_MIGRATIONS_H        /* migrations.h: SQL embedded at build */
#define AUTH_MIGRATIONS_H
#include <stddef.h>

/* One file of migrations/<backend>/NNNN_name.sql, compiled into the binary
 * (cmake/migrations.cmake), so the daemon needs no files at run time. */
struct migration {
    unsigned version;            /* NNNN of the file name */
    const char *name;            /* the file name */
    const char *sql;             /* NUL-terminated text */
};

/* The migrations of `backend` ("sqlite" or "postgres") in version order;
 * *n gets their number. Static storage. */
const struct migration *migrations_for(const char *backend, size_t *n);

#endif
