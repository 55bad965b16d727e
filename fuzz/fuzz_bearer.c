/* fuzz_bearer.c: the Authorization header parser (authn_bearer_token).
 * The input, up to its first NUL, is the header value as libmicrohttpd
 * hands it over. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arena.h"
#include "authn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *h = malloc(size + 1);
    struct arena *a = arena_new();
    const char *tok;
    size_t n, start = 0, end = 0;
    bool want = false;

    if (!h || !a)
        abort();
    memcpy(h, data, size);
    h[size] = '\0';
    n = strlen(h);
    tok = authn_bearer_token(h, a);
    /* The token: what follows "Bearer " (any case) and the spaces after
     * it, without the blanks (SP, HTAB) that end the header; a header of
     * that shape has one exactly when that is not empty. */
    if (n >= 7 && strncasecmp(h, "Bearer ", 7) == 0) {
        start = 7 + strspn(h + 7, " ");
        end = n;
        while (end > start && (h[end - 1] == ' ' || h[end - 1] == '\t'))
            end--;
        want = end > start;
    }
    if (want != (tok != NULL))
        abort();
    if (tok && (strlen(tok) != end - start ||
                memcmp(tok, h + start, end - start) != 0))
        abort();
    if (authn_bearer_token(NULL, a) != NULL)
        abort();
    arena_free(a);
    free(h);
    return 0;
}
