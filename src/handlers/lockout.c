/* lockout.c: /api/v1/users/{id}/lockout — an admin lifts a lockout. */
#include "hx.h"

#include "lockout.h"
#include "uuid.h"

enum as_err h_user_unlock(struct req_ctx *rc, struct response *res)
{
    struct core c = hx_core(rc);
    struct user u;
    enum as_err err = core_user_unlock(&c, rc->param_id, &u, rc->arena);

    if (err == AS_ERR_NOT_FOUND)
        return res_fail(res, err, "No such user.");
    if (err != AS_OK)
        return err;
    hx_audit(rc, "user.unlocked", u.id, NULL);
    return res_json(res, 204, NULL);
}
