/* fuzz_bearer.c: the Authorization header parser (authn_bearer_token).
 * The input, up to its first NUL, is the header value as libmicrohttpd
 * hands it over. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "authn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *h = malloc(size + 1);
    const char *tok;
    size_t n;

    if (!h)
        abort();
    memcpy(h, data, size);
    h[size] = '\0';
    n = strlen(h);
    tok = authn_bearer_token(h);
    /* A token is a non-empty suffix of the header, after "Bearer " (any
     * case) and the spaces that follow, and starts with no space. */
    if (tok && (tok < h + 7 || tok >= h + n || *tok == ' ' ||
                strncasecmp(h, "Bearer ", 7) != 0 ||
                strspn(h + 7, " ") != (size_t)(tok - h - 7)))
        abort();
    /* And every header of that shape has one. */
    if (!tok && n > 7 && strncasecmp(h, "Bearer ", 7) == 0 &&
        strspn(h + 7, " ") < n - 7)
        abort();
    if (authn_bearer_token(NULL) != NULL)
        abort();
    free(h);
    return 0;
}
