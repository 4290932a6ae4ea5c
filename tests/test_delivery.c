/*
 * test_delivery.c - one worker's batch through a fake driver on a real
 * store: outcomes, in-doubt settling, the peer's backoff, DSNs and the
 * claim of the next batch.
 */
#include "testlib.h"
#include "corehelp.h"
#include "delivery.h"
#include "queue.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

TESTLIB_SUITE_DIR("delivery")
static struct store *st;
static struct store_settings set = { .backoff_min = 60, .backoff_max = 600,
				     .max_lifetime = 3600 };

/* A driver that answers what the test tells it to, and counts. */
struct fake {
	struct driver base;
	int deliver_rc;			/* 0 or DRIVER_UNAVAILABLE */
	enum claim_result result;	/* of each recipient, rc 0 */
	const char *reply;
	int look_rc;			/* 1 there, 0 not, -1 cannot tell */
	unsigned delivered;		/* recipients handed to deliver() */
	unsigned looked;
	char last_to[321];
	char *last_body;		/* owned: NUL-terminated copy */
};

static int
fake_deliver(struct driver *d, const struct driver_msg *m,
	     struct driver_rcpt *r, size_t n)
{
	struct fake *f = (struct fake *)d;

	free(f->last_body);
	f->last_body = strndup(m->body, m->body_len);
	for (size_t i = 0; i < n; i++) {
		r[i].result = f->result;
		driver_reply(r[i].reply, "%s", f->reply);
		snprintf(f->last_to, sizeof(f->last_to), "%s", r[i].addr);
	}
	if (f->deliver_rc == 0)
		f->delivered += (unsigned)n;
	return f->deliver_rc;
}

static int
fake_look(struct driver *d, const struct driver_msg *m,
	  const struct driver_rcpt *r, const char **error_r)
{
	struct fake *f = (struct fake *)d;

	(void)m;
	(void)r;
	f->looked++;
	*error_r = "the fake cannot tell";
	return f->look_rc;
}

static void
fake_free(struct driver **d)
{
	*d = NULL;
}

/* As smtp: marks in the claim; without and with a probe. */
static const struct driver_ops blind_ops = {
	.name = "fake", .deliver = fake_deliver, .free = fake_free,
};
static const struct driver_ops look_ops = {
	.name = "fake", .can_look = true, .deliver = fake_deliver,
	.look = fake_look, .free = fake_free,
};

static struct fake drv, bounce;
static struct config *cfg;
static struct delivery_shared shared;
static struct delivery_ctx ctx;
static struct delivery *d;
static bool stop;
static unsigned wakes;

static bool
fake_stopping(void *arg)
{
	(void)arg;
	return stop;
}

static void
fake_wake(void *arg)
{
	(void)arg;
	wakes++;
}

/* The configuration text conf (NULL: the defaults). */
static struct config *
load(const char *conf)
{
	char path[4096];
	struct config *c = NULL;
	const char *err;
	FILE *fp;

	if (conf == NULL) {
		CU_ASSERT_FATAL(config_load(NULL, &c, &err) == 0);
		return c;
	}
	snprintf(path, sizeof(path), "%s/postern.conf", dir);
	fp = fopen(path, "w");
	CU_ASSERT_FATAL(fp != NULL);
	fputs(conf, fp);
	fclose(fp);
	if (config_load(path, &c, &err) < 0)
		fprintf(stderr, "config: %s\n", err);
	CU_ASSERT_FATAL(c != NULL);
	return c;
}

/* An empty store named name, the configuration conf, a driver with ops
 * that delivers, and no bounce relay. */
static void
fresh(const char *name, const char *conf, const struct driver_ops *ops)
{
	corehelp_fresh(&st, dir, name, &set);
	config_unref(&cfg);
	cfg = load(conf);
	free(drv.last_body);
	free(bounce.last_body);
	memset(&drv, 0, sizeof(drv));
	memset(&bounce, 0, sizeof(bounce));
	drv.base.ops = ops;
	drv.result = CLAIM_DELIVERED;
	drv.reply = "250 2.0.0 ok";
	bounce.base.ops = &blind_ops;
	bounce.result = CLAIM_DELIVERED;
	bounce.reply = "250 2.0.0 queued as B";
	delivery_shared_destroy(&shared);
	delivery_shared_init(&shared, store_now_us());
	atomic_store(&shared.indoubt_due, false);
	atomic_store(&shared.indoubt_after_us, 0);
	stop = false;
	wakes = 0;
	ctx = (struct delivery_ctx){
		.st = st, .cfg = cfg, .driver = &drv.base, .worker = 1,
		.shared = &shared, .stopping = fake_stopping,
		.wake = fake_wake,
	};
	delivery_free(&d);
	d = delivery_new(cfg->workers_batch);
}

/* Claim as a worker whose claim marks; one_message as the window. */
static size_t
claim(bool one_message)
{
	size_t n = 0;
	uint64_t next;
	const char *err;

	d->claimed_us = store_now_us();
	CU_ASSERT_EQUAL(claim_batch_sending(st, 1, cfg->workers_batch,
					    one_message, cfg->workers_lease,
					    d->claimed_us, d->items, &n,
					    &next, &err), STORE_OK);
	return n;
}

static size_t
claim_indoubt_now(void)
{
	size_t n = 0;
	const char *err;

	d->claimed_us = store_now_us();
	CU_ASSERT_EQUAL(claim_indoubt(st, 1, cfg->workers_batch,
				      cfg->workers_lease, d->claimed_us,
				      d->items, &n, &err), STORE_OK);
	return n;
}

/* The ledger's last record. */
static struct ledger_rec
last_record(void)
{
	struct ledger_rec rec;
	unsigned char hash[32];
	uint64_t seq = 0;
	const char *err;

	memset(&rec, 0, sizeof(rec));
	CU_ASSERT_EQUAL(ledger_head(st, &seq, hash, &err), 0);
	CU_ASSERT_EQUAL(ledger_get(st, seq, &rec, &err), 1);
	return rec;
}

static int
first_entry(const struct queue_msg *m, const struct queue_entry *e,
	    size_t n, void *arg)
{
	(void)m;
	(void)n;
	*(struct queue_entry *)arg = e[0];
	return 1;
}

/* The first queued entry (qid 0: none). */
static struct queue_entry
first_queued(void)
{
	struct queue_filter f = { 0 };
	struct queue_entry e = { 0 };
	const char *err;

	CU_ASSERT_EQUAL(queue_foreach(st, &f, store_now_us(), first_entry, &e,
				      &err), STORE_OK);
	return e;
}

/* An in-doubt entry: the reply to its delivery was lost. */
static void
make_indoubt(void)
{
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, store_now_us()), 0);
	CU_ASSERT_EQUAL_FATAL(claim(true), 1);
	drv.result = CLAIM_UNKNOWN;
	drv.reply = "4.4.2 connection lost after the final dot";
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL_FATAL(corehelp_counters(st).indoubt, 1);
	drv.delivered = 0;
	atomic_store(&shared.indoubt_due, false);
	atomic_store(&shared.indoubt_after_us, 0);
}

/* An in-doubt entry in a fresh store named name (configuration conf),
 * claimed for a look, which will not find it. */
static void
indoubt_not_found(const char *name, const char *conf)
{
	fresh(name, conf, &look_ops);
	make_indoubt();
	CU_ASSERT_EQUAL_FATAL(claim_indoubt_now(), 1);
	drv.look_rc = 0;
}

static void
test_delivery_delivered_goes_to_the_ledger(void)
{
	struct ledger_rec rec;
	void *body;
	size_t len;
	const char *err;

	fresh("delivered", NULL, &blind_ops);
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 2, 1, store_now_us()), 0);
	CU_ASSERT_EQUAL_FATAL(claim(true), 2);
	delivery_run(&ctx, d, 2);
	CU_ASSERT_EQUAL(drv.delivered, 2);
	CU_ASSERT_STRING_EQUAL(drv.last_body, "Subject: t\r\n\r\nbody\r\n");
	CU_ASSERT_EQUAL(corehelp_counters(st).delivered, 2);
	CU_ASSERT_EQUAL(corehelp_counters(st).active, 0);
	CU_ASSERT_EQUAL(d->out[0].recorded, CLAIM_DELIVERED);
	CU_ASSERT_EQUAL(d->out[1].removed, 1);
	rec = last_record();
	CU_ASSERT_EQUAL(rec.kind, LEDGER_DELIVERED);
	CU_ASSERT_STRING_EQUAL(rec.rcpt, "r1@x.example");
	CU_ASSERT_STRING_EQUAL(rec.reply, "250 2.0.0 ok");
	CU_ASSERT_EQUAL(store_body_get(st, d->items[0].qid, &body, &len,
				       &err), 0);
	CU_ASSERT_EQUAL(d->ready, 0);		/* nothing else queued */
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_delivery_tempfail_defers_with_an_attempt(void)
{
	struct queue_entry e;

	fresh("tempfail", NULL, &blind_ops);
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, store_now_us()), 0);
	CU_ASSERT_EQUAL_FATAL(claim(true), 1);
	drv.result = CLAIM_TEMPFAIL;
	drv.reply = "451 4.3.0 try later";
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(corehelp_counters(st).deferred, 1);
	e = first_queued();
	CU_ASSERT_EQUAL(e.state, ST_DEFERRED);
	CU_ASSERT_EQUAL(e.attempts, 1);
	CU_ASSERT_STRING_EQUAL(e.reply, "451 4.3.0 try later");
	CU_ASSERT(e.next_try_us > store_now_us());
	CU_ASSERT_EQUAL(ctx.reconnect_us, 0);	/* the peer answered */
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_delivery_permfail_sends_one_dsn_per_message(void)
{
	struct ledger_rec rec;

	fresh("permfail", NULL, &blind_ops);
	ctx.bounce = &bounce.base;
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 2, 1, store_now_us()), 0);
	CU_ASSERT_EQUAL_FATAL(claim(true), 2);
	drv.result = CLAIM_PERMFAIL;
	drv.reply = "550 5.1.1 no such user";
	delivery_run(&ctx, d, 2);
	CU_ASSERT_EQUAL(corehelp_counters(st).bounced, 2);
	rec = last_record();
	CU_ASSERT_EQUAL(rec.kind, LEDGER_BOUNCED);
	CU_ASSERT_STRING_EQUAL(rec.reply, "550 5.1.1 no such user");
	/* One DSN for both recipients, to the sender, with the header. */
	CU_ASSERT_EQUAL(bounce.delivered, 1);
	CU_ASSERT_STRING_EQUAL(bounce.last_to, "s@home.example");
	CU_ASSERT_FATAL(bounce.last_body != NULL);
	CU_ASSERT_PTR_NOT_NULL(strstr(bounce.last_body, "r0@x.example"));
	CU_ASSERT_PTR_NOT_NULL(strstr(bounce.last_body, "r1@x.example"));
	CU_ASSERT_PTR_NOT_NULL(strstr(bounce.last_body, "Subject: t"));
	CU_ASSERT_PTR_NULL(d->hdrs[0].data);	/* dropped after the DSN */
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_delivery_unknown_is_held_for_the_operator(void)
{
	fresh("hold", NULL, &blind_ops);
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, store_now_us()), 0);
	CU_ASSERT_EQUAL_FATAL(claim(true), 1);
	drv.result = CLAIM_UNKNOWN;
	drv.reply = "4.4.2 connection lost";
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(corehelp_counters(st).indoubt, 1);
	CU_ASSERT_EQUAL(first_queued().state, ST_INDOUBT);
	/* A driver that cannot look leaves it to the operator. */
	CU_ASSERT_FALSE(atomic_load(&shared.indoubt_due));
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_delivery_unknown_with_retry_policy_is_deferred(void)
{
	fresh("retry", "[queue]\nin_doubt_policy = retry\n", &blind_ops);
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, store_now_us()), 0);
	CU_ASSERT_EQUAL_FATAL(claim(true), 1);
	drv.result = CLAIM_UNKNOWN;
	drv.reply = "4.4.2 connection lost";
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(corehelp_counters(st).indoubt, 0);
	CU_ASSERT_EQUAL(corehelp_counters(st).deferred, 1);
	CU_ASSERT_EQUAL(d->out[0].recorded, CLAIM_TEMPFAIL);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_delivery_unknown_with_a_look_is_looked_for_soon(void)
{
	uint64_t before;

	fresh("looksoon", NULL, &look_ops);
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, store_now_us()), 0);
	CU_ASSERT_EQUAL_FATAL(claim(true), 1);
	drv.result = CLAIM_UNKNOWN;
	drv.reply = "4.4.2 connection lost";
	before = store_now_us();
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(corehelp_counters(st).indoubt, 1);
	CU_ASSERT_TRUE(atomic_load(&shared.indoubt_due));
	CU_ASSERT(atomic_load(&shared.indoubt_after_us) >=
		  before + DELIVERY_LOOK_DELAY_US);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_delivery_indoubt_found_by_look_is_not_sent_again(void)
{
	struct ledger_rec rec;

	fresh("found", NULL, &look_ops);
	make_indoubt();
	CU_ASSERT_EQUAL_FATAL(claim_indoubt_now(), 1);
	CU_ASSERT(d->items[0].was_indoubt);
	drv.look_rc = 1;
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(drv.looked, 1);
	CU_ASSERT_EQUAL(drv.delivered, 0);
	CU_ASSERT_EQUAL(corehelp_counters(st).indoubt, 0);
	CU_ASSERT_EQUAL(corehelp_counters(st).delivered, 1);
	rec = last_record();
	CU_ASSERT_EQUAL(rec.kind, LEDGER_DELIVERED);
	CU_ASSERT_PTR_NOT_NULL(strstr(rec.reply, "found by look"));
	CU_ASSERT_EQUAL(atomic_load(&shared.indoubt_pause_us), 0);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

/* Not found by the first look (the default look_again, 5 s): it stays
 * in-doubt, the next look is due when the 5 s are over, and a look
 * before then does not send it either. */
static void
test_delivery_indoubt_not_found_is_looked_for_again(void)
{
	struct queue_entry e;
	uint64_t before;

	indoubt_not_found("notfoundyet", NULL);
	before = store_now_us();
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(drv.looked, 1);
	CU_ASSERT_EQUAL(drv.delivered, 0);
	CU_ASSERT_EQUAL(corehelp_counters(st).indoubt, 1);
	e = first_queued();
	CU_ASSERT_EQUAL(e.state, ST_INDOUBT);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.reply, "not found at the foreign "
				      "side yet"));
	CU_ASSERT_TRUE(atomic_load(&shared.indoubt_due));
	CU_ASSERT(atomic_load(&shared.indoubt_after_us) >= before + 5000000u);
	/* looked for again too soon: still not sent */
	CU_ASSERT_EQUAL_FATAL(claim_indoubt_now(), 1);
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(drv.looked, 2);
	CU_ASSERT_EQUAL(drv.delivered, 0);
	CU_ASSERT_EQUAL(corehelp_counters(st).indoubt, 1);
	CU_ASSERT_EQUAL(shared.notfound_n, 1);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

/* Looks have not found it for look_again (1 s here): sent again. */
static void
test_delivery_indoubt_not_found_is_sent_again(void)
{
	struct timespec ts = { 1, 100000000 };

	indoubt_not_found("notfound", "[queue]\nlook_again = 1s\n");
	drv.result = CLAIM_DELIVERED;
	drv.reply = "250 2.0.0 ok";
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(drv.delivered, 0);
	nanosleep(&ts, NULL);
	CU_ASSERT_EQUAL_FATAL(claim_indoubt_now(), 1);
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(drv.looked, 2);
	CU_ASSERT_EQUAL(drv.delivered, 1);
	CU_ASSERT_EQUAL(corehelp_counters(st).delivered, 1);
	CU_ASSERT_STRING_EQUAL(last_record().reply, "250 2.0.0 ok");
	CU_ASSERT_EQUAL(shared.notfound_n, 0);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

/* look_again = 0: the first look that does not find it sends it. */
static void
test_delivery_indoubt_not_found_look_again_0(void)
{
	indoubt_not_found("notfound0", "[queue]\nlook_again = 0\n");
	drv.result = CLAIM_DELIVERED;
	drv.reply = "250 2.0.0 ok";
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(drv.looked, 1);
	CU_ASSERT_EQUAL(drv.delivered, 1);
	CU_ASSERT_EQUAL(corehelp_counters(st).delivered, 1);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_delivery_indoubt_look_that_cannot_tell_pauses(void)
{
	struct queue_entry e;
	uint64_t before;

	fresh("cannottell", NULL, &look_ops);
	make_indoubt();
	CU_ASSERT_EQUAL_FATAL(claim_indoubt_now(), 1);
	drv.look_rc = -1;
	before = store_now_us();
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(drv.delivered, 0);
	CU_ASSERT_EQUAL(corehelp_counters(st).indoubt, 1);
	e = first_queued();
	CU_ASSERT_EQUAL(e.state, ST_INDOUBT);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.reply, "the fake cannot tell"));
	/* in-doubt claims pause 1 s, then 2 s */
	CU_ASSERT_EQUAL(atomic_load(&shared.indoubt_pause_us), 1000000u);
	CU_ASSERT(atomic_load(&shared.indoubt_after_us) >= before + 1000000u);
	CU_ASSERT_EQUAL_FATAL(claim_indoubt_now(), 1);
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(atomic_load(&shared.indoubt_pause_us), 2000000u);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_delivery_peer_down_puts_back_and_backs_off(void)
{
	struct store_nexthop nh;
	struct queue_entry e;
	uint64_t before;
	const char *err;

	fresh("peerdown", NULL, &blind_ops);
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 2, 1, 2, store_now_us()), 0);
	CU_ASSERT_EQUAL_FATAL(claim(false), 2);		/* two messages */
	drv.deliver_rc = DRIVER_UNAVAILABLE;
	drv.result = CLAIM_TEMPFAIL;
	drv.reply = "4.4.1 connection refused";
	before = store_now_us();
	delivery_run(&ctx, d, 2);
	/* Both back, due now, no attempt counted, nothing recorded. */
	CU_ASSERT_EQUAL(corehelp_counters(st).pending, 2);
	CU_ASSERT_EQUAL(corehelp_counters(st).active, 0);
	e = first_queued();
	CU_ASSERT_EQUAL(e.state, ST_PENDING);
	CU_ASSERT_EQUAL(e.attempts, 0);
	CU_ASSERT_FALSE(e.sending);
	CU_ASSERT_EQUAL(d->ready, 0);
	/* 1 s +-25%, and the next hop is down for postern queue */
	CU_ASSERT_EQUAL(ctx.reconnect_us, 1000000u);
	CU_ASSERT(ctx.reconnect_at_us >= before + 750000u);
	CU_ASSERT(ctx.reconnect_at_us <= store_now_us() + 1250000u);
	CU_ASSERT_TRUE(atomic_load(&shared.peer_down));
	CU_ASSERT_EQUAL(store_nexthop_get(st, &nh, &err), STORE_OK);
	CU_ASSERT_TRUE(nh.down);
	CU_ASSERT_STRING_EQUAL(nh.reason, "4.4.1 connection refused");
	/* Again: the interval doubles. */
	CU_ASSERT_EQUAL_FATAL(claim(false), 2);
	delivery_run(&ctx, d, 2);
	CU_ASSERT_EQUAL(ctx.reconnect_us, 2000000u);
	CU_ASSERT_EQUAL(wakes, 0);
	/* Back: delivered, the record cleared, the others woken. */
	drv.deliver_rc = 0;
	drv.result = CLAIM_DELIVERED;
	drv.reply = "250 ok";
	CU_ASSERT_EQUAL_FATAL(claim(false), 2);
	delivery_run(&ctx, d, 2);
	CU_ASSERT_EQUAL(corehelp_counters(st).delivered, 2);
	CU_ASSERT_EQUAL(ctx.reconnect_us, 0);
	CU_ASSERT_EQUAL(ctx.reconnect_at_us, 0);
	CU_ASSERT_FALSE(atomic_load(&shared.peer_down));
	CU_ASSERT_EQUAL(wakes, 1);
	CU_ASSERT_EQUAL(store_nexthop_get(st, &nh, &err), STORE_OK);
	CU_ASSERT_FALSE(nh.down);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_delivery_indoubt_put_back_stays_indoubt(void)
{
	indoubt_not_found("indoubtdown", "[queue]\nlook_again = 0\n");
	drv.deliver_rc = DRIVER_UNAVAILABLE;
	drv.reply = "4.4.1 connection refused";
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(corehelp_counters(st).indoubt, 1);
	CU_ASSERT_EQUAL(corehelp_counters(st).pending, 0);
	CU_ASSERT_EQUAL(first_queued().state, ST_INDOUBT);
	CU_ASSERT_EQUAL(ctx.reconnect_us, 1000000u);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_delivery_outcomes_claim_the_next_message(void)
{
	uint64_t first;
	size_t n;

	fresh("next", NULL, &blind_ops);
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 2, 1, 2, store_now_us()), 0);
	CU_ASSERT_EQUAL_FATAL(claim(true), 1);		/* message window */
	first = d->items[0].qid;
	delivery_run(&ctx, d, 1);
	/* The second message was claimed, marked, in the same commit. */
	CU_ASSERT_EQUAL(d->ready, 1);
	CU_ASSERT_EQUAL(corehelp_counters(st).delivered, 1);
	CU_ASSERT_EQUAL(corehelp_counters(st).active, 1);
	CU_ASSERT_TRUE(first_queued().sending);
	n = delivery_take_ready(d);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_NOT_EQUAL(d->items[0].qid, first);
	CU_ASSERT_EQUAL(d->claimed_us, d->next_claimed_us);
	CU_ASSERT_EQUAL(delivery_take_ready(d), 0);
	delivery_run(&ctx, d, n);
	CU_ASSERT_EQUAL(corehelp_counters(st).delivered, 2);
	CU_ASSERT_EQUAL(d->ready, 0);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_delivery_stopping_claims_no_more_and_puts_back(void)
{
	fresh("stop", NULL, &blind_ops);
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 3, 1, 3, store_now_us()), 0);
	CU_ASSERT_EQUAL_FATAL(claim(true), 1);
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL_FATAL(d->ready, 1);
	/* The pool stops: the claimed next message goes back... */
	stop = true;
	delivery_put_back(&ctx, d);
	CU_ASSERT_EQUAL(d->ready, 0);
	CU_ASSERT_EQUAL(corehelp_counters(st).active, 0);
	CU_ASSERT_EQUAL(corehelp_counters(st).pending, 2);
	/* ...and outcomes recorded while stopping claim nothing more. */
	CU_ASSERT_EQUAL_FATAL(claim(true), 1);
	delivery_run(&ctx, d, 1);
	CU_ASSERT_EQUAL(d->ready, 0);
	CU_ASSERT_EQUAL(corehelp_counters(st).delivered, 2);
	CU_ASSERT_EQUAL(corehelp_counters(st).pending, 1);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static int
suite_clean_all(void)
{
	delivery_free(&d);
	delivery_shared_destroy(&shared);
	config_unref(&cfg);
	free(drv.last_body);
	free(bounce.last_body);
	store_close(&st);
	return suite_clean();
}

static int
suite_init_all(void)
{
	log_set_level(LOG_LVL_ERR);
	delivery_shared_init(&shared, 0);
	return suite_init();
}

static CU_TestInfo delivery_tests[] = {
	{ "delivered goes to the ledger",
	  test_delivery_delivered_goes_to_the_ledger },
	{ "tempfail defers with an attempt",
	  test_delivery_tempfail_defers_with_an_attempt },
	{ "permfail sends one DSN per message",
	  test_delivery_permfail_sends_one_dsn_per_message },
	{ "unknown is held for the operator",
	  test_delivery_unknown_is_held_for_the_operator },
	{ "unknown with retry policy is deferred",
	  test_delivery_unknown_with_retry_policy_is_deferred },
	{ "unknown with a look is looked for soon",
	  test_delivery_unknown_with_a_look_is_looked_for_soon },
	{ "in-doubt found by look is not sent again",
	  test_delivery_indoubt_found_by_look_is_not_sent_again },
	{ "in-doubt not found is looked for again",
	  test_delivery_indoubt_not_found_is_looked_for_again },
	{ "in-doubt not found for look_again is sent again",
	  test_delivery_indoubt_not_found_is_sent_again },
	{ "in-doubt not found, look_again = 0: sent at once",
	  test_delivery_indoubt_not_found_look_again_0 },
	{ "in-doubt look that cannot tell pauses",
	  test_delivery_indoubt_look_that_cannot_tell_pauses },
	{ "peer down puts back and backs off",
	  test_delivery_peer_down_puts_back_and_backs_off },
	{ "in-doubt put back stays in-doubt",
	  test_delivery_indoubt_put_back_stays_indoubt },
	{ "outcomes claim the next message",
	  test_delivery_outcomes_claim_the_next_message },
	{ "stopping claims no more and puts back",
	  test_delivery_stopping_claims_no_more_and_puts_back },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "delivery", suite_init_all, suite_clean_all, NULL, NULL,
	  delivery_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
