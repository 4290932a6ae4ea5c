/*
 * admin_http.c - /metrics and /healthz over libevent's evhttp.
 *
 * Owns:    the evhttp server; the store and the pool are borrowed.
 * Threads: the event loop's thread only.
 */
#include "admin_http.h"
#include "metrics.h"
#include "store.h"
#include "worker.h"
#include "lib/buf.h"
#include "lib/xmalloc.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The foreign side counts as down when its last failure is newer than
 * its last success and older failures have gone on this long. */
#define FOREIGN_DOWN_US (60ull * 1000000u)

struct admin_http {
	struct evhttp *http;
	struct store *st;		/* borrowed */
	struct worker_pool *pool;	/* borrowed */
};

static void
reply(struct evhttp_request *req, int code, const char *reason,
      const char *type, const struct buf *b)
{
	struct evbuffer *out = evbuffer_new();

	if (out == NULL) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add(out, b->data, b->len);
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type", type);
	evhttp_send_reply(req, code, reason, out);
	evbuffer_free(out);
}

static void
on_metrics(struct evhttp_request *req, void *arg)
{
	struct admin_http *ah = arg;
	struct buf b;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		evhttp_send_error(req, 405, "GET only");
		return;
	}
	buf_init(&b);
	if (metrics_render(ah->st, &b, store_now_us()) < 0)
		buf_append_str(&b, "# store could not be read\n");
	reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", &b);
	buf_free(&b);
}

static void
on_healthz(struct evhttp_request *req, void *arg)
{
	struct admin_http *ah = arg;
	struct store_counters c;
	struct store_health_info h;
	uint64_t now = store_now_us(), ok_us, fail_us;
	unsigned alive, total;
	const char *err;
	bool healthy = true;
	struct buf b;

	buf_init(&b);
	/* Whether it can take mail: a store that cannot is what the ingress
	 * answers 421 for (posternd(8), "WHEN IT CANNOT STORE"). */
	store_health(ah->st, &h);
	if (h.state != STORE_HEALTH_OK) {
		healthy = false;
		buf_printf(&b, "store: %s\n", h.why);
	} else if (store_counters_get(ah->st, &c, &err) != STORE_OK) {
		healthy = false;
		buf_printf(&b, "store: cannot be read: %s\n", err);
	} else {
		buf_printf(&b, "store: ok\n");
	}
	worker_pool_alive(ah->pool, now, &alive, &total);
	buf_printf(&b, "workers: %u of %u alive\n", alive, total);
	if (alive < total)
		healthy = false;
	metrics_foreign_last(&ok_us, &fail_us);
	if (fail_us > ok_us && fail_us - (ok_us ? ok_us : fail_us) >=
	    FOREIGN_DOWN_US) {
		healthy = false;
		buf_printf(&b, "foreign: unreachable for %" PRIu64 " s\n",
			   (fail_us - ok_us) / 1000000u);
	} else if (fail_us > ok_us) {
		buf_printf(&b, "foreign: failing since %" PRIu64 " s\n",
			   (now - fail_us) / 1000000u);
	} else {
		buf_printf(&b, "foreign: ok\n");
	}
	buf_append_str(&b, healthy ? "ok\n" : "unhealthy\n");
	reply(req, healthy ? 200 : 503, healthy ? "OK" : "Service Unavailable",
	      "text/plain; charset=utf-8", &b);
	buf_free(&b);
}

static void
on_other(struct evhttp_request *req, void *arg)
{
	(void)arg;
	evhttp_send_error(req, 404, "try /metrics or /healthz");
}

struct admin_http *
admin_http_new(struct event_base *base, const char *host, const char *port,
	       const char **error_r)
{
	static _Thread_local char err[256];
	struct admin_http *ah = xcalloc(1, sizeof(*ah));
	unsigned long pn = strtoul(port, NULL, 10);

	ah->http = evhttp_new(base);
	if (ah->http == NULL || pn == 0 || pn > 65535 ||
	    evhttp_bind_socket(ah->http, host, (uint16_t)pn) != 0) {
		snprintf(err, sizeof(err), "[admin] listen %s:%s: cannot "
			 "listen (address in use?)", host, port);
		*error_r = err;
		if (ah->http != NULL)
			evhttp_free(ah->http);
		free(ah);
		return NULL;
	}
	evhttp_set_allowed_methods(ah->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(ah->http, 10);
	evhttp_set_cb(ah->http, "/metrics", on_metrics, ah);
	evhttp_set_cb(ah->http, "/healthz", on_healthz, ah);
	evhttp_set_gencb(ah->http, on_other, ah);
	return ah;
}

void
admin_http_attach(struct admin_http *ah, struct store *st,
		  struct worker_pool *pool)
{
	ah->st = st;
	ah->pool = pool;
}

void
admin_http_free(struct admin_http **ah)
{
	if (ah == NULL || *ah == NULL)
		return;
	evhttp_free((*ah)->http);
	free(*ah);
	*ah = NULL;
}
