/* users.c: /api/v1/users. */
#include "handlers.h"

#include "repo.h"
#include "validate.h"

enum as_err h_me_get(struct req_ctx *rc, struct response *res)
{
    struct user u;
    enum as_err err = repo_user_by_id(rc->app->repo, rc->claims.sub, &u,
                                      rc->arena);

    if (err == AS_ERR_NOT_FOUND)         /* deleted since the token */
        return res_fail(res, AS_ERR_INVALID_TOKEN, "The account is gone.");
    if (err != AS_OK)
        return err;
    return res_json(res, 200, v_user_json(&u));
}
