/* argon2_raw.c: raw crypto_pwhash_str_verify() per second on one thread
 * at one Argon2id cost, for bench/run.sh (which builds it with cc).
 *
 *   argon2_raw MEM_KIB ITERATIONS SECONDS fresh|kept|huge [idle]
 *
 * "fresh": as libsodium does it, a new mapping of the working memory for
 * every hash. "kept": the same calls, but this program's mmap() and
 * munmap() (its symbols come before libc's) hand libsodium one mapping
 * kept from hash to hash and never wiped. "huge": kept, and mapped as
 * the daemon's hashing threads map theirs (src/sec/argon2mem.c): on a
 * 2 MiB boundary and marked for transparent huge pages before its first
 * touch; the machine's limit for those threads. "idle": at SCHED_IDLE,
 * the daemon's hashing priority. Prints one number, verifications per
 * second. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <sodium.h>

static bool keep, huge;
static void *kept;
static size_t kept_len;
static bool lent;

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    static void *(*next)(void *, size_t, int, int, int, off_t);

    if (!next)
        *(void **)&next = dlsym(RTLD_NEXT, "mmap");
    if (!keep || lent || addr || fd != -1 || prot != (PROT_READ | PROT_WRITE))
        return next(addr, len, prot, flags, fd, off);
    if (!kept && huge) {
        /* over-mapped by 2 MiB, the start rounded up to 2 MiB, marked
         * before the first hash's first pass faults it in */
        size_t al = (size_t)2 << 20;
        char *b = next(NULL, len + al, prot, flags & ~MAP_POPULATE, -1, 0);

        if (b == MAP_FAILED)
            return MAP_FAILED;
        kept = (void *)(((unsigned long)b + al - 1) &
                        ~(unsigned long)(al - 1));
        madvise(kept, len, MADV_HUGEPAGE);
        kept_len = len;
    }
    if (!kept) {
        kept = next(NULL, len, prot, flags, -1, 0);
        if (kept == MAP_FAILED) {
            kept = NULL;
            return MAP_FAILED;
        }
        kept_len = len;
    }
    if (len != kept_len)
        return next(addr, len, prot, flags, fd, off);
    lent = true;
    return kept;
}

int munmap(void *addr, size_t len)
{
    static int (*next)(void *, size_t);

    if (!next)
        *(void **)&next = dlsym(RTLD_NEXT, "munmap");
    if (lent && addr == kept) {
        lent = false;
        return 0;
    }
    return next(addr, len);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    static const char pw[] = "correct horse battery";
    char hash[crypto_pwhash_STRBYTES];
    struct sched_param sp = { 0 };
    double secs, t0, t;
    unsigned long n = 0;

    if (argc < 5 || sodium_init() < 0) {
        fprintf(stderr, "usage: %s MEM_KIB ITERATIONS SECONDS fresh|kept|huge"
                        " [idle]\n", argv[0]);
        return 2;
    }
    secs = atof(argv[3]);
    huge = strcmp(argv[4], "huge") == 0;
    keep = huge || strcmp(argv[4], "kept") == 0;
    if (argc > 5 && strcmp(argv[5], "idle") == 0 &&
        sched_setscheduler(0, SCHED_IDLE, &sp) != 0)
        perror("SCHED_IDLE");
    if (crypto_pwhash_str_alg(hash, pw, strlen(pw), strtoull(argv[2], NULL,
                                                             10),
                              strtoull(argv[1], NULL, 10) * 1024,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return 1;
    t0 = now_s();
    do {
        if (crypto_pwhash_str_verify(hash, pw, strlen(pw)) != 0)
            return 1;
        n++;
        t = now_s() - t0;
    } while (t < secs);
    printf("%.2f\n", (double)n / t);
    return 0;
}
