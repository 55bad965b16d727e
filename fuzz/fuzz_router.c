/* fuzz_router.c: route matching and the path parser (router_match).
 * The input is "METHOD path": the method up to the first space, the path
 * after it, both up to the first NUL. Each is matched twice: with the
 * server's Allow buffer and with a small one (exactly its size, so that
 * ASan sees any write past its end). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "http.h"

#define SERVER_ALLOW 128          /* the size server.c passes */
#define MAX_ID 64                 /* longest {id} segment router.c takes */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A found route names the method (or GET for HEAD) and, when its pattern
 * has an {id}, a non-empty segment without '/'. */
static void check_found(const struct route *r, const char *method,
                        const char *param)
{
    bool has_id = strchr(r->pattern, '{') != NULL;

    if (strcmp(r->method, method) != 0 &&
        !(strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0))
        abort();
    if (has_id != (param != NULL))
        abort();
    if (param && (!param[0] || strlen(param) > MAX_ID || strchr(param, '/')))
        abort();
}

static void match(const char *method, const char *path, size_t allow_len)
{
    struct arena *a = arena_new();
    char *allow = malloc(allow_len);
    const struct route *r = (const struct route *)1;
    const char *param = "x";
    enum router_result res;

    if (!a || !allow)
        abort();
    res = router_match(method, path, a, &r, &param, allow, allow_len);
    if (strlen(allow) >= allow_len)
        abort();
    switch (res) {
    case ROUTE_FOUND:
        if (!r)
            abort();
        check_found(r, method, param);
        break;
    case ROUTE_BAD_METHOD:
        if (r || param || (allow_len >= SERVER_ALLOW && !allow[0]))
            abort();
        break;
    case ROUTE_NOT_FOUND:
        if (r || param || allow[0])
            abort();
        break;
    default:
        abort();
    }
    free(allow);
    arena_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1), *path;
    size_t small = size ? 1u + data[size - 1] % 16u : 1u;

    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    path = strchr(s, ' ');
    if (path)
        *path++ = '\0';
    else
        path = s + strlen(s);
    match(s, path, SERVER_ALLOW);
    match(s, path, small);
    free(s);
    return 0;
}
