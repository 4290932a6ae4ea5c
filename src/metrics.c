/*
 * metrics.c - process-wide counters and their Prometheus rendering.
 *
 * Owns:    the static counters below; nothing allocated.
 * Threads: any; relaxed atomics (each counter on its own, no invariant
 *          between them).
 */
#include "metrics.h"
#include "driver_table.h"
#include "queue.h"
#include "store.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>

/* Upper bounds of the latency histogram, in microseconds. */
static const uint64_t lat_bounds[] = {
	5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
	2500000, 5000000, 10000000, 30000000, 60000000, 300000000,
	3600000000ull,
};
#define NBOUNDS (sizeof(lat_bounds) / sizeof(lat_bounds[0]))

static atomic_uint_fast64_t outcomes[5];	/* by enum claim_result */
static atomic_uint_fast64_t lat_count[NBOUNDS + 1];	/* last: +Inf */
static atomic_uint_fast64_t lat_sum_us;

/* Reply codes 200-599, by code. */
static atomic_uint_fast64_t replies[400];

/* By enum config_driver: the rows of driver_table.h. */
static atomic_uint_fast64_t reconnects[CONFIG_DRIVER_COUNT];

static atomic_uint_fast64_t foreign_ok_us, foreign_fail_us;

void
metrics_outcome(enum claim_result recorded, uint64_t latency_us)
{
	size_t i;

	if ((unsigned)recorded < 5)
		atomic_fetch_add_explicit(&outcomes[recorded], 1,
					  memory_order_relaxed);
	if (recorded != CLAIM_DELIVERED)
		return;
	for (i = 0; i < NBOUNDS && latency_us > lat_bounds[i]; i++)
		;
	atomic_fetch_add_explicit(&lat_count[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&lat_sum_us, latency_us,
				  memory_order_relaxed);
}

void
metrics_smtp_reply(unsigned code)
{
	if (code >= 200 && code < 600)
		atomic_fetch_add_explicit(&replies[code - 200], 1,
					  memory_order_relaxed);
}

void
metrics_reconnect(const char *driver)
{
	int i = driver_table_find(driver);

	if (i >= 0)
		atomic_fetch_add_explicit(&reconnects[i], 1,
					  memory_order_relaxed);
}

void
metrics_foreign_seen(enum claim_result r, uint64_t now_us)
{
	atomic_store_explicit(r == CLAIM_TEMPFAIL ? &foreign_fail_us :
			      &foreign_ok_us, now_us, memory_order_relaxed);
}

void
metrics_foreign_last(uint64_t *ok_us_r, uint64_t *fail_us_r)
{
	*ok_us_r = atomic_load_explicit(&foreign_ok_us, memory_order_relaxed);
	*fail_us_r = atomic_load_explicit(&foreign_fail_us,
					  memory_order_relaxed);
}

static uint64_t
get(atomic_uint_fast64_t *a)
{
	return atomic_load_explicit(a, memory_order_relaxed);
}

/* A Prometheus histogram: help text, then the cumulative buckets of
 * counts[0..n] (per bucket, not cumulative; counts[n]: above the last of
 * bounds_us[0..n)), the sum and the count. */
static void
render_histogram(struct buf *b, const char *name, const char *help,
		 const uint64_t *bounds_us, const uint64_t *counts, size_t n,
		 uint64_t sum_us)
{
	uint64_t cum = 0;

	buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (size_t i = 0; i <= n; i++) {
		cum += counts[i];
		if (i < n)
			buf_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n",
				   name, (double)bounds_us[i] / 1e6, cum);
		else
			buf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n",
				   name, cum);
	}
	buf_printf(b, "%s_sum %.6f\n%s_count %" PRIu64 "\n", name,
		   (double)sum_us / 1e6, name, cum);
}

int
metrics_render(struct store *st, struct buf *b, uint64_t now_us)
{
	static const char *const results[] = { NULL, "delivered", "deferred",
					       "bounced", "in-doubt" };
	struct store_counters c;
	const char *err;
	uint64_t map_size, used, oldest_qid, oldest_us, rs_entries, rs_bytes;
	uint64_t lat[NBOUNDS + 1], commits[STORE_COMMIT_NBOUNDS + 1];
	uint64_t commit_sum_us;
	int rc = 0;

	buf_append_str(b,
		"# HELP postern_outcomes_total Delivery outcomes recorded by "
		"this process.\n# TYPE postern_outcomes_total counter\n");
	for (int r = CLAIM_DELIVERED; r <= CLAIM_UNKNOWN; r++)
		buf_printf(b, "postern_outcomes_total{result=\"%s\"} %" PRIu64
			   "\n", results[r], get(&outcomes[r]));
	for (size_t i = 0; i <= NBOUNDS; i++)
		lat[i] = get(&lat_count[i]);
	render_histogram(b, "postern_delivery_latency_seconds",
			 "From acceptance to delivery.", lat_bounds, lat,
			 NBOUNDS, get(&lat_sum_us));
	store_commit_latency(st, commits, &commit_sum_us);
	render_histogram(b, "postern_store_commit_seconds",
			 "How long the store's write commits took, fdatasync "
			 "included (one per group commit).",
			 store_commit_bounds_us, commits, STORE_COMMIT_NBOUNDS,
			 commit_sum_us);
	buf_append_str(b,
		"# HELP postern_smtp_replies_total Final replies the ingress "
		"sent, by code.\n# TYPE postern_smtp_replies_total counter\n");
	for (unsigned i = 0; i < 400; i++)
		if (get(&replies[i]) != 0)
			buf_printf(b, "postern_smtp_replies_total{code=\"%u\"} "
				   "%" PRIu64 "\n", i + 200, get(&replies[i]));
	buf_append_str(b,
		"# HELP postern_driver_reconnects_total Connections a driver "
		"opened to its foreign peer.\n"
		"# TYPE postern_driver_reconnects_total counter\n");
	for (size_t i = 0; i < CONFIG_DRIVER_COUNT; i++)
		buf_printf(b, "postern_driver_reconnects_total{driver=\"%s\"} "
			   "%" PRIu64 "\n", driver_table_get(i)->name,
			   get(&reconnects[i]));

	if (store_counters_get(st, &c, &err) != STORE_OK)
		return -1;
	buf_append_str(b,
		"# HELP postern_entries_total Entries (message, recipient) "
		"that reached a state, since the store was made.\n"
		"# TYPE postern_entries_total counter\n");
	buf_printf(b, "postern_entries_total{state=\"accepted\"} %" PRIu64 "\n"
		   "postern_entries_total{state=\"delivered\"} %" PRIu64 "\n"
		   "postern_entries_total{state=\"bounced\"} %" PRIu64 "\n"
		   "postern_entries_total{state=\"deleted\"} %" PRIu64 "\n",
		   c.accepted, c.delivered, c.bounced, c.deleted);
	buf_printf(b, "# HELP postern_resubmissions_total Recipients of "
		   "messages the home side sent again, recognised by the "
		   "resubmission index and not queued again.\n"
		   "# TYPE postern_resubmissions_total counter\n"
		   "postern_resubmissions_total %" PRIu64 "\n",
		   c.resubmitted);
	if (store_resubmit_stat(st, &rs_entries, &rs_bytes, &err) ==
	    STORE_OK)
		buf_printf(b, "# HELP postern_resubmit_index_entries "
			   "Entries the resubmission index remembers.\n"
			   "# TYPE postern_resubmit_index_entries gauge\n"
			   "postern_resubmit_index_entries %" PRIu64 "\n"
			   "# HELP postern_resubmit_index_bytes Bytes of "
			   "the store's pages that hold the index.\n"
			   "# TYPE postern_resubmit_index_bytes gauge\n"
			   "postern_resubmit_index_bytes %" PRIu64 "\n",
			   rs_entries, rs_bytes);
	buf_append_str(b,
		"# HELP postern_queue_entries Entries queued, by state.\n"
		"# TYPE postern_queue_entries gauge\n");
	buf_printf(b, "postern_queue_entries{state=\"pending\"} %" PRIu64 "\n"
		   "postern_queue_entries{state=\"active\"} %" PRIu64 "\n"
		   "postern_queue_entries{state=\"deferred\"} %" PRIu64 "\n"
		   "postern_queue_entries{state=\"held\"} %" PRIu64 "\n"
		   "postern_queue_entries{state=\"in-doubt\"} %" PRIu64 "\n",
		   c.pending, c.active, c.deferred, c.held, c.indoubt);
	if (queue_oldest(st, &oldest_qid, &oldest_us, &err) != STORE_OK) {
		rc = -1;
		oldest_us = 0;
	}
	buf_printf(b, "# HELP postern_oldest_entry_age_seconds Age of the "
		   "oldest queued message (0: none).\n"
		   "# TYPE postern_oldest_entry_age_seconds gauge\n"
		   "postern_oldest_entry_age_seconds %.3f\n",
		   oldest_us != 0 && now_us > oldest_us ?
		   (double)(now_us - oldest_us) / 1e6 : 0.0);
	store_map_usage(st, &map_size, &used);
	buf_printf(b, "# HELP postern_store_map_bytes The LMDB map size.\n"
		   "# TYPE postern_store_map_bytes gauge\n"
		   "postern_store_map_bytes %" PRIu64 "\n"
		   "# HELP postern_store_used_bytes Bytes of the map in use.\n"
		   "# TYPE postern_store_used_bytes gauge\n"
		   "postern_store_used_bytes %" PRIu64 "\n", map_size, used);
	return rc;
}
