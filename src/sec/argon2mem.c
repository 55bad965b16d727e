/* argon2mem.c: Argon2's working memory kept by each hashing thread from
 * one hash to the next, instead of mapped and unmapped by libsodium for
 * every hash (README.md, "Performance").
 *
 * libsodium (1.0.18) maps the m KiB an Argon2 computation needs with
 * mmap() (Debian's build with MAP_POPULATE) and unmaps them with
 * munmap() when it is done, so every hash has the kernel find, zero and
 * map thousands of pages and then free them: on a virtual machine whose
 * host also maps each page afresh this was most of a hash's time (146
 * against 22 verifications a second at 19 MiB), and on bare metal still
 * a tenth of it. libsodium has no allocation
 * hook, so mmap() and munmap() are defined here, in the executable,
 * whose symbols come before libc's for the library's calls (as
 * src/mhdepoll.c does for libmicrohttpd's epoll calls). Each behaves as
 * the next definition (libc's, or a sanitizer's) except on a hashing
 * thread between argon2mem_enter() and argon2mem_leave(): there the
 * anonymous read-write mapping libsodium asks for is the thread's kept
 * region (made on first use, or remade when the size changed), and its
 * unmapping wipes the region and keeps it. A thread idle for a while
 * gives it back with argon2mem_release(), so an idle daemon holds no
 * hashing memory. */
#include "argon2mem.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/types.h>

#include <sodium.h>

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int munmap(void *addr, size_t len);

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void *, size_t);

static _Thread_local struct {
    bool keep;              /* a hashing thread: keeps its region */
    bool inside;            /* within a libsodium Argon2 call */
    bool lent;              /* the region is libsodium's now */
    void *base;             /* the kept region, or NULL */
    size_t len;
} t;

static atomic_ulong made, held;      /* regions made; kept now */

static void *next_mmap(void *addr, size_t len, int prot, int flags, int fd,
                       off_t off)
{
    static _Atomic(mmap_fn) next;
    mmap_fn f = atomic_load(&next);

    if (!f) {
        *(void **)&f = dlsym(RTLD_NEXT, "mmap");
        atomic_store(&next, f);
    }
    if (!f) {
        errno = ENOSYS;
        return MAP_FAILED;
    }
    return f(addr, len, prot, flags, fd, off);
}

static int next_munmap(void *addr, size_t len)
{
    static _Atomic(munmap_fn) next;
    munmap_fn f = atomic_load(&next);

    if (!f) {
        *(void **)&f = dlsym(RTLD_NEXT, "munmap");
        atomic_store(&next, f);
    }
    if (!f) {
        errno = ENOSYS;
        return -1;
    }
    return f(addr, len);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p;

    /* libsodium's request: fresh anonymous private read-write memory
     * (Debian's build asks for it populated). */
    if (!t.inside || t.lent || addr || fd != -1 || off != 0 || len == 0 ||
        prot != (PROT_READ | PROT_WRITE) ||
        (flags & ~(MAP_POPULATE | MAP_NORESERVE)) !=
            (MAP_ANONYMOUS | MAP_PRIVATE))
        return next_mmap(addr, len, prot, flags, fd, off);
    if (t.base && t.len != len) {
        (void)next_munmap(t.base, t.len);       /* the cost changed */
        t.base = NULL;
        atomic_fetch_sub(&held, 1);
    }
    if (!t.base) {
        p = next_mmap(NULL, len, prot, flags, -1, 0);
        if (p == MAP_FAILED)
            return p;
        /* Password-derived while lent: never in a core dump. */
        (void)madvise(p, len, MADV_DONTDUMP);
        atomic_fetch_add(&made, 1);
        atomic_fetch_add(&held, 1);
        t.base = p;
        t.len = len;
    }
    t.lent = true;
    return t.base;
}

int munmap(void *addr, size_t len)
{
    if (t.lent && addr == t.base && len == t.len) {
        /* What libsodium leaves there derives from the password and
         * would check a guess at the cost of one BLAKE2b: wiped, as
         * returning the pages to the kernel did. */
        sodium_memzero(addr, len);
        t.lent = false;
        return 0;
    }
    return next_munmap(addr, len);
}

void argon2mem_keep(void)
{
    t.keep = true;
}

void argon2mem_enter(void)
{
    t.inside = t.keep;
}

void argon2mem_leave(void)
{
    t.inside = false;
    if (t.lent) {                   /* libsodium failed before unmapping */
        sodium_memzero(t.base, t.len);
        t.lent = false;
    }
}

void argon2mem_release(void)
{
    if (t.base && !t.lent) {
        (void)next_munmap(t.base, t.len);
        t.base = NULL;
        t.len = 0;
        atomic_fetch_sub(&held, 1);
    }
}

bool argon2mem_kept(const void **base, size_t *len)
{
    *base = t.base;
    *len = t.len;
    return t.base != NULL;
}

unsigned long argon2mem_made(void)
{
    return atomic_load(&made);
}

unsigned long argon2mem_held(void)
{
    return atomic_load(&held);
}
