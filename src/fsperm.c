/* fsperm.c: who else may write a file the daemon trusts. */
#include "fsperm.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int others_own(const struct stat *st)
{
    return st->st_uid != geteuid() && st->st_uid != 0;
}

const char *fsperm_others_can_write(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    struct stat st;

    if (stat(path, &st) != 0)
        return NULL;
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 || others_own(&st))
        return "others can write it (another user's, or group or world "
               "writable): chown it to this user and chmod 600 it";
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else if (snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path)
             >= (int)sizeof dir)
        return NULL;
    if (stat(dir, &st) != 0)
        return NULL;
    if (((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 &&
         (st.st_mode & S_ISVTX) == 0) || others_own(&st))
        return "others can replace it: its folder is another user's, or "
               "group or world writable without the sticky bit";
    return NULL;
}
