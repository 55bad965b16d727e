#ifndef AUTH_HANDLERS_H          /* handlers.h: HTTP <-> domain, never SQL */
#define AUTH_HANDLERS_H
#include "http.h"

/* Each answers one route of API.md; see the route table in router.c. */
enum as_err h_register(struct req_ctx *rc, struct response *res);
enum as_err h_login(struct req_ctx *rc, struct response *res);
enum as_err h_me_get(struct req_ctx *rc, struct response *res);
enum as_err h_healthz(struct req_ctx *rc, struct response *res);
enum as_err h_readyz(struct req_ctx *rc, struct response *res);
enum as_err h_metrics(struct req_ctx *rc, struct response *res);
enum as_err h_jwks(struct req_ctx *rc, struct response *res);
enum as_err h_openapi(struct req_ctx *rc, struct response *res);

#endif
