#ifndef AUTH_CFG_H               /* cfg.h: configuration from env and .env */
#define AUTH_CFG_H
#include <stdbool.h>
#include <stddef.h>

enum cfg_alg { CFG_ALG_ES256, CFG_ALG_RS256, CFG_ALG_HS256 };
enum cfg_log_format { CFG_LOG_JSON, CFG_LOG_TEXT };

/* The longest AUTH_ACCESS_TOKEN_TTL accepted, in seconds: what a command
 * that does not know the daemon's setting must assume. */
#define CFG_ACCESS_TTL_MAX 86400u

/* Every AUTH_* variable the daemon knows. Strings are owned by the struct
 * (NULL when unset and without a default); free with cfg_cleanup(). */
struct cfg {
    char *host;                       /* AUTH_HOST */
    unsigned port;                    /* AUTH_PORT, 0 = any free port */
    char *data_dir;                   /* AUTH_DATA_DIR */
    char *database_url;               /* AUTH_DATABASE_URL (secret) */
    enum cfg_alg jwt_alg;             /* AUTH_JWT_ALG */
    char *jwt_secret;                 /* AUTH_JWT_SECRET (secret) */
    char *jwt_key_file;               /* AUTH_JWT_KEY_FILE */
    char *jwt_issuer, *jwt_audience;
    unsigned access_ttl, refresh_ttl; /* seconds */
    unsigned argon2_memory_kib, argon2_iterations;
    unsigned max_body_bytes;
    unsigned password_min_length;
    unsigned hash_workers;            /* 0 in the env = number of cores */
    unsigned hash_queue;
    unsigned rate_limit_per_minute;   /* 0 = off */
    unsigned lockout_threshold, lockout_max_seconds;
    char *trusted_proxies;
    unsigned session_cache_seconds;
    unsigned refresh_reuse_grace_seconds;
    char *introspection_token;        /* secret */
    char *cors_origins;
    unsigned cb_failure_threshold, cb_open_seconds;
    char *smtp_url, *smtp_from, *smtp_user;
    char *smtp_password;              /* secret */
    char *notify_webhook_url;
    char *notify_webhook_secret;      /* secret */
    char *public_url;
    int log_level;                    /* enum log_level from log.h */
    enum cfg_log_format log_format;
    /* Operational limits (README, "Configuration"). */
    unsigned threads;                 /* AUTH_THREADS, 0 = cores */
    unsigned max_connections;         /* AUTH_MAX_CONNECTIONS */
    unsigned max_connections_per_ip;  /* AUTH_MAX_CONNECTIONS_PER_IP */
    unsigned connection_timeout;      /* AUTH_CONNECTION_TIMEOUT, seconds */
    unsigned db_pool_size;            /* AUTH_DB_POOL_SIZE */
    unsigned db_timeout_ms;           /* AUTH_DB_TIMEOUT_MS: busy/statement */
    unsigned session_max_seconds;     /* AUTH_SESSION_MAX_SECONDS */
    unsigned max_sessions;            /* AUTH_MAX_SESSIONS_PER_USER */
    char *metrics_allow;              /* AUTH_METRICS_ALLOW: CIDR list */
    char *keys_secret;                /* AUTH_KEYS_SECRET (secret) */
    unsigned key_publish_seconds;     /* AUTH_KEY_PUBLISH_SECONDS */
    unsigned header_timeout;          /* AUTH_HEADER_TIMEOUT, seconds */
    unsigned body_timeout;            /* AUTH_BODY_TIMEOUT, seconds */
    unsigned mail_per_recipient_per_hour;
    /* Passkeys (README, "Passkeys"); the defaults follow public_url. */
    char *webauthn_rp_id;             /* AUTH_WEBAUTHN_RP_ID */
    char *webauthn_rp_name;           /* AUTH_WEBAUTHN_RP_NAME */
    char *webauthn_origins;           /* AUTH_WEBAUTHN_ORIGINS */
    /* The first AUTH_* name the .env sets on two lines, whose earlier
     * value has no effect (cfg_unused()), and where: "" when none. */
    char dotenv_repeated[64];
    char dotenv_repeated_why[512];
    /* The .env that set a secret (SECRET variables: AUTH_JWT_SECRET,
     * AUTH_KEYS_SECRET, passwords, URLs that may hold one) while anyone
     * on the host may read it: "" when none (cfg_dotenv_exposed()). */
    char dotenv_exposed[512];
};

/* Loads defaults, then `env_file` (NULL or a missing file is fine), then
 * the process environment on top. On a bad value or an unknown AUTH_* name
 * returns false and writes one line naming the variable into `why`.
 * On success `out` is filled; free it with cfg_cleanup() either way. */
bool cfg_load(struct cfg *out, const char *env_file, char *why,
              size_t why_len);
/* Same, but from an explicit NULL-terminated "NAME=value" array instead of
 * the process environment (for tests). */
bool cfg_load_from(struct cfg *out, const char *env_file,
                   char *const *envp, char *why, size_t why_len);
/* Frees the strings of `c` (wiping secrets first); leaves it zeroed. */
void cfg_cleanup(struct cfg *c);
/* Emits one "config.loaded" log event with every value, secrets
 * redacted. */
void cfg_log(const struct cfg *c);
/* A setting that is set but has no effect under the others (an
 * operator's slip worth a warning rather than a refusal: a key file
 * kept for a switch back, say), and why. */
struct cfg_unused {
    const char *name;
    const char *why;
};
/* Fills `out` with at most `max` such settings of `c`; returns how many
 * there are. */
size_t cfg_unused(const struct cfg *c, struct cfg_unused *out, size_t max);
/* The path of the .env that set a secret though others may read it
 * (world-readable), or NULL: a warning, as for a key file. */
const char *cfg_dotenv_exposed(const struct cfg *c);
/* Name of the i-th known variable, or NULL past the end (for docs and
 * tests). */
const char *cfg_var_name(size_t i);
/* The default of every unsigned setting, as cfg_load() sets it without
 * .env or environment: the one table of defaults in cfg.c. String fields
 * are NULL and enum fields zero. Code handed a struct cfg whose field is
 * 0 (tests, tools) falls back to this, never to a number of its own.
 * Borrowed, immutable; safe from any thread. */
const struct cfg *cfg_defaults(void);
/* The CPUs this process may run on: its affinity mask (taskset, a cgroup
 * cpuset), else every online core, else 2; at most 256 (the range of
 * AUTH_THREADS and AUTH_HASH_WORKERS). The default of both, and the cap
 * of the hashing threads. */
unsigned cfg_usable_cpus(void);
/* Name of an algorithm: "ES256", "RS256", "HS256". */
const char *cfg_alg_name(enum cfg_alg a);

#endif
