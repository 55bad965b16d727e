/* The email-changed notice: a mail without a link, rendered for SMTP and
 * as a webhook event, and account_* rules above the repository. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "accounts.h"
#include "mail.h"

#define T0 INT64_C(1700000000000)

static const struct mail_msg notice = {
    .id = "0190c1d2-0000-7000-8000-000000000009",
    .kind = MAIL_KIND_EMAIL_CHANGED,
    .to = "old@example.com",
    .link = NULL,
    .created_at = T0,
};

static void notice_renders_without_a_link(void **state)
{
    char *m = mail_render(&notice, "Auth <auth@mail.example.com>", T0);

    (void)state;
    assert_non_null(m);
    assert_non_null(strstr(m, "\r\nSubject: Your email address was "
                              "changed\r\n"));
    assert_non_null(strstr(m, "\r\nTo: old@example.com\r\n"));
    assert_null(strstr(m, "http"));
    assert_null(strstr(m, "token"));
    free(m);
}

static void notice_event_has_a_null_link(void **state)
{
    char *ev = mail_event_json(&notice);
    json_t *j;

    (void)state;
    assert_non_null(ev);
    j = json_loads(ev, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")),
                        "email_changed");
    assert_true(json_is_null(json_object_get(j, "link")));
    assert_string_equal(json_string_value(json_object_get(j, "to")),
                        "old@example.com");
    json_decref(j);
    free(ev);
}

static void linked_kinds_still_need_their_link(void **state)
{
    struct mail_msg m = notice;

    (void)state;
    m.kind = MAIL_KIND_RESET;
    assert_null(mail_render(&m, "auth@example.com", T0));
    assert_null(mail_event_json(&m));
}

static void who_may_change_what(void **state)
{
    struct user_patch p = { .set = UF_EMAIL, .email = "new@example.com" };

    (void)state;
    assert_int_equal(account_may_change(ACCOUNT_SELF,
                                        UF_EMAIL | UF_FULL_NAME), AS_OK);
    assert_int_equal(account_may_change(ACCOUNT_SELF, UF_ROLE),
                     AS_ERR_FORBIDDEN);
    assert_int_equal(account_may_change(ACCOUNT_SELF, UF_ACTIVE),
                     AS_ERR_FORBIDDEN);
    assert_int_equal(account_may_change(ACCOUNT_SELF, UF_VERIFIED),
                     AS_ERR_FORBIDDEN);
    assert_int_equal(account_may_change(ACCOUNT_ADMIN,
                                        UF_ROLE | UF_ACTIVE | UF_EMAIL |
                                            UF_FULL_NAME), AS_OK);
    assert_int_equal(account_may_change(ACCOUNT_ADMIN, UF_VERIFIED),
                     AS_ERR_FORBIDDEN);
    /* Only a user moving its own email to another one proves it. */
    assert_true(account_needs_password(ACCOUNT_SELF, "old@example.com", &p));
    assert_false(account_needs_password(ACCOUNT_SELF, "new@example.com",
                                        &p));
    assert_false(account_needs_password(ACCOUNT_ADMIN, "old@example.com",
                                        &p));
    p.set = UF_FULL_NAME;
    assert_false(account_needs_password(ACCOUNT_SELF, "old@example.com",
                                        &p));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(notice_renders_without_a_link),
        cmocka_unit_test(notice_event_has_a_null_link),
        cmocka_unit_test(linked_kinds_still_need_their_link),
        cmocka_unit_test(who_may_change_what),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
