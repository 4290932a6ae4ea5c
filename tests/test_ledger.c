/*
 * test_ledger.c - the hash chain, the index that refuses a second terminal
 * record, and verify() naming a tampered record.
 */
#include "testlib.h"
#include "corehelp.h"

#include <string.h>

#define SEC 1000000ull

static char *dir;
static struct store *st;

static int
suite_init(void)
{
	dir = testlib_tmpdir("ledger");
	return 0;
}

static int
suite_clean(void)
{
	store_close(&st);
	testlib_rmtree(dir);
	free(dir);
	return 0;
}

/* A store with n delivered (message, recipient) records. */
static void
delivered_store(const char *name, size_t n)
{
	struct claim_item it[64];
	struct claim_outcome o[64];
	char path[512];
	const char *err;
	uint64_t next;
	size_t got;

	store_close(&st);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	testlib_rmtree(path);
	if (store_open(path, NULL, &st, &err) != STORE_OK ||
	    corehelp_fill(st, n, 1, n, SEC) != 0 ||
	    claim_batch(st, 1, n, 60, SEC, it, &got, &next, &err) != 0 ||
	    got != n)
		abort();
	memset(o, 0, sizeof(o));
	for (size_t i = 0; i < n; i++) {
		o[i].qid = it[i].qid;
		o[i].idx = it[i].idx;
		o[i].token = it[i].token;
		o[i].result = i % 5 == 4 ? CLAIM_PERMFAIL : CLAIM_DELIVERED;
		o[i].reply = "250 2.0.0 Ok";
		memset(o[i].body_sha, (int)i, 32);
	}
	if (claim_outcome(st, o, n, 2 * SEC, &err) != STORE_OK)
		abort();
}

static int
collect(const struct ledger_rec *rec, void *arg)
{
	struct ledger_rec *out = arg;

	out[rec->seq - 1] = *rec;
	return 0;
}

static void
test_ledger_records_are_chained(void)
{
	static struct ledger_rec recs[20];
	struct verify_report r;
	const char *err;

	delivered_store("chain", 20);
	CU_ASSERT_EQUAL(ledger_foreach(st, 1, collect, recs, &err), STORE_OK);
	for (int i = 0; i < 20; i++)
		CU_ASSERT_EQUAL(recs[i].seq, (uint64_t)i + 1);
	for (int i = 0; i < 32; i++)
		CU_ASSERT_EQUAL(recs[0].prev_hash[i], 0);
	CU_ASSERT_NOT_EQUAL(memcmp(recs[1].prev_hash, recs[2].prev_hash, 32),
			    0);
	CU_ASSERT_EQUAL(recs[4].kind, LEDGER_BOUNCED);
	CU_ASSERT_EQUAL(recs[3].kind, LEDGER_DELIVERED);
	CU_ASSERT_STRING_EQUAL(recs[3].msgid, "<fill@home.example>");
	CU_ASSERT_STRING_EQUAL(recs[3].reply, "250 2.0.0 Ok");
	CU_ASSERT_EQUAL(recs[3].body_sha[0], 3);
	CU_ASSERT_EQUAL(recs[3].accepted_us, SEC);
	CU_ASSERT_EQUAL(recs[3].done_us, 2 * SEC);
	CU_ASSERT_EQUAL(ledger_verify(st, stderr, &r, &err), 0);
	CU_ASSERT_EQUAL(r.records, 20);
	CU_ASSERT_EQUAL(r.counted.delivered, 16);
	CU_ASSERT_EQUAL(r.counted.bounced, 4);
}

/* A second terminal record for one (qid, idx) is refused in the append's
 * own transaction. */
static int
append_twice_txn(struct store_wtx *w, void *arg)
{
	struct ledger_rec *rec = arg;

	return ledger_append_txn(w, rec);
}

static void
test_ledger_refuses_second_terminal_record(void)
{
	static struct ledger_rec recs[3];
	struct ledger_rec again;
	struct store_counters c;
	const char *err;

	delivered_store("twice", 3);
	CU_ASSERT_EQUAL(ledger_foreach(st, 1, collect, recs, &err), STORE_OK);
	again = recs[1];
	CU_ASSERT_EQUAL(store_write(st, append_twice_txn, &again, &err),
			STORE_ERR);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "already holds"));
	CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
	CU_ASSERT_EQUAL(c.delivered, 3);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

/* Flip one byte of record seq with plain LMDB, as an attacker would. */
static void
tamper(uint64_t seq, size_t offset)
{
	unsigned char key[8], *copy;
	MDB_val k = { 8, key }, v;
	MDB_txn *txn;

	be64_put(key, seq);
	CU_ASSERT_EQUAL_FATAL(mdb_txn_begin(st->env, NULL, 0, &txn), 0);
	CU_ASSERT_EQUAL_FATAL(mdb_get(txn, st->db_ledger, &k, &v), 0);
	copy = malloc(v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	copy[offset % v.mv_size] ^= 0x01;
	v.mv_data = copy;
	CU_ASSERT_EQUAL_FATAL(mdb_put(txn, st->db_ledger, &k, &v, 0), 0);
	CU_ASSERT_EQUAL_FATAL(mdb_txn_commit(txn), 0);
	free(copy);
}

static char *
verify_text(int *rc_r)
{
	struct verify_report r;
	const char *err;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	*rc_r = ledger_verify(st, f, &r, &err);
	fclose(f);
	return text;
}

static void
test_ledger_verify_names_tampered_record(void)
{
	char *text;
	int rc;

	delivered_store("tamper", 20);
	tamper(7, 110);		/* a byte of the recipient string */
	text = verify_text(&rc);
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "ledger record 7:"));
	CU_ASSERT_PTR_NULL(strstr(text, "ledger record 6:"));
	CU_ASSERT_PTR_NULL(strstr(text, "ledger record 8:"));
	free(text);
}

static void
test_ledger_verify_names_tampered_last_record(void)
{
	char *text;
	int rc;

	delivered_store("tamperlast", 10);
	tamper(10, 30);		/* a byte of the delivery time */
	text = verify_text(&rc);
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "ledger record 10:"));
	free(text);
}

static void
test_ledger_verify_sees_every_byte(void)
{
	int bad = 0, rc;
	char *text;

	/* Whichever byte of record 3 changes, verify names record 3. */
	for (size_t off = 0; off < 140; off += 7) {
		delivered_store("everybyte", 5);
		tamper(3, off);
		text = verify_text(&rc);
		if (rc != 1 || strstr(text, "ledger record 3:") == NULL) {
			fprintf(stderr, "offset %zu: %s\n", off, text);
			bad++;
		}
		free(text);
	}
	CU_ASSERT_EQUAL(bad, 0);
}

static CU_TestInfo ledger_tests[] = {
	{ "records are chained", test_ledger_records_are_chained },
	{ "refuses second terminal record",
	  test_ledger_refuses_second_terminal_record },
	{ "verify names tampered record",
	  test_ledger_verify_names_tampered_record },
	{ "verify names tampered last record",
	  test_ledger_verify_names_tampered_last_record },
	{ "verify sees every byte", test_ledger_verify_sees_every_byte },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "ledger", suite_init, suite_clean, NULL, NULL, ledger_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
