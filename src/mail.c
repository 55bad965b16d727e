/* mail.c: delivery of the outbox. One thread claims due rows (a lease
 * keeps other instances off them), resolves a newly queued one (user,
 * cap per recipient, token), makes its link from the row's seed, sends
 * it by SMTP or as a signed webhook through libcurl, then marks it sent
 * or schedules a retry with jittered exponential backoff; while sending
 * keeps failing the whole transport pauses. A mail the server refuses
 * (not the transport failing) is dropped without a pause, and a mail
 * still failing after MAIL_MAX_ATTEMPTS tries or a day is given up. Rows
 * live in the database, so delivery resumes after a restart. Tokens and
 * links never reach a log or the database. */
#include "mail.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <dlfcn.h>

#include "arena.h"
#include "cfg.h"
#include "clock.h"
#include "crypto.h"
#include "log.h"
#include "repo.h"
#include "sec.h"
#include "uuid.h"

#define POLL_MS 2000u                 /* look for due rows this often */
#define WAKE_JITTER_MS 200u           /* a wake waits up to this, at random */
#define LEASE_MS INT64_C(60000)       /* a claimed row is ours this long */
#define PRUNE_EVERY_MS 3600000u
#define KEEP_SENT_MS INT64_C(7 * 86400000)   /* sent rows kept a week */
#define CONNECT_TIMEOUT_MS 5000L
#define TOTAL_TIMEOUT_MS 15000L
#define MAX_UNMARKED 32               /* sent, not yet recorded as sent */
#define MAX_ADDR 320
#define MAX_WHY 200

/* ---- libcurl, opened when a transport is configured --------------------
 * The daemon does not link libcurl: it and the twenty-odd libraries it
 * pulls in cost every start several milliseconds of loading (README.md,
 * "Performance"), while only delivery uses it. mail_start() opens it with
 * dlopen() when AUTH_SMTP_URL or AUTH_NOTIFY_WEBHOOK_URL is set; it stays
 * loaded until exit. The package still depends on libcurl4. */

#define CURL_SONAME "libcurl.so.4"

static struct {
    CURLcode (*global_init)(long flags);
    void (*global_cleanup)(void);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
    CURLcode (*easy_perform)(CURL *h);
    CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
    void (*easy_cleanup)(CURL *h);
    const char *(*easy_strerror)(CURLcode rc);
    struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
    void (*slist_free_all)(struct curl_slist *l);
} lc;
static pthread_once_t lc_once = PTHREAD_ONCE_INIT;
static bool lc_loaded;
static char lc_error[MAX_WHY];        /* why not, when !lc_loaded */

/* Fills `lc` from libcurl, or says in lc_error why it cannot. */
static void lc_load(void)
{
    void *h = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
    const char *e;

#define LC_SYM(field, name) \
    (lc.field = (__typeof__(lc.field))dlsym(h, name)) != NULL
    if (!h) {
        e = dlerror();
        snprintf(lc_error, sizeof lc_error, "%s", e ? e : CURL_SONAME);
        return;
    }
    lc_loaded = LC_SYM(global_init, "curl_global_init") &&
                LC_SYM(global_cleanup, "curl_global_cleanup") &&
                LC_SYM(easy_init, "curl_easy_init") &&
                LC_SYM(easy_setopt, "curl_easy_setopt") &&
                LC_SYM(easy_perform, "curl_easy_perform") &&
                LC_SYM(easy_getinfo, "curl_easy_getinfo") &&
                LC_SYM(easy_cleanup, "curl_easy_cleanup") &&
                LC_SYM(easy_strerror, "curl_easy_strerror") &&
                LC_SYM(slist_append, "curl_slist_append") &&
                LC_SYM(slist_free_all, "curl_slist_free_all");
#undef LC_SYM
    if (!lc_loaded) {
        e = dlerror();
        snprintf(lc_error, sizeof lc_error, "%s lacks a function: %s",
                 CURL_SONAME, e ? e : "?");
        dlclose(h);
    }
}

/* ---- transports -------------------------------------------------------- */

enum transport { TP_NONE, TP_SMTP, TP_WEBHOOK };

/* What became of one transfer. */
enum outcome {
    SENT,
    REFUSED,        /* the server refused this mail; it works otherwise */
    DEFERRED,       /* the server put this mail's recipient off for now
                       (SMTP 4xx to RCPT): retried later, no pause */
    FAILED,         /* the transport failed: retried later, with a pause */
};

struct mailer {
    const struct cfg *cfg;
    struct repo *repo;
    enum transport tp;
    char envelope[MAX_ADDR + 3];      /* "<from>" for SMTP */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool woken;                       /* under mu */
    atomic_bool stop;
    bool curl_ready;
    char unmarked[MAX_UNMARKED][UUID_STR_LEN];
    size_t nunmarked;
    const struct sec_keys *keys;      /* derive links' tokens */
    int64_t failures;                 /* straight failed deliveries */
    uint64_t pause_until;             /* monotonic ms: transport pause */
};

/* What the SMTP upload reads from. */
struct upload {
    const char *data;
    size_t len, off;
};

static size_t upload_read(char *buf, size_t size, size_t nitems, void *arg)
{
    struct upload *u = arg;
    size_t n = size * nitems;

    if (n > u->len - u->off)
        n = u->len - u->off;
    memcpy(buf, u->data + u->off, n);
    u->off += n;
    return n;
}

static size_t discard(char *buf, size_t size, size_t nitems, void *arg)
{
    (void)buf;
    (void)arg;
    return size * nitems;
}

/* Aborts a transfer in progress when the mailer is stopping. */
static int on_progress(void *arg, curl_off_t dlt, curl_off_t dln,
                       curl_off_t ult, curl_off_t uln)
{
    struct mailer *m = arg;

    (void)dlt;
    (void)dln;
    (void)ult;
    (void)uln;
    return atomic_load(&m->stop) ? 1 : 0;
}

/* Options every transfer gets: bounded time, no signals, abortable,
 * no proxy on the way to a loopback host. */
static bool common_options(struct mailer *m, CURL *h, const char *url,
                           const char *protocols)
{
    bool ok = lc.easy_setopt(h, CURLOPT_URL, url) == CURLE_OK &&
              lc.easy_setopt(h, CURLOPT_PROTOCOLS_STR, protocols) ==
                  CURLE_OK;

    lc.easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    lc.easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    lc.easy_setopt(h, CURLOPT_TIMEOUT_MS, TOTAL_TIMEOUT_MS);
    lc.easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    lc.easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    lc.easy_setopt(h, CURLOPT_XFERINFODATA, m);
    lc.easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    if (mail_url_loopback(url))
        lc.easy_setopt(h, CURLOPT_NOPROXY, "*");
    return ok;
}

/* The reason of a failed transfer, without URL or content. */
static void curl_why(CURL *h, CURLcode rc, const char *what, char *why)
{
    long code = 0;

    lc.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (code)
        snprintf(why, MAX_WHY, "%s: %s (reply %ld)", what,
                 lc.easy_strerror(rc), code);
    else
        snprintf(why, MAX_WHY, "%s: %s", what, lc.easy_strerror(rc));
}

/* What an SMTP transfer that ended with `rc` (not CURLE_OK) says of
 * this mail. REFUSED: a permanent (5xx) reply to its recipient (libcurl:
 * "RCPT failed") or to its data once sent. DEFERRED: a transient (4xx)
 * reply to its recipient, which the relay gives for that address only
 * (a greylist, an unknown domain, a full mailbox): its row retries on
 * its own backoff, or a client choosing such recipients (one account
 * changing its email to each in turn) paused the transport for every
 * other mail, up to a minute a row. FAILED, the transport's: anything
 * else (connection, timeout, the greeting, the sender or the login
 * refused, a 4xx to the data). */
static enum outcome smtp_outcome(CURL *h, CURLcode rc, const char *error)
{
    curl_off_t sent = 0;
    long code = 0;
    bool rcpt = rc == CURLE_SEND_ERROR && strncmp(error, "RCPT", 4) == 0;

    lc.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    lc.easy_getinfo(h, CURLINFO_SIZE_UPLOAD_T, &sent);
    if (rcpt && code >= 400 && code <= 499)
        return DEFERRED;
    if (code < 500 || code > 599)
        return FAILED;
    return rcpt || (rc == CURLE_WEIRD_SERVER_REPLY && sent > 0) ? REFUSED
                                                                : FAILED;
}

static enum outcome send_smtp(struct mailer *m, const struct mail_msg *msg,
                              char *why)
{
    const struct cfg *cfg = m->cfg;
    char *text = mail_render(msg, cfg->smtp_from, clock_ms());
    struct upload up = { text, text ? strlen(text) : 0, 0 };
    struct curl_slist *rcpt = NULL;
    char to[MAX_ADDR + 3], error[CURL_ERROR_SIZE] = "";
    CURL *h = NULL;
    CURLcode rc;
    enum outcome res = FAILED;

    if (!text) {
        snprintf(why, MAX_WHY, "smtp: the message cannot be rendered");
        goto out;
    }
    snprintf(to, sizeof to, "<%s>", msg->to);
    h = lc.easy_init();
    rcpt = lc.slist_append(NULL, to);
    if (!h || !rcpt || !common_options(m, h, cfg->smtp_url, "smtp,smtps")) {
        snprintf(why, MAX_WHY, "smtp: cannot set up the transfer");
        goto out;
    }
    lc.easy_setopt(h, CURLOPT_ERRORBUFFER, error);
    lc.easy_setopt(h, CURLOPT_MAIL_FROM, m->envelope);
    lc.easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
    lc.easy_setopt(h, CURLOPT_READFUNCTION, upload_read);
    lc.easy_setopt(h, CURLOPT_READDATA, &up);
    lc.easy_setopt(h, CURLOPT_UPLOAD, 1L);
    /* Beyond loopback, TLS or nothing (smtps://, else STARTTLS). */
    if (!mail_url_loopback(cfg->smtp_url))
        lc.easy_setopt(h, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    if (cfg->smtp_user) {
        lc.easy_setopt(h, CURLOPT_USERNAME, cfg->smtp_user);
        lc.easy_setopt(h, CURLOPT_PASSWORD, cfg->smtp_password);
    }
    rc = lc.easy_perform(h);
    res = rc == CURLE_OK ? SENT : smtp_outcome(h, rc, error);
    if (rc != CURLE_OK)
        curl_why(h, rc, "smtp", why);
out:
    lc.slist_free_all(rcpt);
    lc.easy_cleanup(h);
    if (text) {
        crypt_wipe(text, up.len);
        free(text);
    }
    return res;
}

/* Adds "name: value" to `list`; NULL (and `list` freed) on failure. */
static struct curl_slist *add_header(struct curl_slist *list,
                                     const char *name, const char *value)
{
    char line[256];
    struct curl_slist *more;

    snprintf(line, sizeof line, "%s: %s", name, value);
    more = lc.slist_append(list, line);
    if (!more)
        lc.slist_free_all(list);
    return more;
}

static enum outcome send_webhook(struct mailer *m,
                                 const struct mail_msg *msg, char *why)
{
    const struct cfg *cfg = m->cfg;
    char *body = mail_event_json(msg);
    size_t len = body ? strlen(body) : 0;
    int64_t ts = clock_ms() / 1000;
    char sig[MAIL_HEX_SIG_LEN + 8], stamp[24];
    struct curl_slist *hdr = NULL;
    CURL *h = NULL;
    CURLcode rc;
    long status = 0;
    enum outcome res = FAILED;

    if (!body) {
        snprintf(why, MAX_WHY, "webhook: the event cannot be built");
        goto out;
    }
    memcpy(sig, "sha256=", 7);
    mail_sign(cfg->notify_webhook_secret, ts, body, len, sig + 7);
    snprintf(stamp, sizeof stamp, "%" PRId64, ts);
    hdr = add_header(NULL, "Content-Type", "application/json");
    if (hdr)
        hdr = add_header(hdr, "X-Auth-Timestamp", stamp);
    if (hdr)
        hdr = add_header(hdr, "X-Auth-Signature", sig);
    if (hdr)
        hdr = add_header(hdr, "X-Auth-Event", msg->kind);
    if (hdr)
        hdr = add_header(hdr, "Expect", "");   /* no 100-continue wait */
    h = lc.easy_init();
    if (!hdr || !h ||
        !common_options(m, h, cfg->notify_webhook_url, "http,https")) {
        snprintf(why, MAX_WHY, "webhook: cannot set up the request");
        goto out;
    }
    lc.easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    lc.easy_setopt(h, CURLOPT_POSTFIELDS, body);
    lc.easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    lc.easy_setopt(h, CURLOPT_USERAGENT, "auth-serve/" AUTH_VERSION);
    lc.easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    rc = lc.easy_perform(h);
    lc.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK && status >= 200 && status < 300)
        res = SENT;
    else if (rc == CURLE_OK && mail_webhook_refused(status))
        res = REFUSED;
    if (rc != CURLE_OK)
        curl_why(h, rc, "webhook", why);
    else if (res != SENT)
        snprintf(why, MAX_WHY, "webhook: answered HTTP %ld", status);
out:
    lc.slist_free_all(hdr);
    lc.easy_cleanup(h);
    if (body) {
        crypt_wipe(body, len);
        free(body);
    }
    return res;
}

/* ---- the thread -------------------------------------------------------- */

/* Records sent mails whose first recording failed; keeps those that
 * still fail for the next round. */
static void mark_unmarked(struct mailer *m)
{
    size_t i = 0;

    while (i < m->nunmarked) {
        if (repo_outbox_sent(m->repo, m->unmarked[i], clock_ms()) != AS_OK) {
            i++;
            continue;
        }
        memmove(m->unmarked[i], m->unmarked[i + 1],
                (m->nunmarked - i - 1) * sizeof m->unmarked[0]);
        m->nunmarked--;
    }
}

/* Sent mails not yet recorded as sent outlive a stop: a stop while the
 * database is down (a restart, not only a crash) would otherwise lose
 * them, and the rows be sent again once their lease ran out (README.md,
 * "Mail"). They are kept in this file of the data folder, one id a line,
 * and recorded first thing after the next start. */
#define UNMARKED_FILE "mail-unmarked"

static void unmarked_path(const struct mailer *m, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", m->cfg->data_dir ? m->cfg->data_dir : ".",
             UNMARKED_FILE);
}

/* Writes the ids still unrecorded (or removes the file: none). */
static void unmarked_save(struct mailer *m)
{
    char path[4096], tmp[4200];
    FILE *f;
    size_t i;
    int fd;
    bool ok;

    unmarked_path(m, path, sizeof path);
    if (m->nunmarked == 0) {
        (void)unlink(path);
        return;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    /* On PostgreSQL nothing else needs the data folder, so it may not
     * exist yet: made here (its last level; a missing parent fails the
     * save, which is logged). */
    if (m->cfg->data_dir)
        (void)mkdir(m->cfg->data_dir, 0700);
    /* A new file, never one planted there (nor a link's target). */
    (void)unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
              0600);
    f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f && fd >= 0)
        close(fd);
    ok = f != NULL;
    for (i = 0; ok && i < m->nunmarked; i++)
        ok = fprintf(f, "%s\n", m->unmarked[i]) > 0;
    ok = f && fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    if (f && fclose(f) != 0)
        ok = false;
    ok = ok && rename(tmp, path) == 0;
    if (!ok)
        (void)unlink(tmp);
    log_event(ok ? LOG_WARN : LOG_ERROR, "mail.unmarked_kept", NULL,
              json_pack("{s:I, s:b, s:s}", "count",
                        (json_int_t)m->nunmarked, "saved", ok, "message",
                        ok ? "sent mails the database has not recorded yet "
                             "are recorded at the next start"
                           : "cannot keep sent mails the database has not "
                             "recorded: they may be sent again"));
}

/* Takes the ids a previous stop kept; the file goes (a later stop writes
 * those still unrecorded again). Only a regular file, not followed
 * through a link, and only its first few KiB: what else lies there (a
 * FIFO, a device) must not hold the start. */
static void unmarked_load(struct mailer *m)
{
    char path[4096], buf[MAX_UNMARKED * UUID_STR_LEN + 1];
    struct stat st;
    ssize_t n = -1;
    char *line, *save = NULL;
    int fd;

    unmarked_path(m, path, sizeof path);
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        n = read(fd, buf, sizeof buf - 1);
    close(fd);
    (void)unlink(path);
    if (n <= 0)
        return;
    buf[n] = '\0';
    for (line = strtok_r(buf, "\n", &save);
         line && m->nunmarked < MAX_UNMARKED;
         line = strtok_r(NULL, "\n", &save))
        if (strlen(line) < UUID_STR_LEN && uuid_valid(line))
            memcpy(m->unmarked[m->nunmarked++], line, strlen(line) + 1);
    if (m->nunmarked)
        log_event(LOG_INFO, "mail.unmarked_loaded", NULL,
                  json_pack("{s:I}", "count", (json_int_t)m->nunmarked));
}

/* The purpose and lifetime of the link of a mail of `kind`; false for a
 * kind without a link. */
static bool link_kind(const char *kind, enum ott_purpose *purpose,
                      int64_t *ttl_ms)
{
    if (kind && strcmp(kind, MAIL_KIND_RESET) == 0) {
        *purpose = OTT_RESET;
        *ttl_ms = MAIL_RESET_TTL_MS;
        return true;
    }
    if (kind && strcmp(kind, MAIL_KIND_VERIFY) == 0) {
        *purpose = OTT_VERIFY;
        *ttl_ms = MAIL_VERIFY_TTL_MS;
        return true;
    }
    return false;
}

enum as_err mail_queue(struct repo *repo, const char *kind,
                       const char *user_id, const char *recipient,
                       bool with_link, int64_t now)
{
    uint8_t seed[SEC_SEED_LEN];
    struct outbox_row m = { .kind = kind, .user_id = user_id,
                            .recipient = recipient, .created_at = now };
    enum as_err err;

    uuid_v7_new(m.id);
    if (with_link) {
        sec_link_seed(seed);
        m.seed = seed;
    }
    err = repo_outbox_add(repo, &m, now - MAIL_STALE_MS);
    crypt_wipe(seed, sizeof seed);
    return err;
}

/* Logs what became of a mail that is not sent; `error`, when not NULL,
 * is the last delivery error (never a secret). */
static void log_dropped_error(const struct outbox_row *row, const char *why,
                              const char *user_id, const char *error)
{
    log_event(error ? LOG_WARN : LOG_INFO, "mail.dropped", NULL,
              json_pack("{s:s, s:s?, s:s, s:s?, s:I, s:s?}", "id", row->id,
                        "kind", row->kind, "reason", why, "user_id",
                        user_id && *user_id ? user_id : NULL, "attempts",
                        (json_int_t)row->attempts, "error", error));
}

static void log_dropped(const struct outbox_row *row, const char *why,
                        const char *user_id)
{
    log_dropped_error(row, why, user_id, NULL);
}

/* Resolves a newly queued row (its user, the cap of its recipient, the
 * token of its link; a notice: the cap of notices to its recipient):
 * true when it is to be sent; otherwise the row is gone or left for its
 * lease to run out, and logged. */
static bool resolve(struct mailer *m, struct outbox_row *row,
                    struct arena *a)
{
    char token[SEC_TOKEN_LEN + 1], uid[UUID_STR_LEN];
    struct ott t = { .created_at = clock_ms() };
    enum outbox_fate fate = OUTBOX_NO_USER;
    int64_t ttl = 0;
    bool linked = row->seed &&
                  link_kind(row->kind, &t.purpose, &ttl);
    enum as_err err;

    if (linked) {
        t.expires_at = t.created_at + ttl;
        sec_link_token(m->keys, row->seed, token);
        sec_token_hash(token, t.hash);
        crypt_wipe(token, sizeof token);
    }
    err = repo_outbox_resolve(m->repo, row, linked ? &t : NULL,
                              m->cfg->mail_per_recipient_per_hour,
                              t.created_at, &fate, uid);
    if (err == AS_ERR_BAD_REQUEST) {       /* a row that cannot be sent */
        repo_outbox_drop(m->repo, row->id);
        log_dropped(row, "incomplete", NULL);
        return false;
    }
    if (err != AS_OK)
        return false;                      /* retried once the lease ends */
    if (fate == OUTBOX_HELD) {
        log_event(LOG_INFO, "mail.held", NULL,
                  json_pack("{s:s, s:s?, s:s, s:s?}", "id", row->id, "kind",
                            row->kind, "reason", "recipient_cap", "user_id",
                            uid[0] ? uid : NULL));
        return false;
    }
    if (fate != OUTBOX_READY) {
        log_dropped(row, fate == OUTBOX_CAPPED ? "recipient_cap"
                                               : "no_such_user", uid);
        return false;
    }
    row->resolved = true;
    row->expires_at = linked ? t.expires_at : 0;
    row->user_id = arena_strdup(a, uid);
    log_event(LOG_INFO, "mail.resolved", NULL,
              json_pack("{s:s, s:s, s:s}", "id", row->id, "kind",
                        row->kind, "user_id", uid));
    return true;
}

/* Records a delivery that failed: the row retries after its own
 * jittered backoff, or is given up after its last try, and, when the
 * transport itself failed (`transport`), the whole transport pauses for a
 * while that grows with every such failure in a row. */
static void failed(struct mailer *m, struct outbox_row *row,
                   const char *why, bool transport)
{
    int64_t delay = mail_backoff_ms(row->attempts + 1, crypt_random_u32());
    int64_t pause = 0;

    if (transport) {
        m->failures++;
        pause = mail_pause_ms(m->failures, crypt_random_u32());
        m->pause_until = clock_mono_ms() + (uint64_t)pause;
    }
    log_event(LOG_WARN, "mail.failed", NULL,
              json_pack("{s:s, s:s?, s:I, s:s, s:I, s:I}", "id", row->id,
                        "kind", row->kind, "attempt",
                        (json_int_t)row->attempts + 1, "error", why,
                        "retry_in_ms", (json_int_t)delay,
                        "transport_pause_ms", (json_int_t)pause));
    if (mail_give_up(row->attempts + 1, row->created_at,
                     clock_ms() + delay)) {
        row->attempts++;
        repo_outbox_drop(m->repo, row->id);
        log_dropped_error(row, "gave_up", row->user_id, why);
        return;
    }
    repo_outbox_failed(m->repo, row->id, clock_ms() + delay, why);
}

/* Sends one claimed row and records the outcome. */
static void deliver(struct mailer *m, struct outbox_row *row,
                    struct arena *a)
{
    char token[SEC_TOKEN_LEN + 1] = "";
    char link[MAIL_MAX_LINK + 1] = "";
    struct mail_msg msg = { .id = row->id, .kind = row->kind,
                            .to = row->recipient, .link = link,
                            .created_at = row->created_at };
    char why[MAX_WHY] = "";
    enum outcome res = FAILED;
    bool tried = false;

    /* Before anything else: a mail past its tries or its day is not
     * sent (nor resolved), whatever it is. */
    if (mail_give_up(row->attempts, row->created_at, clock_ms())) {
        repo_outbox_drop(m->repo, row->id);
        log_dropped(row, "gave_up", row->user_id);
        return;
    }
    /* A notice is queued resolved with the email change: it is counted
     * against the cap of notices at its first try (a crash between the
     * two counts it again, which errs on the side of fewer mails). */
    if ((!row->resolved ||
         (mail_linkless(row->kind) && row->attempts == 0)) &&
        !resolve(m, row, a))
        return;
    if (row->expires_at && row->expires_at <= clock_ms()) {
        repo_outbox_drop(m->repo, row->id);
        log_dropped(row, "link_expired", row->user_id);
        return;
    }
    if (row->seed) {
        sec_link_token(m->keys, row->seed, token);
        mail_link(m->cfg->public_url, row->kind, token, link, sizeof link);
        crypt_wipe(token, sizeof token);
    } else {
        msg.link = NULL;                 /* a kind without a link */
    }
    if ((row->seed && !link[0]) || (!row->seed && !mail_linkless(row->kind)) ||
        !row->kind || !row->recipient) {
        snprintf(why, sizeof why, "the row is incomplete");
    } else if (m->tp == TP_SMTP) {
        res = send_smtp(m, &msg, why);
        tried = true;
    } else {
        res = send_webhook(m, &msg, why);
        tried = true;
    }
    crypt_wipe(link, sizeof link);
    if (res == REFUSED) {
        /* Trying again would be refused again; the transport works, so
         * it does not pause, and the straight failures stay as they
         * were. */
        repo_outbox_drop(m->repo, row->id);
        log_dropped_error(row, "refused", row->user_id, why);
        return;
    }
    if (res == FAILED || res == DEFERRED) {
        failed(m, row, why, tried && res == FAILED);
        return;
    }
    m->failures = 0;
    log_event(LOG_INFO, "mail.sent", NULL,
              json_pack("{s:s, s:s, s:I}", "id", row->id, "kind", row->kind,
                        "attempts", (json_int_t)row->attempts + 1));
    if (repo_outbox_sent(m->repo, row->id, clock_ms()) != AS_OK &&
        m->nunmarked < MAX_UNMARKED)
        snprintf(m->unmarked[m->nunmarked++], UUID_STR_LEN, "%s", row->id);
}

/* Sends every due row, one claim at a time, until none is left, the
 * database fails, the transport pauses or the mailer stops. */
static void drain(struct mailer *m)
{
    struct outbox_row row;
    enum as_err err = AS_OK;

    mark_unmarked(m);
    while (err == AS_OK && !atomic_load(&m->stop) &&
           clock_mono_ms() >= m->pause_until) {
        struct arena *a = arena_new();
        int64_t now = clock_ms();

        err = a ? repo_outbox_claim(m->repo, now, now + LEASE_MS, &row, a)
                : AS_ERR_NOMEM;
        if (err == AS_OK)
            deliver(m, &row, a);
        arena_free(a);
    }
}

/* Waits up to POLL_MS, or until woken or stopped; while the transport
 * pauses, until the pause ends (a wake then counts afterwards). A wake
 * is followed by a random wait of up to WAKE_JITTER_MS: the work a
 * request queued (a reset mail for an account, or none for an unknown
 * email) then does not run right after its request, where the timing
 * of the client's next request would show it (README.md, "Mail"). */
static void nap(struct mailer *m)
{
    uint64_t now = clock_mono_ms();
    bool paused = now < m->pause_until, woke;
    struct timespec until;

    clock_deadline(&until, paused ? m->pause_until - now : POLL_MS);
    pthread_mutex_lock(&m->mu);
    while ((paused || !m->woken) && !atomic_load(&m->stop))
        if (pthread_cond_timedwait(&m->cv, &m->mu, &until) == ETIMEDOUT)
            break;
    woke = !paused && m->woken;
    if (!paused)
        m->woken = false;
    if (woke) {
        clock_deadline(&until, crypt_random_u32() % (WAKE_JITTER_MS + 1));
        while (!atomic_load(&m->stop))
            if (pthread_cond_timedwait(&m->cv, &m->mu, &until) ==
                ETIMEDOUT)
                break;
    }
    pthread_mutex_unlock(&m->mu);
}

static void *mail_thread(void *arg)
{
    struct mailer *m = arg;
    uint64_t next_prune = 0;

    while (!atomic_load(&m->stop)) {
        /* Pruned first, so that requests left unresolved for a day
         * (queued while no transport was set) are dropped, not sent. */
        if (clock_mono_ms() >= next_prune) {
            int64_t now = clock_ms();

            repo_mail_prune(m->repo, now, now - KEEP_SENT_MS,
                            now - MAIL_STALE_MS);
            next_prune = clock_mono_ms() + PRUNE_EVERY_MS;
        }
        drain(m);
        nap(m);
    }
    mark_unmarked(m);
    unmarked_save(m);
    return NULL;
}

/* ---- start and stop ---------------------------------------------------- */

static void mailer_free(struct mailer *m)
{
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    if (m->curl_ready)
        lc.global_cleanup();
    free(m);
}

struct mailer *mail_start(const struct cfg *cfg, struct repo *repo,
                          const struct sec_keys *keys)
{
    struct mailer *m = calloc(1, sizeof *m);
    pthread_condattr_t ca;

    if (!m) {
        log_event(LOG_ERROR, "mail.start_failed", NULL,
                  json_pack("{s:s}", "reason", "out of memory"));
        return NULL;
    }
    m->cfg = cfg;
    m->repo = repo;
    m->keys = keys;
    atomic_init(&m->stop, false);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (cfg->smtp_url && cfg->smtp_from &&
        mail_envelope(cfg->smtp_from, m->envelope, sizeof m->envelope))
        m->tp = TP_SMTP;
    else if (cfg->notify_webhook_url && cfg->notify_webhook_secret)
        m->tp = TP_WEBHOOK;
    if (m->tp == TP_NONE) {
        log_event(LOG_WARN, "mail.disabled", NULL,
                  json_pack("{s:s}", "message",
                            "neither AUTH_SMTP_URL nor "
                            "AUTH_NOTIFY_WEBHOOK_URL is set: mails stay "
                            "queued until one is"));
        return m;
    }
    pthread_once(&lc_once, lc_load);
    if (!lc_loaded) {                 /* the rows wait in the outbox */
        log_event(LOG_ERROR, "mail.start_failed", NULL,
                  json_pack("{s:s, s:s}", "reason", "libcurl cannot be "
                            "loaded: mails stay queued", "error",
                            lc_error));
        mailer_free(m);
        return NULL;
    }
    m->curl_ready = lc.global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    unmarked_load(m);
    if (!m->curl_ready ||
        pthread_create(&m->thread, NULL, mail_thread, m) != 0) {
        log_event(LOG_ERROR, "mail.start_failed", NULL,
                  json_pack("{s:s}", "reason", m->curl_ready
                                                   ? "cannot start a thread"
                                                   : "libcurl failed"));
        mailer_free(m);
        return NULL;
    }
    (void)pthread_setname_np(m->thread, "auth-mail");
    log_event(LOG_INFO, "mail.started", NULL,
              json_pack("{s:s}", "transport",
                        m->tp == TP_SMTP ? "smtp" : "webhook"));
    return m;
}

void mail_wake(struct mailer *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->woken = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

void mail_stop(struct mailer *m)
{
    if (!m)
        return;
    if (m->tp != TP_NONE) {
        pthread_mutex_lock(&m->mu);
        atomic_store(&m->stop, true);
        pthread_cond_broadcast(&m->cv);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->thread, NULL);
    }
    mailer_free(m);
}
