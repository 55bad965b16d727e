/* password.c: Argon2id hashing with libsodium and the password policy of
 * README "Security" (length in code points, strict UTF-8, common list,
 * email). */
#include "password.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "argon2mem.h"
#include "clock.h"
#include "log.h"
#include "utf8.h"

#define ARGON2ID_PREFIX "$argon2id$"
#define PW_MAX_BYTES (PW_MAX_CHARS * 4)
#define LOCAL_MIN_CHARS 3
/* A hashing thread gives its kept Argon2 memory back once it has had no
 * job for this long (src/sec/argon2mem.c). */
#define KEEP_IDLE_MS 1000
/* What a hash left there is wiped once no next hash came for this long
 * (src/sec/argon2mem.c). */
#define WIPE_IDLE_MS 20

/* password.h sizes hash strings without seeing libsodium. */
_Static_assert(PW_HASH_MAX == crypto_pwhash_STRBYTES, "PW_HASH_MAX");

extern const char auth_common_passwords[], auth_common_passwords_end[];

/* ---- the hashing threads ----
 * A caller queues a job that lives on its own stack and sleeps until a
 * hashing thread has run it. The queue needs no bound: each caller waits
 * for its own job, so it holds at most one job per calling thread (the
 * hash pool of src/workpool.c, itself bounded). */

struct hash_job {
    void (*fn)(void *);
    void *arg;
    bool done;
    struct hash_job *next;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work, done;      /* a job queued; a job finished */
    struct hash_job *head, **tail;
    bool stopping;
    unsigned n;
    pthread_t *threads;
} hashers = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
              PTHREAD_COND_INITIALIZER, NULL, &hashers.head, false, 0,
              NULL };

/* The calling thread to the lowest priority a thread may take without
 * privilege: SCHED_IDLE runs only when no other thread of the core wants
 * it, and a waking request thread preempts it at once (at nice 19 the
 * scheduler may first let it finish its time slice). */
static void lowest_priority(void)
{
    struct sched_param sp = { .sched_priority = 0 };

    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
        (void)setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
}

/* Waits under hashers.mu for a job or the stop. What the last hash left
 * in the kept Argon2 memory is wiped after WIPE_IDLE_MS without a job
 * (a next hash overwrites it instead: a login's own database work comes
 * between two hashes of a busy daemon); the memory goes back after
 * KEEP_IDLE_MS without one. */
static void wait_for_work(void)
{
    const void *base;
    size_t len;
    struct timespec wipe_at, until;

    clock_deadline(&wipe_at, WIPE_IDLE_MS);
    clock_deadline(&until, KEEP_IDLE_MS);
    while (!hashers.head && !hashers.stopping) {
        if (argon2mem_dirty_here()) {
            if (pthread_cond_timedwait(&hashers.work, &hashers.mu,
                                       &wipe_at) == ETIMEDOUT) {
                pthread_mutex_unlock(&hashers.mu);
                argon2mem_wipe();
                pthread_mutex_lock(&hashers.mu);
            }
        } else if (!argon2mem_kept(&base, &len)) {
            pthread_cond_wait(&hashers.work, &hashers.mu);
        } else if (pthread_cond_timedwait(&hashers.work, &hashers.mu,
                                          &until) == ETIMEDOUT) {
            pthread_mutex_unlock(&hashers.mu);
            argon2mem_release();
            pthread_mutex_lock(&hashers.mu);
        }
    }
}

static void *hasher(void *arg)
{
    struct hash_job *j;

    (void)arg;
    lowest_priority();
    argon2mem_keep();
    pthread_mutex_lock(&hashers.mu);
    for (;;) {
        wait_for_work();
        j = hashers.head;
        if (!j)
            break;                          /* stopping and drained */
        hashers.head = j->next;
        if (!hashers.head)
            hashers.tail = &hashers.head;
        pthread_mutex_unlock(&hashers.mu);
        j->fn(j->arg);
        pthread_mutex_lock(&hashers.mu);
        j->done = true;
        pthread_cond_broadcast(&hashers.done);
    }
    pthread_mutex_unlock(&hashers.mu);
    argon2mem_release();
    return NULL;
}

bool pw_hashers_start(unsigned threads)
{
    pthread_condattr_t ca;
    unsigned i;

    if (hashers.threads)
        return true;
    hashers.threads = calloc(threads ? threads : 1, sizeof *hashers.threads);
    if (!hashers.threads)
        return false;
    hashers.stopping = false;
    /* No thread waits on it yet: its idle wait counts monotonic time. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_destroy(&hashers.work);
    pthread_cond_init(&hashers.work, &ca);
    pthread_condattr_destroy(&ca);
    for (i = 0; i < (threads ? threads : 1); i++) {
        if (pthread_create(&hashers.threads[i], NULL, hasher, NULL) != 0)
            break;
        (void)pthread_setname_np(hashers.threads[i], "auth-argon2");
        hashers.n++;
    }
    if (hashers.n == 0) {
        free(hashers.threads);
        hashers.threads = NULL;
        return false;
    }
    return true;
}

void pw_hashers_stop(void)
{
    unsigned i;

    pthread_mutex_lock(&hashers.mu);
    hashers.stopping = true;
    pthread_cond_broadcast(&hashers.work);
    pthread_mutex_unlock(&hashers.mu);
    for (i = 0; i < hashers.n; i++)
        pthread_join(hashers.threads[i], NULL);
    free(hashers.threads);
    pthread_mutex_lock(&hashers.mu);
    hashers.threads = NULL;
    hashers.n = 0;
    hashers.stopping = false;
    pthread_mutex_unlock(&hashers.mu);
}

void pw_on_hasher(void (*fn)(void *arg), void *arg)
{
    struct hash_job j = { fn, arg, false, NULL };

    bool here;

    pthread_mutex_lock(&hashers.mu);
    here = hashers.n == 0 || hashers.stopping;
    if (!here) {
        *hashers.tail = &j;
        hashers.tail = &j.next;
        pthread_cond_signal(&hashers.work);
        while (!j.done)
            pthread_cond_wait(&hashers.done, &hashers.mu);
    }
    pthread_mutex_unlock(&hashers.mu);
    if (here)
        fn(arg);                    /* no hashing threads: on the caller */
}

/* ---- hashing ---- */

static bool params_ok(const struct pw_params *p)
{
    return p && p->opslimit >= crypto_pwhash_OPSLIMIT_MIN &&
           p->opslimit <= crypto_pwhash_OPSLIMIT_MAX &&
           p->memlimit >= crypto_pwhash_MEMLIMIT_MIN &&
           p->memlimit <= crypto_pwhash_MEMLIMIT_MAX;
}

/* One Argon2 computation, as a job for pw_on_hasher(). */
struct hash_call {
    char *out;                      /* pw_hash: the PHC string */
    const char *hash;               /* pw_verify: the PHC string */
    const char *pw;
    const struct pw_params *params;
    int rc;                         /* libsodium's answer */
    uint64_t ns;                    /* pw_verify: the computation's time */
};

/* The bytes libsodium maps for Argon2 of `kib` KiB on `lanes` lanes:
 * whole segments (4 a lane) of 1 KiB blocks, at least two a segment
 * (libsodium's argon2-core.c and argon2.c). */
static size_t argon2_bytes(unsigned long long kib, unsigned long long lanes)
{
    unsigned long long per = 4 * lanes;

    if (lanes == 0 || lanes > 0xFFFFFF || kib > SIZE_MAX / 1024)
        return 0;
    if (kib < 2 * per)
        kib = 2 * per;
    return (size_t)(kib / per * per * 1024);
}

/* The working memory's size for verifying PHC string `hash` ("m=" and
 * "p=" of its parameters), 0 when it does not say. */
static size_t verify_bytes(const char *hash)
{
    unsigned long long m, t, p;
    const char *q = strstr(hash, "$m=");

    if (!q || sscanf(q, "$m=%llu,t=%llu,p=%llu", &m, &t, &p) != 3)
        return 0;
    return argon2_bytes(m, p);
}

static void run_hash(void *arg)
{
    struct hash_call *c = arg;

    argon2mem_enter(argon2_bytes(c->params->memlimit / 1024, 1));
    c->rc = crypto_pwhash_str_alg(c->out, c->pw, strlen(c->pw),
                                  c->params->opslimit, c->params->memlimit,
                                  crypto_pwhash_ALG_ARGON2ID13);
    argon2mem_leave();
}

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void run_verify(void *arg)
{
    struct hash_call *c = arg;
    uint64_t t0 = mono_ns();

    argon2mem_enter(verify_bytes(c->hash));
    c->rc = crypto_pwhash_str_verify(c->hash, c->pw, strlen(c->pw));
    argon2mem_leave();
    c->ns = mono_ns() - t0;
}

enum as_err pw_hash(const char *pw, const struct pw_params *p,
                    char out[PW_HASH_MAX])
{
    out[0] = '\0';
    struct hash_call c = { .out = out, .pw = pw, .params = p };

    if (!pw || !params_ok(p))
        return AS_ERR_INTERNAL;
    pw_on_hasher(run_hash, &c);
    if (c.rc != 0) {
        out[0] = '\0';
        return AS_ERR_NOMEM;
    }
    return AS_OK;
}

/* A hash string libsodium may read: NUL-terminated within PW_HASH_MAX. */
static bool hash_shaped(const char *hash)
{
    return hash && strnlen(hash, PW_HASH_MAX) < PW_HASH_MAX;
}

/* ---- today's cost, and what a verification at it takes ----
 * An unknown email costs a verification at today's cost (the dummy's);
 * a wrong password for an account whose hash is at another cost (made
 * before AUTH_ARGON2_* changed, and not replaced by a login since) costs
 * what that hash costs, and a cheaper one answered sooner, which told
 * which emails have accounts. pw_verify_padded() waits out the
 * difference to the median of the last TODAY_SAMPLES verifications at
 * today's cost on the hashing threads (a median: one verification slowed
 * by the host does not move it; README "Argon2id"). */
#define TODAY_SAMPLES 16

static struct {
    _Atomic unsigned long long m_kib, t;   /* set by pw_dummy_init() */
    pthread_mutex_t mu;
    uint64_t ns[TODAY_SAMPLES];            /* a ring; 0: no sample */
    unsigned next;
} today = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* True when `hash` is an Argon2id v19 hash of one lane at today's cost. */
static bool at_today(const char *hash)
{
    unsigned long long m = 0, t = 0, lanes = 0;

    return sscanf(hash, ARGON2ID_PREFIX "v=19$m=%llu,t=%llu,p=%llu$", &m,
                  &t, &lanes) == 3 && lanes == 1 &&
           m == atomic_load_explicit(&today.m_kib, memory_order_relaxed) &&
           t == atomic_load_explicit(&today.t, memory_order_relaxed);
}

/* A verification at today's cost took `ns`. */
static void today_took(uint64_t ns)
{
    pthread_mutex_lock(&today.mu);
    today.ns[today.next] = ns ? ns : 1;
    today.next = (today.next + 1) % TODAY_SAMPLES;
    pthread_mutex_unlock(&today.mu);
}

static int by_ns(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

/* The median of the samples taken (0: none yet). */
static uint64_t today_median(void)
{
    uint64_t v[TODAY_SAMPLES];
    size_t n = 0, i;

    pthread_mutex_lock(&today.mu);
    for (i = 0; i < TODAY_SAMPLES; i++)
        if (today.ns[i])
            v[n++] = today.ns[i];
    pthread_mutex_unlock(&today.mu);
    if (n == 0)
        return 0;
    qsort(v, n, sizeof v[0], by_ns);
    return v[n / 2];
}

static enum as_err verify(const char *hash, const char *pw, uint64_t *ns)
{
    struct hash_call c = { .hash = hash, .pw = pw };

    *ns = 0;
    if (!hash_shaped(hash) || !pw)
        return AS_ERR_BAD_CREDENTIALS;
    pw_on_hasher(run_verify, &c);
    *ns = c.ns;
    if (at_today(hash))
        today_took(c.ns);
    return c.rc == 0 ? AS_OK : AS_ERR_BAD_CREDENTIALS;
}

enum as_err pw_verify(const char *hash, const char *pw)
{
    uint64_t ns;

    return verify(hash, pw, &ns);
}

enum as_err pw_verify_padded(const char *hash, const char *pw)
{
    uint64_t ns, want;
    enum as_err err = verify(hash, pw, &ns);
    struct timespec ts;

    if (err == AS_OK || !hash_shaped(hash) || !pw || at_today(hash) ||
        atomic_load_explicit(&today.m_kib, memory_order_relaxed) == 0)
        return err;
    want = today_median();
    if (want == 0) {            /* none yet: one, which also measures it */
        pw_verify_dummy(pw);
        return err;
    }
    if (want <= ns)
        return err;
    want -= ns;
    ts.tv_sec = (time_t)(want / 1000000000u);
    ts.tv_nsec = (long)(want % 1000000000u);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return err;
}

/* A stored hash is replaced only when it is weaker than today's cost:
 * not Argon2id v19 with one lane, or cheaper in memory or passes and
 * dearer in neither. Instances running different costs (a rolling
 * change of AUTH_ARGON2_*) then settle on the dearer hash instead of
 * replacing each other's at every login, which refused the logins that
 * had checked the hash just replaced (README "Argon2id"). */
bool pw_needs_rehash(const char *hash, const struct pw_params *p)
{
    unsigned long m = 0, t = 0, lanes = 0;
    int end = 0;

    if (!hash_shaped(hash) || !params_ok(p) ||
        strncmp(hash, ARGON2ID_PREFIX, strlen(ARGON2ID_PREFIX)) != 0)
        return true;
    if (crypto_pwhash_str_needs_rehash(hash, p->opslimit, p->memlimit) == 0)
        return false;
    if (sscanf(hash, ARGON2ID_PREFIX "v=19$m=%lu,t=%lu,p=%lu$%n", &m, &t,
               &lanes, &end) != 3 || end == 0 || lanes != 1 ||
        m > SIZE_MAX / 1024)
        return true;
    return (size_t)m * 1024 <= p->memlimit && t <= p->opslimit;
}

static pthread_mutex_t dummy_lock = PTHREAD_MUTEX_INITIALIZER;
static char dummy_hash[PW_HASH_MAX];

/* The dummy is a well-formed Argon2id string with the configured cost, a
 * random salt and a random digest: verifying against it computes the
 * same Argon2id as a real hash does (then compares, and fails), so it
 * costs what a real one costs, without paying one hash at start (a
 * whole Argon2 run was most of the start-up time; README.md,
 * "Performance"). */
enum as_err pw_dummy_init(const struct pw_params *p)
{
    char hash[PW_HASH_MAX], salt[32], digest[64];
    uint8_t raw[16 + 32];
    int n;

    if (sodium_init() < 0 || !params_ok(p))
        return AS_ERR_INTERNAL;
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(salt, sizeof salt, raw, 16,
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    sodium_bin2base64(digest, sizeof digest, raw + 16, 32,
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    n = snprintf(hash, sizeof hash, "%sv=19$m=%llu,t=%llu,p=1$%s$%s",
                 ARGON2ID_PREFIX, (unsigned long long)(p->memlimit / 1024u),
                 (unsigned long long)p->opslimit, salt, digest);
    if (n < 0 || (size_t)n >= sizeof hash || pw_needs_rehash(hash, p))
        return AS_ERR_INTERNAL;           /* not the configured cost */
    pthread_mutex_lock(&dummy_lock);
    memcpy(dummy_hash, hash, sizeof hash);
    pthread_mutex_unlock(&dummy_lock);
    pthread_mutex_lock(&today.mu);
    memset(today.ns, 0, sizeof today.ns);
    pthread_mutex_unlock(&today.mu);
    atomic_store(&today.t, (unsigned long long)p->opslimit);
    atomic_store(&today.m_kib, (unsigned long long)(p->memlimit / 1024u));
    return AS_OK;
}

void pw_verify_dummy(const char *pw)
{
    char hash[PW_HASH_MAX];

    pthread_mutex_lock(&dummy_lock);
    memcpy(hash, dummy_hash, sizeof hash);
    pthread_mutex_unlock(&dummy_lock);
    if (!hash[0]) {
        log_event(LOG_ERROR, "password.dummy_missing", NULL, NULL);
        return;
    }
    (void)pw_verify(hash, pw ? pw : "");
}

/* ---- the common-password set ----
 * Open addressing over the embedded list: each slot is the offset and
 * length of one line, hashed and compared with ASCII case folded. */

struct slot {
    uint32_t off, len;           /* len 0: empty */
};

static struct {
    struct slot *slots;
    size_t mask, count, longest;
} common;
static pthread_once_t common_once = PTHREAD_ONCE_INIT;

static unsigned char fold(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static uint64_t fold_hash(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ULL;        /* FNV-1a */
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= fold((unsigned char)s[i]);
        h *= 1099511628211ULL;
    }
    return h;
}

static bool fold_equal(const char *a, const char *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (fold((unsigned char)a[i]) != fold((unsigned char)b[i]))
            return false;
    return true;
}

/* The slot holding `s`, or the empty slot where it would go. */
static struct slot *probe(const char *s, size_t n)
{
    size_t i = (size_t)fold_hash(s, n) & common.mask;

    for (;; i = (i + 1) & common.mask) {
        struct slot *sl = &common.slots[i];
        if (sl->len == 0 ||
            (sl->len == n &&
             fold_equal(auth_common_passwords + sl->off, s, n)))
            return sl;
    }
}

static size_t count_lines(const char *p, const char *end)
{
    size_t n = 1;

    for (; p < end; p++)
        n += *p == '\n';
    return n;
}

static void insert_line(const char *line, size_t n)
{
    struct slot *sl;

    if (n > 0 && line[n - 1] == '\r')
        n--;
    if (n == 0 || n > PW_MAX_BYTES)
        return;
    sl = probe(line, n);
    if (sl->len != 0)
        return;                          /* a duplicate up to case */
    sl->off = (uint32_t)(line - auth_common_passwords);
    sl->len = (uint32_t)n;
    common.count++;
    if (n > common.longest)
        common.longest = n;
}

static void common_load(void)
{
    const char *p = auth_common_passwords, *end = auth_common_passwords_end;
    size_t cap = 16;

    while (cap < 2 * count_lines(p, end))     /* load factor <= 1/2 */
        cap *= 2;
    common.slots = calloc(cap, sizeof *common.slots);
    if (!common.slots) {
        log_event(LOG_ERROR, "password.common_list_nomem", NULL, NULL);
        return;
    }
    common.mask = cap - 1;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        insert_line(p, (size_t)(stop - p));
        p = stop + 1;
    }
}

size_t pw_common_count(void)
{
    pthread_once(&common_once, common_load);
    return common.count;
}

bool pw_is_common(const char *pw)
{
    size_t n = pw ? strlen(pw) : 0;

    pthread_once(&common_once, common_load);
    if (!common.slots || n == 0 || n > common.longest)
        return false;
    return probe(pw, n)->len != 0;
}

/* ---- the policy ---- */

static void fold_copy(char *dst, const char *src, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        dst[i] = (char)fold((unsigned char)src[i]);
}

/* True when the email's local part (before the last '@', or all of it)
 * has 3 or more characters and occurs in `pw`, ignoring ASCII case. */
static bool has_local_part(const char *pw, size_t pw_len, const char *email)
{
    const char *at = strrchr(email, '@');
    size_t n = at ? (size_t)(at - email) : strlen(email), i, chars = 0;
    char lpw[PW_MAX_BYTES], local[PW_MAX_BYTES];

    for (i = 0; i < n; i++)
        chars += ((unsigned char)email[i] & 0xC0) != 0x80;
    if (chars < LOCAL_MIN_CHARS || n > pw_len || pw_len > sizeof lpw)
        return false;
    fold_copy(lpw, pw, pw_len);
    fold_copy(local, email, n);
    return memmem(lpw, pw_len, local, n) != NULL;
}

static char short_msgs[PW_MAX_CHARS + 1][48];
static pthread_once_t short_once = PTHREAD_ONCE_INIT;

static void short_msgs_make(void)
{
    unsigned i;

    for (i = 0; i <= PW_MAX_CHARS; i++)
        snprintf(short_msgs[i], sizeof short_msgs[i],
                 "must be at least %u characters", i);
}

static const char *too_short(unsigned min_chars)
{
    pthread_once(&short_once, short_msgs_make);
    return short_msgs[min_chars > PW_MAX_CHARS ? PW_MAX_CHARS : min_chars];
}

const char *pw_policy_check(const char *pw, const char *email,
                            unsigned min_chars)
{
    size_t bytes = 0;
    long chars;

    if (!pw)
        return "is required";
    chars = utf8_count(pw, &bytes);
    if (chars < 0)
        return "must be valid UTF-8 without NUL characters";
    if ((unsigned long)chars < min_chars)
        return too_short(min_chars);
    if (chars > PW_MAX_CHARS)
        return "must be at most 128 characters";
    if (pw_is_common(pw))
        return "is too common";
    if (email && has_local_part(pw, bytes, email))
        return "must not contain the email address";
    return NULL;
}
