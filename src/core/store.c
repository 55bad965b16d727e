/* store.c: opening the database for the CLI, and whether it answers
 * (for /readyz), so no caller outside the core and the repository needs
 * the repository's own calls. */
#include "core.h"

#include "breaker.h"

enum as_err core_store_open(const struct cfg *cfg, struct repo **out)
{
    enum as_err err = repo_open(cfg, out);

    if (err == AS_OK)
        err = repo_migrate(*out);
    if (err != AS_OK) {
        repo_close(*out);
        *out = NULL;
    }
    return err;
}

void core_store_close(struct repo *r)
{
    repo_close(r);
}

bool core_store_ready(struct repo *r, uint64_t mono_ms,
                      const char **backend)
{
    *backend = repo_backend(r);
    return breaker_state(repo_breaker(r), mono_ms) == BREAKER_CLOSED;
}
