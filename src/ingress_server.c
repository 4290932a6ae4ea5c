/*
 * ingress_server.c - accept connections, run SMTP/LMTP sessions over
 * bufferevents, hand complete messages to the group committer and answer
 * when they are durable.
 *
 * Owns:    the listeners, every struct isession (loop thread only), the
 *          list of finished commit jobs (under done_lock, the only state
 *          the committer thread touches).
 * Threads: loop thread; on_commit_done runs on the committer thread and
 *          only links jobs and activates an event.
 */
#include "ingress_server.h"
#include "metrics.h"
#include "ingress_auth.h"
#include "ingress_smtp.h"
#include "ingress_tls.h"
#include "ingress_commit.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define INPUT_MAX (1u << 20)	/* unread input while a commit is pending */

struct isession {
	struct ingress *in;
	uint64_t id;
	/* Owns the socket: first a plain socket bufferevent; after STARTTLS
	 * an OpenSSL one on the same fd, which also owns the SSL. */
	struct bufferevent *bev;
	struct smtp_session *smtp;
	struct smtp_limits lim;		/* points into cfg: keep cfg */
	struct config *cfg;		/* shared: one reference */
	struct buf out;
	bool waiting;			/* a commit for us is in flight */
	bool closing;			/* close once output is flushed */
	bool tls_pending;		/* handshake once the 220 is out */
	bool handshaking;		/* TLS handshake in progress */
	struct event *greet_ev;		/* owned; the greet_pause timer */
	struct event *deadline_ev;	/* owned; see deadline_update() */
	char addr[INET6_ADDRSTRLEN];
	struct isession *prev, *next;
};

struct ingress {
	struct event_base *base;		/* borrowed */
	struct store *st;			/* borrowed */
	struct worker_pool *pool;		/* borrowed */
	struct config *cfg;			/* shared: one reference */
	struct evconnlistener *smtp_l, *lmtp_l;
	struct ingress_commit *committer;
	struct isession *sessions;
	size_t nsessions;
	uint64_t next_id;
	struct event *done_ev;
	pthread_mutex_t done_lock;
	/* under done_lock: */
	struct ingress_commit_job *done_head, **done_tail;
	bool stopping;			/* ingress_free(): no input is read */
};

static void session_read(struct isession *s);
static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);
static void greet(evutil_socket_t fd, short what, void *arg);

static struct isession *
session_find(struct ingress *in, uint64_t id)
{
	for (struct isession *s = in->sessions; s != NULL; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

/* "connect from" or "disconnect from" a client (Postfix's smtpd lines;
 * without reverse DNS the name is "unknown"). proto: NULL or the
 * listener's protocol, for the JSON fields. */
static void
log_conn(const char *event, const char *addr, const char *proto)
{
	struct log_field f[] = {
		{ "event", event, false },
		{ "client", addr, false },
		{ "proto", proto, false },
	};

	log_event(LOG_LVL_INFO, f, 3, "%s from unknown[%s]%s", event, addr,
		  proto != NULL && strcmp(proto, "LMTP") == 0 ? " (lmtp)" : "");
}
static void
session_free(struct isession **sp)
{
	struct isession *s = *sp;
	struct ingress *in;

	*sp = NULL;
	if (s == NULL)
		return;
	in = s->in;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		in->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	in->nsessions--;
	log_conn("disconnect", s->addr, NULL);
	if (s->greet_ev != NULL)
		event_free(s->greet_ev);
	event_free(s->deadline_ev);
	bufferevent_free(s->bev);
	smtp_session_free(&s->smtp);
	buf_free(&s->out);
	config_unref(&s->cfg);
	free(s);
}

/* Count the final reply lines ("250 ...", not "250-...") for /metrics. */
static void
count_replies(const char *p, size_t len)
{
	const char *end = p + len, *nl;

	for (; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			break;
		if (nl - p >= 4 && p[3] == ' ' && p[0] >= '2' && p[0] <= '5' &&
		    p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9')
			metrics_smtp_reply((unsigned)((p[0] - '0') * 100 +
					   (p[1] - '0') * 10 + (p[2] - '0')));
	}
}

/* Write pending replies; if the session is closing and everything is
 * written, free it. Returns false if the session is gone.
 *
 * On a plain socket with nothing queued in the bufferevent, the replies
 * are sent at once: a bufferevent write would arm the write event and
 * disarm it in the next loop turn, two epoll_ctl calls and a loop turn
 * for every reply. What the socket does not take (or an error, which the
 * bufferevent then meets and reports) goes through the bufferevent. Not
 * while the STARTTLS 220 is out: on_write() starts TLS when that is
 * written. */
static bool
session_flush(struct isession *s)
{
	struct evbuffer *o = bufferevent_get_output(s->bev);
	const char *p = s->out.data;
	size_t left = s->out.len;
	ssize_t k;

	if (left > 0) {
		count_replies(p, left);
		if (!s->tls_pending && !s->handshaking &&
		    evbuffer_get_length(o) == 0 &&
		    bufferevent_openssl_get_ssl(s->bev) == NULL) {
			k = send(bufferevent_getfd(s->bev), p, left,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (k > 0) {
				p += k;
				left -= (size_t)k;
			}
		}
		if (left > 0)
			bufferevent_write(s->bev, p, left);
		buf_reset(&s->out);
	}
	if (s->closing && evbuffer_get_length(o) == 0) {
		session_free(&s);
		return false;
	}
	return true;
}

/* The read deadline (RELIABILITY.md row 19). Not the bufferevent's read
 * timeout: that restarts on every read, so a client that drips one byte
 * a second never meets it. Like Postfix with smtpd_per_record_deadline,
 * the timer is (re)armed only when the client made progress: a reply was
 * produced (a command line was complete), or the session is back from a
 * commit or a TLS handshake. The 354 arms it once with data_timeout, a
 * deadline for the whole DATA phase up to CRLF.CRLF; nothing inside the
 * data re-arms it. No deadline runs while the session waits for us
 * (commit, TLS) or is closing. */
static void
deadline_update(struct isession *s, bool progress)
{
	struct timeval tv = { 0 };

	if (s->waiting || s->closing || s->tls_pending || s->handshaking) {
		evtimer_del(s->deadline_ev);
		return;
	}
	if (!progress && evtimer_pending(s->deadline_ev, NULL))
		return;
	tv.tv_sec = smtp_session_in_data(s->smtp) ?
		s->cfg->ingress_data_timeout : s->cfg->ingress_idle_timeout;
	evtimer_add(s->deadline_ev, &tv);
}

/* Loop thread: the deadline passed. 421 4.4.2, close once it is out; a
 * message half-received is dropped, nothing is stored. */
static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct isession *s = arg;

	(void)fd;
	(void)what;
	log_info("timeout after %s from [%s]",
		 smtp_session_in_data(s->smtp) ? "DATA" : "command", s->addr);
	smtp_session_timeout(s->smtp, &s->out);
	s->closing = true;
	bufferevent_disable(s->bev, EV_READ);
	session_flush(s);
}

static void
session_hand_over(struct isession *s)
{
	struct smtp_message m;
	struct ingress_commit_job *job;
	char *body;
	size_t len;

	smtp_session_message(s->smtp, &m);
	smtp_session_take_body(s->smtp, &body, &len);
	job = ingress_commit_job_new(s->id, m.sender, m.rcpts, m.nrcpt,
				     m.msgid, &body, len);
	job->qid_at = m.qid_at;
	job->trace_len = m.trace_len;
	job->client = xmalloc(strlen(s->addr) + 3);
	sprintf(job->client, "[%s]", s->addr);
	s->waiting = true;
	bufferevent_disable(s->bev, EV_READ);
	ingress_commit_push(s->in->committer, &job);
}

/* Feed what has arrived to the protocol machine. */
static void
session_read(struct isession *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	enum smtp_event ev = SMTP_EV_NONE;
	size_t len, used;
	char *data;

	while (!s->waiting && !s->closing && !s->tls_pending &&
	       !s->handshaking && !s->in->stopping &&
	       (len = evbuffer_get_length(in)) > 0) {
		data = (char *)evbuffer_pullup(in, -1);
		ev = smtp_session_feed(s->smtp, data, len, &used, &s->out);
		evbuffer_drain(in, used);
		if (ev == SMTP_EV_MESSAGE) {
			session_hand_over(s);
		} else if (ev == SMTP_EV_CLOSE) {
			s->closing = true;
		} else if (ev == SMTP_EV_STARTTLS) {
			/* the session dropped the rest of this input */
			s->tls_pending = true;
			bufferevent_disable(s->bev, EV_READ);
		} else if (used == 0) {
			break;
		}
	}
	deadline_update(s, s->out.len > 0);
	session_flush(s);	/* on_write starts TLS once it is out */
}

/* The "220 Ready to start TLS" is written: swap the plain bufferevent for
 * an OpenSSL one on the same socket. Unread plaintext goes with the old
 * one (the session had thrown it away already). */
static void
start_tls(struct isession *s)
{
	evutil_socket_t fd = bufferevent_getfd(s->bev);
	SSL *ssl = SSL_new(s->cfg->ingress_tls_ctx);
	struct timeval tv = {
		.tv_sec = s->cfg->ingress_tls_handshake_timeout,
	};

	if (ssl == NULL)
		panic("ingress: SSL_new failed");
	s->tls_pending = false;
	s->handshaking = true;
	bufferevent_setfd(s->bev, -1);	/* so freeing it keeps the socket */
	bufferevent_free(s->bev);
	s->bev = bufferevent_openssl_socket_new(s->in->base, fd, ssl,
						BUFFEREVENT_SSL_ACCEPTING,
						BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL)
		panic("ingress: bufferevent_openssl_socket_new failed");
	ssl = NULL;			/* the bufferevent owns it */
	/* a client that hangs up without close_notify is just gone */
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_MAX);
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

/* The handshake finished: the session starts over after the greeting. */
static void
tls_done(struct isession *s)
{
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	struct timeval tv = { .tv_sec = s->cfg->ingress_idle_timeout };
	char desc[256];

	s->handshaking = false;
	ingress_tls_describe(ssl, desc, sizeof(desc));
	log_info("STARTTLS from [%s]: %s", s->addr, desc);
	smtp_session_tls_started(s->smtp, desc);
	bufferevent_set_timeouts(s->bev, NULL, &tv);	/* reads: deadline */
	session_read(s);
}

/* The handshake failed or timed out: nothing to say in plaintext. */
static void
tls_failed(struct isession *s, short what)
{
	unsigned long e = bufferevent_get_openssl_error(s->bev);
	char why[256];

	if (what & BEV_EVENT_TIMEOUT)
		snprintf(why, sizeof(why), "timed out");
	else if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof(why), "the client hung up");
	else
		ingress_tls_error(e, why, sizeof(why));
	log_warn("TLS handshake with [%s] failed: %s", s->addr, why);
	session_free(&s);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	session_read(arg);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	struct isession *s = arg;

	(void)bev;
	if (s->tls_pending &&
	    evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		start_tls(s);
	else if (s->closing)
		session_flush(s);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct isession *s = arg;

	(void)bev;
	if (s->handshaking) {
		if (what & BEV_EVENT_CONNECTED)
			tls_done(s);
		else
			tls_failed(s, what);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		/* Only writes have a bufferevent timeout: the client reads
		 * nothing, so no reply would reach it either. */
		log_info("timeout writing to [%s]", s->addr);
		session_free(&s);
		return;
	}
	/* EOF or error: a message half-sent is simply dropped; one waiting
	 * for its commit stays durable, and nobody is left to answer. */
	session_free(&s);
}

static enum smtp_store_result
store_result(int rc)
{
	switch (rc) {
	case STORE_OK:		return SMTP_STORE_OK;
	case STORE_FULL:	return SMTP_STORE_FULL;
	case STORE_PANIC:	return SMTP_STORE_REOPEN;
	default:		return SMTP_STORE_TEMPFAIL;
	}
}

/* The first lines of a message's life, once it has a queue id: where
 * it came from (Postfix's smtpd line), its Message-ID (cleanup) and its
 * envelope (qmgr). s is the session if it is still there. */
static void
log_queued(const struct ingress_commit_job *j, const char *qid,
	   const struct isession *s)
{
	const char *addr = s != NULL ? s->addr : "unknown";
	char size[24], nrcpt[24];
	size_t n = 0;
	struct log_field c[] = {
		{ "queue_id", qid, false },
		{ "event", "client", false },
		{ "client", addr, false },
	};
	struct log_field m[] = {
		{ "queue_id", qid, false },
		{ "event", "message-id", false },
		{ "message_id", j->msgid, false },
	};
	struct log_field q[] = {
		{ "queue_id", qid, false },
		{ "event", "queued", false },
		{ "from", j->sender, false },
		{ "size", size, true },
		{ "nrcpt", nrcpt, true },
	};

	/* Recipients the resubmission index recognised are not queued. */
	for (size_t i = 0; i < j->nrcpt; i++)
		n += j->resub[i].qid == 0;
	snprintf(size, sizeof(size), "%zu", j->body_len);
	snprintf(nrcpt, sizeof(nrcpt), "%zu", n);
	log_event(LOG_LVL_INFO, c, 3, "%s: client=unknown[%s]", qid, addr);
	log_event(LOG_LVL_INFO, m, 3, "%s: message-id=%s", qid, j->msgid);
	log_event(LOG_LVL_INFO, q, 5, "%s: from=<%s>, size=%zu, nrcpt=%zu "
		  "(queue active)", qid, j->sender, j->body_len, n);
}

/* The recipients the resubmission index recognised: one line each,
 * under the queue id they were queued as, and the queue ids for the
 * reply (*orig_r: NULL if there are none; else nrcpt pointers into
 * *buf_r, NULL for a recipient queued now). */
static void
log_resubmissions(const struct ingress_commit_job *j, const struct isession *s,
		  const char ***orig_r, char **buf_r)
{
	const char *addr = s != NULL ? s->addr : "unknown";
	size_t n = 0;

	*orig_r = NULL;
	*buf_r = NULL;
	for (size_t i = 0; i < j->nrcpt; i++)
		n += j->resub[i].qid != 0;
	if (n == 0)
		return;
	*orig_r = xcalloc(j->nrcpt, sizeof(**orig_r));
	*buf_r = xcalloc(j->nrcpt, STORE_QID_STRLEN);
	for (size_t i = 0; i < j->nrcpt; i++) {
		char *q = *buf_r + i * STORE_QID_STRLEN, first[32];
		time_t t;
		struct tm tm;
		struct log_field f[] = {
			{ "queue_id", q, false },
			{ "event", "resubmission", false },
			{ "client", addr, false },
			{ "from", j->sender, false },
			{ "to", j->rcpts[i], false },
			{ "message_id", j->msgid, false },
			{ "first_queued", first, false },
		};

		if (j->resub[i].qid == 0)
			continue;
		store_qid_str(j->resub[i].qid, q);
		(*orig_r)[i] = q;
		t = (time_t)(j->resub[i].first_us / 1000000u);
		gmtime_r(&t, &tm);
		strftime(first, sizeof(first), "%Y-%m-%dT%H:%M:%SZ", &tm);
		log_event(LOG_LVL_INFO, f, 7, "%s: resubmission: client="
			  "unknown[%s], from=<%s>, to=<%s>, message-id=%s, "
			  "first queued %s: not queued again", q, addr,
			  j->sender, j->rcpts[i], j->msgid, first);
	}
}

/* Loop thread: answer the sessions whose messages were committed. */
static void
on_done(evutil_socket_t fd, short what, void *arg)
{
	struct ingress *in = arg;
	struct ingress_commit_job *jobs, *j;
	struct isession *s;
	char qid[STORE_QID_STRLEN];
	size_t queued = 0;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&in->done_lock);
	jobs = in->done_head;
	in->done_head = NULL;
	in->done_tail = &in->done_head;
	pthread_mutex_unlock(&in->done_lock);
	while ((j = jobs) != NULL) {
		jobs = j->next;
		const char **orig = NULL;
		char *obuf = NULL;

		store_qid_str(j->qid, qid);
		s = session_find(in, j->session_id);
		if (j->rc == STORE_OK) {
			log_resubmissions(j, s, &orig, &obuf);
			if (j->qid != 0) {
				queued++;
				log_queued(j, qid, s);
			}
		} else {
			log_err("cannot queue a message from <%s>: %s",
				j->sender, j->error);
		}
		if (s != NULL && s->waiting) {
			s->waiting = false;
			if (smtp_session_stored_resub(s->smtp,
				store_result(j->rc), j->qid != 0 ? qid : NULL,
				orig, &s->out) == SMTP_EV_CLOSE)
				s->closing = true;
			else if (!in->stopping)
				bufferevent_enable(s->bev, EV_READ);
			session_read(s);	/* pipelined input waits */
		}
		free(orig);
		free(obuf);
		ingress_commit_job_free(&j);
	}
	if (queued > 0)
		worker_pool_wake_some(in->pool, queued);
}

/* Committer thread: link the finished jobs and poke the loop. */
static void
on_commit_done(struct ingress_commit_job *jobs, void *arg)
{
	struct ingress *in = arg;
	struct ingress_commit_job *last = jobs;

	while (last->next != NULL)
		last = last->next;
	pthread_mutex_lock(&in->done_lock);
	*in->done_tail = jobs;
	in->done_tail = &last->next;
	pthread_mutex_unlock(&in->done_lock);
	event_active(in->done_ev, EV_READ, 0);
}

/* The reply's words for a store that cannot take mail. */
static const char *
store_words(enum store_health state)
{
	switch (state) {
	case STORE_HEALTH_FULL:		return "store full";
	case STORE_HEALTH_IO_ERROR:	return "store I/O error";
	case STORE_HEALTH_PANICKED:	return "store panicked";
	case STORE_HEALTH_OK:		break;
	}
	return "store";
}

/* At MAIL: a store that cannot take mail at all (store_health()) gets
 * 421 4.3.2 and the session closes; else room in the store for the
 * message (its SIZE=, or STORE_ROOM_DEFAULT_SIZE when the client gave
 * none) twice over, as copy-on-write may need, plus STORE_ROOM_RESERVE;
 * else 452 4.3.1 (RELIABILITY.md, T7). */
static int
storage_ok(void *arg, size_t size, const char **why_r)
{
	struct isession *s = arg;
	struct store_health_info h;
	uint64_t need = (uint64_t)(size > 0 ? size : STORE_ROOM_DEFAULT_SIZE)
			* 2 + STORE_ROOM_RESERVE;

	store_health(s->in->st, &h);
	if (h.state != STORE_HEALTH_OK) {
		*why_r = store_words(h.state);
		return -1;
	}
	return store_has_room(s->in->st, need) ? 1 : 0;
}

static int
rcpt_ok(void *arg, const char *addr)
{
	struct isession *s = arg;

	return config_domain_accepted(s->cfg, addr);
}

/* Loop thread. The hash costs milliseconds of CPU; AUTH is rare enough
 * on a connector for that to be paid here. */
static int
auth_ok(void *arg, const char *user, const char *password)
{
	struct isession *s = arg;

	return ingress_auth_check(s->cfg->ingress_auth_table, user, password);
}

static void
refuse(evutil_socket_t fd, const char *reply)
{
	if (send(fd, reply, strlen(reply), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* The client is gone already. */
	}
	evutil_closesocket(fd);
}

/* Live sessions from addr (numeric, as getnameinfo() gave it). The list
 * is at most max_sessions long, and this runs once per connect. */
static unsigned
sessions_from(const struct ingress *in, const char *addr)
{
	unsigned n = 0;

	for (const struct isession *s = in->sessions; s != NULL; s = s->next)
		if (strcmp(s->addr, addr) == 0)
			n++;
	return n;
}

/* A connection refused before its session: Postfix's smtpd reject
 * line, the reply without its CRLF, and why. */
static void
log_connect_refused(const char *addr, const char *reply, const char *why)
{
	int n = (int)strcspn(reply, "\r\n");
	char text[256];
	struct log_field f[] = {
		{ "queue_id", "NOQUEUE", false },
		{ "event", "reject", false },
		{ "command", "CONNECT", false },
		{ "client", addr, false },
		{ "reply", text, false },
	};

	snprintf(text, sizeof(text), "%.*s", n, reply);
	log_event(LOG_LVL_WARN, f, sizeof(f) / sizeof(f[0]), "NOQUEUE: "
		  "reject: CONNECT from unknown[%s]: %s; %s; proto=SMTP", addr,
		  text, why);
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd,
	  struct sockaddr *sa, int salen, void *arg)
{
	struct ingress *in = arg;
	bool lmtp = l == in->lmtp_l;
	struct isession *s;
	char addr[INET6_ADDRSTRLEN] = "unknown", reply[256];
	struct store_health_info h;
	struct timeval tv;
	bool total;

	getnameinfo(sa, (socklen_t)salen, addr, sizeof(addr), NULL, 0,
		    NI_NUMERICHOST);
	if (!config_network_allowed(in->cfg, sa)) {
		snprintf(reply, sizeof(reply), "554 5.7.1 <[%s]>: Client host "
			 "rejected: Access denied\r\n", addr);
		log_connect_refused(addr, reply, "client host not in "
				    "[ingress] allow_networks");
		refuse(fd, reply);
		return;
	}
	total = in->nsessions >= in->cfg->ingress_max_sessions;
	if (total || (in->cfg->ingress_max_sessions_per_ip > 0 &&
		      sessions_from(in, addr) >=
		      in->cfg->ingress_max_sessions_per_ip)) {
		snprintf(reply, sizeof(reply), "421 4.7.0 %s Error: too many "
			 "connections from %s\r\n", in->cfg->ingress_hostname,
			 addr);
		log_connect_refused(addr, reply, total ? "too many sessions" :
				    "too many sessions from this address");
		refuse(fd, reply);
		return;
	}
	/* A store that cannot take mail: 421 before the greeting, so that
	 * the client tries its next server at once, for this message too
	 * (posternd(8), "WHEN IT CANNOT STORE"). */
	store_health(in->st, &h);
	if (h.state != STORE_HEALTH_OK) {
		snprintf(reply, sizeof(reply), "421 4.3.2 %s Service not "
			 "available (%s), closing transmission channel\r\n",
			 in->cfg->ingress_hostname, store_words(h.state));
		log_connect_refused(addr, reply, h.why);
		refuse(fd, reply);
		return;
	}
	s = xcalloc(1, sizeof(*s));
	s->in = in;
	s->id = ++in->next_id;
	s->cfg = config_ref(in->cfg);
	snprintf(s->addr, sizeof(s->addr), "%s", addr);
	s->lim = (struct smtp_limits){
		.hostname = s->cfg->ingress_hostname,
		.lmtp = lmtp,
		.max_message_size = s->cfg->ingress_max_message_size,
		.max_recipients = s->cfg->ingress_max_recipients,
		.rcpt_ok = rcpt_ok,
		.rcpt_arg = s,
		.starttls = !lmtp && s->cfg->ingress_tls_ctx != NULL,
		.tls_required = !lmtp &&
			s->cfg->ingress_tls == CONFIG_TLS_ENCRYPT,
		.auth_check = s->cfg->ingress_auth_table != NULL ? auth_ok
			: NULL,
		.auth_arg = s,
		.auth_required = s->cfg->ingress_auth == CONFIG_AUTH_REQUIRED,
		.auth_plaintext = s->cfg->ingress_auth_plaintext,
		.storage_ok = storage_ok,
		.storage_arg = s,
		.forbid_unauth_pipelining = true,
	};
	s->smtp = smtp_session_new(&s->lim, s->addr, "unknown");
	buf_init(&s->out);
	s->bev = bufferevent_socket_new(in->base, fd, BEV_OPT_CLOSE_ON_FREE);
	s->next = in->sessions;
	if (in->sessions != NULL)
		in->sessions->prev = s;
	in->sessions = s;
	in->nsessions++;
	log_conn("connect", addr, lmtp ? "LMTP" : "SMTP");
	tv.tv_sec = s->cfg->ingress_idle_timeout;
	tv.tv_usec = 0;
	bufferevent_set_timeouts(s->bev, NULL, &tv);	/* reads: deadline */
	bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_MAX);
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	/* the timeout runs from the connect, through any greet_pause */
	s->deadline_ev = evtimer_new(in->base, on_deadline, s);
	deadline_update(s, true);
	if (s->cfg->ingress_greet_pause_ms == 0) {
		greet(-1, 0, s);
		return;
	}
	/* Until the timer fires, anything the client sends is fed to a
	 * session that has not greeted: 554 5.5.0 and close (an early
	 * talker, RELIABILITY.md H4). */
	tv.tv_sec = s->cfg->ingress_greet_pause_ms / 1000;
	tv.tv_usec = (s->cfg->ingress_greet_pause_ms % 1000) * 1000;
	s->greet_ev = evtimer_new(in->base, greet, s);
	evtimer_add(s->greet_ev, &tv);
}

/* Loop thread: the greet_pause is over (or there is none). */
static void
greet(evutil_socket_t fd, short what, void *arg)
{
	struct isession *s = arg;

	(void)fd;
	(void)what;
	if (s->closing)
		return;
	smtp_session_greeting(s->smtp, &s->out);
	deadline_update(s, true);
	session_flush(s);
}

static struct evconnlistener *
listen_on(struct ingress *in, const struct config_hostport *hp,
	  const char **error_r)
{
	static _Thread_local char err[512];
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	struct evconnlistener *l = NULL;
	int rc;

	rc = getaddrinfo(hp->host, hp->port, &hints, &res);
	if (rc != 0) {
		snprintf(err, sizeof(err), "cannot resolve listen address "
			 "%s:%s: %s", hp->host, hp->port, gai_strerror(rc));
		*error_r = err;
		return NULL;
	}
	l = evconnlistener_new_bind(in->base, on_accept, in,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
				    LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED,
				    128, res->ai_addr,
				    (int)res->ai_addrlen);
	if (l == NULL) {
		snprintf(err, sizeof(err), "cannot listen on %s:%s: %s",
			 hp->host, hp->port, strerror(errno));
		*error_r = err;
	}
	freeaddrinfo(res);
	return l;
}

struct ingress *
ingress_new(struct event_base *base, struct config *cfg,
	    const char **error_r)
{
	struct ingress *in = xcalloc(1, sizeof(*in));

	in->base = base;
	in->cfg = config_ref(cfg);
	in->done_tail = &in->done_head;
	pthread_mutex_init(&in->done_lock, NULL);
	in->done_ev = event_new(base, -1, 0, on_done, in);
	in->smtp_l = listen_on(in, &cfg->ingress_listen, error_r);
	if (in->smtp_l != NULL && cfg->ingress_lmtp_listen.host != NULL)
		in->lmtp_l = listen_on(in, &cfg->ingress_lmtp_listen,
				       error_r);
	if (in->smtp_l == NULL || (cfg->ingress_lmtp_listen.host != NULL &&
				   in->lmtp_l == NULL)) {
		ingress_free(&in);
		return NULL;
	}
	log_info("listening for SMTP on %s:%s%s%s%s%s",
		 cfg->ingress_listen.host, cfg->ingress_listen.port,
		 in->lmtp_l ? ", LMTP on " : "",
		 in->lmtp_l ? cfg->ingress_lmtp_listen.host : "",
		 in->lmtp_l ? ":" : "",
		 in->lmtp_l ? cfg->ingress_lmtp_listen.port : "");
	return in;
}

void
ingress_start(struct ingress *in, struct store *st,
	      struct worker_pool *pool)
{
	if (in->committer != NULL)
		panic("ingress: started twice");
	in->st = st;
	in->pool = pool;
	in->committer = ingress_commit_new(st, on_commit_done, in);
	evconnlistener_enable(in->smtp_l);
	if (in->lmtp_l != NULL)
		evconnlistener_enable(in->lmtp_l);
}

void
ingress_set_config(struct ingress *in, struct config *cfg)
{
	struct config *old = in->cfg;

	in->cfg = config_ref(cfg);
	config_unref(&old);
}

void
ingress_stop_accepting(struct ingress *in)
{
	if (in->smtp_l != NULL)
		evconnlistener_free(in->smtp_l);
	if (in->lmtp_l != NULL)
		evconnlistener_free(in->lmtp_l);
	in->smtp_l = NULL;
	in->lmtp_l = NULL;
}

size_t
ingress_sessions(const struct ingress *in)
{
	return in->nsessions;
}

/* Is a reply still in a session's bufferevent (TLS, or a socket that
 * took only part of it)? */
static bool
unflushed(const struct ingress *in)
{
	for (const struct isession *s = in->sessions; s != NULL; s = s->next)
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
			return true;
	return false;
}

/* Stopping, the loop no longer runs: run it in slices of 10 ms while a
 * reply is left to write, for at most 2 s (a client that reads nothing
 * gets nothing). Only the sessions' events are left on the base; they
 * read no input now (stopping). */
static void
flush_replies(struct ingress *in)
{
	for (int i = 0; i < 200 && unflushed(in); i++) {
		struct timeval tv = { .tv_usec = 10000 };

		event_base_loopexit(in->base, &tv);
		event_base_dispatch(in->base);
	}
}

void
ingress_free(struct ingress **inp)
{
	struct ingress *in = *inp;

	*inp = NULL;
	if (in == NULL)
		return;
	ingress_stop_accepting(in);
	/* A message whose commit is in flight is queued whatever happens
	 * now, so its session must get its reply before it is closed: a
	 * client that never sees the 250 sends the message again, and if
	 * it sends it to another instance, whose resubmission index does
	 * not know it, the foreign side gets it twice. So: no more input,
	 * every job pushed committed, every session answered, the replies
	 * written out; only then are the sessions closed. */
	in->stopping = true;
	for (struct isession *s = in->sessions; s != NULL; s = s->next)
		bufferevent_disable(s->bev, EV_READ);
	ingress_commit_stop(&in->committer);
	on_done(-1, 0, in);
	/* Every session still open is told why it ends (421, as a server
	 * that must shut down says it), after its last reply; one whose
	 * output is then all written is freed by session_flush(). */
	for (struct isession *s = in->sessions, *next; s != NULL; s = next) {
		next = s->next;
		if (!s->closing && !s->handshaking) {
			smtp_session_shutdown(s->smtp, &s->out);
			s->closing = true;
			session_flush(s);
		}
	}
	flush_replies(in);
	while (in->sessions != NULL) {
		struct isession *s = in->sessions;

		session_free(&s);
	}
	event_free(in->done_ev);
	pthread_mutex_destroy(&in->done_lock);
	config_unref(&in->cfg);
	free(in);
}
