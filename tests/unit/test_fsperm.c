/* test_fsperm.c: a file others could write or replace is told apart, on
 * what was opened and every folder up its resolved path. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsperm.h"

static char top[] = "/tmp/fsperm-XXXXXX";
static char path[PATH_MAX];

static const char *check(const char *p)
{
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    const char *why;

    assert_true(fd >= 0);
    why = fsperm_others_can_write(fd, p);
    close(fd);
    return why;
}

static void put(const char *p)
{
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "k\n", 2), 2);
    close(fd);
}

static int setup(void **state)
{
    char d[PATH_MAX / 2];

    (void)state;
    assert_non_null(mkdtemp(top));
    snprintf(d, sizeof d, "%s/a", top);          /* top/a/key.pem */
    assert_int_equal(mkdir(d, 0700), 0);
    snprintf(path, sizeof path, "%s/key.pem", d);
    put(path);
    return 0;
}

static int teardown(void **state)
{
    char cmd[PATH_MAX + 16];

    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
    return system(cmd) == 0 ? 0 : -1;
}

static void the_file_itself(void **state)
{
    (void)state;
    assert_null(check(path));
    assert_int_equal(chmod(path, 0644), 0);     /* readable: not this */
    assert_null(check(path));
    assert_int_equal(chmod(path, 0620), 0);
    assert_non_null(strstr(check(path), "write it"));
    assert_int_equal(chmod(path, 0602), 0);
    assert_non_null(check(path));
    assert_int_equal(chmod(path, 0600), 0);
    if (geteuid() == 0) {                       /* another user's */
        assert_int_equal(chown(path, 65534, 65534), 0);
        assert_non_null(check(path));
        assert_int_equal(chown(path, 0, 0), 0);
    }
    assert_null(check(path));
}

/* Its folder, and the folders above it: from any of them it can be
 * swapped (a rename of the folder below, with another file in it). */
static void every_folder_up_its_path(void **state)
{
    char a[PATH_MAX];

    (void)state;
    snprintf(a, sizeof a, "%s/a", top);
    assert_int_equal(chmod(a, 0777), 0);
    assert_non_null(strstr(check(path), "replace"));
    assert_int_equal(chmod(a, 01777), 0);      /* sticky, as /tmp */
    assert_null(check(path));
    assert_int_equal(chmod(a, 0700), 0);
    assert_int_equal(chmod(top, 0777), 0);     /* a folder above */
    assert_non_null(strstr(check(path), "replace"));
    assert_int_equal(chmod(top, 0700), 0);
    if (geteuid() == 0) {
        assert_int_equal(chown(top, 65534, 65534), 0);
        assert_non_null(check(path));
        assert_int_equal(chown(top, 0, 0), 0);
    }
    assert_null(check(path));
}

/* A link from a safe folder into one others can write: the file's own
 * path is the one that counts (a mounted secret is a link too). */
static void the_path_a_link_leads_to(void **state)
{
    char open_dir[PATH_MAX / 2], target[PATH_MAX], link[PATH_MAX];

    (void)state;
    snprintf(open_dir, sizeof open_dir, "%s/open", top);
    assert_int_equal(mkdir(open_dir, 0700), 0);
    snprintf(target, sizeof target, "%s/key.pem", open_dir);
    put(target);
    snprintf(link, sizeof link, "%s/a/link.pem", top);
    assert_int_equal(symlink(target, link), 0);
    assert_null(check(link));
    assert_int_equal(chmod(open_dir, 0777), 0);
    assert_non_null(check(link));
    assert_int_equal(chmod(open_dir, 01777), 0);
    assert_null(check(link));
}

/* A link on the way, in a folder others can write: they could point it
 * at any file of root's (a test key some package ships), or a folder of
 * such files. Before, only the folders of the resolved path counted. */
static void the_folders_of_the_links_on_the_way(void **state)
{
    char open_dir[PATH_MAX / 2], link[PATH_MAX], chain[PATH_MAX],
        via[PATH_MAX], a[PATH_MAX / 2];

    (void)state;
    snprintf(open_dir, sizeof open_dir, "%s/linkdir", top);
    assert_int_equal(mkdir(open_dir, 0700), 0);
    snprintf(link, sizeof link, "%s/key.pem", open_dir);  /* -> a/key.pem */
    assert_int_equal(symlink(path, link), 0);
    assert_null(check(link));
    assert_int_equal(chmod(open_dir, 0777), 0);
    assert_non_null(strstr(check(link), "link"));
    /* a chain: a safe link to the link in the open folder */
    snprintf(chain, sizeof chain, "%s/a/chain.pem", top);
    assert_int_equal(symlink(link, chain), 0);
    assert_non_null(check(chain));
    /* a folder reached through a link that lies in the open folder */
    snprintf(a, sizeof a, "%s/a", top);
    snprintf(via, sizeof via, "%s/sub", open_dir);
    assert_int_equal(symlink(a, via), 0);
    snprintf(via, sizeof via, "%s/sub/key.pem", open_dir);
    assert_non_null(check(via));
    assert_int_equal(chmod(open_dir, 0700), 0);
    assert_null(check(chain));
    assert_null(check(via));
    /* relative links and dots are looked up as the kernel does */
    snprintf(via, sizeof via, "%s/a/./../a/key.pem", top);
    assert_null(check(via));
    snprintf(via, sizeof via, "%s/a/rel.pem", top);
    assert_int_equal(symlink("./key.pem", via), 0);
    assert_null(check(via));
}

/* The path names another file than the one opened (swapped between the
 * open and the check): refused, whatever that other file is. */
static void a_file_swapped_after_the_open(void **state)
{
    char other[PATH_MAX];
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    (void)state;
    assert_true(fd >= 0);
    snprintf(other, sizeof other, "%s/a/other.pem", top);
    put(other);
    assert_int_equal(rename(other, path), 0);
    assert_non_null(strstr(fsperm_others_can_write(fd, path), "replaced"));
    close(fd);
    assert_null(check(path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_file_itself),
        cmocka_unit_test(every_folder_up_its_path),
        cmocka_unit_test(the_path_a_link_leads_to),
        cmocka_unit_test(the_folders_of_the_links_on_the_way),
        cmocka_unit_test(a_file_swapped_after_the_open),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
