#ifndef AUTH_HANDLERS_H          /* handlers.h: HTTP <-> domain, never SQL */
#define AUTH_HANDLERS_H
#include "http.h"

/* Each answers one route of src/openapi.json; see the route table in
 * router.c. */
enum as_err h_register(struct req_ctx *rc, struct response *res);
enum as_err h_login(struct req_ctx *rc, struct response *res);
enum as_err h_refresh(struct req_ctx *rc, struct response *res);
enum as_err h_logout(struct req_ctx *rc, struct response *res);
enum as_err h_logout_all(struct req_ctx *rc, struct response *res);
enum as_err h_verify(struct req_ctx *rc, struct response *res);
enum as_err h_password_change(struct req_ctx *rc, struct response *res);
enum as_err h_sessions_list(struct req_ctx *rc, struct response *res);
enum as_err h_session_delete(struct req_ctx *rc, struct response *res);
enum as_err h_introspect(struct req_ctx *rc, struct response *res);
enum as_err h_revoke(struct req_ctx *rc, struct response *res);
enum as_err h_password_forgot(struct req_ctx *rc, struct response *res);
enum as_err h_password_reset(struct req_ctx *rc, struct response *res);
enum as_err h_email_verify_request(struct req_ctx *rc,
                                   struct response *res);
enum as_err h_email_verify(struct req_ctx *rc, struct response *res);
enum as_err h_me_get(struct req_ctx *rc, struct response *res);
enum as_err h_me_patch(struct req_ctx *rc, struct response *res);
enum as_err h_me_delete(struct req_ctx *rc, struct response *res);
enum as_err h_users_list(struct req_ctx *rc, struct response *res);
enum as_err h_users_create(struct req_ctx *rc, struct response *res);
enum as_err h_user_get(struct req_ctx *rc, struct response *res);
enum as_err h_user_patch(struct req_ctx *rc, struct response *res);
enum as_err h_user_delete(struct req_ctx *rc, struct response *res);
enum as_err h_mfa_setup(struct req_ctx *rc, struct response *res);
enum as_err h_mfa_confirm(struct req_ctx *rc, struct response *res);
enum as_err h_mfa_disable(struct req_ctx *rc, struct response *res);
enum as_err h_mfa_recovery_codes(struct req_ctx *rc, struct response *res);
enum as_err h_login_mfa(struct req_ctx *rc, struct response *res);
enum as_err h_user_unlock(struct req_ctx *rc, struct response *res);
enum as_err h_passkey_register_options(struct req_ctx *rc,
                                       struct response *res);
enum as_err h_passkey_register(struct req_ctx *rc, struct response *res);
enum as_err h_passkeys_list(struct req_ctx *rc, struct response *res);
enum as_err h_passkey_delete(struct req_ctx *rc, struct response *res);
enum as_err h_passkey_login_options(struct req_ctx *rc,
                                    struct response *res);
enum as_err h_passkey_login(struct req_ctx *rc, struct response *res);
enum as_err h_healthz(struct req_ctx *rc, struct response *res);
enum as_err h_readyz(struct req_ctx *rc, struct response *res);
enum as_err h_metrics(struct req_ctx *rc, struct response *res);
enum as_err h_jwks(struct req_ctx *rc, struct response *res);
enum as_err h_openapi(struct req_ctx *rc, struct response *res);
/* GET /docs (Swagger UI's page) and GET /docs/{file} (its assets). */
enum as_err h_docs(struct req_ctx *rc, struct response *res);
enum as_err h_docs_file(struct req_ctx *rc, struct response *res);

#endif
