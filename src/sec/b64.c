/* b64.c: strict base64url without padding, as JOSE uses it. */
#include "sec/sec_int.h"

#include <sodium.h>
#include <string.h>

#define B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING

bool sec_b64url_encode(const void *in, size_t n, char *out, size_t out_len)
{
    if (out_len < sodium_base64_ENCODED_LEN(n, B64URL))
        return false;
    sodium_bin2base64(out, out_len, in, n, B64URL);
    return true;
}

bool sec_b64url_alphabet(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

bool sec_b64url_decode(const char *in, size_t n, unsigned char *out,
                       size_t out_len, size_t *got)
{
    const char *end = NULL;

    *got = 0;
    if (!sec_b64url_alphabet(in, n))
        return false;
    if (sodium_base642bin(out, out_len, in, n, NULL, got, &end, B64URL) != 0)
        return false;
    return end == in + n;            /* the whole segment was consumed */
}
