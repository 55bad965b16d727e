/* file.c: small key files, read bounded and written atomically. */
#include "sec/sec_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsperm.h"

static int read_all(int fd, unsigned char *buf, size_t want)
{
    size_t got = 0;

    while (got < want) {
        ssize_t r = read(fd, buf + got, want - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno;
        if (r == 0)
            return EIO;                  /* shrank while being read */
        got += (size_t)r;
    }
    return 0;
}

/* sec_file_read's work; `flags` adds O_NOFOLLOW or not; with `others`,
 * the file opened is checked (fsperm.h). */
static int file_read(const char *path, size_t max, unsigned char **out,
                     size_t *len, int flags, const char **others)
{
    struct stat st;
    unsigned char *buf = NULL;
    int fd, rc = 0;

    *out = NULL;
    *len = 0;
    /* O_NONBLOCK: a FIFO would otherwise block the open (and the start)
     * until a writer comes; it is then refused as not a regular file.
     * On a regular file the flag changes nothing. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | flags);
    if (fd < 0)
        return errno;
    if (fstat(fd, &st) != 0)
        rc = errno;
    else if (!S_ISREG(st.st_mode))
        rc = SEC_FILE_NOT_REGULAR;
    else if ((unsigned long long)st.st_size > max)
        rc = EFBIG;
    else if (others && (*others = fsperm_others_can_write(fd, path)) != NULL)
        rc = SEC_FILE_OTHERS;
    if (rc == 0) {
        buf = malloc((size_t)st.st_size + 1);
        rc = buf ? read_all(fd, buf, (size_t)st.st_size) : ENOMEM;
    }
    close(fd);
    if (rc != 0) {
        if (buf)
            sodium_memzero(buf, (size_t)st.st_size + 1);
        free(buf);
        return rc;
    }
    buf[st.st_size] = '\0';
    *out = buf;
    *len = (size_t)st.st_size;
    return 0;
}

int sec_file_read(const char *path, size_t max, unsigned char **out,
                  size_t *len)
{
    return file_read(path, max, out, len, O_NOFOLLOW, NULL);
}

int sec_file_read_linked(const char *path, size_t max, unsigned char **out,
                         size_t *len, const char **others)
{
    *others = NULL;
    return file_read(path, max, out, len, 0, others);
}

const char *sec_file_error(int rc)
{
    if (rc == SEC_FILE_NOT_REGULAR)
        return "not a regular file (a directory, FIFO or device)";
    if (rc == EFBIG)
        return "too large for a key file";
    return strerror(rc);
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int sync_parent(const char *path)
{
    char copy[PATH_MAX];
    int fd, rc = 0;

    if (snprintf(copy, sizeof copy, "%s", path) >= (int)sizeof copy)
        return ENAMETOOLONG;
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    if (fsync(fd) != 0)
        rc = errno;
    close(fd);
    return rc;
}

/* Creates a uniquely named temporary file beside `path` holding `data`. */
static int put_temp(const char *path, const void *data, size_t len,
                    char tmp[PATH_MAX])
{
    int fd, rc;

    if (snprintf(tmp, PATH_MAX, "%s.tmp-%ld-%08x", path, (long)getpid(),
                 (unsigned)randombytes_random()) >= PATH_MAX)
        return ENAMETOOLONG;
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
              0600);
    if (fd < 0)
        return errno;
    rc = write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = errno;
    if (close(fd) != 0 && rc == 0)
        rc = errno;
    if (rc != 0)
        unlink(tmp);
    return rc;
}

int sec_file_put(const char *path, const void *data, size_t len,
                 bool replace)
{
    char tmp[PATH_MAX];
    int rc = put_temp(path, data, len, tmp);

    if (rc != 0)
        return rc;
    if (replace) {
        if (rename(tmp, path) != 0) {
            rc = errno;
            unlink(tmp);
        }
    } else {
        if (link(tmp, path) != 0)    /* fails with EEXIST: first one wins */
            rc = errno;
        unlink(tmp);
    }
    if (rc == 0)
        rc = sync_parent(path);
    return rc;
}

int sec_dir_ensure(const char *path)
{
    struct stat st;

    if (mkdir(path, 0700) == 0)
        return 0;
    if (errno != EEXIST)
        return errno;
    if (stat(path, &st) != 0)
        return errno;
    return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
}
