/*
 * ingress_server.h - the SMTP and LMTP listeners on the event loop.
 *
 * Threads: everything here runs on the event-loop thread, except that the
 * group commit (ingress_commit.c) finishes on the committer thread and comes
 * back to the loop through an event; sessions are found again by id.
 */
#ifndef POSTERN_INGRESS_SERVER_H
#define POSTERN_INGRESS_SERVER_H

#include "config.h"
#include "store.h"
#include "worker.h"

#include <event2/event.h>

struct ingress;

/* Bind the listeners of cfg on base (a reference to cfg is taken); they
 * accept nothing until ingress_start(). posternd calls it before it drops
 * root, so ports below 1024 work. Returns NULL with *error_r set (naming
 * the address) if a listener cannot be bound. */
struct ingress *
ingress_new(struct event_base *base, struct config *cfg,
	    const char **error_r);

/* Start the group committer on st and begin accepting. st and pool are
 * borrowed and must outlive the ingress. Call once. */
void
ingress_start(struct ingress *in, struct store *st,
	      struct worker_pool *pool);

/* New sessions use cfg from now on (SIGHUP); a reference is taken. */
void
ingress_set_config(struct ingress *in, struct config *cfg);

/* Stop accepting connections; sessions carry on until they end. */
void
ingress_stop_accepting(struct ingress *in);

/* Number of open sessions. */
size_t
ingress_sessions(const struct ingress *in);

/* Close every session, finish the commits in flight (their messages stay
 * durable; the sessions are gone, so nobody is answered), free, set *in
 * to NULL. */
void
ingress_free(struct ingress **in);

#endif
