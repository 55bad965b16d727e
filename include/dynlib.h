#ifndef AUTH_DYNLIB_H            /* dynlib.h: libraries opened when used */
#define AUTH_DYNLIB_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* A library the daemon does not link but opens with dlopen() the first
 * time it is needed: every start would otherwise pay for mapping it
 * (README.md "Performance"). Its functions are called through `table`,
 * a struct of typed pointers (src/qr.c; src/sec/cborlib.h and jwtlib.h
 * also map the usual names to it); `names` says where each goes. */
struct dynlib_name {
    const char *name;
    size_t offset;               /* of its pointer in the table */
};

struct dynlib {
    const char *soname;
    const struct dynlib_name *names;
    size_t count;
    void *table;
    const char *event;           /* logged at the first failure */
    const char *without;         /* what fails without it, for that log */
    pthread_mutex_t mu;
    atomic_int state;            /* 0 not tried, 1 loaded, -1 failed */
    char error[256];             /* why not, once failed */
};

#define DYNLIB_INIT(soname, names, table, event, without)                   \
    { (soname), (names), sizeof(names) / sizeof((names)[0]), &(table),      \
      (event), (without), PTHREAD_MUTEX_INITIALIZER, 0, { 0 } }

/* Opens the library and fills its table, once per process (thread-safe;
 * later calls answer the first one's result without a lock). False when
 * it cannot be opened or lacks a name: *why (owned by `l`) says which,
 * and the first failure is logged as `l->event`. */
bool dynlib_load(struct dynlib *l, const char **why);

#endif
