/*
 * test_crash.c - a child enqueues, claims, marks and records outcomes in a
 * loop and is killed with SIGKILL at a random moment, 50 times over. After
 * every kill the parent recovers: verify holds and every message the child
 * saw acknowledged is still accounted for (queued or in the ledger).
 */
#include "testlib.h"
#include "corehelp.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KILLS 50
#define MAXACK 200000

TESTLIB_SUITE_DIR("crash")
static struct { uint64_t qid; uint32_t nrcpt; } acked[MAXACK];
static size_t nacked;

/* The child's endless loop; it reports each acknowledged enqueue on fd. */
static void
child_loop(const char *path, int fd, unsigned seed)
{
	static const char *const rcpts[] = { "a@x.example", "b@x.example",
					     "c@x.example" };
	struct store_settings set = { .backoff_min = 1, .backoff_max = 2 };
	struct claim_item it[8];
	struct claim_outcome o[8];
	struct store_msg m[4];
	struct store *st;
	uint64_t qids[4], next;
	const char *err;
	size_t n;

	if (store_open(path, &set, &st, &err) != STORE_OK)
		_exit(2);
	for (;;) {
		size_t nm = 1 + testlib_rnd(&seed) % 4, nr = 1 + testlib_rnd(&seed) % 3;

		for (size_t i = 0; i < nm; i++)
			m[i] = (struct store_msg){ .sender = "s@home.example",
				.rcpts = rcpts, .nrcpt = nr,
				.msgid = "<c@home.example>", .body = "body\r\n",
				.body_len = 6 };
		if (store_enqueue(st, m, nm, store_now_us(), qids,
				  &err) != STORE_OK)
			_exit(3);
		for (size_t i = 0; i < nm; i++) {
			unsigned char rec[12];

			be64_put(rec, qids[i]);
			be32_put(rec + 8, (uint32_t)nr);
			if (write(fd, rec, sizeof(rec)) != sizeof(rec))
				_exit(4);
		}
		if (claim_batch(st, 1, 8, 30, store_now_us(), it, &n, &next,
				&err) != STORE_OK)
			_exit(5);
		claim_mark_sending(st, it, n / 2, NULL, &err);
		memset(o, 0, sizeof(o));
		for (size_t i = 0; i < n; i++) {
			o[i].qid = it[i].qid;
			o[i].idx = it[i].idx;
			o[i].token = it[i].token;
			o[i].result = (enum claim_result)(1 + testlib_rnd(&seed) % 4);
			o[i].reply = "r";
		}
		if (claim_outcome(st, o, n, store_now_us(), &err) != STORE_OK)
			_exit(6);
	}
}

static void
read_acks(int fd)
{
	unsigned char rec[12];

	while (read(fd, rec, sizeof(rec)) == sizeof(rec) && nacked < MAXACK) {
		acked[nacked].qid = be64_get(rec);
		acked[nacked++].nrcpt = be32_get(rec + 8);
	}
}

static void
test_crash_sigkill_loses_nothing(void)
{
	struct claim_recover_stats rs;
	struct store_counters c;
	struct store *st = NULL;
	char path[512];
	const char *err;
	unsigned seed = (unsigned)time(NULL) | 1;
	size_t lost = 0, broken = 0;
	int fds[2], status;

	snprintf(path, sizeof(path), "%s/store", dir);
	fprintf(stderr, "[seed %u] ", seed);
	for (int k = 0; k < KILLS; k++) {
		pid_t pid;

		CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
		pid = fork();
		if (pid == 0) {
			close(fds[0]);
			child_loop(path, fds[1], seed + (unsigned)k);
		}
		close(fds[1]);
		usleep(2000 + testlib_rnd(&seed) % 40000);
		kill(pid, SIGKILL);
		CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
		CU_ASSERT(WIFSIGNALED(status) &&
			  WTERMSIG(status) == SIGKILL);
		read_acks(fds[0]);
		close(fds[0]);
		CU_ASSERT_EQUAL_FATAL(store_open(path, NULL, &st, &err),
				      STORE_OK);
		CU_ASSERT_EQUAL(claim_recover(st, store_now_us(), &rs, &err),
				STORE_OK);
		if (corehelp_verify(st) != 0)
			broken++;
		for (size_t i = 0; i < nacked; i++)
			lost += !corehelp_accounted(st, acked[i].qid,
						    acked[i].nrcpt);
		CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
		CU_ASSERT_EQUAL(c.active, 0);
		store_close(&st);
	}
	fprintf(stderr, "[%d kills, %zu messages acknowledged, %zu lost, "
		"%zu unsound] ", KILLS, nacked, lost, broken);
	CU_ASSERT(nacked > KILLS);
	CU_ASSERT_EQUAL(lost, 0);
	CU_ASSERT_EQUAL(broken, 0);
}

static CU_TestInfo crash_tests[] = {
	{ "sigkill loses nothing", test_crash_sigkill_loses_nothing },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "crash", suite_init, suite_clean, NULL, NULL, crash_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
