#ifndef AUTH_WEBAUTHN_H          /* webauthn.h: WebAuthn relying-party checks */
#define AUTH_WEBAUTHN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "arena.h"

/* The verification of WebAuthn Level 3, sections 7.1 (registration) and
 * 7.2 (authentication), for attestation "none": CBOR and COSE are read
 * with libcbor (opened on first use), signatures checked with OpenSSL.
 * Pure functions of their inputs (no clock, no database), so recorded
 * ceremonies are unit tests. */

#define WA_CHALLENGE_LEN 32          /* random bytes of a challenge */
#define WA_CRED_ID_MAX 1023          /* longest credential id (spec limit) */
#define WA_COSE_MAX 1024             /* longest COSE_Key accepted (RSA 4096) */
#define WA_CLIENT_DATA_MAX 4096      /* longest clientDataJSON accepted */

/* COSE algorithms accepted, in the order of pubKeyCredParams. */
#define WA_ALG_ES256 (-7)
#define WA_ALG_EDDSA (-8)
#define WA_ALG_RS256 (-257)

/* authenticatorData flags (section 6.1). */
#define WA_FLAG_UP 0x01u
#define WA_FLAG_UV 0x04u
#define WA_FLAG_BE 0x08u
#define WA_FLAG_BS 0x10u
#define WA_FLAG_AT 0x40u
#define WA_FLAG_ED 0x80u

/* Why a ceremony was refused (for logs and tests; clients see one code). */
enum wa_result {
    WA_OK = 0,
    WA_BAD_FORMAT,        /* not the structure the spec defines */
    WA_BAD_TYPE,          /* clientData.type is not the ceremony's */
    WA_BAD_CHALLENGE,     /* clientData.challenge is not the one issued */
    WA_BAD_ORIGIN,        /* origin not in AUTH_WEBAUTHN_ORIGINS, or a
                             cross-origin call (crossOrigin true, or
                             any topOrigin) */
    WA_BAD_RP_ID,         /* rpIdHash is not SHA-256(RP ID) */
    WA_NO_UP,             /* user present flag clear */
    WA_NO_UV,             /* user verified flag clear */
    WA_BAD_FLAGS,         /* AT/ED inconsistent with the data, BS without
                             BE */
    WA_BAD_ATTESTATION,   /* a format other than "none", or a statement */
    WA_BAD_KEY,           /* a COSE key of an algorithm not offered */
    WA_BAD_SIGNATURE,     /* the signature does not verify */
    WA_CLONED,            /* signature fine, counter not past the stored one */
    WA_UNAVAILABLE,       /* libcbor cannot be opened (nothing checked) */
};

/* The relying party: RP ID and the comma-separated allowed origins
 * (both borrowed). */
struct wa_rp {
    const char *rp_id;
    const char *origins;
};

/* A credential that registration accepted. Pointers borrow from the
 * arena passed to wa_register_verify(). */
struct wa_cred {
    const uint8_t *id;
    size_t id_len;
    const uint8_t *cose;          /* the COSE_Key, as the authenticator sent */
    size_t cose_len;
    int64_t alg;                  /* WA_ALG_* */
    uint32_t sign_count;
    uint8_t flags;
};

/* Whether libcbor, opened on the first call, can be used; the first
 * failure is logged (`passkeys.unavailable`). The ceremonies below
 * answer WA_UNAVAILABLE without it. */
bool wa_available(void);

/* A short name of `r` ("bad_origin"...), static storage. */
const char *wa_result_name(enum wa_result r);

/* Reads the challenge that clientDataJSON (`cdj`, `n` bytes) carries into
 * `out`. False when it is not JSON or has no challenge of
 * WA_CHALLENGE_LEN bytes in base64url. */
bool wa_client_challenge(const uint8_t *cdj, size_t n,
                         uint8_t out[WA_CHALLENGE_LEN]);

/* Section 7.1 steps 5-26 for attestation "none": clientDataJSON `cdj`
 * (type "webauthn.create", `challenge`, an allowed origin, not
 * cross-origin), the attestationObject `att` (fmt "none" with an empty
 * statement), rpIdHash, UP, UV, BE/BS, AT with attested credential data,
 * no bytes left over, and a public key of an offered algorithm. On WA_OK
 * `out` describes the credential, its buffers in `a`. */
enum wa_result wa_register_verify(const struct wa_rp *rp,
                                  const uint8_t challenge[WA_CHALLENGE_LEN],
                                  const uint8_t *cdj, size_t cdj_len,
                                  const uint8_t *att, size_t att_len,
                                  struct wa_cred *out, struct arena *a);

/* Section 7.2 steps 11-22: clientDataJSON `cdj` (type "webauthn.get",
 * `challenge`, an allowed origin), authenticatorData `ad` (rpIdHash, UP,
 * UV, BE/BS, no attested data, no bytes left over), the signature `sig`
 * over ad || SHA-256(cdj) with the stored COSE key `cose`, then the
 * signature counter: when `stored_count` or the new one is not zero, the
 * new one must be greater, else WA_CLONED (the signature is right but the
 * authenticator may be cloned). *new_count gets the counter the
 * authenticator sent (also with WA_CLONED). */
enum wa_result wa_assert_verify(const struct wa_rp *rp,
                                const uint8_t challenge[WA_CHALLENGE_LEN],
                                const uint8_t *cdj, size_t cdj_len,
                                const uint8_t *ad, size_t ad_len,
                                const uint8_t *sig, size_t sig_len,
                                const uint8_t *cose, size_t cose_len,
                                uint32_t stored_count, uint32_t *new_count);

/* Base64url (no padding) of `n` bytes, in `a`; NULL when out of memory. */
char *wa_b64url(struct arena *a, const uint8_t *in, size_t n);
/* Decodes the base64url string `s` (no padding) into a buffer of the
 * arena; false when it is not strict base64url or decodes to more than
 * `max` bytes. */
bool wa_unb64url(struct arena *a, const char *s, size_t max,
                 const uint8_t **out, size_t *n);

#endif
