/*
 * test_claim_race.c - many claimers, one store: every entry is claimed
 * exactly once, across threads and across processes. A deliberately wrong
 * claim (find in a read txn, claim in a later write txn: the old
 * connector's bug) must make the same check report duplicates, so we know
 * the check can fail.
 */
#include "testlib.h"
#include "corehelp.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NMSG	50000
#define NRCPT	4
#define NENTRY	(NMSG * NRCPT)
#define THREADS	8
#define BATCH	32
#define SEC	1000000ull

static char *dir;
static struct store *st;
static atomic_uint seen[NENTRY];
static atomic_ulong dups, total;

static int
suite_init(void)
{
	dir = testlib_tmpdir("race");
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

static void
fresh(const char *name, size_t nmsg)
{
	char path[512];
	const char *err;

	store_close(&st);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	testlib_rmtree(path);
	if (store_open(path, NULL, &st, &err) != STORE_OK ||
	    corehelp_fill(st, nmsg, NRCPT, 1000, SEC) != 0)
		abort();
	for (size_t i = 0; i < NENTRY; i++)
		atomic_store(&seen[i], 0);
	atomic_store(&dups, 0);
	atomic_store(&total, 0);
}

static void
note(uint64_t qid, uint32_t idx)
{
	size_t e = (size_t)(qid - 1) * NRCPT + idx;

	if (e >= NENTRY)
		abort();
	if (atomic_fetch_add(&seen[e], 1) != 0)
		atomic_fetch_add(&dups, 1);
	atomic_fetch_add(&total, 1);
}

/* The right way: claim_batch, then record the outcome in one batch. */
static void *
claimer(void *arg)
{
	struct claim_item it[BATCH];
	struct claim_outcome o[BATCH];
	uint32_t worker = (uint32_t)(uintptr_t)arg;
	const char *err;
	uint64_t next;
	size_t n;

	for (;;) {
		if (claim_batch(st, worker, BATCH, 600, 2 * SEC, it, &n, &next,
				&err) != STORE_OK)
			abort();
		if (n == 0)
			break;
		memset(o, 0, sizeof(o));
		for (size_t i = 0; i < n; i++) {
			note(it[i].qid, it[i].idx);
			o[i].qid = it[i].qid;
			o[i].idx = it[i].idx;
			o[i].token = it[i].token;
			o[i].result = CLAIM_DELIVERED;
			o[i].reply = "ok";
		}
		if (claim_outcome(st, o, n, 3 * SEC, &err) != STORE_OK)
			abort();
	}
	return NULL;
}

/* The wrong way, built only for this test: find the entries in a read
 * transaction, then claim them in a separate write transaction. */
struct wrong_args {
	uint64_t qid[BATCH];
	uint32_t idx[BATCH];
	size_t n;
};

static int
wrong_claim_txn(struct store_wtx *w, void *arg)
{
	struct wrong_args *a = arg;
	unsigned char nkey[STORE_KEY_NOTIFY_LEN];
	MDB_val k = { sizeof(nkey), nkey };

	for (size_t i = 0; i < a->n; i++) {
		store_notify_key(nkey, SEC, a->qid[i], a->idx[i]);
		mdb_del(w->txn, w->st->db_notify, &k, NULL);	/* no check */
	}
	return 0;
}

static void *
wrong_claimer(void *arg)
{
	struct wrong_args a;
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_val k, v;
	MDB_cursor_op op;
	const char *err;

	(void)arg;
	for (;;) {
		if (store_read_begin(st, &txn, &err) != STORE_OK)
			abort();
		mdb_cursor_open(txn, st->db_notify, &cur);
		a.n = 0;
		op = MDB_FIRST;
		while (a.n < BATCH && mdb_cursor_get(cur, &k, &v, op) == 0) {
			op = MDB_NEXT;
			a.qid[a.n] = be64_get((unsigned char *)k.mv_data + 8);
			a.idx[a.n++] = be32_get((unsigned char *)k.mv_data +
						16);
		}
		mdb_cursor_close(cur);
		store_read_end(st, &txn);
		if (a.n == 0)
			break;
		if (store_write(st, wrong_claim_txn, &a, &err) != STORE_OK)
			abort();
		for (size_t i = 0; i < a.n; i++)
			note(a.qid[i], a.idx[i]);
	}
	return NULL;
}

static void
run_threads(void *(*fn)(void *))
{
	pthread_t t[THREADS];

	for (uintptr_t i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, fn, (void *)(i + 1));
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
}

static size_t
missing(size_t n)
{
	size_t m = 0;

	for (size_t i = 0; i < n; i++)
		m += atomic_load(&seen[i]) == 0;
	return m;
}

static void
test_claim_race_threads_claim_each_entry_once(void)
{
	struct store_counters c;
	const char *err;

	fresh("threads", NMSG);
	run_threads(claimer);
	fprintf(stderr, "[%lu claimed, %lu duplicates] ",
		atomic_load(&total), atomic_load(&dups));
	CU_ASSERT_EQUAL(atomic_load(&dups), 0);
	CU_ASSERT_EQUAL(atomic_load(&total), NENTRY);
	CU_ASSERT_EQUAL(missing(NENTRY), 0);
	CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
	CU_ASSERT_EQUAL(c.delivered, NENTRY);
	CU_ASSERT_EQUAL(c.pending + c.active, 0);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_claim_race_wrong_claim_is_caught(void)
{
	fresh("wrong", NMSG / 10);
	run_threads(wrong_claimer);
	fprintf(stderr, "[wrong claim: %lu claimed, %lu duplicates] ",
		atomic_load(&total), atomic_load(&dups));
	/* The check must see the bug; TSan would not (no data race). */
	CU_ASSERT(atomic_load(&dups) > 0);
}

/* Two processes, each with its own environment on the same files. */
static void
child_claims(const char *path, const char *out)
{
	struct claim_item it[BATCH];
	struct store *cst;
	const char *err;
	uint64_t next;
	size_t n;
	FILE *f = fopen(out, "w");

	if (f == NULL || store_open(path, NULL, &cst, &err) != STORE_OK)
		_exit(2);
	for (;;) {
		if (claim_batch(cst, 1, BATCH, 600, 2 * SEC, it, &n, &next,
				&err) != STORE_OK)
			_exit(3);
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++)
			fprintf(f, "%lu %u\n", (unsigned long)it[i].qid,
				it[i].idx);
	}
	fclose(f);
	store_close(&cst);
	_exit(0);
}

static void
test_claim_race_processes_claim_each_entry_once(void)
{
	char path[512], out[2][600];
	unsigned long qid;
	unsigned idx;
	struct store_counters c;
	const char *err;
	pid_t pid[2];
	int status;

	fresh("procs", NMSG);
	store_close(&st);	/* never use an env across fork() */
	snprintf(path, sizeof(path), "%s/procs", dir);
	for (int i = 0; i < 2; i++) {
		snprintf(out[i], sizeof(out[i]), "%s/claimed.%d", dir, i);
		pid[i] = fork();
		if (pid[i] == 0)
			child_claims(path, out[i]);
	}
	for (int i = 0; i < 2; i++) {
		CU_ASSERT_EQUAL(waitpid(pid[i], &status, 0), pid[i]);
		CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	for (int i = 0; i < 2; i++) {
		FILE *f = fopen(out[i], "r");
		unsigned long mine = atomic_load(&total);

		CU_ASSERT_PTR_NOT_NULL_FATAL(f);
		while (fscanf(f, "%lu %u", &qid, &idx) == 2)
			note(qid, idx);
		fclose(f);
		fprintf(stderr, "[process %d: %lu] ", i,
			atomic_load(&total) - mine);
	}
	CU_ASSERT_EQUAL(atomic_load(&dups), 0);
	CU_ASSERT_EQUAL(atomic_load(&total), NENTRY);
	CU_ASSERT_EQUAL(missing(NENTRY), 0);
	CU_ASSERT_EQUAL_FATAL(store_open(path, NULL, &st, &err), STORE_OK);
	CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
	CU_ASSERT_EQUAL(c.active, NENTRY);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static CU_TestInfo race_tests[] = {
	{ "threads claim each entry once",
	  test_claim_race_threads_claim_each_entry_once },
	{ "wrong claim is caught", test_claim_race_wrong_claim_is_caught },
	{ "processes claim each entry once",
	  test_claim_race_processes_claim_each_entry_once },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "claim_race", suite_init, suite_clean, NULL, NULL, race_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
