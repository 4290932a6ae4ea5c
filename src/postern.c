/*
 * postern.c - the operator's tool: inspect the queue, replay, hold,
 * release, delete and resolve entries, audit the ledger, show statistics.
 *
 * Works on a store that a posternd is running on (LMDB allows several
 * processes; every change is one write transaction that re-checks each
 * entry) or on a stopped one. Exit codes: 0 ok, 1 audit found problems or
 * a named queue id does not exist, 2 usage, 3 store error (postern(1)).
 *
 * Owns:    everything it allocates; single-threaded.
 */
#include "admin_socket.h"
#include "config.h"
#include "ledger.h"
#include "ledger_json.h"
#include "fleet.h"
#include "queue.h"
#include "store.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

enum {
	EXIT_OK = 0,
	EXIT_PROBLEM = 1,
	EXIT_USAGE = 2,
	EXIT_STORE = 3,
};

struct ctx {
	const char *config_path;
	const char *store_path;		/* -s, overrides the config */
	struct config *cfg;
	struct store *st;
};

/* --- small helpers -------------------------------------------------------- */

static void
fmt_time(uint64_t us, char *buf, size_t cap)
{
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;

	if (us == 0 || localtime_r(&t, &tm) == NULL) {
		snprintf(buf, cap, "-");
		return;
	}
	strftime(buf, cap, "%a %b %e %H:%M:%S", &tm);
}

static void
fmt_age(uint64_t us, char *buf, size_t cap)
{
	uint64_t s = us / 1000000u;

	if (s < 120)
		snprintf(buf, cap, "%" PRIu64 "s", s);
	else if (s < 7200)
		snprintf(buf, cap, "%" PRIu64 "m", s / 60);
	else if (s < 172800)
		snprintf(buf, cap, "%" PRIu64 "h", s / 3600);
	else
		snprintf(buf, cap, "%" PRIu64 "d", s / 86400);
}

/* "90", "90s", "15m", "2h", "3d", "1w" -> microseconds. */
static int
parse_duration(const char *s, uint64_t *us_r)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s)
		return -1;
	switch (*end) {
	case '\0': case 's': mul = 1; break;
	case 'm': mul = 60; break;
	case 'h': mul = 3600; break;
	case 'd': mul = 86400; break;
	case 'w': mul = 7 * 86400; break;
	default: return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	*us_r = (uint64_t)v * mul * 1000000u;
	return 0;
}

/* A point in time: "2026-11-22", "2026-11-22T10:30:00" or with a space
 * (local time, or UTC with a trailing Z), "@EPOCH", or an age ("2h":
 * that long ago). */
static int
parse_when(const char *s, uint64_t now_us, uint64_t *us_r)
{
	struct tm tm;
	const char *end;
	uint64_t d;
	time_t t;

	if (*s == '@') {
		char *e;
		unsigned long long v = strtoull(s + 1, &e, 10);

		if (e == s + 1 || *e != '\0')
			return -1;
		*us_r = (uint64_t)v * 1000000u;
		return 0;
	}
	if (parse_duration(s, &d) == 0) {
		*us_r = now_us > d ? now_us - d : 0;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%d", &tm);
	if (end == NULL)
		return -1;
	if (*end == 'T' || *end == ' ')
		end = strptime(end + 1, "%H:%M:%S", &tm);
	if (end == NULL)
		return -1;
	if (strcmp(end, "Z") == 0) {
		t = timegm(&tm);
	} else if (*end == '\0') {
		tm.tm_isdst = -1;
		t = mktime(&tm);
	} else {
		return -1;
	}
	if (t == (time_t)-1)
		return -1;
	*us_r = (uint64_t)t * 1000000u;
	return 0;
}

static const char *
operator_name(void)
{
	static char buf[64];
	const char *sudo = getenv("SUDO_USER");
	struct passwd *pw;

	if (sudo != NULL && *sudo != '\0')
		return sudo;
	pw = getpwuid(getuid());
	if (pw != NULL)
		return pw->pw_name;
	snprintf(buf, sizeof(buf), "uid %lu", (unsigned long)getuid());
	return buf;
}

static int
parse_state(const char *name, enum store_state *s_r)
{
	static const struct { const char *name; enum store_state s; } t[] = {
		{ "pending", ST_PENDING }, { "active", ST_ACTIVE },
		{ "deferred", ST_DEFERRED }, { "held", ST_HELD },
		{ "hold", ST_HELD }, { "in-doubt", ST_INDOUBT },
		{ "indoubt", ST_INDOUBT },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcasecmp(name, t[i].name) == 0) {
			*s_r = t[i].s;
			return 0;
		}
	return -1;
}

/* --- progress on a terminal ------------------------------------------------- */

/* "verify: 1200000 of 3000000 (40%)" on stderr, redrawn at most ten
 * times a second, only when stderr is a terminal: quiet when piped. */
struct progress {
	const char *what;
	bool on;
	bool shown;
	uint64_t last_us;
};

static void
progress_init(struct progress *p, const char *what, bool allowed)
{
	memset(p, 0, sizeof(*p));
	p->what = what;
	p->on = allowed && isatty(STDERR_FILENO);
}

static void
progress_show(struct progress *p, uint64_t done, uint64_t total)
{
	uint64_t now = store_now_us();

	if (!p->on || now - p->last_us < 100000u)
		return;
	p->last_us = now;
	p->shown = true;
	if (total > 0)
		fprintf(stderr, "\r%s: %" PRIu64 " of %" PRIu64 " (%" PRIu64
			"%%)  ", p->what, done, total, done * 100 / total);
	else
		fprintf(stderr, "\r%s: %" PRIu64 "  ", p->what, done);
}

static void
progress_done(struct progress *p)
{
	if (p->shown)
		fprintf(stderr, "\r\033[K");
}

static void
verify_progress(uint64_t done, uint64_t total, void *arg)
{
	progress_show(arg, done, total);
}

/* --- store and config ----------------------------------------------------- */

/* Reading commands open the store read-only (mode STORE_OPEN_READONLY:
 * data.mdb stays byte for byte as it was); changing commands with
 * STORE_OPEN_EXISTING. Neither creates a store. */
static int
open_store(struct ctx *c, enum store_open_mode mode)
{
	struct store_settings set = { .mode = mode };
	const char *err = NULL, *path = c->config_path;
	struct stat sb;

	if (path == NULL && stat(CONFIG_DEFAULT_PATH, &sb) == 0)
		path = CONFIG_DEFAULT_PATH;
	if (config_load(path, &c->cfg, &err) < 0) {
		fprintf(stderr, "postern: %s\n", err);
		return EXIT_STORE;
	}
	if (c->store_path == NULL)
		c->store_path = c->cfg->store_path;
	set.map_size = c->cfg->store_map_size;
	set.map_max = c->cfg->store_map_max;
	set.backoff_min = c->cfg->queue_backoff_min;
	set.backoff_max = c->cfg->queue_backoff_max;
	set.max_lifetime = c->cfg->queue_max_lifetime;
	if (stat(c->store_path, &sb) < 0) {
		fprintf(stderr, "postern: no store at %s: %s (is [store] path "
			"right? use -c FILE or -s DIR)\n", c->store_path,
			strerror(errno));
		return EXIT_STORE;
	}
	if (store_open(c->store_path, &set, &c->st, &err) != STORE_OK) {
		fprintf(stderr, "postern: %s\n", err);
		return EXIT_STORE;
	}
	return EXIT_OK;
}

static int
store_error(const char *what, const char *err)
{
	fprintf(stderr, "postern: %s: %s\n", what, err);
	return EXIT_STORE;
}

/* --- filters from the command line ---------------------------------------- */

struct sel {
	struct queue_filter f;
	uint64_t *qids;
	bool all;		/* "ALL" named */
	bool any_filter;	/* a state or other filter option given */
};

enum {
	OPT_STATE = 256, OPT_DEAD, OPT_RCPT, OPT_DOMAIN, OPT_SENDER_DOMAIN,
	OPT_OLDER, OPT_EXPIRED, OPT_DEFERRED, OPT_HELD, OPT_INDOUBT,
	OPT_JSON, OPT_CSV, OPT_DRY, OPT_YES, OPT_REASON, OPT_BODY,
	OPT_DELIVERED, OPT_REDELIVER, OPT_SINCE, OPT_UNTIL, OPT_MSGID,
	OPT_QID, OPT_VERIFY, OPT_HELP, OPT_PENDING, OPT_LIMIT, OPT_FLEET,
	OPT_OUTPUT,
};

/* Handle a filter option; 1 handled, 0 not a filter option, -1 bad. */
static int
sel_option(struct sel *s, int opt, const char *arg)
{
	enum store_state st;
	char *copy, *tok, *save = NULL;

	switch (opt) {
	case OPT_STATE:
		copy = xstrdup(arg);
		for (tok = strtok_r(copy, ",", &save); tok != NULL;
		     tok = strtok_r(NULL, ",", &save)) {
			if (parse_state(tok, &st) < 0) {
				fprintf(stderr, "postern: --state %s: not a "
					"state (pending, active, deferred, "
					"held, in-doubt)\n", tok);
				free(copy);
				return -1;
			}
			s->f.states |= QUEUE_STATE_BIT(st);
		}
		free(copy);
		break;
	case OPT_PENDING:  s->f.states |= QUEUE_STATE_BIT(ST_PENDING); break;
	case OPT_DEFERRED: s->f.states |= QUEUE_STATE_BIT(ST_DEFERRED); break;
	case OPT_HELD:	   s->f.states |= QUEUE_STATE_BIT(ST_HELD); break;
	case OPT_INDOUBT:  s->f.states |= QUEUE_STATE_BIT(ST_INDOUBT); break;
	case OPT_EXPIRED:
		s->f.states |= QUEUE_STATE_BIT(ST_ACTIVE);
		s->f.expired = true;
		break;
	case OPT_DEAD:
		s->f.states |= QUEUE_STATE_BIT(ST_HELD);
		s->f.dead = true;
		break;
	case OPT_RCPT:		s->f.rcpt = arg; break;
	case OPT_DOMAIN:	s->f.rcpt_domain = arg; break;
	case OPT_SENDER_DOMAIN:	s->f.sender_domain = arg; break;
	case OPT_OLDER:
		if (parse_duration(arg, &s->f.older_than_us) < 0) {
			fprintf(stderr, "postern: --older-than %s: not a "
				"duration (e.g. 90s, 15m, 2h, 3d)\n", arg);
			return -1;
		}
		break;
	default:
		return 0;
	}
	s->any_filter = true;
	return 1;
}

/* The queue ids named after the options. */
static int
sel_ids(struct sel *s, int argc, char **argv)
{
	s->qids = xcalloc((size_t)argc + 1, sizeof(*s->qids));
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "ALL") == 0) {
			s->all = true;
			continue;
		}
		if (store_qid_parse(argv[i], &s->qids[s->f.nqids]) < 0) {
			fprintf(stderr, "postern: %s: not a queue id (16 hex "
				"digits, as postern queue shows them)\n",
				argv[i]);
			return -1;
		}
		s->f.nqids++;
	}
	if (s->all && s->f.nqids > 0) {
		fprintf(stderr, "postern: ALL and queue ids together\n");
		return -1;
	}
	s->f.qids = s->qids;
	return 0;
}

/* --- queue ------------------------------------------------------------------ */

struct listing {
	bool json;
	uint64_t now_us;
	uint64_t msgs, rcpts, bytes;
	struct store_nexthop nh;	/* why pending entries wait, if down */
};

/* Under a pending or deferred entry while the next hop is down, as
 * Postfix's queue listing shows the reason under each message. */
static bool
waits_for_nexthop(const struct listing *l, const struct queue_entry *e)
{
	return l->nh.down &&
	       (e->state == ST_PENDING || e->state == ST_DEFERRED);
}

static json_t *
nexthop_json(const struct listing *l)
{
	char t[64];
	json_t *o = json_object();

	fmt_iso(l->nh.since_us, t, sizeof(t));
	json_object_set_new(o, "reason", json_text(l->nh.reason));
	json_object_set_new(o, "down_since", json_text(t));
	json_object_set_new(o, "failing_seconds", json_integer(
		(json_int_t)((l->now_us > l->nh.since_us ?
			      l->now_us - l->nh.since_us : 0) / 1000000u)));
	return o;
}

static json_t *
entry_json(const struct queue_entry *e)
{
	char t[64];
	json_t *o = json_object();

	json_object_set_new(o, "index", json_integer(e->idx));
	json_object_set_new(o, "address", json_text(e->rcpt));
	json_object_set_new(o, "state", json_text(store_state_name(e->state)));
	json_object_set_new(o, "attempts", json_integer(e->attempts));
	if (e->state == ST_PENDING || e->state == ST_DEFERRED) {
		fmt_iso(e->next_try_us, t, sizeof(t));
		json_object_set_new(o, "next_try", json_text(t));
	}
	if (e->state == ST_ACTIVE) {
		fmt_iso(e->lease_until_us, t, sizeof(t));
		json_object_set_new(o, "lease_until", json_text(t));
		json_object_set_new(o, "worker", json_integer(e->owner_worker));
		json_object_set_new(o, "owner_alive",
				    json_boolean(e->owner_alive));
	}
	json_object_set_new(o, "dead_letter", json_boolean(e->dead));
	json_object_set_new(o, "may_have_been_sent", json_boolean(e->sending));
	json_object_set_new(o, "last_reply", json_text(e->reply));
	return o;
}

static json_t *
msg_json(const struct queue_msg *m)
{
	char q[STORE_QID_STRLEN], t[64];
	json_t *o = json_object();

	fmt_iso(m->accepted_us, t, sizeof(t));
	json_object_set_new(o, "queue_id", json_text(store_qid_str(m->qid,
								     q)));
	json_object_set_new(o, "size", json_integer(m->body_len));
	json_object_set_new(o, "arrival", json_text(t));
	json_object_set_new(o, "sender", json_text(m->sender));
	json_object_set_new(o, "message_id", json_text(m->msgid));
	json_object_set_new(o, "recipients_total", json_integer(m->nrcpt));
	json_object_set_new(o, "recipients_queued",
			    json_integer(m->remaining));
	return o;
}

static void
print_json_line(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);

	if (s != NULL) {
		puts(s);
		free(s);
	}
	json_decref(o);
}

static const char *
entry_label(const struct queue_entry *e, char *buf, size_t cap)
{
	if (e->dead)
		return "dead";
	if (e->state == ST_ACTIVE && !e->owner_alive)
		return "expired";
	snprintf(buf, cap, "%s", store_state_name(e->state));
	return buf;
}

static int
list_fn(const struct queue_msg *m, const struct queue_entry *e, size_t n,
	void *arg)
{
	struct listing *l = arg;
	char q[STORE_QID_STRLEN], t[64], lb[32];

	l->msgs++;
	l->rcpts += n;
	l->bytes += m->body_len;
	if (l->json) {
		json_t *o = msg_json(m), *a = json_array();

		for (size_t i = 0; i < n; i++) {
			json_t *eo = entry_json(&e[i]);

			if (waits_for_nexthop(l, &e[i]))
				json_object_set_new(eo, "next_hop_down",
						    nexthop_json(l));
			json_array_append_new(a, eo);
		}
		json_object_set_new(o, "recipients", a);
		print_json_line(o);
		return 0;
	}
	fmt_time(m->accepted_us, t, sizeof(t));
	printf("%-16s %8" PRIu32 " %-20s  %s\n", store_qid_str(m->qid, q),
	       m->body_len, t, m->sender[0] ? m->sender : "<>");
	for (size_t i = 0; i < n; i++) {
		char extra[128] = "";

		if (e[i].state == ST_DEFERRED) {
			fmt_time(e[i].next_try_us, t, sizeof(t));
			snprintf(extra, sizeof(extra), ", next try %s", t);
		} else if (e[i].state == ST_ACTIVE) {
			snprintf(extra, sizeof(extra), ", worker %u",
				 e[i].owner_worker);
		}
		printf("  %-9s %s  (attempts %" PRIu32 "%s)\n",
		       entry_label(&e[i], lb, sizeof(lb)), e[i].rcpt,
		       e[i].attempts, extra);
		if (e[i].reply[0] != '\0')
			printf("            last reply: %s\n", e[i].reply);
		if (waits_for_nexthop(l, &e[i])) {
			char age[32];

			fmt_age(l->now_us > l->nh.since_us ?
				l->now_us - l->nh.since_us : 0, age,
				sizeof(age));
			fmt_time(l->nh.since_us, t, sizeof(t));
			printf("            (next hop down for %s, since %s: "
			       "%s)\n", age, t, l->nh.reason);
		}
	}
	return 0;
}

static const struct option filter_opts[] = {
	{ "state", required_argument, NULL, OPT_STATE },
	{ "pending", no_argument, NULL, OPT_PENDING },
	{ "deferred", no_argument, NULL, OPT_DEFERRED },
	{ "held", no_argument, NULL, OPT_HELD },
	{ "in-doubt", no_argument, NULL, OPT_INDOUBT },
	{ "expired", no_argument, NULL, OPT_EXPIRED },
	{ "dead", no_argument, NULL, OPT_DEAD },
	{ "rcpt", required_argument, NULL, OPT_RCPT },
	{ "domain", required_argument, NULL, OPT_DOMAIN },
	{ "sender-domain", required_argument, NULL, OPT_SENDER_DOMAIN },
	{ "older-than", required_argument, NULL, OPT_OLDER },
};
#define N_FILTER_OPTS (sizeof(filter_opts) / sizeof(filter_opts[0]))

/* filter_opts followed by the command's own, NULL-terminated. */
static struct option *
opts_with_filters(const struct option *own, size_t n_own)
{
	struct option *o = xcalloc(N_FILTER_OPTS + n_own + 2, sizeof(*o));

	memcpy(o, filter_opts, sizeof(filter_opts));
	memcpy(o + N_FILTER_OPTS, own, n_own * sizeof(*own));
	o[N_FILTER_OPTS + n_own] = (struct option){ "help", no_argument,
						    NULL, OPT_HELP };
	return o;
}

static const char filter_help[] =
	"  --state S[,S]         pending, active, deferred, held, in-doubt\n"
	"  --pending --deferred --held --in-doubt\n"
	"                        the same, one state each\n"
	"  --expired             active entries whose owner died or whose\n"
	"                        lease ran out\n"
	"  --dead                dead letters (held after max attempts)\n"
	"  --rcpt TEXT           recipient contains TEXT\n"
	"  --domain DOMAIN       recipient domain is DOMAIN\n"
	"  --sender-domain DOMAIN\n"
	"  --older-than AGE      accepted at least AGE ago (90s, 15m, 2h, 3d)\n";

static int
cmd_queue(struct ctx *c, int argc, char **argv)
{
	static const struct option own[] = {
		{ "json", no_argument, NULL, OPT_JSON },
	};
	struct option *opts = opts_with_filters(own, 1);
	struct listing l = { .now_us = store_now_us() };
	struct sel s = { 0 };
	const char *err = NULL;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if ((rc = sel_option(&s, opt, optarg)) < 0)
			goto usage;
		if (rc == 1)
			continue;
		if (opt == OPT_JSON) {
			l.json = true;
		} else if (opt == OPT_HELP) {
			printf("usage: postern queue [FILTER...] [--json] "
			       "[QUEUE-ID...]\nList the queue, like mailq.\n"
			       "%s  --json                one JSON object per "
			       "message per line\n", filter_help);
			free(opts);
			return EXIT_OK;
		} else {
			goto usage;
		}
	}
	free(opts);
	opts = NULL;
	if (sel_ids(&s, argc - optind, argv + optind) < 0)
		goto usage;
	if ((rc = open_store(c, STORE_OPEN_READONLY)) != EXIT_OK)
		goto out;
	if (store_nexthop_get(c->st, &l.nh, &err) != STORE_OK) {
		rc = store_error("queue", err);
		goto out;
	}
	if (queue_foreach(c->st, &s.f, l.now_us, list_fn, &l, &err) !=
	    STORE_OK) {
		rc = store_error("queue", err);
		goto out;
	}
	if (!l.json) {
		if (l.msgs == 0)
			printf("Mail queue is empty\n");
		else
			printf("-- %" PRIu64 " Kbytes in %" PRIu64 " Request%s, "
			       "%" PRIu64 " Recipient%s.\n",
			       (l.bytes + 1023) / 1024, l.msgs,
			       l.msgs == 1 ? "" : "s", l.rcpts,
			       l.rcpts == 1 ? "" : "s");
	}
	rc = EXIT_OK;
out:
	free(s.qids);
	return rc;
usage:
	free(opts);
	free(s.qids);
	fprintf(stderr, "postern queue: see postern queue --help\n");
	return EXIT_USAGE;
}

/* --- show ---------------------------------------------------------------------- */

/* The entries of the message shown that came again (at most
 * SHOW_RESUB_MAX, in recipient order). */
#define SHOW_RESUB_MAX 64

/* What postern show reads of one message, all of it before it prints
 * anything. Every pointer is owned (show_free()). */
struct show {
	const char *id;			/* borrowed: as the user typed it */
	uint64_t qid;
	bool found;			/* still queued: msg, e and raw */
	struct queue_msg msg;
	struct queue_entry *e;
	size_t n;
	struct queue_event *ev;
	size_t nev;
	struct store_resubmit_info rs[SHOW_RESUB_MAX];
	size_t nrs;
	struct ledger_rec *rec;
	size_t nrec;
	void *raw;			/* the message as stored */
	size_t len;
};

static void
show_free(struct show *s)
{
	free(s->e);
	free(s->ev);
	free(s->rec);
	free(s->raw);
	s->e = NULL;
	s->ev = NULL;
	s->rec = NULL;
	s->raw = NULL;
}

static int
show_fn(const struct queue_msg *m, const struct queue_entry *e, size_t n,
	void *arg)
{
	struct show *s = arg;

	s->found = true;
	s->msg = *m;
	s->e = xmemdup(e, n * sizeof(*e));
	s->n = n;
	return 0;
}

static int
show_ledger_fn(const struct ledger_rec *r, void *arg)
{
	struct show *s = arg;

	s->rec = xrealloc(s->rec, (s->nrec + 1) * sizeof(*s->rec));
	s->rec[s->nrec++] = *r;
	return 0;
}

static int
show_resub_fn(const struct store_resubmit_info *ri, void *arg)
{
	struct show *s = arg;

	s->rs[s->nrs++] = *ri;
	return s->nrs == SHOW_RESUB_MAX;
}

/* Read everything postern show prints of s->qid into s. Returns
 * STORE_OK or a store_rc with *error_r. */
static int
show_read(struct store *st, struct show *s, const char **error_r)
{
	struct queue_filter f = { .qids = &s->qid, .nqids = 1 };
	int rc;

	if ((rc = queue_foreach(st, &f, store_now_us(), show_fn, s,
				error_r)) != STORE_OK ||
	    (rc = queue_history(st, s->qid, &s->ev, &s->nev,
				error_r)) != STORE_OK ||
	    (rc = store_resubmit_foreach_qid(st, s->qid, show_resub_fn, s,
					     error_r)) != STORE_OK ||
	    (rc = ledger_foreach_qid(st, s->qid, show_ledger_fn, s,
				     error_r)) != STORE_OK)
		return rc;
	rc = s->found ? store_body_get(st, s->qid, &s->raw, &s->len,
				       error_r) : 0;
	return rc < 0 ? rc : STORE_OK;
}

static void
print_headers(const char *body, size_t len)
{
	size_t i = 0;

	/* Up to the first empty line; CRLF shown as the terminal's LF. */
	while (i < len) {
		const char *nl = memchr(body + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - body) : len;
		size_t l = end - i;

		if (l > 0 && body[i + l - 1] == '\r')
			l--;
		if (l == 0)
			break;
		printf("  %.*s\n", (int)l, body + i);
		i = end + 1;
	}
}

static void
show_text_envelope(const struct show *s)
{
	const struct queue_msg *m = &s->msg;
	const struct queue_entry *e = s->e;
	char q[STORE_QID_STRLEN], t[64], lb[32];

	fmt_time(m->accepted_us, t, sizeof(t));
	printf("queue id:    %s\n", store_qid_str(m->qid, q));
	printf("arrival:     %s\n", t);
	printf("size:        %" PRIu32 " bytes\n", m->body_len);
	printf("sender:      %s\n", m->sender[0] ? m->sender : "<>");
	printf("message-id:  %s\n", m->msgid[0] ? m->msgid : "-");
	printf("recipients:  %" PRIu32 " (%" PRIu32 " still queued)\n",
	       m->nrcpt, m->remaining);
	for (size_t i = 0; i < s->n; i++) {
		printf("  [%u] %-9s %s  attempts %" PRIu32, e[i].idx,
		       entry_label(&e[i], lb, sizeof(lb)), e[i].rcpt,
		       e[i].attempts);
		if (e[i].state == ST_PENDING || e[i].state == ST_DEFERRED) {
			fmt_time(e[i].next_try_us, t, sizeof(t));
			printf(", due %s", t);
		}
		if (e[i].sending)
			printf(", may have been handed over");
		putchar('\n');
		if (e[i].reply[0] != '\0')
			printf("      last reply: %s\n", e[i].reply);
	}
}

static void
show_text_history(const struct show *s)
{
	if (s->nev > 0 || s->nrs > 0)
		printf("history:\n");
	for (size_t i = 0; i < s->nev; i++) {
		const struct queue_event *ev = &s->ev[i];
		char t[64];

		fmt_time(ev->at_us, t, sizeof(t));
		printf("  [%u] %s  %s -> %s  %s\n", ev->idx, t,
		       store_state_name(ev->from), store_state_name(ev->to),
		       ev->note);
	}
	for (size_t i = 0; i < s->nrs; i++) {
		const struct store_resubmit_info *ri = &s->rs[i];
		char t[64], f[64];

		fmt_time(ri->last_us, t, sizeof(t));
		fmt_time(ri->first_us, f, sizeof(f));
		printf("  [%u] %s  resubmitted %u time%s since it was queued "
		       "at %s, not queued again\n", ri->idx, t, ri->count,
		       ri->count == 1 ? "" : "s", f);
	}
}

static void
show_text_ledger(const struct show *s)
{
	if (s->nrec > 0 && !s->found)
		printf("queue id:    %s (no longer queued)\n", s->id);
	if (s->nrec > 0)
		printf("ledger:\n");
	for (size_t i = 0; i < s->nrec; i++) {
		const struct ledger_rec *r = &s->rec[i];
		char t[64];

		fmt_time(r->done_us, t, sizeof(t));
		printf("  [%u] %-9s %s  %s  record %" PRIu64 "\n      %s\n",
		       r->idx, ledger_kind_name(r->kind), r->rcpt, t, r->seq,
		       r->reply);
	}
}

/* postern show as text: envelope, history, ledger, then the headers
 * (or with body the whole message). */
static int
show_text(const struct show *s, bool body)
{
	if (s->found)
		show_text_envelope(s);
	show_text_history(s);
	show_text_ledger(s);
	if (s->raw != NULL && !body) {
		printf("headers:\n");
		print_headers(s->raw, s->len);
	} else if (s->raw != NULL) {
		printf("message:\n");
		fflush(stdout);
		if (fwrite(s->raw, 1, s->len, stdout) != s->len) {
			fprintf(stderr, "postern show: cannot write the "
				"message: %s\n", strerror(errno));
			return EXIT_STORE;
		}
	}
	return EXIT_OK;
}

static json_t *
show_json_history(const struct show *s)
{
	json_t *h = json_array();

	for (size_t i = 0; i < s->nev; i++) {
		const struct queue_event *ev = &s->ev[i];
		json_t *e = json_object();
		char t[64];

		fmt_iso(ev->at_us, t, sizeof(t));
		json_object_set_new(e, "index", json_integer(ev->idx));
		json_object_set_new(e, "at", json_text(t));
		json_object_set_new(e, "from",
				    json_text(store_state_name(ev->from)));
		json_object_set_new(e, "to",
				    json_text(store_state_name(ev->to)));
		json_object_set_new(e, "note", json_text(ev->note));
		json_array_append_new(h, e);
	}
	return h;
}

static json_t *
show_json_resubmissions(const struct show *s)
{
	json_t *h = json_array();

	for (size_t i = 0; i < s->nrs; i++) {
		const struct store_resubmit_info *ri = &s->rs[i];
		json_t *e = json_object();
		char t[64];

		json_object_set_new(e, "index", json_integer(ri->idx));
		json_object_set_new(e, "count", json_integer(ri->count));
		fmt_iso(ri->first_us, t, sizeof(t));
		json_object_set_new(e, "queued", json_text(t));
		fmt_iso(ri->last_us, t, sizeof(t));
		json_object_set_new(e, "last", json_text(t));
		json_array_append_new(h, e);
	}
	return h;
}

/* The message as stored into o: as a string, or (not UTF-8: 8-bit
 * mail) base64. */
static void
show_json_body(json_t *o, const void *raw, size_t len)
{
	json_t *b = json_stringn(raw, len);
	char *enc;

	if (b != NULL) {
		json_object_set_new(o, "body", b);
		return;
	}
	enc = xmalloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)enc, raw, (int)len);
	json_object_set_new(o, "body_base64", json_text(enc));
	free(enc);
}

/* postern show --json: one line, one object. */
static int
show_json(const struct show *s, bool body)
{
	json_t *o, *a;
	char q[STORE_QID_STRLEN];

	if (s->found) {
		o = msg_json(&s->msg);
		a = json_array();
		for (size_t i = 0; i < s->n; i++)
			json_array_append_new(a, entry_json(&s->e[i]));
		json_object_set_new(o, "recipients", a);
	} else {
		o = json_object();
		json_object_set_new(o, "queue_id",
				    json_text(store_qid_str(s->qid, q)));
	}
	json_object_set_new(o, "history", show_json_history(s));
	json_object_set_new(o, "resubmissions", show_json_resubmissions(s));
	a = json_array();
	for (size_t i = 0; i < s->nrec; i++)
		json_array_append_new(a, ledger_json(&s->rec[i]));
	json_object_set_new(o, "ledger", a);
	if (s->raw != NULL && body)
		show_json_body(o, s->raw, s->len);
	print_json_line(o);
	return EXIT_OK;
}

static int
cmd_show(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "body", no_argument, NULL, OPT_BODY },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct show s = { 0 };
	bool body = false, json = false;
	const char *err = NULL;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == OPT_BODY) {
			body = true;
		} else if (opt == OPT_JSON) {
			json = true;
		} else if (opt == OPT_HELP) {
			printf("usage: postern show [--body] [--json] QUEUE-ID\n"
			       "Envelope, recipients with their state, the "
			       "history of each, ledger records,\nand the "
			       "headers; --body prints the whole message as "
			       "stored.\n");
			return EXIT_OK;
		} else {
			goto usage;
		}
	}
	if (argc - optind != 1)
		goto usage;
	s.id = argv[optind];
	if (store_qid_parse(s.id, &s.qid) < 0) {
		fprintf(stderr, "postern show: %s: not a queue id (16 hex "
			"digits)\n", s.id);
		return EXIT_USAGE;
	}
	if ((rc = open_store(c, STORE_OPEN_READONLY)) != EXIT_OK)
		return rc;
	if (show_read(c->st, &s, &err) != STORE_OK) {
		rc = store_error("show", err);
		goto out;
	}
	if (!s.found && s.nrec == 0) {
		fprintf(stderr, "postern show: %s: no such message in the "
			"queue or the ledger\n", s.id);
		rc = EXIT_PROBLEM;
		goto out;
	}
	rc = json ? show_json(&s, body) : show_text(&s, body);
out:
	show_free(&s);
	return rc;
usage:
	fprintf(stderr, "usage: postern show [--body] [--json] QUEUE-ID\n");
	return EXIT_USAGE;
}

/* --- the changes: replay, hold, release, delete, resolve ------------------ */

struct change_out {
	bool json;
	bool dry;
	size_t missing;		/* named ids that do not exist */
	size_t seen;
	struct progress pg;
	const struct queue_op_args *a;	/* borrowed: cmd_change's, for the
					   mail log */
};

/* An operator's change in the mail log, as Postfix logs postsuper's:
 * syslog, facility mail, as SYSLOG_NAME/admin, one line per entry
 * changed, with the queue id first, the recipient, the operation, who
 * and why. Only what was committed is logged (queue_change reports a
 * batch after its commit). */
static void
log_change(const struct change_out *o, const struct queue_change *ch)
{
	char q[STORE_QID_STRLEN], reason[600] = "";
	size_t n = 0;

	if (o->dry || !ch->applied || ch->idx == UINT32_MAX)
		return;
	/* reason="...", with " and \ escaped; cmd_change refused control
	 * characters in it, and a recipient in the store has none. */
	if (o->a->reason != NULL) {
		n = (size_t)snprintf(reason, sizeof(reason), ", reason=\"");
		for (const char *r = o->a->reason; *r != '\0' &&
		     n + 4 < sizeof(reason); r++) {
			if (*r == '"' || *r == '\\')
				reason[n++] = '\\';
			reason[n++] = *r;
		}
		reason[n++] = '"';
		reason[n] = '\0';
	}
	syslog(LOG_MAIL | LOG_INFO, "%s: to=<%s>, %s by %s%s: %s",
	       store_qid_str(ch->qid, q), ch->rcpt, queue_op_name(o->a->op),
	       o->a->who, reason, ch->why);
}

static void
change_report(const struct queue_change *ch, void *arg)
{
	struct change_out *o = arg;
	char q[STORE_QID_STRLEN];

	log_change(o, ch);
	if (ch->idx == UINT32_MAX)
		o->missing++;
	/* Each entry is listed on stdout; a terminal on stderr also gets
	 * the count while stdout goes to a file or a pager. */
	progress_show(&o->pg, ++o->seen, 0);
	if (o->json) {
		json_t *j = json_object();

		json_object_set_new(j, "queue_id",
				    json_text(store_qid_str(ch->qid, q)));
		if (ch->idx != UINT32_MAX) {
			json_object_set_new(j, "index", json_integer(ch->idx));
			json_object_set_new(j, "recipient",
					    json_text(ch->rcpt));
		}
		json_object_set_new(j, o->dry ? "would_change" : "changed",
				    json_boolean(ch->applied));
		if (ch->ledger_seq != 0)
			json_object_set_new(j, "ledger_seq", json_integer(
				(json_int_t)ch->ledger_seq));
		json_object_set_new(j, "what", json_text(ch->why));
		print_json_line(j);
		return;
	}
	if (ch->idx == UINT32_MAX)
		printf("%s: %s\n", store_qid_str(ch->qid, q), ch->why);
	else
		printf("%s: to=<%s>: %s%s\n", store_qid_str(ch->qid, q),
		       ch->rcpt, o->dry && ch->applied ? "would do: " :
		       ch->applied ? "" : "skipped: ", ch->why);
}

static void
wake_daemon(struct ctx *c, bool quiet)
{
	char reply[128];

	if (admin_socket_request(c->store_path, "wake", reply, sizeof(reply),
				 2000) == 0 && strcmp(reply, "ok") == 0) {
		if (!quiet)
			fprintf(stderr, "postern: posternd woken; it starts "
				"on these entries now\n");
		return;
	}
	if (errno == ENOENT || errno == ECONNREFUSED) {
		if (!quiet)
			fprintf(stderr, "postern: no posternd is running on "
				"%s; the entries go when it starts\n",
				c->store_path);
		return;
	}
	fprintf(stderr, "postern: could not wake posternd (%s): the "
		"entries go at its next queue scan\n", strerror(errno));
}

/* op 0: resolve, which takes --delivered or --redeliver. */
static int
cmd_change(struct ctx *c, const char *name, enum queue_op op, int argc,
	   char **argv)
{
	static const struct option own[] = {
		{ "dry-run", no_argument, NULL, OPT_DRY },
		{ "yes", no_argument, NULL, OPT_YES },
		{ "reason", required_argument, NULL, OPT_REASON },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "delivered", no_argument, NULL, OPT_DELIVERED },
		{ "redeliver", no_argument, NULL, OPT_REDELIVER },
	};
	struct option *opts = opts_with_filters(own, 6);
	struct queue_op_args a = { .op = op, .who = operator_name() };
	struct change_out out = { 0 };
	static char ident[80];	/* openlog() keeps the pointer */
	const char *err = NULL;
	struct sel s = { 0 };
	bool yes = false, resolve = op == 0;
	size_t applied = 0, skipped = 0;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if ((rc = sel_option(&s, opt, optarg)) < 0)
			goto usage;
		if (rc == 1)
			continue;
		switch (opt) {
		case OPT_DRY: a.dry_run = true; break;
		case OPT_YES: yes = true; break;
		case OPT_REASON:
			/* It goes into the ledger and the mail log as one
			 * line: no control characters. */
			for (const char *r = optarg; *r != '\0'; r++)
				if ((unsigned char)*r < 0x20 || *r == 0x7f) {
					fprintf(stderr, "postern %s: --reason: "
						"control characters (a newline, "
						"a tab) are not allowed\n",
						name);
					goto usage_quiet;
				}
			a.reason = optarg;
			break;
		case OPT_JSON: out.json = true; break;
		case OPT_DELIVERED:
		case OPT_REDELIVER:
			if (!resolve)
				goto usage;
			if (a.op != 0 && a.op != (opt == OPT_DELIVERED ?
			    QUEUE_RESOLVE_DELIVERED : QUEUE_RESOLVE_REDELIVER)) {
				fprintf(stderr, "postern resolve: "
					"--delivered or --redeliver, not "
					"both\n");
				goto usage_quiet;
			}
			a.op = opt == OPT_DELIVERED ? QUEUE_RESOLVE_DELIVERED :
			       QUEUE_RESOLVE_REDELIVER;
			break;
		case OPT_HELP:
			printf("usage: postern %s [FILTER...] [--dry-run] "
			       "[--reason TEXT] [--json]%s%s QUEUE-ID...|ALL\n"
			       "%s"
			       "  --dry-run             say what would be done, "
			       "change nothing\n"
			       "  --reason TEXT         recorded with the "
			       "change (history, ledger)\n",
			       name, resolve ? " --delivered|--redeliver" : "",
			       op == QUEUE_DELETE ? " --yes" : "", filter_help);
			free(opts);
			return EXIT_OK;
		default:
			goto usage;
		}
	}
	free(opts);
	opts = NULL;
	if (resolve) {
		if (a.op == 0) {
			fprintf(stderr, "postern resolve: say what happened: "
				"--delivered (it arrived) or --redeliver "
				"(send it again)\n");
			goto usage_quiet;
		}
		s.f.states |= QUEUE_STATE_BIT(ST_INDOUBT);
	}
	if (sel_ids(&s, argc - optind, argv + optind) < 0)
		goto usage_quiet;
	if (s.f.nqids == 0 && !s.all && !s.any_filter) {
		fprintf(stderr, "postern %s: name queue ids, ALL, or a filter "
			"(e.g. --deferred); see postern %s --help\n", name,
			name);
		goto usage_quiet;
	}
	/* ALL or a filter without a state: the states the change is for
	 * (replay --older-than 2h means the stuck ones, not the pending). */
	if (s.f.states == 0 && s.f.nqids == 0) {
		if (a.op == QUEUE_REPLAY)
			s.f.states = QUEUE_STATE_BIT(ST_DEFERRED);
		else if (a.op == QUEUE_HOLD)
			s.f.states = QUEUE_STATE_BIT(ST_PENDING) |
				     QUEUE_STATE_BIT(ST_DEFERRED);
		else if (a.op == QUEUE_RELEASE)
			s.f.states = QUEUE_STATE_BIT(ST_HELD);
	}
	if (a.op == QUEUE_DELETE && !yes && !a.dry_run) {
		fprintf(stderr, "postern delete: deleting mail cannot be "
			"undone; run with --dry-run to see what would go, and "
			"with --yes to delete\n");
		free(s.qids);
		return EXIT_USAGE;
	}
	out.dry = a.dry_run;
	out.a = &a;
	progress_init(&out.pg, name, !out.json && !isatty(STDOUT_FILENO));
	if ((rc = open_store(c, STORE_OPEN_EXISTING)) != EXIT_OK)
		goto out;
	if (!a.dry_run) {
		snprintf(ident, sizeof(ident), "%s/admin",
			 c->cfg->log_syslog_name);
		openlog(ident, LOG_PID, LOG_MAIL);
	}
	rc = queue_change(c->st, &a, &s.f, change_report, &out, &applied,
			  &skipped, &err);
	progress_done(&out.pg);
	if (rc != STORE_OK) {
		rc = store_error(name, err);
		goto out;
	}
	if (!out.json)
		fprintf(stderr, "postern %s: %zu entr%s %s, %zu skipped\n",
			name, applied, applied == 1 ? "y" : "ies",
			a.dry_run ? "would change" : "changed", skipped);
	if (!a.dry_run && applied > 0 &&
	    (a.op == QUEUE_REPLAY || a.op == QUEUE_RELEASE ||
	     a.op == QUEUE_RESOLVE_REDELIVER))
		wake_daemon(c, out.json);
	rc = out.missing > 0 ? EXIT_PROBLEM : EXIT_OK;
out:
	free(s.qids);
	return rc;
usage:
	fprintf(stderr, "postern %s: see postern %s --help\n", name, name);
usage_quiet:
	free(opts);
	free(s.qids);
	return EXIT_USAGE;
}

/* --- audit ---------------------------------------------------------------------- */

struct audit {
	uint64_t since_us, until_us;
	const char *rcpt;
	const char *msgid;
	uint64_t qid;
	bool has_qid;
	enum { FMT_TEXT, FMT_JSON, FMT_CSV } fmt;
	uint64_t shown;
};

static void
csv_field(const char *s, bool last)
{
	if (strpbrk(s, ",\"\r\n") == NULL) {
		fputs(s, stdout);
	} else {
		putchar('"');
		for (; *s != '\0'; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
		putchar('"');
	}
	fputs(last ? "\r\n" : ",", stdout);
}

static int
audit_fn(const struct ledger_rec *r, void *arg)
{
	struct audit *a = arg;
	char q[STORE_QID_STRLEN], t1[64], t2[64], h[65], num[32];

	if (a->since_us != 0 && r->done_us < a->since_us)
		return 0;
	if (a->until_us != 0 && r->done_us >= a->until_us)
		return 0;
	if (a->has_qid && r->qid != a->qid)
		return 0;
	if (a->rcpt != NULL && strcasecmp(r->rcpt, a->rcpt) != 0)
		return 0;
	if (a->msgid != NULL && strcmp(r->msgid, a->msgid) != 0)
		return 0;
	a->shown++;
	switch (a->fmt) {
	case FMT_JSON:
		print_json_line(ledger_json(r));
		break;
	case FMT_CSV:
		fmt_iso(r->accepted_us, t1, sizeof(t1));
		fmt_iso(r->done_us, t2, sizeof(t2));
		snprintf(num, sizeof(num), "%" PRIu64, r->seq);
		csv_field(num, false);
		csv_field(ledger_kind_name(r->kind), false);
		csv_field(store_qid_str(r->qid, q), false);
		snprintf(num, sizeof(num), "%u", r->idx);
		csv_field(num, false);
		csv_field(r->rcpt, false);
		csv_field(r->msgid, false);
		csv_field(t1, false);
		csv_field(t2, false);
		csv_field(ledger_hex(r->body_sha, h), false);
		csv_field(r->reply, false);
		csv_field(ledger_hex(r->received_sha, h), true);
		break;
	case FMT_TEXT:
		fmt_iso(r->done_us, t2, sizeof(t2));
		printf("%8" PRIu64 " %s %-9s %s to=<%s> msgid=%s (%s)\n",
		       r->seq, t2, ledger_kind_name(r->kind),
		       store_qid_str(r->qid, q), r->rcpt,
		       r->msgid[0] ? r->msgid : "-", r->reply);
		break;
	}
	return 0;
}

/* The hooks of audit --verify: progress on a terminal, and in JSON each
 * problem as an object of the "problem_list" array. */
struct verify_ui {
	struct progress pg;
	json_t *problems;	/* NULL: text output; owned until it is set
				   into the summary object */
};

static void
verify_ui_progress(uint64_t done, uint64_t total, void *arg)
{
	struct verify_ui *ui = arg;

	verify_progress(done, total, &ui->pg);
}

static void
verify_ui_problem(const char *kind, uint64_t record, const char *text,
		  void *arg)
{
	struct verify_ui *ui = arg;
	json_t *o;

	if (ui->problems == NULL)
		return;
	o = json_object();
	json_object_set_new(o, "kind", json_text(kind));
	json_object_set_new(o, "record", record != 0 ?
			    json_integer((json_int_t)record) : json_null());
	json_object_set_new(o, "text", json_text(text));
	json_array_append_new(ui->problems, o);
}

static int
audit_verify(struct ctx *c, bool json)
{
	struct verify_report vr;
	struct verify_ui ui = { .problems = json ? json_array() : NULL };
	struct verify_hooks hooks = { verify_ui_progress, verify_ui_problem,
				      &ui };
	struct timespec t0, t1;
	const char *err = NULL;
	double secs;
	int rc;

	progress_init(&ui.pg, "verify", !json);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = ledger_verify_hooks(c->st, json ? NULL : stdout, &vr, &hooks,
				 &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	progress_done(&ui.pg);
	if (rc < 0) {
		json_decref(ui.problems);
		return store_error("audit --verify", err);
	}
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (json) {
		json_t *o = json_object();

		json_object_set_new(o, "sound", json_boolean(rc == 0));
		json_object_set_new(o, "problems",
				    json_integer((json_int_t)vr.problems));
		json_object_set_new(o, "records",
				    json_integer((json_int_t)vr.records));
		json_object_set_new(o, "accepted", json_integer(
			(json_int_t)vr.stored.accepted));
		json_object_set_new(o, "delivered", json_integer(
			(json_int_t)vr.counted.delivered));
		json_object_set_new(o, "bounced", json_integer(
			(json_int_t)vr.counted.bounced));
		json_object_set_new(o, "deleted", json_integer(
			(json_int_t)vr.counted.deleted));
		json_object_set_new(o, "in_doubt", json_integer(
			(json_int_t)vr.counted.indoubt));
		json_object_set_new(o, "seconds", json_real(secs));
		json_object_set_new(o, "problem_list", ui.problems);
		print_json_line(o);
		return rc == 0 ? EXIT_OK : EXIT_PROBLEM;
	}
	printf("ledger: %" PRIu64 " records; delivered %" PRIu64 ", bounced %"
	       PRIu64 ", deleted %" PRIu64 "\n", vr.records,
	       vr.counted.delivered, vr.counted.bounced, vr.counted.deleted);
	printf("queue: pending %" PRIu64 ", active %" PRIu64 ", deferred %"
	       PRIu64 ", held %" PRIu64 ", in-doubt %" PRIu64 "\n",
	       vr.counted.pending, vr.counted.active, vr.counted.deferred,
	       vr.counted.held, vr.counted.indoubt);
	printf("conservation: accepted %" PRIu64 ", accounted for %" PRIu64
	       "\n", vr.stored.accepted, vr.counted.accepted);
	printf("verify: %s (%" PRIu64 " problem%s) in %.2f s\n",
	       rc == 0 ? "sound" : "FAILED", vr.problems,
	       vr.problems == 1 ? "" : "s", secs);
	return rc == 0 ? EXIT_OK : EXIT_PROBLEM;
}

/* audit --verify --fleet: the exports of several instances. */
static int
audit_fleet(char *const *paths, size_t n)
{
	struct fleet_report r;
	const char *err = NULL;
	int rc = fleet_verify(paths, n, stdout, &r, &err);

	if (rc < 0) {
		fprintf(stderr, "postern audit: %s\n", err);
		return EXIT_STORE;
	}
	printf("fleet: %" PRIu64 " export%s of %" PRIu64 " instance%s, %"
	       PRIu64 " records: %" PRIu64 " delivered, %" PRIu64
	       " resubmission%s recognised\n", r.exports,
	       r.exports == 1 ? "" : "s", r.instances,
	       r.instances == 1 ? "" : "s", r.records, r.delivered,
	       r.resubmissions, r.resubmissions == 1 ? "" : "s");
	printf("fleet: %s (%" PRIu64 " problem%s, %" PRIu64 " delivered more "
	       "than once)\n", rc == 0 ? "sound" : "NOT SOUND", r.problems,
	       r.problems == 1 ? "" : "s", r.twice);
	return rc == 0 ? EXIT_OK : EXIT_PROBLEM;
}

/* --- ledger export ---------------------------------------------------------- */

static int
cmd_ledger(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "output", required_argument, NULL, OPT_OUTPUT },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const char *out = NULL, *err = NULL;
	uint64_t since = 1, n = 0;
	char *end;
	FILE *f = stdout;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		if (opt == OPT_SINCE) {
			errno = 0;
			since = strtoull(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || since == 0 ||
			    optarg[0] == '-') {
				fprintf(stderr, "postern ledger: --since %s: "
					"not a record number (1, 2, ...)\n",
					optarg);
				return EXIT_USAGE;
			}
		} else if (opt == OPT_OUTPUT || opt == 'o') {
			out = optarg;
		} else if (opt == OPT_HELP) {
			printf("usage: postern ledger export [--since N] "
			       "[-o FILE]\nThe ledger from record N on as "
			       "JSON lines (each record with its raw bytes "
			       "and\nchain hashes), then the head; postern "
			       "audit --verify --fleet checks them.\n");
			return EXIT_OK;
		} else {
			goto usage;
		}
	}
	if (argc - optind != 1 || strcmp(argv[optind], "export") != 0)
		goto usage;
	if ((rc = open_store(c, STORE_OPEN_READONLY)) != EXIT_OK)
		return rc;
	if (out != NULL && (f = fopen(out, "w")) == NULL) {
		fprintf(stderr, "postern ledger: %s: %s\n", out,
			strerror(errno));
		return EXIT_STORE;
	}
	rc = fleet_export(c->st, since, f, &n, &err);
	if (f != stdout && fclose(f) != 0 && rc == STORE_OK) {
		rc = STORE_ERR;
		err = strerror(errno);
	}
	if (rc != STORE_OK)
		return store_error("ledger export", err);
	if (out != NULL)
		fprintf(stderr, "postern ledger: %" PRIu64 " record%s from %"
			PRIu64 " written to %s\n", n, n == 1 ? "" : "s", since,
			out);
	return EXIT_OK;
usage:
	fprintf(stderr, "usage: postern ledger export [--since N] "
		"[-o FILE]\n");
	return EXIT_USAGE;
}

static int
cmd_audit(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "until", required_argument, NULL, OPT_UNTIL },
		{ "rcpt", required_argument, NULL, OPT_RCPT },
		{ "message-id", required_argument, NULL, OPT_MSGID },
		{ "queue-id", required_argument, NULL, OPT_QID },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "csv", no_argument, NULL, OPT_CSV },
		{ "verify", no_argument, NULL, OPT_VERIFY },
		{ "fleet", no_argument, NULL, OPT_FLEET },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct audit a = { .fmt = FMT_TEXT };
	uint64_t now = store_now_us();
	bool verify = false, fleet = false;
	const char *err = NULL;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case OPT_SINCE:
		case OPT_UNTIL:
			if (parse_when(optarg, now, opt == OPT_SINCE ?
				       &a.since_us : &a.until_us) < 0) {
				fprintf(stderr, "postern audit: %s %s: not a "
					"time (2026-11-22, 2026-11-22T10:00:00"
					"[Z], @EPOCH, or an age like 2h)\n",
					opt == OPT_SINCE ? "--since" :
					"--until", optarg);
				return EXIT_USAGE;
			}
			break;
		case OPT_RCPT: a.rcpt = optarg; break;
		case OPT_MSGID: a.msgid = optarg; break;
		case OPT_QID:
			if (store_qid_parse(optarg, &a.qid) < 0) {
				fprintf(stderr, "postern audit: --queue-id %s:"
					" not a queue id\n", optarg);
				return EXIT_USAGE;
			}
			a.has_qid = true;
			break;
		case OPT_JSON: a.fmt = FMT_JSON; break;
		case OPT_CSV: a.fmt = FMT_CSV; break;
		case OPT_VERIFY: verify = true; break;
		case OPT_FLEET: fleet = true; break;
		case OPT_HELP:
			printf("usage: postern audit [--since T] [--until T] "
			       "[--rcpt ADDR] [--message-id ID]\n"
			       "                     [--queue-id ID] "
			       "[--json | --csv]\n"
			       "       postern audit --verify [--json]\n"
			       "       postern audit --verify --fleet "
			       "EXPORT...\n"
			       "T: 2026-11-22, 2026-11-22T10:00:00 (local; Z "
			       "for UTC), @EPOCH, or an age (2h = two hours "
			       "ago).\n--verify checks the hash chain, that no "
			       "(message, recipient) is terminal twice, and\n"
			       "accepted = delivered + bounced + deleted + "
			       "queued; it exits 1 naming each failure.\n"
			       "--fleet checks exports of several instances "
			       "(postern ledger export): each\nchain, and that "
			       "no (Message-ID, recipient, body) was delivered "
			       "twice.\n");
			return EXIT_OK;
		default:
			fprintf(stderr, "postern audit: see postern audit "
				"--help\n");
			return EXIT_USAGE;
		}
	}
	if (fleet) {
		if (!verify || optind == argc) {
			fprintf(stderr, "usage: postern audit --verify --fleet "
				"EXPORT...\n");
			return EXIT_USAGE;
		}
		return audit_fleet(argv + optind, (size_t)(argc - optind));
	}
	if (optind != argc) {
		fprintf(stderr, "postern audit: unexpected %s\n", argv[optind]);
		return EXIT_USAGE;
	}
	if ((rc = open_store(c, STORE_OPEN_READONLY)) != EXIT_OK)
		return rc;
	if (verify)
		return audit_verify(c, a.fmt == FMT_JSON);
	if (a.fmt == FMT_CSV)
		fputs("seq,kind,queue_id,recipient_index,recipient,message_id,"
		      "accepted,done,body_sha256,reply,received_sha256\r\n",
		      stdout);
	if (ledger_foreach(c->st, 1, audit_fn, &a, &err) != STORE_OK)
		return store_error("audit", err);
	return EXIT_OK;
}

/* --- stats ---------------------------------------------------------------------- */

static int
cmd_stats(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct queue_stats s;
	uint64_t now = store_now_us();
	bool json = false;
	const char *err = NULL;
	char q[STORE_QID_STRLEN], age[32], t[64];
	uint64_t rs_entries = 0, rs_bytes = 0;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == OPT_JSON) {
			json = true;
		} else if (opt == OPT_HELP) {
			printf("usage: postern stats [--json]\nCounts per "
			       "state, per hour, the oldest entry, "
			       "throughput and store use.\n");
			return EXIT_OK;
		} else {
			fprintf(stderr, "usage: postern stats [--json]\n");
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "usage: postern stats [--json]\n");
		return EXIT_USAGE;
	}
	if ((rc = open_store(c, STORE_OPEN_READONLY)) != EXIT_OK)
		return rc;
	if (queue_stats(c->st, now, &s, &err) != STORE_OK ||
	    store_resubmit_stat(c->st, &rs_entries, &rs_bytes, &err) !=
	    STORE_OK)
		return store_error("stats", err);
	if (json) {
		json_t *o = json_object(), *hq = json_array(),
		       *hd = json_array();

#define J(k, v) json_object_set_new(o, k, json_integer((json_int_t)(v)))
		J("accepted", s.c.accepted);
		J("delivered", s.c.delivered);
		J("bounced", s.c.bounced);
		J("deleted", s.c.deleted);
		J("pending", s.c.pending);
		J("active", s.c.active);
		J("deferred", s.c.deferred);
		J("held", s.c.held);
		J("in_doubt", s.c.indoubt);
		J("messages", s.messages);
		J("bytes", s.bytes);
		J("oldest_age_seconds", s.oldest_us && now > s.oldest_us ?
		  (now - s.oldest_us) / 1000000u : 0);
		J("done_last_minute", s.done_minute);
		J("done_last_hour", s.done_hour[0]);
		J("map_size", s.map_size);
		J("map_used", s.map_used);
		J("ledger_records", s.ledger_records);
		J("resubmissions", s.c.resubmitted);
		J("resubmit_index_entries", rs_entries);
#undef J
		for (int i = 0; i < 24; i++) {
			json_array_append_new(hq, json_integer(
				(json_int_t)s.accepted_hour[i]));
			json_array_append_new(hd, json_integer(
				(json_int_t)s.done_hour[i]));
		}
		json_object_set_new(o, "queued_by_age_hours", hq);
		json_object_set_new(o, "done_by_hours_ago", hd);
		print_json_line(o);
		return EXIT_OK;
	}
	printf("queue:      %" PRIu64 " message%s, %" PRIu64 " KiB\n",
	       s.messages, s.messages == 1 ? "" : "s", (s.bytes + 1023) / 1024);
	printf("entries:    pending %" PRIu64 ", active %" PRIu64 ", deferred %"
	       PRIu64 ", held %" PRIu64 ", in-doubt %" PRIu64 "\n",
	       s.c.pending, s.c.active, s.c.deferred, s.c.held, s.c.indoubt);
	printf("totals:     accepted %" PRIu64 ", delivered %" PRIu64
	       ", bounced %" PRIu64 ", deleted %" PRIu64 "\n", s.c.accepted,
	       s.c.delivered, s.c.bounced, s.c.deleted);
	if (s.oldest_us != 0) {
		fmt_age(now > s.oldest_us ? now - s.oldest_us : 0, age,
			sizeof(age));
		fmt_time(s.oldest_us, t, sizeof(t));
		printf("oldest:     %s, accepted %s (%s ago)\n",
		       store_qid_str(s.oldest_qid, q), t, age);
	}
	printf("throughput: %" PRIu64 " in the last minute, %" PRIu64
	       " in the last hour\n", s.done_minute, s.done_hour[0]);
	printf("resubmits:  %" PRIu64 " recognised, not queued again; index "
	       "%" PRIu64 " entr%s, %" PRIu64 " KiB\n", s.c.resubmitted,
	       rs_entries, rs_entries == 1 ? "y" : "ies",
	       (rs_bytes + 1023) / 1024);
	printf("store:      map %" PRIu64 " MiB, %" PRIu64 " MiB used (%.0f%%),"
	       " ledger %" PRIu64 " records\n", s.map_size >> 20,
	       s.map_used >> 20, s.map_size ? 100.0 * (double)s.map_used /
	       (double)s.map_size : 0.0, s.ledger_records);
	printf("per hour:   hours ago   queued (by arrival)   done\n");
	for (int i = 0; i < 24; i++)
		if (s.accepted_hour[i] != 0 || s.done_hour[i] != 0)
			printf("            %9d   %19" PRIu64 "   %" PRIu64 "\n",
			       i, s.accepted_hour[i], s.done_hour[i]);
	return EXIT_OK;
}

/* --- main ------------------------------------------------------------------------ */

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: postern [-c FILE] [-s STORE] COMMAND [OPTIONS] [ARGS]\n"
		"  -c FILE   configuration (default %s if it exists)\n"
		"  -s STORE  the store directory, instead of [store] path\n"
		"  --version print the version and exit\n"
		"commands:\n"
		"  queue     list the queue, like mailq\n"
		"  show      one message: envelope, states, history, headers\n"
		"  replay    put stuck entries back to pending, due now\n"
		"  hold      keep entries from delivery\n"
		"  release   let held entries go\n"
		"  delete    remove entries (recorded in the ledger)\n"
		"  resolve   settle in-doubt entries: --delivered or "
		"--redeliver\n"
		"  audit     list the ledger; --verify checks it; --fleet "
		"checks exports\n"
		"  ledger    export: the ledger as JSON lines, to ship "
		"and audit\n"
		"  stats     counts, throughput, store use\n"
		"postern COMMAND --help for each; postern(1) for all.\n"
		"exit: 0 ok, 1 audit found problems or no such queue id, "
		"2 usage, 3 store error\n", CONFIG_DEFAULT_PATH);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctx c = { 0 };
	const char *cmd;
	int opt, rc;

	log_set_level(LOG_LVL_WARN);
	while ((opt = getopt_long(argc, argv, "+c:s:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': c.config_path = optarg; break;
		case 's': c.store_path = optarg; break;
		case 'h': usage(stdout); return EXIT_OK;
		case 'V': printf("postern %s\n", PACKAGE_VERSION);
			return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	optind = 0;	/* 0: glibc starts afresh (permuting again) */
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(cmd, "queue") == 0 || strcmp(cmd, "mailq") == 0)
		rc = cmd_queue(&c, argc, argv);
	else if (strcmp(cmd, "show") == 0)
		rc = cmd_show(&c, argc, argv);
	else if (strcmp(cmd, "replay") == 0)
		rc = cmd_change(&c, cmd, QUEUE_REPLAY, argc, argv);
	else if (strcmp(cmd, "hold") == 0)
		rc = cmd_change(&c, cmd, QUEUE_HOLD, argc, argv);
	else if (strcmp(cmd, "release") == 0)
		rc = cmd_change(&c, cmd, QUEUE_RELEASE, argc, argv);
	else if (strcmp(cmd, "delete") == 0)
		rc = cmd_change(&c, cmd, QUEUE_DELETE, argc, argv);
	else if (strcmp(cmd, "resolve") == 0)
		rc = cmd_change(&c, cmd, 0, argc, argv);
	else if (strcmp(cmd, "audit") == 0)
		rc = cmd_audit(&c, argc, argv);
	else if (strcmp(cmd, "stats") == 0)
		rc = cmd_stats(&c, argc, argv);
	else if (strcmp(cmd, "ledger") == 0)
		rc = cmd_ledger(&c, argc, argv);
	else {
		fprintf(stderr, "postern: %s: no such command\n", cmd);
		usage(stderr);
		rc = EXIT_USAGE;
	}
	store_close(&c.st);
	config_unref(&c.cfg);
	return rc;
}
