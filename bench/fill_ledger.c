/*
 * fill_ledger.c - make a store whose ledger holds N delivered records, for
 * timing `postern audit --verify` on a big ledger (bench/verify.sh).
 *
 * usage: fill_ledger DIR N
 * Messages of 4 recipients, 1 KiB bodies; enqueued 1,000 at a time,
 * claimed and recorded 256 at a time, through the same calls the daemon
 * uses, with the same durability.
 */
#include "benchlib.h"
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RCPTS 4
#define BATCH 1000

int
main(int argc, char **argv)
{
	static const char *const rcpts[RCPTS] = { "a@foreign.example",
		"b@foreign.example", "c@foreign.example", "d@foreign.example" };
	static struct store_msg msgs[BATCH];
	static char mids[BATCH][64];
	static char bodies[BATCH][1024];
	uint64_t serial = 0;
	static uint64_t qids[BATCH];
	struct store_settings set = { .map_size = 1ull << 30 };
	struct store *st = NULL;
	const char *err = NULL;
	char body[1024];
	uint64_t want, done = 0;

	if (argc != 3 || (want = strtoull(argv[2], NULL, 10)) == 0) {
		fprintf(stderr, "usage: fill_ledger DIR N\n");
		return 2;
	}
	memset(body, 'x', sizeof(body));
	memcpy(body + sizeof(body) - 2, "\r\n", 2);
	if (store_open(argv[1], &set, &st, &err) != STORE_OK)
		goto fail;
	for (size_t i = 0; i < BATCH; i++) {
		msgs[i].sender = "s@home.example";
		msgs[i].rcpts = rcpts;
		msgs[i].nrcpt = RCPTS;
		msgs[i].msgid = "<bench@home.example>";
		msgs[i].body = body;
		msgs[i].body_len = sizeof(body);
	}
	while (done < want) {
		/* Each message its own: the fleet audit (bench/fleet_audit.sh)
		 * must not take them for copies of one. */
		for (size_t i = 0; i < BATCH; i++) {
			snprintf(mids[i], sizeof(mids[i]),
				 "<bench.%" PRIu64 ".%d@home.example>",
				 serial, (int)getpid());
			memcpy(bodies[i], body, sizeof(body));
			snprintf(bodies[i], 32, "Subject: %" PRIu64 "\r\n",
				 serial++);
			bodies[i][strlen(bodies[i])] = 'x';
			msgs[i].msgid = mids[i];
			msgs[i].body = bodies[i];
		}
		if (store_enqueue(st, msgs, BATCH, store_now_us(), qids,
				  &err) != STORE_OK)
			goto fail;
		if (bench_deliver_all(st, &done, &err) != STORE_OK)
			goto fail;
	}
	printf("%" PRIu64 " delivered records in %s\n", done, argv[1]);
	store_close(&st);
	return 0;
fail:
	fprintf(stderr, "fill_ledger: %s\n", err ? err : "failed");
	store_close(&st);
	return 1;
}
