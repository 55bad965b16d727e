/* fuzz_webauthn.c: the WebAuthn checks (wa_register_verify,
 * wa_assert_verify, wa_client_challenge) on hostile bytes. The first
 * byte picks what the rest of the input is: an attestationObject, an
 * authenticatorData (with a recorded P-256 COSE key), a COSE key, or a
 * clientDataJSON. Nothing may crash, leak or verify. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "webauthn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The COSE key of the assertion recorded in tests/unit/test_webauthn.c. */
static const char cose_b64[] =
    "pQECAyYgASFYILyFOmHcqvynN9lH7mcLJeDBqzKNSY1637U_Pt6RDwyVIlggDmVUUy1S_y"
    "arJV7EVWlsBR8cpnDrIeu3ge4qwwGNjXU";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct wa_rp rp = { "localhost", "http://localhost:8000" };
    static const char cdj_create[] =
        "{\"type\":\"webauthn.create\",\"challenge\":"
        "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
        "\"origin\":\"http://localhost:8000\"}";
    static const char cdj_get[] =
        "{\"type\":\"webauthn.get\",\"challenge\":"
        "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
        "\"origin\":\"http://localhost:8000\"}";
    uint8_t challenge[WA_CHALLENGE_LEN] = { 0 }, got[WA_CHALLENGE_LEN];
    static const uint8_t sig[8] = { 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01,
                                    0x01 };
    struct arena *a;
    const uint8_t *cose = NULL;
    size_t cose_len = 0;
    struct wa_cred cred;
    uint32_t count = 0;
    enum wa_result r = WA_BAD_FORMAT;

    if (size < 1 || size > 16384)
        return 0;
    a = arena_new();
    if (!a)
        return 0;
    if (!wa_unb64url(a, cose_b64, WA_COSE_MAX, &cose, &cose_len))
        abort();
    switch (data[0] & 3) {
    case 0:
        r = wa_register_verify(&rp, challenge, (const uint8_t *)cdj_create,
                               strlen(cdj_create), data + 1, size - 1,
                               &cred, a);
        if (r == WA_OK && (cred.cose_len == 0 || cred.id_len == 0 ||
                           cred.id_len > WA_CRED_ID_MAX))
            abort();
        r = WA_BAD_FORMAT;        /* a made-up "none" registration may pass */
        break;
    case 1:
        r = wa_assert_verify(&rp, challenge, (const uint8_t *)cdj_get,
                             strlen(cdj_get), data + 1, size - 1, sig,
                             sizeof sig, cose, cose_len, 0, &count);
        break;
    case 2:
        r = wa_assert_verify(&rp, challenge, (const uint8_t *)cdj_get,
                             strlen(cdj_get), data + 1, size - 1, sig,
                             sizeof sig, data + 1, size - 1, 0, &count);
        break;
    case 3:
        (void)wa_client_challenge(data + 1, size - 1, got);
        r = wa_assert_verify(&rp, challenge, data + 1, size - 1, data + 1,
                             size - 1, data + 1, size - 1, cose, cose_len, 0,
                             &count);
        break;
    }
    if (r == WA_OK || r == WA_CLONED)   /* no forged signature verifies */
        abort();
    arena_free(a);
    return 0;
}
