/* cborlib.c: opening libcbor on first use (cborlib.h says why). */
#define CBORLIB_TABLE_ITSELF
#include "sec/cborlib.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "log.h"

#define CBOR_SONAME "libcbor.so.0.8"

struct cborlib cborlib;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool loaded;
static char error[256];                 /* why not, when !loaded */

static void load(void)
{
    void *h = dlopen(CBOR_SONAME, RTLD_NOW | RTLD_LOCAL);
    const char *e;

    if (!h) {
        e = dlerror();
        snprintf(error, sizeof error, "%s", e ? e : CBOR_SONAME);
    }
#define CBORLIB_SYM(f)                                                      \
    if (h && !(cborlib.f = (__typeof__(cborlib.f))dlsym(h, #f))) {          \
        snprintf(error, sizeof error, "%s lacks %s", CBOR_SONAME, #f);      \
        dlclose(h);                                                         \
        h = NULL;                                                           \
    }
    CBORLIB_NAMES(CBORLIB_SYM)
#undef CBORLIB_SYM
    loaded = h != NULL;
    if (!loaded)
        log_event(LOG_ERROR, "passkeys.unavailable", NULL,
                  json_pack("{s:s, s:s}", "message", "libcbor cannot be "
                            "opened: passkey registrations and logins "
                            "fail with 500", "error", error));
}

bool cborlib_load(const char **why)
{
    pthread_once(&once, load);
    *why = loaded ? NULL : error;
    return loaded;
}
