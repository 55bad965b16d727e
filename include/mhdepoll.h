#ifndef AUTH_MHDEPOLL_H         /* mhdepoll.h: libmicrohttpd's epoll fixes */
#define AUTH_MHDEPOLL_H

/* src/mhdepoll.c defines epoll_wait() and epoll_ctl() for the whole
 * process: libmicrohttpd 0.9.75's epoll loop never sleeps right after a
 * full batch of events, and, while `fd` is being quiesced, its second
 * removal of that listening socket from an epoll set succeeds instead of
 * aborting the process. Sets that socket (-1: none). */
void mhdepoll_quiescing(int fd);

#endif
