/*
 * corehelp.c - helpers for the core tests (see corehelp.h).
 */
#include "corehelp.h"
#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
corehelp_fill(struct store *st, size_t nmsg, size_t nrcpt, size_t batch,
	      uint64_t now_us)
{
	char (*names)[32] = calloc(nrcpt, 32);
	const char **rcpts = calloc(nrcpt, sizeof(*rcpts));
	struct store_msg *m = calloc(batch, sizeof(*m));
	uint64_t *qids = calloc(batch, sizeof(*qids));
	const char *err;
	int ret = 0;

	for (size_t j = 0; j < nrcpt; j++) {
		snprintf(names[j], 32, "r%zu@x.example", j);
		rcpts[j] = names[j];
	}
	for (size_t i = 0; i < batch; i++) {
		m[i].sender = "s@home.example";
		m[i].rcpts = rcpts;
		m[i].nrcpt = nrcpt;
		m[i].msgid = "<fill@home.example>";
		m[i].body = "Subject: t\r\n\r\nbody\r\n";
		m[i].body_len = 21;
	}
	for (size_t done = 0; done < nmsg && ret == 0; done += batch) {
		size_t n = nmsg - done < batch ? nmsg - done : batch;

		if (store_enqueue(st, m, n, now_us, qids, &err) != STORE_OK) {
			fprintf(stderr, "fill: %s\n", err);
			ret = -1;
		}
	}
	free(qids);
	free(m);
	free(rcpts);
	free(names);
	return ret;
}

int
corehelp_accounted(struct store *st, uint64_t qid, uint32_t nrcpt)
{
	unsigned char key[STORE_KEY_RCPT_LEN];
	MDB_val k = { sizeof(key), key }, v;
	MDB_txn *txn;
	const char *err;
	int ok = 1;

	if (store_read_begin(st, &txn, &err) != STORE_OK)
		return 0;
	for (uint32_t i = 0; i < nrcpt && ok; i++) {
		store_rcpt_key(key, qid, i);
		ok = mdb_get(txn, st->db_rcpts, &k, &v) == 0 ||
		     mdb_get(txn, st->db_ledger_idx, &k, &v) == 0;
	}
	store_read_end(st, &txn);
	return ok;
}

struct store_counters
corehelp_counters(struct store *st)
{
	struct store_counters c = { 0 };
	const char *err;

	CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
	return c;
}

int
corehelp_verify(struct store *st)
{
	struct verify_report r;
	const char *err;
	int rc = ledger_verify(st, stderr, &r, &err);

	if (rc < 0)
		fprintf(stderr, "verify: %s\n", err);
	return rc;
}

void
corehelp_fresh(struct store **st, const char *dir, const char *name,
	       const struct store_settings *set)
{
	char path[512];
	const char *err;

	store_close(st);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	testlib_rmtree(path);
	if (store_open(path, set, st, &err) != STORE_OK) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
}
