#ifndef AUTH_ERR_H               /* err.h: one error enum for the whole daemon */
#define AUTH_ERR_H

/* X(code, http status, problem "code", problem "title").
 * Zero is success. Only the router turns a code into a status and body. */
#define AS_ERR_TABLE(X)                                                       \
    X(AS_OK,                   200, "ok",                    "OK")            \
    X(AS_ERR_BAD_REQUEST,      400, "bad_request",           "Bad Request")   \
    X(AS_ERR_MALFORMED,        400, "malformed_json",        "Bad Request")   \
    X(AS_ERR_BAD_TOKEN_PARAM,  400, "invalid_token",         "Bad Request")   \
    X(AS_ERR_INVALID_REQUEST,  400, "invalid_request",       "Bad Request")   \
    X(AS_ERR_INVALID_CODE,     400, "invalid_code",          "Bad Request")   \
    X(AS_ERR_BAD_PASSKEY,      400, "invalid_credential",    "Bad Request")   \
    X(AS_ERR_UNAUTHORIZED,     401, "unauthorized",          "Unauthorized")  \
    X(AS_ERR_BAD_CREDENTIALS,  401, "invalid_credentials",   "Unauthorized")  \
    X(AS_ERR_INVALID_TOKEN,    401, "invalid_token",         "Unauthorized")  \
    X(AS_ERR_PASSKEY_REFUSED,  401, "invalid_credential",    "Unauthorized")  \
    X(AS_ERR_FORBIDDEN,        403, "forbidden",             "Forbidden")     \
    X(AS_ERR_DISABLED,         403, "account_disabled",      "Forbidden")     \
    X(AS_ERR_MFA_REQUIRED,     403, "mfa_required",          "Forbidden")     \
    X(AS_ERR_NOT_FOUND,        404, "not_found",             "Not Found")     \
    X(AS_ERR_METHOD,           405, "method_not_allowed",                     \
      "Method Not Allowed")                                                   \
    X(AS_ERR_CONFLICT,         409, "conflict",              "Conflict")      \
    X(AS_ERR_EMAIL_TAKEN,      409, "email_taken",           "Conflict")      \
    X(AS_ERR_LAST_ADMIN,       409, "last_admin",            "Conflict")      \
    X(AS_ERR_TOO_LARGE,        413, "payload_too_large",                      \
      "Content Too Large")                                                    \
    X(AS_ERR_MEDIA_TYPE,       415, "unsupported_media_type",                 \
      "Unsupported Media Type")                                               \
    X(AS_ERR_VALIDATION,       422, "validation_error",                       \
      "Unprocessable Content")                                                \
    X(AS_ERR_RATE_LIMITED,     429, "too_many_attempts",                      \
      "Too Many Requests")                                                    \
    X(AS_ERR_HEADERS_TOO_LARGE, 431, "header_fields_too_large",             \
      "Request Header Fields Too Large")                                      \
    X(AS_ERR_INTERNAL,         500, "internal_error",                         \
      "Internal Server Error")                                                \
    X(AS_ERR_NOMEM,            500, "internal_error",                         \
      "Internal Server Error")                                                \
    /* A stored TOTP secret that does not decrypt: the refresh-derivation \
     * key it was sealed under is gone (README "Second factor"). Answered \
     * as any 500; the handler logs the cause for the operator. */         \
    X(AS_ERR_SECRET_UNREADABLE, 500, "internal_error",                        \
      "Internal Server Error")                                                \
    X(AS_ERR_UNAVAILABLE,      503, "service_unavailable",                    \
      "Service Unavailable")                                                  \
    /* A transaction aborted by a deadlock or serialization failure: the  \
     * repository retries it and answers AS_ERR_UNAVAILABLE when the      \
     * retries run out, so no caller sees this code. */                   \
    X(AS_ERR_LOCK_CONFLICT,    503, "service_unavailable",                    \
      "Service Unavailable")                                                  \
    /* The database server did not answer at all in time (a connect, or a \
     * statement past the server's own statement_timeout): the repository \
     * opens the circuit at once and answers AS_ERR_UNAVAILABLE, so the   \
     * requests after this one get 503 without waiting (README, "Circuit \
     * breaker"). No caller sees this code. */                            \
    X(AS_ERR_DB_UNREACHABLE,   503, "service_unavailable",                    \
      "Service Unavailable")                                                  \
    /* A write refused by a database that takes none (SQLSTATE 25006: a    \
     * standby, default_transaction_read_only): nothing can change, but    \
     * reads go on, so it does not count against the circuit breaker. The \
     * repository answers AS_ERR_UNAVAILABLE; no caller sees this code. */ \
    X(AS_ERR_READ_ONLY,        503, "service_unavailable",                    \
      "Service Unavailable")                                                  \
    X(AS_ERR_OVERLOADED,       503, "overloaded", "Service Unavailable")    \
    X(AS_ERR_HTTP_VERSION,     505, "http_version_not_supported",             \
      "HTTP Version Not Supported")

enum as_err {
#define X(code, status, name, title) code,
    AS_ERR_TABLE(X)
#undef X
};

/* HTTP status for `e`; 500 for a value outside the table. */
int as_err_http_status(enum as_err e);
/* Stable snake_case problem "code" for `e`; static storage. */
const char *as_err_code(enum as_err e);
/* Short human title (RFC 9457 "title"); static storage. */
const char *as_err_title(enum as_err e);
/* True for results that mean the infrastructure failed (5xx), which is
 * what the circuit breaker counts; a lock conflict is not one (the
 * database answered). */
int as_err_is_infra(enum as_err e);

#endif
