/*
 * resubmit_size.c - the resubmission index's size: how many bytes of the
 * store it takes per message, and what pruning gives back.
 *
 * usage: resubmit_size DIR N
 *
 * Round 1 queues N messages of one recipient each (distinct 1 KiB bodies,
 * 1,000 to a transaction, the index on with the default window of 5 days)
 * and delivers them, through the same calls the daemon uses: the queue is
 * empty again, and the index holds N entries, as it does on a connector
 * that keeps up. Then it prunes past the window, in transactions of 256
 * entries as posternd's housekeeping does, and round 2 queues and
 * delivers N more: the store must not grow, the pages the prune freed
 * being used again. Prints the figures after each step.
 */
#include "benchlib.h"
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 1000
#define WINDOW_US (5ull * 86400u * 1000000u)

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
report(struct store *st, const char *when, uint64_t msgs)
{
	uint64_t entries, bytes, map, used;
	const char *err;

	if (store_resubmit_stat(st, &entries, &bytes, &err) != STORE_OK) {
		fprintf(stderr, "resubmit_size: %s\n", err);
		return -1;
	}
	store_map_usage(st, &map, &used);
	printf("%-34s index %9" PRIu64 " entries %8.1f MiB (%5.1f B/msg)  "
	       "store used %8.1f MiB\n", when, entries,
	       (double)bytes / 1048576.0,
	       msgs > 0 ? (double)bytes / (double)msgs : 0.0,
	       (double)used / 1048576.0);
	return 0;
}

/* Queue and deliver n messages, numbered from *seq on. */
static int
fill(struct store *st, uint64_t n, uint64_t *seq, const char **err)
{
	static const char *const rcpts[1] = { "a@foreign.example" };
	static struct store_msg msgs[BATCH];
	static char bodies[BATCH][1024];
	static uint64_t qids[BATCH];
	uint64_t done = 0, delivered = 0;

	while (done < n) {
		size_t b = n - done < BATCH ? (size_t)(n - done) : BATCH;

		for (size_t i = 0; i < b; i++) {
			memset(bodies[i], 'x', sizeof(bodies[i]));
			snprintf(bodies[i], 64, "Subject: %" PRIu64 "\r\n\r\n",
				 (*seq)++);
			memcpy(bodies[i] + 1022, "\r\n", 2);
			msgs[i] = (struct store_msg){
				.sender = "s@home.example", .rcpts = rcpts,
				.nrcpt = 1, .msgid = "<bench@home.example>",
				.body = bodies[i], .body_len = 1024 };
		}
		if (store_enqueue(st, msgs, b, store_now_us(), qids, err) !=
		    STORE_OK)
			return -1;
		if (bench_deliver_all(st, &delivered, err) != STORE_OK)
			return -1;
		done += b;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct store_settings set = { .map_size = 1ull << 30,
				      .resubmit_window_us = WINDOW_US };
	struct store *st = NULL;
	const char *err = NULL;
	uint64_t n, seq = 0, pruned = 0;
	unsigned k, txns = 0;
	double t0, t, worst = 0;
	char what[64];

	if (argc != 3 || (n = strtoull(argv[2], NULL, 10)) == 0) {
		fprintf(stderr, "usage: resubmit_size DIR N\n");
		return 2;
	}
	if (store_open(argv[1], &set, &st, &err) != STORE_OK)
		goto fail;
	report(st, "empty", 0);
	t0 = now_s();
	if (fill(st, n, &seq, &err) < 0)
		goto fail;
	snprintf(what, sizeof(what), "round 1: %" PRIu64 " msgs (%.0f s)", n,
		 now_s() - t0);
	report(st, what, n);
	t0 = now_s();
	do {
		t = now_s();
		if (store_resubmit_prune(st, store_now_us() + WINDOW_US + 1,
					 256, &k, &err) != STORE_OK)
			goto fail;
		t = now_s() - t;
		worst = t > worst ? t : worst;
		pruned += k;
		txns++;
	} while (k == 256);
	snprintf(what, sizeof(what), "pruned %" PRIu64 " in %u txns", pruned,
		 txns);
	report(st, what, n);
	printf("prune: %.2f s in all, %.1f ms the longest transaction\n",
	       now_s() - t0, worst * 1e3);
	t0 = now_s();
	if (fill(st, n, &seq, &err) < 0)
		goto fail;
	snprintf(what, sizeof(what), "round 2: %" PRIu64 " more (%.0f s)", n,
		 now_s() - t0);
	report(st, what, n);
	store_close(&st);
	return 0;
fail:
	fprintf(stderr, "resubmit_size: %s\n", err ? err : "failed");
	store_close(&st);
	return 1;
}
