/* fsperm.c: who else may write a file the daemon trusts (its signing key,
 * its .env), checked the way OpenSSH checks an authorized_keys file. */
#include "fsperm.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int others_own(const struct stat *st)
{
    return st->st_uid != geteuid() && st->st_uid != 0;
}

const char *fsperm_others_can_write(int fd, const char *path)
{
    char real[PATH_MAX], *slash;
    struct stat opened, st;

    if (fstat(fd, &opened) != 0)
        return "it cannot be examined";
    if ((opened.st_mode & (S_IWGRP | S_IWOTH)) != 0 || others_own(&opened))
        return "others can write it (another user's, or group or world "
               "writable): chown it to this user and chmod 600 it";
    if (!realpath(path, real) || stat(real, &st) != 0 ||
        st.st_dev != opened.st_dev || st.st_ino != opened.st_ino)
        return "it was replaced while it was read";
    /* Each folder from the file's own up to the root: whoever may write
     * one (without the sticky bit) may rename what is in it. */
    while ((slash = strrchr(real, '/')) != NULL) {
        if (slash == real)
            slash[1] = '\0';                    /* "/" itself, last */
        else
            *slash = '\0';
        if (stat(real, &st) != 0)
            return "it cannot be examined";
        if (((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 &&
             (st.st_mode & S_ISVTX) == 0) || others_own(&st))
            return "others can replace it: a folder on its path is "
                   "another user's, or group or world writable without "
                   "the sticky bit";
        if (slash == real)
            break;
    }
    return NULL;
}
