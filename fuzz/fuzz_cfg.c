/* fuzz_cfg.c: the configuration loader (cfg_load_from): the .env parser
 * and the value checks. The input is written as the .env file (in a
 * folder made once at start) and is also split at newlines and NULs into
 * an environment array. Three loads: the file alone, the environment
 * alone, and both (the environment wins). */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"

#define MAX_ENV 256

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[PATH_MAX], env_path[PATH_MAX + 8];

static void cleanup(void)
{
    unlink(env_path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");

    (void)argc;
    (void)argv;
    if (snprintf(dir, sizeof dir, "%s/fuzz-cfg-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp") >= (int)sizeof dir ||
        !mkdtemp(dir))
        abort();
    snprintf(env_path, sizeof env_path, "%s/.env", dir);
    atexit(cleanup);
    return 0;
}

/* A loaded configuration has what the daemon relies on; a refused one
 * says why in one line. */
static void load(const char *file, char *const *envp)
{
    struct cfg c;
    char why[256];
    bool ok;

    memset(why, 0, sizeof why);
    ok = cfg_load_from(&c, file, envp, why, sizeof why);
    if (ok && (!c.host || !c.data_dir || !c.database_url ||
               !c.jwt_issuer || !c.jwt_audience || !c.public_url ||
               c.hash_workers == 0 || c.threads == 0 ||
               c.password_min_length < 1 || c.password_min_length > 128 ||
               (c.jwt_alg == CFG_ALG_HS256 &&
                (!c.jwt_secret || strlen(c.jwt_secret) < 32))))
        abort();
    if (!ok && (!why[0] || strchr(why, '\n')))
        abort();
    cfg_cleanup(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1), *p, *end;
    char *envp[MAX_ENV + 1], *none[1] = { NULL };
    size_t n = 0;
    FILE *f = fopen(env_path, "w");

    if (!copy || !f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    memcpy(copy, data, size);
    copy[size] = '\0';
    for (p = copy, end = copy + size; p <= end && n < MAX_ENV; p++) {
        char *stop = p;

        while (stop < end && *stop != '\n' && *stop != '\0')
            stop++;
        *stop = '\0';
        if (stop > p)
            envp[n++] = p;
        p = stop;
    }
    envp[n] = NULL;
    load(env_path, none);
    load(NULL, envp);
    load(env_path, envp);
    free(copy);
    return 0;
}
