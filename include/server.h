#ifndef AUTH_SERVER_H            /* server.h: the HTTP server's life */
#define AUTH_SERVER_H
#include "http.h"

struct server;                   /* opaque: the libmicrohttpd daemon */

/* Starts the HTTP server; returns NULL (after logging why) on failure. */
struct server *server_start(struct app *app);
/* The port actually bound (useful with AUTH_PORT=0). */
unsigned server_port(const struct server *s);
/* The listening socket (borrowed: the server closes it at stop). */
int server_listen_fd(const struct server *s);
/* Stops accepting, waits up to `grace_ms` for requests in flight, stops. */
void server_stop(struct server *s, unsigned grace_ms);

#endif
