/* dynlib.c: opening a library on first use (include/dynlib.h). */
#include "dynlib.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

static bool open_all(struct dynlib *l)
{
    void *h = dlopen(l->soname, RTLD_NOW | RTLD_LOCAL), *p;
    const char *e;
    size_t i;

    if (!h) {
        e = dlerror();
        snprintf(l->error, sizeof l->error, "%s", e ? e : l->soname);
        return false;
    }
    for (i = 0; i < l->count; i++) {
        p = dlsym(h, l->names[i].name);
        if (!p) {
            snprintf(l->error, sizeof l->error, "%s lacks %s", l->soname,
                     l->names[i].name);
            dlclose(h);
            return false;
        }
        /* dlsym's object pointer into the table's typed pointer (POSIX
         * makes them interchangeable) */
        memcpy((char *)l->table + l->names[i].offset, &p, sizeof p);
    }
    return true;
}

bool dynlib_load(struct dynlib *l, const char **why)
{
    int state = atomic_load_explicit(&l->state, memory_order_acquire);

    if (state == 0) {
        pthread_mutex_lock(&l->mu);
        state = atomic_load_explicit(&l->state, memory_order_relaxed);
        if (state == 0) {
            state = open_all(l) ? 1 : -1;
            if (state < 0)
                log_event(LOG_ERROR, l->event, NULL,
                          json_pack("{s:s, s:s}", "message", l->without,
                                    "error", l->error));
            atomic_store_explicit(&l->state, state, memory_order_release);
        }
        pthread_mutex_unlock(&l->mu);
    }
    *why = state > 0 ? NULL : l->error;
    return state > 0;
}
