/* b64.c: strict base64url without padding, as JOSE uses it. */
#include "sec/sec_int.h"

#include "crypto.h"

bool sec_b64url_encode(const void *in, size_t n, char *out, size_t out_len)
{
    return crypt_b64url_encode(in, n, out, out_len);
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
    return crypt_b64url_decode(in, n, out, out_len, got);
}
