/* pqlib.c: opening libpq on first use (include/pqlib.h says why). */
#define PQLIB_TABLE_ITSELF
#include "pqlib.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#define PQ_SONAME "libpq.so.5"

struct pqlib pqlib;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool loaded;
static char error[256];                 /* why not, when !loaded */

static void load(void)
{
    void *h = dlopen(PQ_SONAME, RTLD_NOW | RTLD_LOCAL);
    const char *e;

    if (!h) {
        e = dlerror();
        snprintf(error, sizeof error, "%s", e ? e : PQ_SONAME);
        return;
    }
#define PQLIB_SYM(f)                                                        \
    if (!(pqlib.f = (__typeof__(pqlib.f))dlsym(h, #f))) {                   \
        snprintf(error, sizeof error, "%s lacks %s", PQ_SONAME, #f);        \
        dlclose(h);                                                         \
        return;                                                             \
    }
    PQLIB_FUNCS(PQLIB_SYM)
#undef PQLIB_SYM
    loaded = true;
}

bool pqlib_load(const char **why)
{
    pthread_once(&once, load);
    *why = loaded ? NULL : error;
    return loaded;
}
