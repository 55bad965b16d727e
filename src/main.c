/* main.c: the command line. Serving is the default; the other verbs are
 * what an operator runs before or beside the daemon. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "crypto.h"

#include "cfg.h"
#include "cli.h"
#include "clock.h"
#include "fleet.h"
#include "http.h"
#include "log.h"
#include "mail.h"
#include "metrics.h"
#include "netaddr.h"
#include "password.h"
#include "ready.h"
#include "repo.h"
#include "scache.h"
#include "sec.h"
#include "server.h"
#include "sysd.h"
#include "vcache.h"
#include "workpool.h"

#define EXIT_CONFIG 2
#define SCACHE_SLOTS 65536
#define VCACHE_SLOTS 16384
#define DB_QUEUE 1024            /* requests waiting for the database */
#define STOP_GRACE_MS 10000
#define KEYS_FOLDER_POLL_S 2     /* a rotated key listed within */
#define READY_INTERVAL_MS 1000   /* /readyz's database ping, when idle */
#define READY_STALL_MS 1000      /* a ping this slow means "not ready" */

static const char usage[] =
    "usage: auth-serve [COMMAND]\n"
    "\n"
    "commands:\n"
    "  serve                     run the HTTP daemon (the default)\n"
    "  migrate                   apply pending database migrations\n"
    "  config check              validate the configuration and exit\n"
    "  keys generate             create a signing key if none exists\n"
    "  keys rotate               create a new signing key (signs from the\n"
    "                            next start or SIGHUP; on PostgreSQL, on\n"
    "                            every instance after AUTH_KEY_PUBLISH_\n"
    "                            SECONDS; old keys stay valid)\n"
    "  user create --email E [--admin] [--name N]\n"
    "                            create a user; password read from stdin\n"
    "  user set-password --email E\n"
    "                            set a password read from stdin\n"
    "  user unlock --email E     lift the account's login lockout\n"
    "  user list                 list users\n"
    "  user mfa-reset --email E  turn a user's second factor off\n"
    "  --version                 print the version\n"
    "  --help                    print this help\n"
    "\n"
    "Configuration comes from AUTH_* environment variables over an\n"
    "optional .env file in the working directory; see .env.example.\n";

/* Loads the configuration or explains in one line why not. */
static bool load_config(struct cfg *cfg, bool as_log)
{
    char why[512];

    if (cfg_load(cfg, ".env", why, sizeof why)) {
        log_init((enum log_level)cfg->log_level,
                 cfg->log_format == CFG_LOG_JSON);
        return true;
    }
    if (as_log)
        log_event(LOG_ERROR, "config.invalid", NULL,
                  json_pack("{s:s}", "message", why));
    else
        fprintf(stderr, "auth-serve: %s\n", why);
    cfg_cleanup(cfg);
    return false;
}

/* The number of hashing threads: AUTH_HASH_WORKERS, but no more than the
 * cores this process may run on (its CPU affinity: taskset, a cpuset):
 * more would only take turns on the same cores, each with its own Argon2
 * working set in memory. */
static unsigned hasher_count(const struct cfg *cfg)
{
    unsigned n = cfg->hash_workers, cpus = cfg_usable_cpus();

    n = cpus < n ? cpus : n;
    return n ? n : 1;
}

/* The Argon2id memory OWASP's Password Storage Cheat Sheet gives as its
 * minimum at cfg's iterations (46 MiB x 1, 19 x 2, 12 x 3, 9 x 4, 7 x 5)
 * when cfg's is below it, else 0: a lower cost is allowed (tests and
 * small machines lower it) but not silently. */
static unsigned argon2_shortfall(const struct cfg *cfg)
{
    static const unsigned need_kib[] = { 47104, 19456, 12288, 9216, 7168 };
    unsigned t = cfg->argon2_iterations;
    unsigned need = need_kib[(t < 5 ? t : 5) - 1];

    return cfg->argon2_memory_kib < need ? need : 0;
}

#define WEAK_ARGON2_MESSAGE "the Argon2id cost is below the OWASP minimum"

static void argon2_advice(const struct cfg *cfg)
{
    unsigned need = argon2_shortfall(cfg);

    if (need)
        log_event(LOG_WARN, "config.weak_argon2", NULL,
                  json_pack("{s:I, s:I, s:I, s:s}", "memory_kib",
                            (json_int_t)cfg->argon2_memory_kib,
                            "iterations", (json_int_t)cfg->argon2_iterations,
                            "needed_kib_at_these_iterations",
                            (json_int_t)need, "message",
                            WEAK_ARGON2_MESSAGE));
}

#define DOTENV_EXPOSED_HINT                                                 \
    "it sets a secret and anyone on this host may read it; chmod o-r it"

/* A warning for each setting that is set but has no effect, and for a
 * .env that sets a secret where anyone may read it (as a key file). */
static void unused_advice(const struct cfg *cfg)
{
    struct cfg_unused unused[8];
    size_t i, n = cfg_unused(cfg, unused, 8);

    for (i = 0; i < n && i < 8; i++)
        log_event(LOG_WARN, "config.unused", NULL,
                  json_pack("{s:s, s:s}", "name", unused[i].name,
                            "message", unused[i].why));
    if (cfg_dotenv_exposed(cfg))
        log_event(LOG_WARN, "config.dotenv_permissions", NULL,
                  json_pack("{s:s, s:s}", "path", cfg_dotenv_exposed(cfg),
                            "hint", DOTENV_EXPOSED_HINT));
}

/* The repository, migrated; NULL on failure, with *config set when it
 * is the configuration's (a database URL libpq cannot read: exit 2, not
 * a restart that would fail the same). `serving`: claimed first, for
 * this daemon alone where it must be (repo_claim(): a SQLite database
 * another daemon serves is refused before anything is written). */
static struct repo *open_repo(const struct cfg *cfg, bool *config,
                              bool serving)
{
    struct repo *r = NULL;
    enum as_err err = repo_open(cfg, &r);
    long holder = 0;

    *config = err == AS_ERR_BAD_REQUEST;
    if (err == AS_OK && serving &&
        (err = repo_claim(cfg, &holder)) == AS_ERR_CONFLICT) {
        log_event(LOG_ERROR, "db.in_use", NULL,
                  json_pack("{s:s, s:I}", "message",
                            "another auth-serve serves this SQLite "
                            "database; one database takes one daemon "
                            "(several instances need PostgreSQL)",
                            "pid", (json_int_t)holder));
        sysd_notify("STATUS=Another auth-serve serves this database");
        repo_close(r);
        return NULL;
    }
    if (err == AS_OK)
        err = repo_migrate(r);
    if (err != AS_OK) {
        log_event(LOG_ERROR, "db.unavailable", NULL,
                  json_pack("{s:s}", "error", as_err_code(err)));
        repo_close(r);
        return NULL;
    }
    return r;
}

/* Makes `k` the keys in use; the old set stays allocated (requests may
 * hold it) and is freed at exit. */
static void swap_keys(struct app *app, struct sec_keys *k,
                      const struct sec_keys ***old, size_t *nold)
{
    const struct sec_keys **grown = realloc(*old,
                                            (*nold + 1) * sizeof **old);

    if (!grown) {
        sec_keys_free(k);
        return;
    }
    *old = grown;
    (*old)[(*nold)++] = atomic_exchange(&app->keys, k);
}

/* Loads the keys again on SIGHUP. */
static void reload_keys(struct app *app, const struct sec_keys ***old,
                        size_t *nold)
{
    struct sec_keys *k = NULL;
    char why[256];
    int64_t listed;
    unsigned age;

    if (sec_keys_open(app->cfg, app->repo, app_keys(app), clock_ms(), &k,
                      why, sizeof why) != AS_OK) {
        log_event(LOG_ERROR, "keys.reload_failed", NULL,
                  json_pack("{s:s}", "message", why));
        return;
    }
    /* A key resource servers may not have fetched yet: they refuse its
     * tokens until their cached key set expires, unless they fetch the
     * set again on a kid they do not know. */
    listed = sec_keys_listed_for(k, clock_ms() / 1000);
    age = sec_jwks_max_age(app->cfg->key_publish_seconds);
    if (strcmp(sec_keys_kid(k), sec_keys_kid(app_keys(app))) != 0 &&
        listed < (int64_t)age)
        log_event(LOG_WARN, "keys.signs_unpublished", NULL,
                  json_pack("{s:s, s:I, s:I, s:s}", "kid", sec_keys_kid(k),
                            "published_seconds", (json_int_t)listed,
                            "jwks_max_age_seconds", (json_int_t)age,
                            "hint", "wait that long after `keys rotate` "
                            "before the reload"));
    swap_keys(app, k, old, nold);
    log_event(LOG_INFO, "keys.reloaded", NULL,
              json_pack("{s:s}", "kid", sec_keys_kid(k)));
}

/* On SQLite, a key `keys rotate` added to the folder is published
 * within KEYS_FOLDER_POLL_S, the signer kept (README "Keys and
 * rotation"). A failure is logged when it differs from the last. */
static void poll_folder(struct app *app, const struct sec_keys ***old,
                        size_t *nold, char last[256])
{
    struct sec_keys *k = NULL;
    char why[256] = "";

    if (sec_keys_poll(app->cfg, app->repo, app_keys(app), clock_ms(), &k,
                      NULL, why, sizeof why) != AS_OK) {
        if (strcmp(why, last) != 0)
            log_event(LOG_ERROR, "keys.publish_failed", NULL,
                      json_pack("{s:s}", "message", why));
        snprintf(last, 256, "%s", why);
        return;
    }
    last[0] = '\0';
    if (k)
        swap_keys(app, k, old, nold);
}

/* Clients on a passed Unix socket all have the address "unix": unless
 * AUTH_TRUSTED_PROXIES believes the proxy that connects there, they
 * share one rate limit and one lockout (README "Behind a reverse
 * proxy"). */
static void warn_if_one_unix_client(const struct app *app)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (app->listen_fd < 0 || !app->trusted ||
        getsockname(app->listen_fd, (struct sockaddr *)&ss, &len) != 0 ||
        ss.ss_family != AF_UNIX ||
        netlist_contains(app->trusted, NETADDR_UNIX_PEER))
        return;
    log_event(LOG_WARN, "listen.unix_clients_are_one", NULL,
              json_pack("{s:s}", "hint", "every client on the Unix socket "
                        "has the address \"unix\" and shares one rate limit "
                        "and lockout; with a proxy in front that sets "
                        "X-Forwarded-For, add unix to AUTH_TRUSTED_PROXIES"));
}

/* AUTH_TRUSTED_PROXIES taking an address no proxy has (the IPv4 and
 * IPv6 documentation ranges, RFC 5737 and RFC 3849, and 0.0.0.0/8, in
 * the lower half of IPv4 where they are not): a catch-all such as
 * 0.0.0.0/0, 0.0.0.0/1 or ::/0, which lets every client choose its own
 * address in X-Forwarded-For, past the per-address rate limits, the
 * lockout and AUTH_METRICS_ALLOW. */
/* Wider than a proxy fleet's lists: every private IPv4 range and
 * loopback together (10/8, 100.64/10, 172.16/12, 192.168/16, 127/8:
 * about 2^25.1 addresses; a CDN's published ranges add about 2^21), and
 * the unique-local and link-local IPv6 ones (fc00::/7, fe80::/10:
 * about 2^121.2). */
#define PROXIES_V4_MAX 0x1p26
#define PROXIES_V6_MAX 0x1p122

static bool trusts_everyone(const struct netlist *trusted)
{
    static const char *const nobodys[] = { "203.0.113.7", "0.0.0.7",
                                           "2001:db8::7" };
    double v4, v6;
    size_t i;

    for (i = 0; trusted && i < sizeof nobodys / sizeof *nobodys; i++)
        if (netlist_contains(trusted, nobodys[i]))
            return true;
    /* A catch-all split into parts may miss the samples
     * (64.0.0.0/2,128.0.0.0/2: a review); its size does not. */
    netlist_span(trusted, &v4, &v6);
    return v4 > PROXIES_V4_MAX || v6 > PROXIES_V6_MAX;
}

#define TRUSTS_EVERYONE_HINT                                                \
    "AUTH_TRUSTED_PROXIES takes addresses no proxy has: every client may "  \
    "set its own address in X-Forwarded-For; list the proxies' addresses "  \
    "only"

static void warn_if_everyone_trusted(const struct app *app)
{
    if (trusts_everyone(app->trusted))
        log_event(LOG_WARN, "config.trusts_everyone", NULL,
                  json_pack("{s:s}", "hint", TRUSTS_EVERYONE_HINT));
}

static enum as_err ping_repo(void *repo)
{
    return repo_ping(repo);
}

static bool db_stalled(void *ready, uint64_t now_ms)
{
    return ready_stalled(ready, now_ms);
}

static void db_failed(void *ready)
{
    ready_failed(ready);
}

static int serve(struct cfg *cfg)
{
    struct app app = { .cfg = cfg, .listen_fd = -1 };
    struct server *srv = NULL;
    struct fleet *fleet = NULL;
    struct sysd_watchdog *wd = NULL;
    bool bad_fds = false;
    struct sec_keys *keys = NULL;
    const struct sec_keys **old = NULL;
    size_t nold = 0, i, nroutes;
    const struct route *routes;
    sigset_t set;
    char why[256];
    const char *sd_why;
    int sig = 0, status = 1;
    bool bad_url = false, folder_keys;
    char last_poll[256] = "";
    uint64_t next_poll;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    /* not ours: log rotation habits send USR1, whose default action
     * would end the daemon without a word */
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);      /* threads inherit it */
    cfg_log(cfg);
    if (!sysd_open(&sd_why)) {
        log_event(LOG_ERROR, "systemd.unavailable", NULL,
                  json_pack("{s:s, s:s}", "message", "started by systemd "
                            "but libsystemd cannot be opened", "error",
                            sd_why));
        return EXIT_FAILURE;
    }
    app.listen_fd = sysd_listen_fd(&bad_fds);
    if (bad_fds) {
        log_event(LOG_ERROR, "systemd.bad_sockets", NULL,
                  json_pack("{s:s}", "message", "socket activation must "
                            "pass exactly one listening stream socket"));
        sysd_notify("STATUS=Bad socket activation: expected one listening "
                    "stream socket");
        return EXIT_CONFIG;
    }
    sysd_notify("STATUS=Applying database migrations");
    app.repo = open_repo(cfg, &bad_url, true); /* keys may live there */
    if (bad_url) {
        sysd_notify("STATUS=AUTH_DATABASE_URL is invalid");
        return EXIT_CONFIG;
    }
    sysd_notify("STATUS=Loading signing keys");
    if (app.repo && sec_keys_open(cfg, app.repo, NULL, clock_ms(), &keys,
                                  why, sizeof why) != AS_OK) {
        log_event(LOG_ERROR, "keys.invalid", NULL,
                  json_pack("{s:s}", "message", why));
        sysd_notify("STATUS=Signing keys are invalid");
        repo_close(app.repo);
        return EXIT_CONFIG;
    }
    atomic_store(&app.keys, keys);
    argon2_advice(cfg);
    unused_advice(cfg);
    app.pw.opslimit = cfg->argon2_iterations;
    app.pw.memlimit = (size_t)cfg->argon2_memory_kib * 1024u;
    app.pool = workpool_new(cfg->hash_workers, cfg->hash_queue);
    app.db_pool = workpool_new(cfg->db_pool_size, DB_QUEUE);
    if (app.pool)
        workpool_name(app.pool, "auth-hashjobs");
    if (app.db_pool)
        workpool_name(app.db_pool, "auth-db");
    app.scache = scache_new(SCACHE_SLOTS,
                            (uint64_t)cfg->session_cache_seconds * 1000u);
    /* README "Running on PostgreSQL and several instances": stale
     * answers while the database is down only where no other instance
     * can revoke. */
    if (app.scache && app.repo)
        scache_set_sole_writer(app.scache,
                               strcmp(repo_backend(app.repo), "sqlite") == 0);
    routes = router_routes(&nroutes);    /* sets nroutes, read below */
    app.metrics = metrics_new(routes, nroutes);
    app.trusted = netlist_parse(cfg->trusted_proxies);
    warn_if_one_unix_client(&app);
    warn_if_everyone_trusted(&app);
    app.metrics_allow = netlist_parse(cfg->metrics_allow);
    app.vcache = vcache_new(VCACHE_SLOTS);
    if (app.repo)
        app.ready = ready_new(ping_repo, app.repo, READY_INTERVAL_MS,
                              READY_STALL_MS);
    /* A ping that got no answer in READY_STALL_MS: refuse database calls
     * at once rather than have each wait out its own timeout. */
    if (app.ready)
        repo_set_gate(app.repo, db_stalled, db_failed, app.ready);
    if (app.repo && app.pool && app.db_pool && app.scache && app.metrics &&
        app.trusted && app.metrics_allow && app.vcache && app.ready &&
        pw_dummy_init(&app.pw) == AS_OK &&
        pw_hashers_start(hasher_count(cfg)))
        srv = server_start(&app);
    if (srv)
        atomic_store(&app.mailer, mail_start(cfg, app.repo, keys));
    if (srv && !sysd_watchdog_new(server_listen_fd(srv), &wd)) {
        log_event(LOG_ERROR, "watchdog.failed", NULL, NULL);
        server_stop(srv, 0);
        mail_stop(atomic_load(&app.mailer));
        srv = NULL;
    }
    if (srv && strcmp(repo_backend(app.repo), "postgres") == 0)
        fleet = fleet_start(&app);       /* revocations and key changes */
    atomic_store(&app.fleet, fleet);
    if (srv) {
        if (app.listen_fd >= 0)
            log_event(LOG_INFO, "systemd.socket_activated", NULL, NULL);
        /* Readiness is announced once /readyz can answer it too: the
         * prober's first ping (started before the server) has ended. A
         * database that does not answer within the stall time delays
         * READY=1 by that much and no more: the daemon serves either
         * way, and /readyz says 503 until the database answers. */
        if (!ready_wait_first(app.ready, READY_STALL_MS))
            log_event(LOG_WARN, "database.not_ready", NULL,
                      json_pack("{s:s}", "hint", "/readyz answers 503 "
                                "until the database answers a ping"));
        /* Migrations are applied and the socket listens: serving. */
        sysd_notify("READY=1\nSTATUS=Serving on %s port %u",
                    app.listen_fd >= 0 ? "the passed socket," : cfg->host,
                    server_port(srv));
    } else {
        sysd_notify("STATUS=Failed to start (see the log)");
    }
    /* Keys in the data folder (not PostgreSQL's, a key file or HS256):
     * this thread also lists the ones `keys rotate` adds. */
    folder_keys = srv && cfg->jwt_alg != CFG_ALG_HS256 &&
                  !(cfg->jwt_key_file && cfg->jwt_key_file[0]) &&
                  strcmp(repo_backend(app.repo), "sqlite") == 0;
    next_poll = clock_mono_ms() + KEYS_FOLDER_POLL_S * 1000u;
    while (srv) {
        if (folder_keys) {
            /* by the clock, not per wait: a signal every second (a
             * monitor's) would otherwise restart the wait for good */
            uint64_t now = clock_mono_ms(), ms = next_poll > now
                                                     ? next_poll - now : 0;
            struct timespec wait = { (time_t)(ms / 1000u),
                                     (long)(ms % 1000u) * 1000000L };

            sig = sigtimedwait(&set, NULL, &wait);
            if (clock_mono_ms() >= next_poll) {
                poll_folder(&app, &old, &nold, last_poll);
                next_poll = clock_mono_ms() + KEYS_FOLDER_POLL_S * 1000u;
            }
            if (sig < 0)
                continue;
        } else if (sigwait(&set, &sig) != 0) {
            continue;
        }
        if (sig == SIGUSR1 || sig == SIGUSR2) {
            log_event(LOG_INFO, "signal.ignored", NULL,
                      json_pack("{s:s}", "signal", strsignal(sig)));
            continue;
        }
        if (sig != SIGHUP)
            break;
        sysd_notify("STATUS=Reloading signing keys");
        reload_keys(&app, &old, &nold);
        sysd_notify("STATUS=Serving on %s port %u",
                    app.listen_fd >= 0 ? "the passed socket," : cfg->host,
                    server_port(srv));
    }
    if (srv) {
        sysd_notify("STOPPING=1\nSTATUS=Stopping: finishing requests in "
                    "flight");
        sysd_watchdog_free(wd);
        log_event(LOG_INFO, "server.stopping", NULL,
                  json_pack("{s:s}", "signal", strsignal(sig)));
        server_stop(srv, STOP_GRACE_MS);
        atomic_store(&app.fleet, NULL);
        fleet_stop(fleet);
        mail_stop(atomic_load(&app.mailer));
        status = 0;
    }
    workpool_free(app.pool);
    workpool_free(app.db_pool);
    pw_hashers_stop();                  /* no caller is left */
    ready_free(app.ready);              /* its prober calls the repo */
    if (app.repo)                       /* the gate borrowed app.ready */
        repo_set_gate(app.repo, NULL, NULL, NULL);
    scache_free(app.scache);
    metrics_free(app.metrics);
    netlist_free(app.trusted);
    netlist_free(app.metrics_allow);
    vcache_free(app.vcache);
    repo_close(app.repo);
    sec_keys_free((struct sec_keys *)atomic_load(&app.keys));
    for (i = 0; i < nold; i++)
        sec_keys_free((struct sec_keys *)old[i]);
    free(old);
    return status;
}

static int migrate(struct cfg *cfg)
{
    bool bad_url;
    struct repo *r = open_repo(cfg, &bad_url, false);

    if (!r)
        return bad_url ? EXIT_CONFIG : 1;
    repo_close(r);
    printf("migrations applied\n");
    return 0;
}

/* For `config check`: what a serve would warn about from the settings
 * alone (config.unused, config.dotenv_permissions, config.weak_argon2,
 * config.trusts_everyone), one line each on stderr; they do not fail
 * it. */
static void warnings_report(const struct cfg *cfg)
{
    struct cfg_unused unused[8];
    size_t i, n = cfg_unused(cfg, unused, 8);
    struct netlist *trusted = netlist_parse(cfg->trusted_proxies);
    unsigned need = argon2_shortfall(cfg);

    if (need)
        fprintf(stderr, "auth-serve: warning: %s (AUTH_ARGON2_MEMORY_KIB "
                "%u at %u iterations; at least %u)\n", WEAK_ARGON2_MESSAGE,
                cfg->argon2_memory_kib, cfg->argon2_iterations, need);
    if (trusts_everyone(trusted))
        fprintf(stderr, "auth-serve: warning: %s\n", TRUSTS_EVERYONE_HINT);
    netlist_free(trusted);

    for (i = 0; i < n && i < 8; i++)
        fprintf(stderr, "auth-serve: warning: %s is set but unused: %s\n",
                unused[i].name, unused[i].why);
    if (cfg_dotenv_exposed(cfg))
        fprintf(stderr, "auth-serve: warning: %s: %s\n",
                cfg_dotenv_exposed(cfg), DOTENV_EXPOSED_HINT);
}

/* For `config check`: the signing key a serve would load from a file or
 * a secret loads (keys kept in the data folder or the database are made
 * or read at start, with the database). */
static bool keys_check(const struct cfg *cfg)
{
    struct sec_keys *k = NULL;
    char why[512];

    if (cfg->jwt_alg != CFG_ALG_HS256 &&
        !(cfg->jwt_key_file && cfg->jwt_key_file[0]))
        return true;
    if (sec_keys_load(cfg, &k, why, sizeof why) != AS_OK) {
        fprintf(stderr, "auth-serve: %s\n", why);
        return false;
    }
    sec_keys_free(k);
    return true;
}

int main(int argc, char **argv)
{
    struct cfg cfg;
    const char *cmd = argc > 1 ? argv[1] : "serve";
    int status;

    signal(SIGPIPE, SIG_IGN);
    /* Nothing follows them: anything that does is a mistake (exit 2). */
    if ((strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) &&
        argc == 2) {
        printf("auth-serve %s\n", AUTH_VERSION);
        return 0;
    }
    if ((strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
         strcmp(cmd, "help") == 0) && argc == 2) {
        fputs(usage, stdout);
        return 0;
    }
    if (!crypt_init()) {
        fprintf(stderr, "auth-serve: libsodium failed to start\n");
        return 1;
    }
    if (strcmp(cmd, "serve") == 0 && argc <= 2) {
        if (!load_config(&cfg, true))
            return EXIT_CONFIG;
        status = serve(&cfg);
    } else if (strcmp(cmd, "migrate") == 0 && argc == 2) {
        if (!load_config(&cfg, true))
            return EXIT_CONFIG;
        status = migrate(&cfg);
    } else if (strcmp(cmd, "config") == 0 && argc == 3 &&
               strcmp(argv[2], "check") == 0) {
        if (!load_config(&cfg, false))
            return EXIT_CONFIG;
        status = keys_check(&cfg) ? 0 : EXIT_CONFIG;
        /* what libpq alone can tell of a PostgreSQL URL */
        if (status == 0 && strncmp(cfg.database_url, "sqlite:", 7) != 0 &&
            repo_pg_url_check(cfg.database_url) != AS_OK)
            status = EXIT_CONFIG;
        if (status == 0)
            warnings_report(&cfg);
        if (status == 0)
            printf("configuration ok\n");
    } else if (strcmp(cmd, "keys") == 0 && argc == 3 &&
               (strcmp(argv[2], "generate") == 0 ||
                strcmp(argv[2], "rotate") == 0)) {
        struct repo *r = NULL;
        bool bad_url = false;

        if (!load_config(&cfg, false))
            return EXIT_CONFIG;
        if (strncmp(cfg.database_url, "sqlite:", 7) != 0)
            r = open_repo(&cfg, &bad_url, false); /* keys: PostgreSQL */
        status = r || strncmp(cfg.database_url, "sqlite:", 7) == 0
                     ? sec_keys_cli(&cfg, r, argv[2])
                     : bad_url ? EXIT_CONFIG : 1;
        repo_close(r);
    } else if (strcmp(cmd, "user") == 0) {
        if (!load_config(&cfg, false))
            return EXIT_CONFIG;
        status = cli_user(&cfg, argc - 2, argv + 2);
    } else {
        fprintf(stderr, "auth-serve: unknown command or arguments\n\n%s",
                usage);
        return EXIT_CONFIG;
    }
    cfg_cleanup(&cfg);
    return status;
}
