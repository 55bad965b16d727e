#ifndef AUTH_AUTHN_H             /* authn.h: who is calling, may they */
#define AUTH_AUTHN_H
#include <stdbool.h>
#include "err.h"
#include "http.h"

/* Authenticates and authorizes `rc` for its route (the route table's
 * `access`): a bearer access token that verifies, of a live session,
 * with the role the route needs. Sets rc->authed/claims/bearer. Returns
 * AS_OK, AS_ERR_UNAUTHORIZED (no token), AS_ERR_INVALID_TOKEN,
 * AS_ERR_FORBIDDEN, or AS_ERR_UNAVAILABLE. */
enum as_err authn_route(struct req_ctx *rc);
/* authn_route without waiting on the database, for the HTTP threads:
 * when the session is not in the cache, returns AS_OK with *pending set
 * (nothing decided yet; rc->authed stays false) and the caller runs
 * authn_route on a database worker. Otherwise as authn_route, with
 * *pending false. */
enum as_err authn_route_nowait(struct req_ctx *rc, bool *pending);
/* Verifies the bearer token of `rc` whatever the route says (for
 * /verify); same results as authn_route without the role check. */
enum as_err authn_bearer(struct req_ctx *rc);
/* The token of an "Authorization: Bearer T" header, or NULL: borrowed
 * from `header`, or copied into `a` when blanks follow it. */
const char *authn_bearer_token(const char *header, struct arena *a);

#endif
