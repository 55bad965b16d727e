/* test_fsperm.c: a file others could write or replace is told apart. */
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

static void the_file_and_its_folder_count(void **state)
{
    char dir[] = "/tmp/fsperm-XXXXXX", path[PATH_MAX];
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/key.pem", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_null(fsperm_others_can_write(path));
    assert_int_equal(chmod(path, 0644), 0);     /* readable: not this */
    assert_null(fsperm_others_can_write(path));
    assert_int_equal(chmod(path, 0620), 0);
    assert_non_null(strstr(fsperm_others_can_write(path), "write it"));
    assert_int_equal(chmod(path, 0602), 0);
    assert_non_null(fsperm_others_can_write(path));
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(chmod(dir, 0777), 0);      /* they could swap it */
    assert_non_null(strstr(fsperm_others_can_write(path), "replace"));
    assert_int_equal(chmod(dir, 01777), 0);     /* sticky, as /tmp */
    assert_null(fsperm_others_can_write(path));
    assert_int_equal(chmod(dir, 0700), 0);
    if (geteuid() == 0) {                       /* another user's */
        assert_int_equal(chown(path, 65534, 65534), 0);
        assert_non_null(fsperm_others_can_write(path));
        assert_int_equal(chown(path, 0, 0), 0);
        assert_int_equal(chown(dir, 65534, 65534), 0);
        assert_non_null(fsperm_others_can_write(path));
        assert_int_equal(chown(dir, 0, 0), 0);
    }
    assert_null(fsperm_others_can_write(path));
    assert_null(fsperm_others_can_write("/nonexistent/key.pem"));
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_file_and_its_folder_count),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
