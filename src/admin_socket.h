/*
 * admin_socket.h - the daemon's local control socket, and the client side
 * that postern uses to talk to it.
 *
 * A Unix stream socket beside the store (ADMIN_SOCKET_NAME in the store
 * directory, mode 0600), one request line per connection, one reply line:
 *   "wake"  -> "ok": work was queued (postern replay / release / resolve);
 *              the workers look at the queue at once.
 *   "ping"  -> "ok <pid>"
 * Anything else gets "error unknown command".
 * Threads: the server runs on the event loop's thread; the client is a
 * plain blocking call.
 */
#ifndef POSTERN_ADMIN_SOCKET_H
#define POSTERN_ADMIN_SOCKET_H

#include <stddef.h>

#define ADMIN_SOCKET_NAME "posternd.sock"

struct event_base;
struct worker_pool;
struct admin_socket;

/* Listen at ADMIN_SOCKET_NAME in store_dir. pool is borrowed and must
 * outlive the socket. Returns NULL with *error_r set on failure. */
struct admin_socket *
admin_socket_new(struct event_base *base, const char *store_dir,
		 struct worker_pool *pool, const char **error_r);

/* Stop listening, remove the socket file, free *as and set it to NULL. */
void
admin_socket_free(struct admin_socket **as);

/* Client: send one request line to the daemon of store_dir and read its
 * reply into reply (cap bytes, without the newline), waiting at most
 * timeout_ms. Returns 0, or -1 with errno set (ENOENT / ECONNREFUSED: no
 * daemon is running on this store). */
int
admin_socket_request(const char *store_dir, const char *request,
		     char *reply, size_t cap, int timeout_ms);

#endif
