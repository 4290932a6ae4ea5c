/*
 * admin_http.h - the daemon's HTTP admin endpoint ([admin] listen):
 *   GET /metrics  Prometheus text format (metrics.h)
 *   GET /healthz  200 "ok" when the store can take mail (store_health():
 *                 not full, no I/O error on commit, not panicked), every
 *                 worker went round its loop lately and the foreign side
 *                 answered last time; 503 with the reasons otherwise.
 * Threads: runs on the event loop's thread. Reads the store (one short
 * read transaction per request) and the pool's heartbeats.
 */
#ifndef POSTERN_ADMIN_HTTP_H
#define POSTERN_ADMIN_HTTP_H

struct event_base;
struct store;
struct worker_pool;
struct admin_http;

/* Listen on host:port (posternd does it before it drops root). Returns
 * NULL with *error_r set on failure. Requests are served only by the
 * event loop, which must not run before admin_http_attach(). */
struct admin_http *
admin_http_new(struct event_base *base, const char *host, const char *port,
	       const char **error_r);

/* The store and pool the requests read; borrowed, they must outlive ah. */
void
admin_http_attach(struct admin_http *ah, struct store *st,
		  struct worker_pool *pool);

/* Stop listening, free *ah and set it to NULL. */
void
admin_http_free(struct admin_http **ah);

#endif
