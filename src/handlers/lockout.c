/* lockout.c: /api/v1/users/{id}/lockout — an admin lifts a lockout. */
#include "hx.h"

#include "lockout.h"
#include "uuid.h"

enum as_err h_user_unlock(struct req_ctx *rc, struct response *res)
{
    struct user u;
    enum as_err err = AS_ERR_NOT_FOUND;

    if (uuid_valid(rc->param_id))
        err = repo_user_by_id(rc->app->repo, rc->param_id, &u, rc->arena);
    if (err == AS_ERR_NOT_FOUND)
        return res_fail(res, err, "No such user.");
    if (err == AS_OK)
        err = lockout_unlock(rc->app->repo, u.email);
    if (err != AS_OK)
        return err;
    hx_audit(rc, "user.unlocked", u.id, NULL);
    return res_json(res, 204, NULL);
}
