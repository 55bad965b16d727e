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
 * a tenth of it. libsodium has no allocation hook, so mmap() and
 * munmap() are defined here, in the executable, whose symbols come
 * before libc's for the library's calls (as src/mhdepoll.c does for
 * libmicrohttpd's epoll calls). Each behaves as the next definition
 * (libc's, or a sanitizer's) except on a hashing thread between
 * argon2mem_enter() and argon2mem_leave(): there the anonymous
 * read-write mapping of exactly the working memory's size is the
 * thread's kept region (made on first use, or remade when the size
 * changed), and its unmapping keeps it. Any other mapping, even in that
 * window (an allocator taking memory for libsodium's malloc() there), is
 * the next definition's.
 *
 * What a hash leaves in the region derives from the password (it would
 * check a guess at the cost of one BLAKE2b), so it lasts no longer than
 * the thread's run of work: the next hash overwrites every block of it
 * in its first pass, and a thread that has had no next hash for a few
 * milliseconds wipes it with argon2mem_wipe() (src/sec/password.c).
 * Wiping after every hash instead cost 4-5% of a login's core under
 * load (a 19 MiB memset of memory the next hash overwrote anyway). A
 * thread idle for a while gives the region back with
 * argon2mem_release(), so an idle daemon holds no hashing memory. */
#include "argon2mem.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <sodium.h>

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int munmap(void *addr, size_t len);

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void *, size_t);

static _Thread_local struct {
    bool keep;              /* a hashing thread: keeps its region */
    size_t expect;          /* within a libsodium Argon2 call: the size
                               of its working memory; else 0 */
    bool lent;              /* the region is libsodium's now */
    bool dirty;             /* it holds what a hash left */
    void *base;             /* the kept region, or NULL */
    size_t len;
} t;

/* Regions made; kept now; holding a hash's leftovers now; wipes. */
static atomic_ulong made, held, dirty, wipes;

/* The next definitions (libc's, or a sanitizer's), looked up once when
 * the executable's constructors run; a call before that (another
 * library's constructor) is the system call itself, so that dlsym(),
 * which may allocate, never runs inside an allocator's own mmap(). */
static _Atomic(mmap_fn) next_mmap_fn;
static _Atomic(munmap_fn) next_munmap_fn;

__attribute__((constructor)) static void find_next(void)
{
    mmap_fn m;
    munmap_fn u;

    *(void **)&m = dlsym(RTLD_NEXT, "mmap");
    *(void **)&u = dlsym(RTLD_NEXT, "munmap");
    atomic_store(&next_mmap_fn, m);
    atomic_store(&next_munmap_fn, u);
}

static void *next_mmap(void *addr, size_t len, int prot, int flags, int fd,
                       off_t off)
{
    mmap_fn f = atomic_load(&next_mmap_fn);

    if (f)
        return f(addr, len, prot, flags, fd, off);
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

static int next_munmap(void *addr, size_t len)
{
    munmap_fn f = atomic_load(&next_munmap_fn);

    if (f)
        return f(addr, len);
    return (int)syscall(SYS_munmap, addr, len);
}

/* A new kept region of `len` bytes, mapped as libsodium asked but in
 * transparent huge pages where the kernel has them. Argon2 reads its
 * reference blocks all over the region: in 4 KiB pages a 19 MiB region
 * is 4,864 TLB entries, more than a core's TLB holds; in 2 MiB pages it
 * is nine, and 256 small pages for the last MiB (README.md,
 * "Performance": about 7% more hashes a second). The kernel (in its
 * default "madvise" mode) backs a range with huge pages only where it
 * is marked so before its first touch, and only in whole, aligned 2 MiB
 * pages. So the region is mapped 2 MiB longer, trimmed to start on a
 * 2 MiB boundary, marked, and left for the hash's first pass to fault
 * in (MAP_POPULATE would fault it in as small pages before the mark).
 * Where the kernel has no huge pages to give, the mark does nothing. */
static void *map_region(size_t len, int prot, int flags)
{
    const size_t huge = (size_t)2 << 20;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), whole, head;
    uintptr_t a;
    void *p;

    if (len < huge || len > SIZE_MAX - 2 * huge)
        return next_mmap(NULL, len, prot, flags, -1, 0);
    whole = (len + page - 1) & ~(page - 1);
    p = next_mmap(NULL, whole + huge, prot, flags & ~MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED)
        return p;
    a = ((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1);
    head = (size_t)(a - (uintptr_t)p);
    if (head)
        (void)next_munmap(p, head);
    if (huge - head)
        (void)next_munmap((char *)a + whole, huge - head);
    (void)madvise((void *)a, len, MADV_HUGEPAGE);
    return (void *)a;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p;

    /* libsodium's request: fresh anonymous private read-write memory
     * of the working memory's size (Debian's build asks for it
     * populated). */
    if (!t.expect || len != t.expect || t.lent || addr || fd != -1 ||
        off != 0 || prot != (PROT_READ | PROT_WRITE) ||
        (flags & ~(MAP_POPULATE | MAP_NORESERVE)) !=
            (MAP_ANONYMOUS | MAP_PRIVATE))
        return next_mmap(addr, len, prot, flags, fd, off);
    if (t.base && t.len != len)
        argon2mem_release();                    /* the cost changed */
    if (!t.base) {
        p = map_region(len, prot, flags);
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
    if (!t.dirty) {
        t.dirty = true;
        atomic_fetch_add(&dirty, 1);
    }
    return t.base;
}

int munmap(void *addr, size_t len)
{
    if (t.lent && addr == t.base && len == t.len) {
        t.lent = false;             /* dirty until overwritten or wiped */
        return 0;
    }
    return next_munmap(addr, len);
}

void argon2mem_keep(void)
{
    t.keep = true;
}

void argon2mem_enter(size_t len)
{
    t.expect = t.keep ? len : 0;
}

void argon2mem_leave(void)
{
    t.expect = 0;
    t.lent = false;                 /* libsodium failed before unmapping */
}

void argon2mem_wipe(void)
{
    if (t.dirty && !t.lent) {
        sodium_memzero(t.base, t.len);
        t.dirty = false;
        atomic_fetch_sub(&dirty, 1);
        atomic_fetch_add(&wipes, 1);
    }
}

void argon2mem_release(void)
{
    if (t.base && !t.lent) {
        /* the kernel clears the pages before anyone else has them */
        (void)next_munmap(t.base, t.len);
        t.base = NULL;
        t.len = 0;
        atomic_fetch_sub(&held, 1);
        if (t.dirty) {
            t.dirty = false;
            atomic_fetch_sub(&dirty, 1);
        }
    }
}

bool argon2mem_dirty_here(void)
{
    return t.dirty;
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

unsigned long argon2mem_dirty(void)
{
    return atomic_load(&dirty);
}

unsigned long argon2mem_wipes(void)
{
    return atomic_load(&wipes);
}
