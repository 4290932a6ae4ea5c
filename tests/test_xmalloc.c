/*
 * test_xmalloc.c - the allocation-failure loop (RELIABILITY.md T10).
 *
 * One SMTP transaction (session, enqueue, the reply) and one delivery
 * (claim, maildir driver, outcome) run in a forked child with allocation
 * number N made to fail, for N = 1, 2, ... until a run gets through
 * without reaching N. xmalloc aborts on failure by design (see
 * src/lib/xmalloc.c), so each child must either finish cleanly or die of
 * SIGABRT, never of anything else; and whatever it had done by then must
 * be safe: every 250 it sent names a message the store still accounts
 * for, the store verifies, and no recipient the ledger calls delivered
 * lacks its Maildir file. Fail-once and fail-always both run.
 *
 * Owns:    the suite's scratch directory; one store and Maildir root per N.
 */
#include "corehelp.h"
#include "driver_maildir.h"
#include "ingress_smtp.h"
#include "lib/xmalloc.h"
#include "testlib.h"

#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TESTLIB_SUITE_DIR("xmalloc")

#define NRCPT	2
#define N_LIMIT	100000	/* a loop that never ends is a failure */

static const char client[] =
	"EHLO client.example\r\n"
	"MAIL FROM:<a@home.example>\r\n"
	"RCPT TO:<r0@x.example>\r\n"
	"RCPT TO:<r1@x.example>\r\n"
	"DATA\r\n"
	"Subject: oom\r\n\r\nbody\r\n.\r\n"
	"QUIT\r\n";

/* What the child reports on fd (a pipe), one line per step. */
static void
say(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(int fd, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (write(fd, line, (size_t)n) != n)
		_exit(98);
}

static enum smtp_store_result
enqueue(struct store *st, struct smtp_session *s, uint64_t *qid_r)
{
	struct smtp_message m;
	struct store_msg sm;
	const char *err;

	smtp_session_message(s, &m);
	sm = (struct store_msg){
		.sender = m.sender, .rcpts = m.rcpts, .nrcpt = m.nrcpt,
		.msgid = m.msgid, .body = m.body, .body_len = m.body_len,
	};
	return store_enqueue(st, &sm, 1, store_now_us(), qid_r, &err) ==
	       STORE_OK ? SMTP_STORE_OK : SMTP_STORE_TEMPFAIL;
}

/* The session: "ACK qid" after a 250 to the dot, "REPLY ..." for it. */
static void
transaction(struct store *st, int fd)
{
	static const struct smtp_limits lim = { .hostname = "mx.example" };
	struct smtp_session *s = smtp_session_new(&lim, "192.0.2.1", NULL);
	const char *p = client;
	size_t len = sizeof(client) - 1, used;
	enum smtp_event ev;
	enum smtp_store_result res;
	uint64_t qid = 0;
	char qs[STORE_QID_STRLEN];
	struct buf out;

	buf_init(&out);
	smtp_session_greeting(s, &out);
	while (len > 0) {
		ev = smtp_session_feed(s, p, len, &used, &out);
		p += used;
		len -= used;
		if (ev == SMTP_EV_CLOSE)
			break;
		if (ev != SMTP_EV_MESSAGE)
			continue;
		res = enqueue(st, s, &qid);
		store_qid_str(qid, qs);
		buf_reset(&out);
		smtp_session_stored(s, res, qs, &out);
		/* What the client would read: sent before anything else. */
		if (strncmp(out.data, "250 ", 4) == 0)
			say(fd, "ACK %llu\n", (unsigned long long)qid);
		say(fd, "REPLY %.3s\n", out.data);
	}
	buf_free(&out);
	smtp_session_free(&s);
}

/* One worker round with the maildir driver. */
static void
delivery(struct store *st, struct driver *d, int fd)
{
	struct claim_item items[NRCPT];
	struct driver_rcpt r[NRCPT];
	struct claim_outcome o[NRCPT];
	struct driver_msg m;
	uint64_t next;
	size_t n = 0, i, len;
	void *body = NULL;
	const char *err;

	if (claim_batch(st, 1, NRCPT, 60, store_now_us(), items, &n, &next,
			&err) != STORE_OK || n == 0)
		return;
	if (store_body_get(st, items[0].qid, &body, &len, &err) != 1 ||
	    claim_mark_sending(st, items, n, NULL, &err) != STORE_OK) {
		free(body);
		return;
	}
	m = (struct driver_msg){
		.store_id = store_id(st), .qid = items[0].qid,
		.sender = items[0].sender, .msgid = items[0].msgid,
		.body = body, .body_len = len,
	};
	for (i = 0; i < n; i++)
		r[i] = (struct driver_rcpt){ .idx = items[i].idx,
					     .addr = items[i].rcpt };
	if (driver_deliver(d, &m, r, n) == 0) {
		for (i = 0; i < n; i++) {
			o[i] = (struct claim_outcome){
				.qid = items[i].qid, .idx = items[i].idx,
				.token = items[i].token,
				.result = r[i].result, .reply = r[i].reply,
			};
			memcpy(o[i].body_sha, r[i].sha, 32);
		}
		if (claim_outcome(st, o, n, store_now_us(), &err) == STORE_OK)
			say(fd, "OUTCOME %zu\n", n);
	}
	free(body);
}

/* The child: set up unarmed, run armed, report, exit 0. */
static void
child(const char *base, unsigned long n, bool always, int fd)
{
	static const struct store_settings set = { .map_size = 1 << 20 };
	char path[1024];
	struct store *st = NULL;
	struct driver *d;
	const char *err;

	snprintf(path, sizeof(path), "%s/maildir", base);
	if (mkdir(path, 0700) < 0 ||
	    (d = driver_maildir_new(path, MAILDIR_LAYOUT_ADDRESS)) == NULL)
		_exit(97);
	snprintf(path, sizeof(path), "%s/store", base);
	if (store_open(path, &set, &st, &err) != STORE_OK)
		_exit(97);
	xmalloc_fail_at(n, always);
	transaction(st, fd);
	delivery(st, d, fd);
	say(fd, "CALLS %lu\n", xmalloc_calls());
	xmalloc_fail_at(0, false);
	driver_free(&d);
	store_close(&st);
	_exit(0);
}

/* Files delivered to rcpt (new/ and cur/). */
static int
files(const char *base, const char *rcpt)
{
	static const char *const sub[] = { "new", "cur" };
	char path[1024];
	struct dirent *de;
	DIR *dd;
	int k = 0;

	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/maildir/%s/%s", base, rcpt,
			 sub[i]);
		if ((dd = opendir(path)) == NULL)
			continue;
		while ((de = readdir(dd)) != NULL)
			k += de->d_name[0] != '.';
		closedir(dd);
	}
	return k;
}

struct check {
	const char *base;
	int lost;	/* delivered in the ledger, no file */
};

static int
check_delivered(const struct ledger_rec *rec, void *arg)
{
	struct check *c = arg;

	if (rec->kind == LEDGER_DELIVERED && files(c->base, rec->rcpt) < 1)
		c->lost++;
	return 0;
}

/* After the child: what it acknowledged is there, and sound. */
static bool
invariants(const char *base, const char *report)
{
	static const struct store_settings set = { .map_size = 1 << 20 };
	struct check c = { base, 0 };
	unsigned long long qid;
	struct store *st = NULL;
	const char *err, *p;
	char path[1024];
	bool ok = true;

	snprintf(path, sizeof(path), "%s/store", base);
	if (store_open(path, &set, &st, &err) != STORE_OK) {
		fprintf(stderr, "\nreopen %s: %s\n", path, err);
		return false;
	}
	for (p = report; (p = strstr(p, "ACK ")) != NULL; p++)
		if (sscanf(p, "ACK %llu", &qid) != 1 ||
		    corehelp_accounted(st, qid, NRCPT) != 1)
			ok = false;
	if (corehelp_verify(st) != 0)
		ok = false;
	if (ledger_foreach(st, 0, check_delivered, &c, &err) != STORE_OK ||
	    c.lost > 0)
		ok = false;
	store_close(&st);
	return ok;
}

/* Run the child for N; 1 if it got through without reaching N, 0 if it
 * died as it should, -1 if something was wrong. */
static int
one(unsigned long n, bool always, unsigned long *calls_r)
{
	char base[256], report[4096];
	int fds[2], status;
	ssize_t k, got = 0;
	pid_t pid;
	bool ok;

	snprintf(base, sizeof(base), "%s/%c%lu", dir, always ? 'a' : 'o', n);
	if (mkdir(base, 0700) < 0 || pipe(fds) < 0)
		return -1;
	fflush(NULL);
	if ((pid = fork()) == 0) {
		close(fds[0]);
		child(base, n, always, fds[1]);
	}
	close(fds[1]);
	while ((k = read(fds[0], report + got, sizeof(report) - 1 -
			 (size_t)got)) > 0)
		got += k;
	close(fds[0]);
	report[got] = '\0';
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	ok = invariants(base, report);
	testlib_rmtree(base);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
	    sscanf(strstr(report, "CALLS ") != NULL ? strstr(report, "CALLS ")
		   : "", "CALLS %lu", calls_r) == 1 && *calls_r < n) {
		/* The clean run: both replies and the delivery happened. */
		return ok && strstr(report, "ACK ") != NULL &&
		       strstr(report, "OUTCOME 2") != NULL ? 1 : -1;
	}
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT || !ok) {
		fprintf(stderr, "\nN=%lu%s: status 0x%x, invariants %s, "
			"report:\n%s", n, always ? " always" : "", status,
			ok ? "held" : "BROKEN", report);
		return -1;
	}
	return 0;
}

static void
loop(bool always)
{
	unsigned long n, calls = 0;
	int rc = 0;

	for (n = 1; n < N_LIMIT && (rc = one(n, always, &calls)) == 0; n++)
		;
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT(n > 1);	/* the loop did fail something */
	printf("\n    fail-%s: N = 1..%lu, clean at N = %lu (%lu calls) ",
	       always ? "always" : "once", n - 1, n, calls);
}

static void
test_xmalloc_fail_once_loop(void)
{
	loop(false);
}

static void
test_xmalloc_fail_always_loop(void)
{
	loop(true);
}

/* The hook itself: counts, fails the N-th, and is inert once disarmed. */
static void
test_xmalloc_hook_counts_and_disarms(void)
{
	pid_t pid;
	int status;

	xmalloc_fail_at(3, false);
	free(xmalloc(1));
	free(xstrdup("x"));
	CU_ASSERT_EQUAL(xmalloc_calls(), 2);
	xmalloc_fail_at(0, false);
	free(xmalloc(1));
	fflush(NULL);
	if ((pid = fork()) == 0) {
		xmalloc_fail_at(2, false);
		free(xmalloc(1));
		free(xcalloc(1, 1));	/* the 2nd: aborts */
		_exit(0);
	}
	CU_ASSERT_EQUAL_FATAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

static CU_TestInfo xmalloc_tests[] = {
	{ "fail_once_loop", test_xmalloc_fail_once_loop },
	{ "fail_always_loop", test_xmalloc_fail_always_loop },
	{ "hook_counts_and_disarms", test_xmalloc_hook_counts_and_disarms },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "xmalloc", suite_init, suite_clean, NULL, NULL, xmalloc_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
