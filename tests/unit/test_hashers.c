/* test_hashers.c: Argon2 runs on the hashing threads of password.c, at a
 * lower priority than the threads that ask for it, and every caller gets
 * its own answer however many ask at once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "password.h"
#include "sec/argon2mem.h"

#define CALLERS 8
#define ROUNDS 12

/* Costly enough (8 MiB, 2 passes) that its CPU time is well measurable. */
static const struct pw_params costly = { 2, 8u << 20 };
static const struct pw_params cheap = { 1, 8192 };

struct where {
    pid_t tid;
    int policy, nice;
};

static void probe(void *arg)
{
    struct where *w = arg;

    w->tid = gettid();
    w->policy = sched_getscheduler(0);
    w->nice = getpriority(PRIO_PROCESS, (id_t)w->tid);
}

static double thread_cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

/* Without hashing threads (the command line), fn runs on the caller. */
static void without_hashers_the_caller_runs_it(void **state)
{
    struct where w = { 0, -1, 0 };

    (void)state;
    pw_on_hasher(probe, &w);
    assert_int_equal(w.tid, gettid());
}

/* The hashing thread is another thread, at SCHED_IDLE (or at least nice
 * 19), while the caller stays at its normal priority: a request thread
 * waking up preempts a hash at once. */
static void hashes_run_elsewhere_at_the_lowest_priority(void **state)
{
    struct where w = { 0, -1, 0 };

    (void)state;
    assert_true(pw_hashers_start(2));
    pw_on_hasher(probe, &w);
    assert_int_not_equal(w.tid, 0);
    assert_int_not_equal(w.tid, gettid());
    assert_true(w.policy == SCHED_IDLE || w.nice == 19);
    assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
    pw_hashers_stop();
}

/* pw_hash() and pw_verify() burn the Argon2 time on a hashing thread:
 * the caller's own CPU time is a small part of what the same calls cost
 * it without hashing threads (as before they existed: the whole hash on
 * the caller, at its own priority). CPU time, not wall time, so a loaded
 * machine does not change the answer. */
static double three_calls_cpu_ms(char hash[PW_HASH_MAX])
{
    double cpu0 = thread_cpu_ms();

    assert_int_equal(pw_verify(hash, "correct horse battery"), AS_OK);
    assert_int_equal(pw_verify(hash, "wrong horse battery"),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(pw_hash("correct horse battery", &costly, hash), AS_OK);
    return thread_cpu_ms() - cpu0;
}

static void verify_spends_its_cpu_time_on_a_hasher(void **state)
{
    char hash[PW_HASH_MAX];
    double inline_ms, offloaded_ms;

    (void)state;
    assert_int_equal(pw_hash("correct horse battery", &costly, hash), AS_OK);
    inline_ms = three_calls_cpu_ms(hash);
    assert_true(pw_hashers_start(1));
    offloaded_ms = three_calls_cpu_ms(hash);
    pw_hashers_stop();
    assert_true(inline_ms > 1.0);
    assert_true(offloaded_ms < inline_ms * 0.1);
    assert_int_equal(pw_verify(hash, "correct horse battery"), AS_OK);
}

struct caller {
    pthread_t t;
    int id, wrong;
};

/* Each caller hashes its own password and checks it against its own and
 * its neighbour's hash, ROUNDS times. */
static void *call(void *arg)
{
    struct caller *c = arg;
    char pw[32], other[32], hash[PW_HASH_MAX];
    int r;

    for (r = 0; r < ROUNDS; r++) {
        snprintf(pw, sizeof pw, "password %d/%d", c->id, r);
        snprintf(other, sizeof other, "password %d/%d", c->id + 1, r);
        if (pw_hash(pw, &cheap, hash) != AS_OK ||
            pw_verify(hash, pw) != AS_OK ||
            pw_verify(hash, other) != AS_ERR_BAD_CREDENTIALS)
            c->wrong++;
    }
    return NULL;
}

/* Many callers on fewer hashing threads: nobody gets another's answer or
 * waits forever. */
static void many_callers_share_the_hashers(void **state)
{
    struct caller c[CALLERS];
    int i;

    (void)state;
    assert_true(pw_hashers_start(2));
    for (i = 0; i < CALLERS; i++) {
        c[i].id = i;
        c[i].wrong = 0;
        assert_int_equal(pthread_create(&c[i].t, NULL, call, &c[i]), 0);
    }
    for (i = 0; i < CALLERS; i++) {
        pthread_join(c[i].t, NULL);
        assert_int_equal(c[i].wrong, 0);
    }
    pw_hashers_stop();
}


/* What a hashing thread keeps between hashes. */
struct kept {
    bool any, zero;
    const void *base;
    size_t len;
};

static void look(void *arg)
{
    struct kept *k = arg;
    const unsigned char *p;
    size_t i;

    k->any = argon2mem_kept(&k->base, &k->len);
    k->zero = true;
    for (p = k->base, i = 0; k->any && i < k->len; i++)
        if (p[i] != 0) {
            k->zero = false;
            break;
        }
}

/* Waits (with a deadline) until no hashing thread holds what a hash
 * left: a thread that finds no next hash wipes it before it waits. */
static void wait_wiped(void)
{
    int i;

    for (i = 0; i < 3000 && argon2mem_dirty() != 0; i++)
        usleep(1000);
    assert_int_equal(argon2mem_dirty(), 0);
}

/* One hashing thread maps its Argon2 memory once for many hashes (and
 * again only when the cost changes), wipes it when it has no next hash
 * to run, and its
 * answers are libsodium's own: a hash made there verifies on a thread
 * that maps fresh memory, and the other way round. */
static void a_hasher_keeps_its_memory_wiped(void **state)
{
    char hash[PW_HASH_MAX], here[PW_HASH_MAX];
    struct kept k = { false, false, NULL, 0 }, k2 = k;
    unsigned long maps0 = argon2mem_made();
    int i;

    (void)state;
    assert_int_equal(pw_hash("correct horse battery", &costly, here),
                     AS_OK);                  /* on this thread: fresh */
    assert_int_equal(argon2mem_made(), maps0);
    assert_true(pw_hashers_start(1));
    pw_on_hasher(look, &k);
    assert_false(k.any);
    for (i = 0; i < 6; i++) {
        assert_int_equal(pw_hash("correct horse battery", &costly, hash),
                         AS_OK);
        assert_int_equal(pw_verify(here, "correct horse battery"), AS_OK);
        assert_int_equal(pw_verify(here, "correct horse batterz"),
                         AS_ERR_BAD_CREDENTIALS);
        wait_wiped();
        pw_on_hasher(look, &k2);
        assert_true(k2.any && k2.zero);
        assert_int_equal(k2.len, costly.memlimit);
        if (i > 0)
            assert_ptr_equal(k2.base, k.base);
        k = k2;
    }
    assert_int_equal(argon2mem_made(), maps0 + 1);
    assert_int_equal(pw_verify(hash, "correct horse battery"), AS_OK);
    assert_int_equal(pw_hash("correct horse battery", &cheap, hash), AS_OK);
    wait_wiped();
    pw_on_hasher(look, &k2);
    assert_true(k2.any && k2.zero);
    assert_int_equal(k2.len, cheap.memlimit);
    assert_int_equal(argon2mem_made(), maps0 + 2);
    pw_hashers_stop();
    /* made on a hashing thread, checked by libsodium on this one */
    assert_int_equal(crypto_pwhash_str_verify(hash, "correct horse battery",
                                              21), 0);
    assert_int_not_equal(crypto_pwhash_str_verify(hash,
                                                  "correct horse batterz",
                                                  21), 0);
}

/* Under load the next hash overwrites what the last one left, so the
 * hashing thread does not wipe it in between; the wipe comes once no
 * hash waits. Four callers each keep one hash queued for one thread. */
#define BUSY_CALLERS 4
#define BUSY_HASHES 8

static void *busy_caller(void *arg)
{
    char hash[PW_HASH_MAX];
    int i, *failed = arg;

    for (i = 0; i < BUSY_HASHES; i++)
        if (pw_hash("correct horse battery", &costly, hash) != AS_OK)
            (*failed)++;
    return NULL;
}

static void a_busy_hasher_leaves_the_wipe_to_the_next_hash(void **state)
{
    pthread_t th[BUSY_CALLERS];
    int failed[BUSY_CALLERS] = { 0 }, i;
    struct kept k = { false, false, NULL, 0 };
    unsigned long wipes0;

    (void)state;
    assert_true(pw_hashers_start(1));
    wipes0 = argon2mem_wipes();
    for (i = 0; i < BUSY_CALLERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, busy_caller,
                                        &failed[i]), 0);
    for (i = 0; i < BUSY_CALLERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(failed[i], 0);
    }
    wait_wiped();
    /* a wipe after every hash would be 32; the queue ran dry only while
     * the callers started and after the last one */
    assert_true(argon2mem_wipes() - wipes0 >= 1);
    assert_true(argon2mem_wipes() - wipes0 <=
                BUSY_CALLERS * BUSY_HASHES / 4);
    pw_on_hasher(look, &k);
    assert_true(k.any && k.zero);
    pw_hashers_stop();
    assert_int_equal(argon2mem_held(), 0);
}

/* Idle for a second, a hashing thread gives its memory back (watched
 * from here: a look on the hashing thread would be a job), and maps it
 * again for the next hash. */
static void an_idle_hasher_gives_its_memory_back(void **state)
{
    char hash[PW_HASH_MAX];
    struct kept k = { false, false, NULL, 0 };
    unsigned long made;
    struct timespec t0, t;
    double waited = 0;

    (void)state;
    assert_true(pw_hashers_start(1));
    assert_int_equal(pw_hash("correct horse battery", &cheap, hash), AS_OK);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    made = argon2mem_made();
    assert_int_equal(argon2mem_held(), 1);
    while (argon2mem_held() != 0 && waited < 30.0) {     /* a deadline */
        usleep(20000);
        clock_gettime(CLOCK_MONOTONIC, &t);
        waited = (double)(t.tv_sec - t0.tv_sec) +
                 (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
    }
    assert_int_equal(argon2mem_held(), 0);
    assert_true(waited >= 0.9);                 /* not before the second */
    pw_on_hasher(look, &k);
    assert_false(k.any);
    assert_int_equal(pw_verify(hash, "correct horse battery"), AS_OK);
    assert_int_equal(argon2mem_made(), made + 1);
    assert_int_equal(argon2mem_held(), 1);
    pw_hashers_stop();                          /* an ending thread too */
    assert_int_equal(argon2mem_held(), 0);
}

/* Inside the window only a mapping of the working memory's size is the
 * kept region: another one (an allocator taking memory for libsodium's
 * malloc() there) is the system's, kept apart and left alone. */
struct window {
    bool other_apart, working_kept, other_intact;
};

static void in_the_window(void *arg)
{
    struct window *w = arg;
    const size_t working = 1u << 20, other = 64u << 10;
    const void *base;
    size_t len;
    unsigned char *a, *b;

    argon2mem_enter(working);
    a = mmap(NULL, other, PROT_READ | PROT_WRITE,
             MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    b = mmap(NULL, working, PROT_READ | PROT_WRITE,
             MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    w->other_apart = a != MAP_FAILED && b != MAP_FAILED && a != b;
    if (w->other_apart) {
        memset(a, 0x5a, other);
        memset(b, 0xa5, working);
        (void)munmap(b, working);
    }
    argon2mem_leave();
    w->working_kept = argon2mem_kept(&base, &len) &&
                      base == (const void *)b && len == working &&
                      argon2mem_dirty_here() && b[0] == 0xa5;
    argon2mem_wipe();
    w->working_kept = w->working_kept && !argon2mem_dirty_here() &&
                      b[0] == 0 && b[working - 1] == 0;
    w->other_intact = w->other_apart && a[0] == 0x5a &&
                      a[other - 1] == 0x5a && munmap(a, other) == 0;
}

static void only_the_working_memory_is_kept(void **state)
{
    struct window w = { false, false, false };

    (void)state;
    assert_true(pw_hashers_start(1));
    pw_on_hasher(in_the_window, &w);
    pw_hashers_stop();
    assert_true(w.other_apart);
    assert_true(w.working_kept);
    assert_true(w.other_intact);
    assert_int_equal(argon2mem_held(), 0);
}

/* The VMA of /proc/self/smaps that starts at `base`: its end and
 * whether its flags hold `flag` ("hg": marked for huge pages). */
static bool vma_at(const void *base, uintptr_t *end, const char *flag,
                   bool *has)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    unsigned long lo, hi;
    bool in = false, found = false;

    *has = false;
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            in = lo == (unsigned long)(uintptr_t)base;
            if (in) {
                found = true;
                *end = (uintptr_t)hi;
            }
        } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            char want[8];

            snprintf(want, sizeof want, " %s", flag);
            *has = strstr(line, want) != NULL;
        }
    }
    if (f)
        fclose(f);
    return found;
}

/* A region of 2 MiB or more starts on a 2 MiB boundary, is marked for
 * transparent huge pages (where the kernel has them) and out of core
 * dumps, and is exactly the working memory: the over-mapping that found
 * the boundary was given back on both sides. */
static void the_kept_region_is_aligned_for_huge_pages(void **state)
{
    static const struct pw_params odd = { 1, (5u << 20) + 12288 };
    const struct pw_params *costs[] = { &costly, &odd };
    bool thp = access("/sys/kernel/mm/transparent_hugepage/enabled",
                      F_OK) == 0, hg, dd;
    char hash[PW_HASH_MAX];
    uintptr_t end = 0;
    size_t i;

    (void)state;
    assert_true(pw_hashers_start(1));
    for (i = 0; i < sizeof costs / sizeof *costs; i++) {
        struct kept k = { false, false, NULL, 0 };

        assert_int_equal(pw_hash("correct horse battery", costs[i], hash),
                         AS_OK);
        pw_on_hasher(look, &k);
        assert_true(k.any);
        assert_int_equal(k.len, costs[i]->memlimit);
        assert_int_equal((uintptr_t)k.base % ((uintptr_t)2 << 20), 0);
        assert_true(vma_at(k.base, &end, "dd", &dd));
        assert_true(dd);
        assert_int_equal(end, (uintptr_t)k.base + k.len);
        assert_true(vma_at(k.base, &end, "hg", &hg));
        if (thp)
            assert_true(hg);
        assert_int_equal(pw_verify(hash, "correct horse battery"), AS_OK);
    }
    pw_hashers_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(without_hashers_the_caller_runs_it),
        cmocka_unit_test(hashes_run_elsewhere_at_the_lowest_priority),
        cmocka_unit_test(verify_spends_its_cpu_time_on_a_hasher),
        cmocka_unit_test(many_callers_share_the_hashers),
        cmocka_unit_test(a_hasher_keeps_its_memory_wiped),
        cmocka_unit_test(a_busy_hasher_leaves_the_wipe_to_the_next_hash),
        cmocka_unit_test(an_idle_hasher_gives_its_memory_back),
        cmocka_unit_test(only_the_working_memory_is_kept),
        cmocka_unit_test(the_kept_region_is_aligned_for_huge_pages),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
