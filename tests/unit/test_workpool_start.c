/* test_workpool_start.c: a pool starts one worker, and grows to its size
 * only as jobs need more: all `threads` jobs still run at once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <time.h>

#include "workpool.h"

#define SIZE 8
#define ROUNDS 50

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int inside, most, ran;

/* The threads of this process (entries of /proc/self/task). */
static int threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The thread count once it equals `n` (a joined thread may linger in
 * /proc a moment), or what it is after 2 s. */
static int threads_settle(int n)
{
    struct timespec pause = { 0, 1000000 };
    int i, now = threads_now();

    for (i = 0; i < 2000 && now != n; i++) {
        nanosleep(&pause, NULL);
        now = threads_now();
    }
    return now;
}

/* Waits (at most 10 s) until SIZE jobs are inside at once: only a pool
 * that has started all its workers lets this job return in time. */
static void rendezvous(void *arg)
{
    struct timespec until;

    (void)arg;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&mu);
    inside++;
    if (inside > most)
        most = inside;
    pthread_cond_broadcast(&cv);
    while (most < SIZE &&
           pthread_cond_timedwait(&cv, &mu, &until) == 0)
        ;
    inside--;
    ran++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void wait_ran(int n)
{
    pthread_mutex_lock(&mu);
    while (ran < n)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

/* A new pool costs one thread, not SIZE. */
static void test_one_worker_at_first(void **state)
{
    int before = threads_now();
    struct workpool *p = workpool_new(SIZE, 16);

    (void)state;
    assert_non_null(p);
    assert_int_equal(threads_now(), before + 1);
    workpool_free(p);
    assert_int_equal(threads_settle(before), before);
}

/* SIZE jobs that each wait for all the others: every one of them meets
 * the others (the pool grew to SIZE workers, no more), round after round. */
static void test_grows_to_size_when_needed(void **state)
{
    int before = threads_now(), r, i;
    struct workpool *p = workpool_new(SIZE, 64);

    (void)state;
    assert_non_null(p);
    for (r = 0; r < ROUNDS; r++) {
        pthread_mutex_lock(&mu);
        inside = most = ran = 0;
        pthread_mutex_unlock(&mu);
        for (i = 0; i < SIZE; i++)
            assert_true(workpool_submit(p, rendezvous, NULL));
        wait_ran(SIZE);
        assert_int_equal(most, SIZE);
        assert_int_equal(threads_now(), before + SIZE);
    }
    workpool_free(p);
    assert_int_equal(threads_settle(before), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_worker_at_first),
        cmocka_unit_test(test_grows_to_size_when_needed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
