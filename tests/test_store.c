/*
 * test_store.c - the store: open, schema version, map growth and map full,
 * enqueue, counters.
 */
#include "testlib.h"
#include "store_private.h"
#include "claim.h"
#include "ledger.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

TESTLIB_SUITE_DIR("store")
/* A fresh store directory under the suite's dir. */
static void
fresh_path(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/%s", dir, name);
	testlib_rmtree(buf);
}

static void
test_store_open_creates_and_reopens(void)
{
	char path[512];
	struct store *st = NULL;
	const char *err;
	uint64_t inst, id;

	fresh_path(path, sizeof(path), "open");
	CU_ASSERT_EQUAL_FATAL(store_open(path, NULL, &st, &err), STORE_OK);
	inst = store_instance(st);
	id = store_id(st);
	CU_ASSERT_NOT_EQUAL(id, 0);
	store_close(&st);
	CU_ASSERT_PTR_NULL(st);
	store_close(&st);	/* second close does nothing */
	CU_ASSERT_EQUAL_FATAL(store_open(path, NULL, &st, &err), STORE_OK);
	CU_ASSERT_EQUAL(store_instance(st), inst + 1);
	CU_ASSERT_EQUAL(store_id(st), id);
	store_close(&st);
}

/* Write another schema version straight into meta with plain LMDB. */
static void
set_version(const char *path, uint32_t ver)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	unsigned char b[4];
	MDB_val k = { 7, "version" }, v = { 4, b };

	be32_put(b, ver);
	CU_ASSERT_EQUAL_FATAL(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 16);
	mdb_env_set_mapsize(env, 64ull << 20);
	CU_ASSERT_EQUAL_FATAL(mdb_env_open(env, path, 0, 0600), 0);
	CU_ASSERT_EQUAL_FATAL(mdb_txn_begin(env, NULL, 0, &txn), 0);
	CU_ASSERT_EQUAL_FATAL(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
	CU_ASSERT_EQUAL_FATAL(mdb_put(txn, dbi, &k, &v, 0), 0);
	CU_ASSERT_EQUAL_FATAL(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void
test_store_refuses_other_schema_version(void)
{
	char path[512];
	struct store *st = NULL;
	const char *err = NULL;

	fresh_path(path, sizeof(path), "version");
	CU_ASSERT_EQUAL_FATAL(store_open(path, NULL, &st, &err), STORE_OK);
	store_close(&st);
	set_version(path, 99);
	CU_ASSERT_EQUAL(store_open(path, NULL, &st, &err), STORE_ERR);
	CU_ASSERT_PTR_NULL(st);
	CU_ASSERT_PTR_NOT_NULL_FATAL(err);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "schema version 99"));
	{
		char want[64];

		snprintf(want, sizeof(want), "reads version %u",
			 STORE_SCHEMA_VERSION);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
	}
	set_version(path, STORE_SCHEMA_VERSION);
	CU_ASSERT_EQUAL(store_open(path, NULL, &st, &err), STORE_OK);
	store_close(&st);
}

/* Turn a current store back into an older schema: the counters record
 * cut to ncounters u64s, the databases in drop (NULL-terminated) gone,
 * and the version. */
static void
downgrade(const char *path, size_t ncounters, const char *const *drop,
	  uint32_t version)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta, db;
	MDB_val k = { 8, "counters" }, v;
	unsigned char buf[1 + 10 * 8];

	CU_ASSERT_EQUAL_FATAL(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 16);
	mdb_env_set_mapsize(env, 64ull << 20);
	CU_ASSERT_EQUAL_FATAL(mdb_env_open(env, path, 0, 0600), 0);
	CU_ASSERT_EQUAL_FATAL(mdb_txn_begin(env, NULL, 0, &txn), 0);
	CU_ASSERT_EQUAL_FATAL(mdb_dbi_open(txn, "meta", 0, &meta), 0);
	CU_ASSERT_EQUAL_FATAL(mdb_get(txn, meta, &k, &v), 0);
	CU_ASSERT_EQUAL_FATAL(v.mv_size, sizeof(buf));
	memcpy(buf, v.mv_data, sizeof(buf));
	v.mv_size = 1 + 8 * ncounters;
	v.mv_data = buf;
	CU_ASSERT_EQUAL_FATAL(mdb_put(txn, meta, &k, &v, 0), 0);
	for (; *drop != NULL; drop++) {
		CU_ASSERT_EQUAL_FATAL(mdb_dbi_open(txn, *drop, 0, &db), 0);
		CU_ASSERT_EQUAL_FATAL(mdb_drop(txn, db, 1), 0);
	}
	CU_ASSERT_EQUAL_FATAL(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	set_version(path, version);
}

/* A store at path/name holding message m, turned back into an older
 * schema (downgrade()). */
static void
make_old(char *path, size_t cap, const char *name,
	 const struct store_msg *m, size_t ncounters,
	 const char *const *drop, uint32_t version)
{
	struct store *st = NULL;
	const char *err = NULL;
	uint64_t qid;

	fresh_path(path, cap, name);
	CU_ASSERT_EQUAL_FATAL(store_open(path, NULL, &st, &err), STORE_OK);
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, m, 1, store_now_us(), &qid,
					    &err), STORE_OK);
	store_close(&st);
	downgrade(path, ncounters, drop, version);
}

static void
test_store_upgrades_schema_1(void)
{
	static const char *const rcpts[] = { "a@x.example", "b@x.example" };
	struct store_msg m = { .sender = "s@home.example", .rcpts = rcpts,
			       .nrcpt = 2, .msgid = "<u@x>", .body = "x\r\n",
			       .body_len = 3 };
	/* Schema 1: 8 counters, no history, no resubmission index. */
	static const char *const drop[] = { "history", "resubmit",
					    "resubmit_seq", NULL };
	struct store_counters c;
	struct verify_report vr;
	char path[512];
	struct store *st = NULL;
	const char *err = NULL;

	make_old(path, sizeof(path), "upgrade", &m, 8, drop, 1);
	CU_ASSERT_EQUAL_FATAL(store_open(path, NULL, &st, &err), STORE_OK);
	CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
	CU_ASSERT_EQUAL(c.accepted, 2);
	CU_ASSERT_EQUAL(c.pending, 2);
	CU_ASSERT_EQUAL(c.deleted, 0);
	CU_ASSERT_EQUAL(ledger_verify(st, stderr, &vr, &err), 0);
	store_close(&st);
	/* Upgraded for good: a second open sees version 2. */
	CU_ASSERT_EQUAL_FATAL(store_open(path, NULL, &st, &err), STORE_OK);
	store_close(&st);
}

/* A schema 3 store (before the resubmission index): postern's commands
 * refuse it, posternd's open upgrades it, and the index then works. */
static void
test_store_upgrades_schema_3(void)
{
	static const char *const rcpts[] = { "a@x.example" };
	struct store_settings ro = { .mode = STORE_OPEN_READONLY };
	struct store_settings on = { .resubmit_window_us = 3600000000ull };
	struct store_msg m = { .sender = "s@home.example", .rcpts = rcpts,
			       .nrcpt = 1, .msgid = "<u3@x>", .body = "x\r\n",
			       .body_len = 3 };
	/* Schema 3: 9 counters, no resubmission index. */
	static const char *const drop[] = { "resubmit", "resubmit_seq", NULL };
	struct store_counters c;
	struct verify_report vr;
	char path[512];
	struct store *st = NULL;
	const char *err = NULL;
	uint64_t qid;

	make_old(path, sizeof(path), "upgrade3", &m, 9, drop, 3);
	CU_ASSERT_EQUAL(store_open(path, &ro, &st, &err), STORE_ERR);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "schema version 3: start posternd"));
	CU_ASSERT_EQUAL_FATAL(store_open(path, &on, &st, &err), STORE_OK);
	CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
	CU_ASSERT_EQUAL(c.accepted, 1);
	CU_ASSERT_EQUAL(c.resubmitted, 0);
	CU_ASSERT_EQUAL(ledger_verify(st, stderr, &vr, &err), 0);
	/* The index starts empty: the message queued before the upgrade
	 * is not in it; from now on, a message sent twice is. */
	CU_ASSERT_EQUAL(store_enqueue(st, &m, 1, store_now_us(), &qid, &err),
			STORE_OK);
	CU_ASSERT_NOT_EQUAL(qid, 0);
	CU_ASSERT_EQUAL(store_enqueue(st, &m, 1, store_now_us(), &qid, &err),
			STORE_OK);
	CU_ASSERT_EQUAL(qid, 0);
	store_close(&st);
	CU_ASSERT_EQUAL_FATAL(store_open(path, &ro, &st, &err), STORE_OK);
	CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
	CU_ASSERT_EQUAL(c.resubmitted, 1);
	store_close(&st);
}

static void
msg_fill(struct store_msg *m, const char *const *rcpts, size_t n,
	 const void *body, size_t len)
{
	memset(m, 0, sizeof(*m));
	m->sender = "sender@home.example";
	m->rcpts = rcpts;
	m->nrcpt = n;
	m->msgid = "<id@home.example>";
	m->body = body;
	m->body_len = len;
}

static void
test_store_enqueue_batch_and_counters(void)
{
	static const char *const rcpts[] = { "a@x.example", "b@x.example",
					     "A@x.example" };
	char path[512];
	struct store *st = NULL;
	struct store_msg m[5];
	struct store_counters c;
	uint64_t qids[5];
	const char *err;
	void *body;
	size_t len;

	fresh_path(path, sizeof(path), "enqueue");
	CU_ASSERT_EQUAL_FATAL(store_open(path, NULL, &st, &err), STORE_OK);
	for (int i = 0; i < 5; i++)
		msg_fill(&m[i], rcpts, 3, "hello\r\n", 7);
	CU_ASSERT_EQUAL(store_enqueue(st, m, 5, store_now_us(), qids, &err),
			STORE_OK);
	for (int i = 1; i < 5; i++)
		CU_ASSERT_EQUAL(qids[i], qids[i - 1] + 1);
	CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
	/* "A@x.example" repeats "a@x.example": one entry, not two. */
	CU_ASSERT_EQUAL(c.accepted, 10);
	CU_ASSERT_EQUAL(c.pending, 10);
	CU_ASSERT_EQUAL(store_body_get(st, qids[2], &body, &len, &err), 1);
	CU_ASSERT_EQUAL(len, 7);
	CU_ASSERT_EQUAL(memcmp(body, "hello\r\n", 7), 0);
	free(body);
	CU_ASSERT_EQUAL(store_body_get(st, 999999, &body, &len, &err), 0);
	store_close(&st);
}

static void
test_store_enqueue_refuses_bad_envelope(void)
{
	static const char *const bad[] = { "a@x.example\r\nRCPT TO:<b@y>" };
	char path[512];
	struct store *st = NULL;
	struct store_msg m;
	struct store_counters c;
	uint64_t qid;
	const char *err;

	fresh_path(path, sizeof(path), "badenv");
	CU_ASSERT_EQUAL_FATAL(store_open(path, NULL, &st, &err), STORE_OK);
	msg_fill(&m, bad, 1, "x", 1);
	CU_ASSERT_EQUAL(store_enqueue(st, &m, 1, 1, &qid, &err), STORE_ERR);
	msg_fill(&m, bad, 0, "x", 1);
	CU_ASSERT_EQUAL(store_enqueue(st, &m, 1, 1, &qid, &err), STORE_ERR);
	CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
	CU_ASSERT_EQUAL(c.accepted, 0);
	store_close(&st);
}

/* Enqueue 2 KiB bodies until the store says it is full. */
static size_t
fill_until_full(struct store *st, size_t limit, int *last_rc)
{
	static const char *const rcpts[] = { "a@x.example" };
	static char body[2048];
	struct store_msg m;
	uint64_t qid;
	const char *err;
	size_t ok = 0;

	memset(body, 'x', sizeof(body));
	msg_fill(&m, rcpts, 1, body, sizeof(body));
	*last_rc = STORE_OK;
	while (ok < limit) {
		*last_rc = store_enqueue(st, &m, 1, 1, &qid, &err);
		if (*last_rc != STORE_OK)
			break;
		ok++;
	}
	return ok;
}

static void
test_store_map_full_is_an_error_not_an_abort(void)
{
	struct store_settings set = { .map_size = 1 << 20,
				      .map_max = 1 << 20 };
	char path[512];
	struct store *st = NULL;
	struct store_counters c;
	struct verify_report r;
	const char *err;
	size_t acked;
	int rc;

	fresh_path(path, sizeof(path), "full");
	CU_ASSERT_EQUAL_FATAL(store_open(path, &set, &st, &err), STORE_OK);
	acked = fill_until_full(st, 100000, &rc);
	CU_ASSERT_EQUAL(rc, STORE_FULL);
	CU_ASSERT(acked > 100);
	/* Still usable, and every acknowledged message is there. */
	CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
	CU_ASSERT_EQUAL(c.accepted, acked);
	CU_ASSERT_EQUAL(ledger_verify(st, NULL, &r, &err), 0);
	store_close(&st);
	CU_ASSERT_EQUAL_FATAL(store_open(path, &set, &st, &err), STORE_OK);
	CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
	CU_ASSERT_EQUAL(c.accepted, acked);
	store_close(&st);
}

static void
test_store_map_grows_up_to_its_cap(void)
{
	struct store_settings set = { .map_size = 1 << 20,
				      .map_max = 8 << 20 };
	char path[512];
	struct store *st = NULL;
	uint64_t size, used;
	const char *err;
	size_t acked;
	int rc;

	fresh_path(path, sizeof(path), "grow");
	CU_ASSERT_EQUAL_FATAL(store_open(path, &set, &st, &err), STORE_OK);
	acked = fill_until_full(st, 1500, &rc);
	CU_ASSERT_EQUAL(rc, STORE_OK);
	CU_ASSERT_EQUAL(acked, 1500);
	store_map_usage(st, &size, &used);
	CU_ASSERT(size > (1u << 20));
	CU_ASSERT(size <= (8u << 20));
	acked += fill_until_full(st, 100000, &rc);
	CU_ASSERT_EQUAL(rc, STORE_FULL);
	store_map_usage(st, &size, &used);
	CU_ASSERT_EQUAL(size, 8u << 20);
	store_close(&st);
}

/* store_health(): each state, what ends it (posternd(8), "WHEN IT
 * CANNOT STORE"). */
static void
test_store_health_states_and_recovery(void)
{
	struct store_settings set = { .map_size = 1 << 20,
				      .map_max = 2 << 20 };
	struct store_health_info h;
	struct store_counters c0, c1;
	struct store *st = NULL;
	char path[512];
	const char *err;
	int rc;

	fresh_path(path, sizeof(path), "health");
	CU_ASSERT_EQUAL_FATAL(store_open(path, &set, &st, &err), STORE_OK);
	store_health(st, &h);
	CU_ASSERT_EQUAL(h.state, STORE_HEALTH_OK);
	CU_ASSERT_STRING_EQUAL(h.why, "ok");
	CU_ASSERT_EQUAL(store_recover(st), STORE_HEALTH_OK);

	/* An I/O error on commit: until a commit writes again. The probe
	 * is such a commit, and changes nothing. */
	CU_ASSERT_EQUAL(store_counters_get(st, &c0, &err), STORE_OK);
	store_health_commit(st, EIO, false);
	store_health(st, &h);
	CU_ASSERT_EQUAL(h.state, STORE_HEALTH_IO_ERROR);
	CU_ASSERT_PTR_NOT_NULL(strstr(h.why, "I/O error on commit: "
				      "Input/output error (for "));
	store_health_commit(st, 0, false);	/* wrote nothing: no news */
	store_health(st, &h);
	CU_ASSERT_EQUAL(h.state, STORE_HEALTH_IO_ERROR);
	CU_ASSERT_EQUAL(store_recover(st), STORE_HEALTH_OK);
	CU_ASSERT_EQUAL(store_counters_get(st, &c1, &err), STORE_OK);
	CU_ASSERT_EQUAL(memcmp(&c0, &c1, sizeof(c0)), 0);
	/* full, ENOSPC and a panic are not I/O errors of this kind */
	store_health_commit(st, ENOSPC, false);
	store_health(st, &h);
	CU_ASSERT_EQUAL(h.state, STORE_HEALTH_OK);

	/* MDB_PANIC: until a reopen works. */
	store_fail(st, MDB_PANIC, "test", &err);
	store_health(st, &h);
	CU_ASSERT_EQUAL(h.state, STORE_HEALTH_PANICKED);
	CU_ASSERT(strncmp(h.why, "panicked: ", 10) == 0);
	CU_ASSERT_EQUAL(store_recover(st), STORE_HEALTH_OK);
	CU_ASSERT_FALSE(store_panicked(st));

	/* Full: the map at map_max. The room is looked at again at most
	 * every STORE_ROOM_CHECK_US. */
	fill_until_full(st, 100000, &rc);
	CU_ASSERT_EQUAL(rc, STORE_FULL);
	usleep(STORE_ROOM_CHECK_US + 50000);
	store_health(st, &h);
	CU_ASSERT_EQUAL(h.state, STORE_HEALTH_FULL);
	CU_ASSERT(strncmp(h.why, "full: ", 6) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(h.why, "map_max 2048 KiB"));
	CU_ASSERT_FALSE(store_has_room(st, STORE_ROOM_MIN));
	CU_ASSERT_EQUAL(store_recover(st), STORE_HEALTH_FULL);
	/* worse states come first */
	store_health_commit(st, EIO, false);
	store_health(st, &h);
	CU_ASSERT_EQUAL(h.state, STORE_HEALTH_IO_ERROR);
	store_close(&st);
}

static void
test_store_qid_format_round_trips(void)
{
	char buf[STORE_QID_STRLEN];
	uint64_t q;

	CU_ASSERT_STRING_EQUAL(store_qid_str(0xABCDEF12ull, buf),
			       "00000000ABCDEF12");
	CU_ASSERT_EQUAL(store_qid_parse(buf, &q), 0);
	CU_ASSERT_EQUAL(q, 0xABCDEF12ull);
	CU_ASSERT_EQUAL(store_qid_parse("xyz", &q), -1);
	CU_ASSERT_EQUAL(store_qid_parse("", &q), -1);
}

static CU_TestInfo store_tests[] = {
	{ "open creates and reopens", test_store_open_creates_and_reopens },
	{ "refuses other schema version",
	  test_store_refuses_other_schema_version },
	{ "upgrades schema 1", test_store_upgrades_schema_1 },
	{ "upgrades schema 3", test_store_upgrades_schema_3 },
	{ "enqueue batch and counters", test_store_enqueue_batch_and_counters },
	{ "enqueue refuses bad envelope",
	  test_store_enqueue_refuses_bad_envelope },
	{ "map full is an error, not an abort",
	  test_store_map_full_is_an_error_not_an_abort },
	{ "map grows up to its cap", test_store_map_grows_up_to_its_cap },
	{ "health states and recovery",
	  test_store_health_states_and_recovery },
	{ "qid format round trips", test_store_qid_format_round_trips },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "store", suite_init, suite_clean, NULL, NULL, store_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
