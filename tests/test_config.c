/*
 * test_config.c - the "config" suite: postern.conf parsing, the lookups
 * the daemon makes with a snapshot, and the snapshot's refcount.
 *
 * Owns:    a scratch directory for the suite, holding one file per load.
 */
#include "config.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define STRESS_THREADS	8
#define STRESS_ROUNDS	100000

static char *dir;		/* owned: the suite's scratch directory */
static char path[4096];		/* the file the last write_conf() wrote */

static int
suite_init(void)
{
	dir = testlib_tmpdir("config");
	snprintf(path, sizeof(path), "%s/postern.conf", dir);
	return 0;
}

static int
suite_cleanup(void)
{
	testlib_rmtree(dir);
	free(dir);
	dir = NULL;
	return 0;
}

static void
write_conf(const char *text)
{
	FILE *fp = fopen(path, "w");

	CU_ASSERT_FATAL(fp != NULL);
	fputs(text, fp);
	fclose(fp);
}

/* Load text; on success *cfg_r is the caller's, else *error_r is set. */
static int
load_text(const char *text, struct config **cfg_r, const char **error_r)
{
	write_conf(text);
	*error_r = NULL;
	return config_load(path, cfg_r, error_r);
}

/* text must fail, with an error that ends in tail. */
static void
expect_error(const char *text, const char *tail)
{
	struct config *cfg = NULL;
	const char *error = NULL;
	size_t el, tl = strlen(tail);

	CU_ASSERT_EQUAL(load_text(text, &cfg, &error), -1);
	CU_ASSERT_PTR_NULL(cfg);
	CU_ASSERT_PTR_NOT_NULL_FATAL(error);
	el = strlen(error);
	CU_ASSERT(el >= tl && strcmp(error + el - tl, tail) == 0);
	if (!(el >= tl && strcmp(error + el - tl, tail) == 0))
		fprintf(stderr, "\n  got \"%s\"\n  want ...\"%s\"\n", error,
			tail);
}

/* The error text loading text gives ("" if it loads). */
static const char *
load_error(const char *text)
{
	struct config *cfg = NULL;
	const char *error = NULL;

	if (load_text(text, &cfg, &error) == 0) {
		config_unref(&cfg);
		return "";
	}
	return error;
}

/* text must fail with exactly "<path>:<line>: <rest>". */
static void
expect_exact(const char *text, unsigned line, const char *rest)
{
	char want[8192];

	snprintf(want, sizeof(want), "%s:%u: %s", path, line, rest);
	expect_error(text, want);
}

/* Load text that must be valid; the caller unrefs the result. */
static struct config *
expect_ok(const char *text)
{
	struct config *cfg = NULL;
	const char *error = NULL;

	if (load_text(text, &cfg, &error) != 0)
		fprintf(stderr, "\n  unexpected error: %s\n", error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	return cfg;
}

static void
test_config_defaults_without_file(void)
{
	struct config *cfg = NULL;
	const char *error = NULL;

	CU_ASSERT_EQUAL_FATAL(config_load(NULL, &cfg, &error), 0);
	CU_ASSERT_PTR_NULL(cfg->source);
	CU_ASSERT_STRING_EQUAL(cfg->store_path, "/var/lib/postern");
	CU_ASSERT_EQUAL(cfg->store_map_size, 64ull << 20);
	CU_ASSERT_EQUAL(cfg->store_map_max, 16ull << 30);
	CU_ASSERT_STRING_EQUAL(cfg->ingress_listen.host, "127.0.0.1");
	CU_ASSERT_STRING_EQUAL(cfg->ingress_listen.port, "2525");
	CU_ASSERT_PTR_NULL(cfg->ingress_lmtp_listen.host);
	CU_ASSERT_PTR_NULL(cfg->ingress_lmtp_listen.port);
	CU_ASSERT_EQUAL(cfg->ingress_accept_domains.n, 1);
	CU_ASSERT_STRING_EQUAL(cfg->ingress_accept_domains.v[0], "*");
	CU_ASSERT_EQUAL(cfg->ingress_allow_networks.n, 2);
	CU_ASSERT_PTR_NOT_NULL(cfg->ingress_hostname);
	CU_ASSERT(cfg->ingress_hostname[0] != '\0');
	CU_ASSERT_EQUAL(cfg->ingress_max_sessions, 100);
	CU_ASSERT_EQUAL(cfg->ingress_max_sessions_per_ip, 50);
	CU_ASSERT_EQUAL(cfg->ingress_max_recipients, 1000);
	CU_ASSERT_EQUAL(cfg->ingress_max_message_size, 50ull << 20);
	CU_ASSERT_EQUAL(cfg->ingress_idle_timeout, 300);
	CU_ASSERT_EQUAL(cfg->ingress_data_timeout, 600);
	CU_ASSERT_EQUAL(cfg->store_group_wait_ms, 3);
	CU_ASSERT_EQUAL(cfg->workers_count, 16);
	CU_ASSERT_EQUAL(cfg->workers_batch, 16);
	CU_ASSERT_EQUAL(cfg->workers_lease, 600);
	CU_ASSERT_EQUAL(cfg->foreign_driver, CONFIG_DRIVER_MAILDIR);
	CU_ASSERT_STRING_EQUAL(cfg->maildir_root, "/var/lib/postern/maildir");
	CU_ASSERT_EQUAL(cfg->maildir_layout, CONFIG_LAYOUT_ADDRESS);
	CU_ASSERT_PTR_NULL(cfg->smtp.relay.host);
	CU_ASSERT_EQUAL(cfg->queue_backoff_min, 300);
	CU_ASSERT_EQUAL(cfg->queue_backoff_max, 4000);
	CU_ASSERT_EQUAL(cfg->queue_max_lifetime, 5 * 86400);
	CU_ASSERT_EQUAL(cfg->queue_in_doubt_policy, CONFIG_IN_DOUBT_HOLD);
	CU_ASSERT_EQUAL(cfg->queue_look_again, 5);
	CU_ASSERT_EQUAL(cfg->log_level, LOG_LVL_INFO);
	CU_ASSERT_FALSE(cfg->log_syslog);
	CU_ASSERT_EQUAL(cfg->log_format, LOG_FMT_TEXT);
	CU_ASSERT_STRING_EQUAL(cfg->log_syslog_name, "postern");
	config_unref(&cfg);
	CU_ASSERT_PTR_NULL(cfg);
}

static void
test_config_empty_file_gives_defaults(void)
{
	struct config *cfg = expect_ok("; nothing but a comment\n\n");

	CU_ASSERT_STRING_EQUAL(cfg->source, path);
	CU_ASSERT_EQUAL(cfg->workers_count, 16);
	CU_ASSERT_EQUAL(cfg->store_map_max, 16ull << 30);
	config_unref(&cfg);
}

static void
test_config_file_sets_every_type(void)
{
	struct config *cfg = expect_ok(
		"[store]\npath = /srv/p\nmap_size = 1G\nmap_max = 2G\n"
		"[ingress]\nlisten = [::1]:25\nlmtp_listen = 127.0.0.1:24\n"
		"accept_domains = Example.ORG, *.example.net  b.test\n"
		"allow_networks = 10.0.0.0/8,2001:db8::/32\n"
		"hostname = mx.example.org\nmax_sessions = 7\n"
		"max_sessions_per_ip = 3\nmax_recipients = 8\nmax_message_size = 10k\n"
		"idle_timeout = 5m\ndata_timeout = 1h\ncommit_wait = 0\n"
		"[workers]\ncount = 2\nbatch = 1\nlease = 30\n"
		"[foreign]\ndriver = smtp\n"
		"[maildir]\nroot = /m\nlayout = domain/localpart\n"
		"[smtp]\nrelay = mx.example.net:2525\n"
		"[queue]\nbackoff_min = 1s\nbackoff_max = 2d\n"
		"max_lifetime = 7d\nin_doubt_policy = retry\nlook_again = 0\n"
		"[log]\nlevel = debug\nsyslog = yes\n");

	CU_ASSERT_STRING_EQUAL(cfg->store_path, "/srv/p");
	CU_ASSERT_EQUAL(cfg->store_map_size, 1ull << 30);
	CU_ASSERT_EQUAL(cfg->store_map_max, 2ull << 30);
	CU_ASSERT_STRING_EQUAL(cfg->ingress_listen.host, "::1");
	CU_ASSERT_STRING_EQUAL(cfg->ingress_listen.port, "25");
	CU_ASSERT_STRING_EQUAL(cfg->ingress_lmtp_listen.host, "127.0.0.1");
	CU_ASSERT_STRING_EQUAL(cfg->ingress_lmtp_listen.port, "24");
	CU_ASSERT_EQUAL_FATAL(cfg->ingress_accept_domains.n, 3);
	CU_ASSERT_STRING_EQUAL(cfg->ingress_accept_domains.v[0],
			       "example.org");
	CU_ASSERT_STRING_EQUAL(cfg->ingress_accept_domains.v[1],
			       "*.example.net");
	CU_ASSERT_STRING_EQUAL(cfg->ingress_accept_domains.v[2], "b.test");
	CU_ASSERT_EQUAL(cfg->ingress_allow_networks.n, 2);
	CU_ASSERT_STRING_EQUAL(cfg->ingress_hostname, "mx.example.org");
	CU_ASSERT_EQUAL(cfg->ingress_max_sessions, 7);
	CU_ASSERT_EQUAL(cfg->ingress_max_sessions_per_ip, 3);
	CU_ASSERT_EQUAL(cfg->ingress_max_recipients, 8);
	CU_ASSERT_EQUAL(cfg->ingress_max_message_size, 10240);
	CU_ASSERT_EQUAL(cfg->ingress_idle_timeout, 300);
	CU_ASSERT_EQUAL(cfg->ingress_data_timeout, 3600);
	CU_ASSERT_EQUAL(cfg->workers_count, 2);
	CU_ASSERT_EQUAL(cfg->workers_batch, 1);
	CU_ASSERT_EQUAL(cfg->workers_lease, 30);
	CU_ASSERT_EQUAL(cfg->foreign_driver, CONFIG_DRIVER_SMTP);
	CU_ASSERT_STRING_EQUAL(cfg->maildir_root, "/m");
	CU_ASSERT_EQUAL(cfg->maildir_layout, CONFIG_LAYOUT_DOMAIN_LOCALPART);
	CU_ASSERT_STRING_EQUAL(cfg->smtp.relay.host, "mx.example.net");
	CU_ASSERT_STRING_EQUAL(cfg->smtp.relay.port, "2525");
	CU_ASSERT_EQUAL(cfg->queue_backoff_min, 1);
	CU_ASSERT_EQUAL(cfg->queue_backoff_max, 2 * 86400);
	CU_ASSERT_EQUAL(cfg->queue_max_lifetime, 7 * 86400);
	CU_ASSERT_EQUAL(cfg->queue_in_doubt_policy, CONFIG_IN_DOUBT_RETRY);
	CU_ASSERT_EQUAL(cfg->queue_look_again, 0);
	CU_ASSERT_EQUAL(cfg->log_level, LOG_LVL_DEBUG);
	CU_ASSERT_TRUE(cfg->log_syslog);
	config_unref(&cfg);
}

static void
test_config_integer_rejects_junk_negative_overflow(void)
{
	struct config *cfg = expect_ok("[workers]\ncount = 1024\n");

	CU_ASSERT_EQUAL(cfg->workers_count, 1024);
	config_unref(&cfg);
	expect_error("[workers]\ncount = abc\n",
		     ":2: [workers] count: \"abc\" is not a number");
	expect_error("[workers]\ncount = 12x\n",
		     ":2: [workers] count: \"12x\" is not a number");
	expect_error("[workers]\ncount = -3\n",
		     ":2: [workers] count: \"-3\" is negative");
	expect_error("[workers]\ncount = +3\n", "\"+3\" is not a number");
	expect_error("[workers]\ncount =\n", "\"\" is not a number");
	expect_error("[ingress]\nmax_sessions = 99999999999999999999999\n",
		     "\"99999999999999999999999\" is too large");
	expect_error("[ingress]\nmax_sessions = 18446744073709551615\n",
		     "is more than the maximum 1000000");
	expect_error("[workers]\ncount = 0\n",
		     "\"0\" is less than the minimum 1");
	expect_error("[ingress]\nmax_sessions_per_ip = 1000001\n",
		     "is more than the maximum 1000000");
	/* 0 is no limit, not an error */
	cfg = expect_ok("[ingress]\nmax_sessions_per_ip = 0\n");
	CU_ASSERT_EQUAL(cfg->ingress_max_sessions_per_ip, 0);
	config_unref(&cfg);
	expect_error("[workers]\ncount = 1025\n",
		     "\"1025\" is more than the maximum 1024");
}

static void
test_config_size_suffixes(void)
{
	struct config *cfg;

	cfg = expect_ok("[ingress]\nmax_message_size = 1k\n");
	CU_ASSERT_EQUAL(cfg->ingress_max_message_size, 1024);
	config_unref(&cfg);
	cfg = expect_ok("[ingress]\nmax_message_size = 3K\n");
	CU_ASSERT_EQUAL(cfg->ingress_max_message_size, 3072);
	config_unref(&cfg);
	cfg = expect_ok("[ingress]\nmax_message_size = 2m\n");
	CU_ASSERT_EQUAL(cfg->ingress_max_message_size, 2ull << 20);
	config_unref(&cfg);
	cfg = expect_ok("[store]\nmap_size = 3G\nmap_max = 17179869184\n");
	CU_ASSERT_EQUAL(cfg->store_map_size, 3ull << 30);
	CU_ASSERT_EQUAL(cfg->store_map_max, 16ull << 30);
	config_unref(&cfg);
	cfg = expect_ok("[ingress]\nmax_message_size = 123\n");
	CU_ASSERT_EQUAL(cfg->ingress_max_message_size, 123);
	config_unref(&cfg);
	expect_error("[ingress]\nmax_message_size = 5T\n",
		     "\"5T\" is not a size (a number with an optional k, m "
		     "or g suffix)");
	expect_error("[ingress]\nmax_message_size = 1kb\n",
		     "\"1kb\" is not a size (a number with an optional k, m "
		     "or g suffix)");
	expect_error("[ingress]\nmax_message_size = k\n",
		     "\"k\" is not a number");
	expect_error("[store]\nmap_max = 99999999999G\n",
		     "\"99999999999G\" is too large");
	expect_error("[store]\nmap_size = 512k\n",
		     "\"512k\" is less than the minimum 1048576");
}

/* A key that was ([ingress] commit_wait): read with a warning, whatever
 * its value, and nothing in the snapshot changes. */
static void
test_config_obsolete_key(void)
{
	struct config *cfg;

	cfg = expect_ok("[ingress]\ncommit_wait = 2ms\n");
	CU_ASSERT_EQUAL(cfg->store_group_wait_ms, 3);
	config_unref(&cfg);
	cfg = expect_ok("[store]\ngroup_wait = 7ms\n"
			"[ingress]\ncommit_wait = not a duration\n");
	CU_ASSERT_EQUAL(cfg->store_group_wait_ms, 7);
	config_unref(&cfg);
	expect_error("[store]\ncommit_wait = 2ms\n",
		     "unknown key \"commit_wait\" in section [store]");
}

static void
test_config_duration_suffixes(void)
{
	struct config *cfg;

	cfg = expect_ok("[store]\ngroup_wait = 5ms\n"
			"[ingress]\nidle_timeout = 30\ndata_timeout = 2h\n"
			"[workers]\nlease = 10m\n"
			"[queue]\nmax_lifetime = 1d\nbackoff_min = 45s\n");
	CU_ASSERT_EQUAL(cfg->ingress_idle_timeout, 30);
	CU_ASSERT_EQUAL(cfg->ingress_data_timeout, 7200);
	CU_ASSERT_EQUAL(cfg->store_group_wait_ms, 5);
	CU_ASSERT_EQUAL(cfg->workers_lease, 600);
	CU_ASSERT_EQUAL(cfg->queue_max_lifetime, 86400);
	CU_ASSERT_EQUAL(cfg->queue_backoff_min, 45);
	config_unref(&cfg);
	cfg = expect_ok("[store]\ngroup_wait = 1s\n");
	CU_ASSERT_EQUAL(cfg->store_group_wait_ms, 1000);
	config_unref(&cfg);
	expect_error("[ingress]\nidle_timeout = 500ms\n",
		     "\"500ms\" is not a duration (a number with an optional "
		     "s, m, h or d suffix)");
	expect_error("[store]\ngroup_wait = 2x\n",
		     "\"2x\" is not a duration (a number with an optional "
		     "ms, s, m, h or d suffix)");
	expect_error("[store]\ngroup_wait = 2s\n",
		     "\"2s\" is more than the maximum 1000");
	expect_error("[ingress]\nidle_timeout = 0s\n",
		     "\"0s\" is less than the minimum 1");
	expect_error("[queue]\nmax_lifetime = 99999999999999d\n",
		     "\"99999999999999d\" is too large");
	expect_error("[queue]\nmax_lifetime = 50000d\n",
		     "\"50000d\" is more than the maximum 4294967295");
}

static void
test_config_boolean_values(void)
{
	static const char *const yes[] = { "yes", "true", "on", "1", "YES" };
	static const char *const no[] = { "no", "false", "off", "0", "Off" };
	struct config *cfg;
	char text[128];
	size_t i;

	for (i = 0; i < 5; i++) {
		snprintf(text, sizeof(text), "[log]\nsyslog = %s\n", yes[i]);
		cfg = expect_ok(text);
		CU_ASSERT_TRUE(cfg->log_syslog);
		config_unref(&cfg);
		snprintf(text, sizeof(text), "[log]\nsyslog = %s\n", no[i]);
		cfg = expect_ok(text);
		CU_ASSERT_FALSE(cfg->log_syslog);
		config_unref(&cfg);
	}
	expect_exact("[log]\nsyslog = maybe\n", 2,
		     "[log] syslog: \"maybe\" is not a boolean (yes/no, "
		     "true/false, on/off, 1/0)");
	expect_error("[log]\nsyslog = 2\n", "\"2\" is not a boolean "
		     "(yes/no, true/false, on/off, 1/0)");
}

static void
test_config_enum_values(void)
{
	static const char *const drivers[] = {
		"maildir", "smtp", "lmtp", "ccmail", "imap", "jmap"
	};
	struct config *cfg;
	char text[256];
	size_t i;

	for (i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
		snprintf(text, sizeof(text), "[foreign]\ndriver = %s\n"
			 "[smtp]\nrelay = relay:25\n"
			 "[lmtp]\nrelay = /run/lmtp\n"
			 "[imap]\nserver = imap:143\nuser = u\n"
			 "password_file = /etc/pw\n"
			 "[jmap]\nurl = http://h/jmap/\nuser = u\n"
			 "password = pw\n", drivers[i]);
		cfg = expect_ok(text);
		CU_ASSERT_EQUAL(cfg->foreign_driver, (enum config_driver)i);
		config_unref(&cfg);
	}
	cfg = expect_ok("[log]\nlevel = warning\n");
	CU_ASSERT_EQUAL(cfg->log_level, LOG_LVL_WARN);
	config_unref(&cfg);
	expect_exact("[foreign]\ndriver = uucp\n", 2,
		     "[foreign] driver: \"uucp\" is not one of: maildir, "
		     "smtp, lmtp, ccmail, imap, jmap");
	expect_error("[maildir]\nlayout = Address\n",
		     "\"Address\" is not one of: address, domain/localpart");
	expect_error("[queue]\nin_doubt_policy = drop\n",
		     "\"drop\" is not one of: hold, retry");
	expect_error("[log]\nlevel = notice\n",
		     "\"notice\" is not one of: error, warning, info, debug");
}

static void
test_config_string_values(void)
{
	struct config *cfg;

	cfg = expect_ok("[store]\npath = /a b/c\n[ingress]\nhostname =\n");
	CU_ASSERT_STRING_EQUAL(cfg->store_path, "/a b/c");
	CU_ASSERT(cfg->ingress_hostname[0] != '\0');
	config_unref(&cfg);
	expect_error("[store]\npath = var/lib\n",
		     "[store] path: \"var/lib\" is not an absolute path");
	expect_error("[maildir]\nroot =\n",
		     "[maildir] root: \"\" is not an absolute path");
	expect_error("[ingress]\nhostname = mx..example.org\n",
		     "\"mx..example.org\" is not a host name");
}

static void
test_config_ccmail_section(void)
{
	struct config *cfg;

	cfg = expect_ok("[foreign]\ndriver = ccmail\n");
	CU_ASSERT_EQUAL(cfg->foreign_driver, CONFIG_DRIVER_CCMAIL);
	CU_ASSERT_STRING_EQUAL(cfg->ccmail_drop_dir,
			       "/var/spool/postern/ccmail");
	CU_ASSERT_STRING_EQUAL(cfg->ccmail_charset, "ISO-8859-1");
	CU_ASSERT_PTR_NULL(cfg->ccmail_address_map);
	CU_ASSERT_STRING_EQUAL(cfg->ccmail_fallback, "none");
	CU_ASSERT_STRING_EQUAL(cfg->ccmail_postoffice, "POSTOFFICE");
	config_unref(&cfg);
	cfg = expect_ok("[ccmail]\ndrop_dir = /d\ncharset = CP850\n"
			"address_map = /m\nfallback = %L, %F at %p\n"
			"postoffice = SALES PO\n");
	CU_ASSERT_STRING_EQUAL(cfg->ccmail_drop_dir, "/d");
	CU_ASSERT_STRING_EQUAL(cfg->ccmail_charset, "CP850");
	CU_ASSERT_STRING_EQUAL(cfg->ccmail_address_map, "/m");
	CU_ASSERT_STRING_EQUAL(cfg->ccmail_fallback, "%L, %F at %p");
	CU_ASSERT_STRING_EQUAL(cfg->ccmail_postoffice, "SALES PO");
	config_unref(&cfg);
	expect_exact("[ccmail]\n\ncharset = UTF-16\n", 3,
		     "[ccmail] charset: charset \"UTF-16\" does not write "
		     "ASCII as ASCII");
	expect_exact("[ccmail]\ncharset = KLINGON\n", 2,
		     "[ccmail] charset: charset \"KLINGON\" is not known to "
		     "iconv");
	expect_exact("[ccmail]\nfallback = %u\n", 2,
		     "[ccmail] fallback: \"%u\" has no \" at \" (a cc:Mail "
		     "name is \"name at POSTOFFICE\")");
	expect_exact("[ccmail]\nfallback = %q at X\n", 2,
		     "[ccmail] fallback: \"%q at X\": unknown escape %q "
		     "(use %u %f %l %F %L %d %p %%)");
	expect_exact("[ccmail]\naddress_map = map.txt\n", 2,
		     "[ccmail] address_map: \"map.txt\" is not an absolute "
		     "path");
	expect_exact("[ccmail]\npostoffice =\n", 2,
		     "[ccmail] postoffice: must be 1 to 64 characters");
}

static void
test_config_error_names_file_line_and_key(void)
{
	expect_exact("[store]\npath = /x\n\n; c\n[workers]\nbatch = 2\n"
		     "count = abc\n", 7,
		     "[workers] count: \"abc\" is not a number");
	expect_exact("[ingress]\nlisten = 127.0.0.1\n", 2,
		     "[ingress] listen: \"127.0.0.1\" has no :port");
	expect_exact("[ingress]\nlisten =\n", 2,
		     "[ingress] listen: must not be empty");
	expect_exact("[ingress]\nallow_networks = 10.0.0.0/8 10.1.2.3/8\n",
		     2, "[ingress] allow_networks: \"10.1.2.3/8\" has bits "
		     "set past the prefix length /8");
}

static void
test_config_log_format_and_syslog_name(void)
{
	struct config *cfg;
	char name[65], text[128], want[256];

	cfg = expect_ok("[log]\nformat = json\nsyslog_name = postfix/postern\n");
	CU_ASSERT_EQUAL(cfg->log_format, LOG_FMT_JSON);
	CU_ASSERT_STRING_EQUAL(cfg->log_syslog_name, "postfix/postern");
	config_unref(&cfg);
	cfg = expect_ok("[log]\nformat = syslog\nsyslog_name = mx-2.postern\n");
	CU_ASSERT_EQUAL(cfg->log_format, LOG_FMT_SYSLOG);
	CU_ASSERT_STRING_EQUAL(cfg->log_syslog_name, "mx-2.postern");
	config_unref(&cfg);
	cfg = expect_ok("[log]\nformat = text\n");
	CU_ASSERT_EQUAL(cfg->log_format, LOG_FMT_TEXT);
	config_unref(&cfg);
	expect_exact("[log]\nlevel = info\nformat = xml\n", 3,
		     "[log] format: \"xml\" is not one of: text, json, syslog");
	/* a space, ':' or '[' would break the "NAME[PID]: " a reader of
	 * the log splits on */
	expect_exact("[log]\nsyslog_name = post fix\n", 2,
		     "[log] syslog_name: \"post fix\" is not 1 to 63 "
		     "letters, digits and \"-._/\"");
	expect_exact("[log]\n\nsyslog_name = postern[1]\n", 3,
		     "[log] syslog_name: \"postern[1]\" is not 1 to 63 "
		     "letters, digits and \"-._/\"");
	expect_exact("[log]\nsyslog_name =\n", 2,
		     "[log] syslog_name: \"\" is not 1 to 63 letters, "
		     "digits and \"-._/\"");
	memset(name, 'a', 64);
	name[64] = '\0';
	snprintf(text, sizeof(text), "[log]\nsyslog_name = %s\n", name);
	snprintf(want, sizeof(want), "[log] syslog_name: \"%s\" is not 1 to "
		 "63 letters, digits and \"-._/\"", name);
	expect_exact(text, 2, want);
	name[63] = '\0';
	snprintf(text, sizeof(text), "[log]\nsyslog_name = %s\n", name);
	cfg = expect_ok(text);
	CU_ASSERT_STRING_EQUAL(cfg->log_syslog_name, name);
	config_unref(&cfg);
}

static void
test_config_unknown_key(void)
{
	expect_exact("[workers]\n\n\n\n\nbatch = 3\ncuont = 4\n", 7,
		     "unknown key \"cuont\" in section [workers]");
	expect_exact("[store]\nPath = /x\n", 2,
		     "unknown key \"Path\" in section [store]");
}

static void
test_config_unknown_section(void)
{
	expect_exact("[store]\npath = /x\n[foo]\nbar = 1\n", 3,
		     "unknown section [foo]");
	expect_exact("[store]\n[foo]\n[log]\n", 2, "unknown section [foo]");
	expect_exact("[ store ]\npath = /x\n", 1,
		     "unknown section [ store ]");
}

/* The reason is one log line: a control byte quoted from the file (inih
 * keeps a lone CR) never starts another. */
static void
test_config_error_quotes_no_control_bytes(void)
{
	expect_exact("[store]\n[fo\ro\x1b]\n", 2, "unknown section [fo?o?]");
	expect_exact("[store]\nk\rx = 1\n", 2,
		     "unknown key \"k?x\" in section [store]");
}

static void
test_config_key_outside_section(void)
{
	expect_exact("path = /x\n[store]\n", 1,
		     "key \"path\" is outside any section");
}

static void
test_config_missing_file(void)
{
	struct config *cfg = NULL;
	const char *error = NULL;
	char missing[4200], want[4300];

	snprintf(missing, sizeof(missing), "%s/nonexistent.conf", dir);
	snprintf(want, sizeof(want), "cannot open %s: No such file or "
		 "directory", missing);
	CU_ASSERT_EQUAL(config_load(missing, &cfg, &error), -1);
	CU_ASSERT_PTR_NULL(cfg);
	CU_ASSERT_STRING_EQUAL(error, want);
}

static void
test_config_syntax_error(void)
{
	expect_exact("[store]\npath = /x\nthis is not a key\n", 3,
		     "syntax error (expected \"key = value\", \"[section]\" "
		     "or a comment)");
	expect_exact("[store\npath = /x\n", 1,
		     "syntax error (expected \"key = value\", \"[section]\" "
		     "or a comment)");
	/* the earlier of a syntax and a value error is reported */
	expect_exact("[workers]\njunk\ncount = x\n", 2,
		     "syntax error (expected \"key = value\", \"[section]\" "
		     "or a comment)");
}

static void
test_config_duplicate_key_last_wins(void)
{
	struct config *cfg = expect_ok("[workers]\ncount = 2\n[store]\n"
				       "path = /a\n[workers]\ncount = 9\n");

	CU_ASSERT_EQUAL(cfg->workers_count, 9);
	config_unref(&cfg);
	cfg = expect_ok("[ingress]\naccept_domains = a.test b.test\n"
			"accept_domains = c.test\n");
	CU_ASSERT_EQUAL(cfg->ingress_accept_domains.n, 1);
	CU_ASSERT_STRING_EQUAL(cfg->ingress_accept_domains.v[0], "c.test");
	config_unref(&cfg);
}

static void
test_config_comments_and_indentation(void)
{
	struct config *cfg = expect_ok(
		"# hash comment\n; semicolon comment\n"
		"  [workers]   ; trailing comment\n"
		"\tcount = 6   ; six\n"
		"    batch = 3\n"
		"   # indented comment\r\n"
		"lease = 9s\r\n");

	CU_ASSERT_EQUAL(cfg->workers_count, 6);
	CU_ASSERT_EQUAL(cfg->workers_batch, 3);
	CU_ASSERT_EQUAL(cfg->workers_lease, 9);
	config_unref(&cfg);
}

static void
test_config_long_line_rejected(void)
{
	char text[1024];

	snprintf(text, sizeof(text), "[ingress]\naccept_domains = %0*d\n",
		 300, 0);
	expect_error(text, ":2: the line is too long (at most 197 "
		     "characters)");
}

static void
test_config_ingress_tls_and_auth(void)
{
	char text[8192];

	expect_exact("[ingress]\ntls = may\n", 2,
		     "[ingress] tls = may needs tls_cert and tls_key");
	snprintf(text, sizeof(text), "[ingress]\ntls = encrypt\n"
		 "tls_cert = %s/none.pem\ntls_key = %s/none.key\n", dir, dir);
	expect_error(text, "none.pem: No such file or directory");
	CU_ASSERT(strstr(load_error(text), ":4: [ingress] "
			 "tls_cert/tls_key: certificate ") != NULL);
	expect_exact("[ingress]\nauth = optional\n", 2,
		     "[ingress] auth = optional needs auth_users");
	expect_exact("[ingress]\nauth = required\nauth_users = /nonexistent\n",
		     2, "[ingress] auth is offered over TLS only: set tls (or "
		     "auth_plaintext = yes)");
	expect_exact("[ingress]\nauth = required\nauth_plaintext = yes\n"
		     "auth_users = /nonexistent/users\n", 4,
		     "[ingress] auth_users: cannot open /nonexistent/users: "
		     "No such file or directory");
	expect_exact("[ingress]\ntls = maybe\n", 2, "[ingress] tls: \"maybe\" "
		     "is not one of: none, may, encrypt");
	expect_exact("[ingress]\nauth = yes\n", 2, "[ingress] auth: \"yes\" "
		     "is not one of: none, optional, required");
}

static void
test_config_cross_checks(void)
{
	expect_exact("[store]\nmap_max = 32M\n", 2,
		     "[store] map_size must not be larger than [store] "
		     "map_max");
	expect_exact("[queue]\nbackoff_max = 2m\n\nbackoff_min = 1h\n", 4,
		     "[queue] backoff_min must not be larger than [queue] "
		     "backoff_max");
	expect_exact("[foreign]\ndriver = smtp\n", 2,
		     "[foreign] driver = smtp needs [smtp] relay");
	expect_exact("[foreign]\ndriver = lmtp\n", 2,
		     "[foreign] driver = lmtp needs [lmtp] relay");
	expect_exact("[smtp]\nauth_user = u\n", 2,
		     "[smtp] auth_user and auth_password_file go together");
	expect_exact("[foreign]\ndriver = imap\n[imap]\nuser = u\n", 2,
		     "[foreign] driver = imap needs [imap] server, user and "
		     "password_file");
	expect_exact("[lmtp]\nprobe = imap://u@h/INBOX\n", 2,
		     "[lmtp] probe and probe_password_file go together");
	expect_exact("[smtp]\nprobe = imap://h/INBOX\n"
		     "probe_password_file = /p\n", 2,
		     "[smtp] probe: not imap[s]://USER@HOST[:PORT]/MAILBOX: "
		     "imap://h/INBOX");
}

static void
test_config_imap_section(void)
{
	struct config *cfg = expect_ok("[imap]\nserver = [::1]:993\n"
				       "tls = implicit\nuser = %l*m\n"
				       "password_file = /etc/pw\n"
				       "mailbox = Archive/%d\n"
				       "create_mailbox = yes\n"
				       "[lmtp]\nprobe = imaps://m@h/INBOX\n"
				       "probe_password_file = /etc/pw\n");

	CU_ASSERT_STRING_EQUAL(cfg->imap.server.host, "::1");
	CU_ASSERT_STRING_EQUAL(cfg->imap.server.port, "993");
	CU_ASSERT_EQUAL(cfg->imap.tls, CONFIG_TLS_IMPLICIT);
	CU_ASSERT_STRING_EQUAL(cfg->imap.user, "%l*m");
	CU_ASSERT_STRING_EQUAL(cfg->imap.mailbox, "Archive/%d");
	CU_ASSERT_TRUE(cfg->imap.create_mailbox);
	CU_ASSERT_EQUAL(cfg->imap.append_timeout, 600);
	CU_ASSERT_STRING_EQUAL(cfg->lmtp.probe, "imaps://m@h/INBOX");
	config_unref(&cfg);
	cfg = expect_ok("");
	CU_ASSERT_STRING_EQUAL(cfg->imap.mailbox, "INBOX");
	CU_ASSERT_EQUAL(cfg->imap.tls, CONFIG_TLS_MAY);
	CU_ASSERT_PTR_NULL(cfg->imap.server.host);
	CU_ASSERT_PTR_NULL(cfg->smtp.probe);
	config_unref(&cfg);
	/* implicit is for [imap] only */
	expect_error("[smtp]\ntls = implicit\n",
		     "\"implicit\" is not one of: none, may, encrypt");
}

static void
test_config_jmap_section(void)
{
	struct config *cfg = expect_ok("[foreign]\ndriver = jmap\n"
				       "[jmap]\n"
				       "url = https://mail.example/.well-known/"
				       "jmap\nuser = postern\n"
				       "password_file = /etc/postern/jmap.pw\n"
				       "account = %u\ntimeout = 30s\n"
				       "tls_verify = no\n");

	CU_ASSERT_EQUAL(cfg->foreign_driver, CONFIG_DRIVER_JMAP);
	CU_ASSERT_STRING_EQUAL(cfg->jmap.url,
			       "https://mail.example/.well-known/jmap");
	CU_ASSERT_STRING_EQUAL(cfg->jmap.user, "postern");
	CU_ASSERT_PTR_NULL(cfg->jmap.password);
	CU_ASSERT_STRING_EQUAL(cfg->jmap.password_file,
			       "/etc/postern/jmap.pw");
	CU_ASSERT_STRING_EQUAL(cfg->jmap.account, "%u");
	CU_ASSERT_EQUAL(cfg->jmap.timeout, 30);
	CU_ASSERT_FALSE(cfg->jmap.tls_verify);
	config_unref(&cfg);
	cfg = expect_ok("");
	CU_ASSERT_PTR_NULL(cfg->jmap.url);
	CU_ASSERT_STRING_EQUAL(cfg->jmap.account, "%l");
	CU_ASSERT_STRING_EQUAL(cfg->jmap.mailbox, "inbox");
	CU_ASSERT_FALSE(cfg->jmap.create_mailbox);
	CU_ASSERT_PTR_NULL(cfg->jmap.token_file);
	CU_ASSERT_TRUE(cfg->jmap.tls_verify);
	CU_ASSERT_EQUAL(cfg->jmap.timeout, 300);
	CU_ASSERT_EQUAL(cfg->jmap.reconnect_max, 60);
	config_unref(&cfg);
	expect_exact("[jmap]\n\nurl = imap://h/\n", 3,
		     "[jmap] url: \"imap://h/\" is not an http:// or https:// "
		     "URL");
	expect_error("[jmap]\nurl = http://\n", "\"http://\" is not an "
		     "http:// or https:// URL");
	expect_error("[jmap]\nurl = http://h/a b\n", "is not an http:// or "
		     "https:// URL");
	expect_exact("[foreign]\ndriver = jmap\n[jmap]\nurl = http://h/\n"
		     "user = u\n", 4, "[foreign] driver = jmap needs [jmap] "
		     "url, and user with password or password_file, or "
		     "token_file");
	expect_exact("[jmap]\npassword_file = /p\npassword = x\n", 3,
		     "[jmap] password and password_file: set one, not both");
	expect_exact("[jmap]\ntoken_file = /t\nuser = u\n", 3,
		     "[jmap] token_file is a login of its own: set it, or "
		     "user with password or password_file, not both");
	cfg = expect_ok("[foreign]\ndriver = jmap\n[jmap]\nurl = http://h/\n"
			"token_file = /etc/postern/jmap.token\n"
			"mailbox = Postern\ncreate_mailbox = yes\n");
	CU_ASSERT_STRING_EQUAL(cfg->jmap.token_file,
			       "/etc/postern/jmap.token");
	CU_ASSERT_STRING_EQUAL(cfg->jmap.mailbox, "Postern");
	CU_ASSERT_TRUE(cfg->jmap.create_mailbox);
	config_unref(&cfg);
}

static void
test_config_peer_defaults_are_rfc5321(void)
{
	struct config *cfg = expect_ok("");

	CU_ASSERT_EQUAL(cfg->smtp.tls, CONFIG_TLS_MAY);
	CU_ASSERT_EQUAL(cfg->lmtp.tls, CONFIG_TLS_NONE);
	CU_ASSERT_TRUE(cfg->smtp.tls_verify);
	CU_ASSERT_FALSE(cfg->smtp.auth_plaintext);
	CU_ASSERT_PTR_NULL(cfg->smtp.auth_user);
	CU_ASSERT_PTR_NULL(cfg->smtp.tls_ca_file);
	CU_ASSERT_PTR_NULL(cfg->lmtp.relay.host);
	CU_ASSERT_EQUAL(cfg->smtp.connect_timeout, 30);
	CU_ASSERT_EQUAL(cfg->smtp.greeting_timeout, 300);
	CU_ASSERT_EQUAL(cfg->smtp.mail_timeout, 300);
	CU_ASSERT_EQUAL(cfg->smtp.rcpt_timeout, 300);
	CU_ASSERT_EQUAL(cfg->smtp.data_timeout, 120);
	CU_ASSERT_EQUAL(cfg->smtp.block_timeout, 180);
	CU_ASSERT_EQUAL(cfg->lmtp.dot_timeout, 600);
	CU_ASSERT_EQUAL(cfg->lmtp.reconnect_max, 60);
	CU_ASSERT_EQUAL(cfg->queue_max_attempts, 0);
	config_unref(&cfg);
}

static void
test_config_peer_keys_are_read(void)
{
	struct config *cfg = expect_ok(
		"[foreign]\ndriver = lmtp\n"
		"[smtp]\nrelay = mx:25\ntls = encrypt\ntls_verify = no\n"
		"tls_ca_file = /etc/ca.pem\nauth_user = joe\n"
		"auth_password_file = /etc/pw\nauth_plaintext = yes\n"
		"dot_timeout = 3s\nreconnect_max = 2m\n"
		"[lmtp]\nrelay = /run/dovecot/lmtp\nconnect_timeout = 2\n"
		"[queue]\nmax_attempts = 5\n"
		"[bounce]\nrelay = home.example:25\ntls = none\n");

	CU_ASSERT_EQUAL(cfg->foreign_driver, CONFIG_DRIVER_LMTP);
	CU_ASSERT_EQUAL(cfg->smtp.tls, CONFIG_TLS_ENCRYPT);
	CU_ASSERT_FALSE(cfg->smtp.tls_verify);
	CU_ASSERT_STRING_EQUAL(cfg->smtp.tls_ca_file, "/etc/ca.pem");
	CU_ASSERT_STRING_EQUAL(cfg->smtp.auth_user, "joe");
	CU_ASSERT_STRING_EQUAL(cfg->smtp.auth_password_file, "/etc/pw");
	CU_ASSERT_TRUE(cfg->smtp.auth_plaintext);
	CU_ASSERT_EQUAL(cfg->smtp.dot_timeout, 3);
	CU_ASSERT_EQUAL(cfg->smtp.reconnect_max, 120);
	CU_ASSERT_STRING_EQUAL(cfg->lmtp.relay.host, "/run/dovecot/lmtp");
	CU_ASSERT_PTR_NULL(cfg->lmtp.relay.port);
	CU_ASSERT_EQUAL(cfg->lmtp.connect_timeout, 2);
	CU_ASSERT_EQUAL(cfg->queue_max_attempts, 5);
	CU_ASSERT_STRING_EQUAL(cfg->bounce.relay.host, "home.example");
	CU_ASSERT_EQUAL(cfg->bounce.tls, CONFIG_TLS_NONE);
	CU_ASSERT_EQUAL(cfg->bounce.dot_timeout, 600);
	config_unref(&cfg);
	cfg = expect_ok("[lmtp]\nrelay = [::1]:24\n");
	CU_ASSERT_STRING_EQUAL(cfg->lmtp.relay.host, "::1");
	CU_ASSERT_STRING_EQUAL(cfg->lmtp.relay.port, "24");
	config_unref(&cfg);
	expect_exact("[smtp]\ntls = starttls\n", 2, "[smtp] tls: "
		     "\"starttls\" is not one of: none, may, encrypt");
	expect_error("[smtp]\ntls_ca_file = ca.pem\n",
		     "\"ca.pem\" is not an absolute path");
	expect_error("[lmtp]\nconnect_timeout = 0\n", "");
}

static int
allowed4(const struct config *cfg, const char *ip)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	CU_ASSERT_FATAL(inet_pton(AF_INET, ip, &sin.sin_addr) == 1);
	return config_network_allowed(cfg, (struct sockaddr *)&sin);
}

static int
allowed6(const struct config *cfg, const char *ip)
{
	struct sockaddr_in6 sin6;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	CU_ASSERT_FATAL(inet_pton(AF_INET6, ip, &sin6.sin6_addr) == 1);
	return config_network_allowed(cfg, (struct sockaddr *)&sin6);
}

static void
test_config_cidr_matches_ipv4(void)
{
	struct config *cfg = expect_ok("[ingress]\nallow_networks = "
				       "192.168.4.0/22, 10.1.2.3 0.0.0.0/32\n");

	CU_ASSERT_EQUAL(allowed4(cfg, "192.168.4.0"), 1);
	CU_ASSERT_EQUAL(allowed4(cfg, "192.168.7.255"), 1);
	CU_ASSERT_EQUAL(allowed4(cfg, "192.168.8.0"), 0);
	CU_ASSERT_EQUAL(allowed4(cfg, "192.168.3.255"), 0);
	CU_ASSERT_EQUAL(allowed4(cfg, "10.1.2.3"), 1);
	CU_ASSERT_EQUAL(allowed4(cfg, "10.1.2.4"), 0);
	CU_ASSERT_EQUAL(allowed4(cfg, "127.0.0.1"), 0);
	CU_ASSERT_EQUAL(allowed6(cfg, "::1"), 0);
	config_unref(&cfg);

	CU_ASSERT_EQUAL_FATAL(config_load(NULL, &cfg, &(const char *){0}), 0);
	CU_ASSERT_EQUAL(allowed4(cfg, "127.3.4.5"), 1);
	CU_ASSERT_EQUAL(allowed4(cfg, "128.0.0.1"), 0);
	config_unref(&cfg);

	cfg = expect_ok("[ingress]\nallow_networks = 0.0.0.0/0\n");
	CU_ASSERT_EQUAL(allowed4(cfg, "203.0.113.9"), 1);
	CU_ASSERT_EQUAL(allowed6(cfg, "2001:db8::1"), 0);
	config_unref(&cfg);
}

static void
test_config_cidr_matches_ipv6(void)
{
	struct config *cfg = expect_ok("[ingress]\nallow_networks = "
				       "2001:db8:a::/47 ::1/128 fe80::1\n");
	struct sockaddr_un_like { sa_family_t family; char path[20]; } un;

	CU_ASSERT_EQUAL(allowed6(cfg, "2001:db8:a::1"), 1);
	CU_ASSERT_EQUAL(allowed6(cfg, "2001:db8:b:ffff::1"), 1);
	CU_ASSERT_EQUAL(allowed6(cfg, "2001:db8:c::"), 0);
	CU_ASSERT_EQUAL(allowed6(cfg, "::1"), 1);
	CU_ASSERT_EQUAL(allowed6(cfg, "::2"), 0);
	CU_ASSERT_EQUAL(allowed6(cfg, "fe80::1"), 1);
	CU_ASSERT_EQUAL(allowed4(cfg, "127.0.0.1"), 0);
	memset(&un, 0, sizeof(un));
	un.family = AF_UNIX;
	CU_ASSERT_EQUAL(config_network_allowed(cfg, (struct sockaddr *)&un),
			0);
	CU_ASSERT_EQUAL(config_network_allowed(cfg, NULL), 0);
	config_unref(&cfg);
}

static void
test_config_cidr_matches_mapped_ipv4(void)
{
	struct config *cfg = expect_ok("[ingress]\nallow_networks = "
				       "198.51.100.0/24\n");

	CU_ASSERT_EQUAL(allowed6(cfg, "::ffff:198.51.100.7"), 1);
	CU_ASSERT_EQUAL(allowed6(cfg, "::ffff:198.51.101.7"), 0);
	/* compatible (not mapped) addresses are IPv6 only */
	CU_ASSERT_EQUAL(allowed6(cfg, "::c633:6407"), 0);
	config_unref(&cfg);
	CU_ASSERT_EQUAL_FATAL(config_load(NULL, &cfg, &(const char *){0}), 0);
	CU_ASSERT_EQUAL(allowed6(cfg, "::ffff:127.0.0.1"), 1);
	config_unref(&cfg);
}

static void
test_config_cidr_rejected(void)
{
	expect_error("[ingress]\nallow_networks = 10.0.0.0/33\n",
		     "\"10.0.0.0/33\": the prefix length must be a number "
		     "from 0 to 32");
	expect_error("[ingress]\nallow_networks = ::/129\n",
		     "\"::/129\": the prefix length must be a number "
		     "from 0 to 128");
	expect_error("[ingress]\nallow_networks = 10.0.0.0/x\n",
		     "\"10.0.0.0/x\": the prefix length must be a number "
		     "from 0 to 32");
	expect_error("[ingress]\nallow_networks = localhost\n",
		     "\"localhost\" is not an IPv4 or IPv6 address or network");
	expect_error("[ingress]\nallow_networks = 2001:db8::1/32\n",
		     "\"2001:db8::1/32\" has bits set past the prefix length "
		     "/32");
	expect_error("[ingress]\nallow_networks = ,\n",
		     "[ingress] allow_networks: the list is empty");
}

static void
test_config_domain_matching(void)
{
	struct config *cfg = expect_ok("[ingress]\naccept_domains = "
				       "example.org, Other.Test\n");

	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "a@example.org"), 1);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "a@EXAMPLE.Org"), 1);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "b@other.test"), 1);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "\"a@b\"@example.org"),
			1);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "a@example.org@evil"),
			0);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "a@sub.example.org"), 0);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "a@xexample.org"), 0);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "a@"), 0);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "example.org"), 0);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "postmaster"), 1);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "PostMaster"), 1);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "postmaster@evil.test"),
			0);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, NULL), 0);
	config_unref(&cfg);

	CU_ASSERT_EQUAL_FATAL(config_load(NULL, &cfg, &(const char *){0}), 0);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "x@anything.test"), 1);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "nodomain"), 1);
	config_unref(&cfg);
	expect_error("[ingress]\naccept_domains = a..b\n",
		     "\"a..b\" is not a domain, \"*\" or \"*.domain\"");
	expect_error("[ingress]\naccept_domains = *.\n",
		     "\"*.\" is not a domain, \"*\" or \"*.domain\"");
	expect_error("[ingress]\naccept_domains = a.*.b\n",
		     "\"a.*.b\" is not a domain, \"*\" or \"*.domain\"");
	expect_error("[ingress]\naccept_domains =\n",
		     "[ingress] accept_domains: the list is empty");
}

static void
test_config_domain_wildcard_matches_subdomains(void)
{
	struct config *cfg = expect_ok("[ingress]\naccept_domains = "
				       "*.Example.org\n");

	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "a@sub.example.org"), 1);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "a@x.SUB.example.ORG"),
			1);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "a@example.org"), 0);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "a@badexample.org"), 0);
	CU_ASSERT_EQUAL(config_domain_accepted(cfg, "a@.example.org"), 0);
	config_unref(&cfg);
}

static void
hostport_ok(const char *s, const char *host, const char *port)
{
	char *h = NULL, *p = NULL;
	const char *error = NULL;

	CU_ASSERT_EQUAL_FATAL(config_parse_hostport(s, &h, &p, &error), 0);
	CU_ASSERT_STRING_EQUAL(h, host);
	CU_ASSERT_STRING_EQUAL(p, port);
	free(h);
	free(p);
}

static void
hostport_bad(const char *s, const char *want)
{
	char *h = NULL, *p = NULL;
	const char *error = NULL;

	CU_ASSERT_EQUAL(config_parse_hostport(s, &h, &p, &error), -1);
	CU_ASSERT_PTR_NULL(h);
	CU_ASSERT_PTR_NULL(p);
	CU_ASSERT_PTR_NOT_NULL_FATAL(error);
	CU_ASSERT_STRING_EQUAL(error, want);
}

static void
test_config_hostport_parsing(void)
{
	hostport_ok("[::1]:25", "::1", "25");
	hostport_ok("127.0.0.1:2525", "127.0.0.1", "2525");
	hostport_ok("mx.example.org:65535", "mx.example.org", "65535");
	hostport_ok("[2001:db8::1]:1", "2001:db8::1", "1");
	hostport_ok("[::ffff:1.2.3.4]:24", "::ffff:1.2.3.4", "24");
}

static void
test_config_hostport_rejected(void)
{
	hostport_bad("", "the address is empty");
	hostport_bad(NULL, "the address is empty");
	hostport_bad("localhost", "\"localhost\" has no :port");
	hostport_bad("::1:25", "\"::1:25\": an IPv6 address must be in "
		     "brackets, as in [::1]:25");
	hostport_bad("[::1]", "\"[::1]\" is not [address]:port");
	hostport_bad("[::1]25", "\"[::1]25\" is not [address]:port");
	hostport_bad("[nope]:25", "\"[nope]:25\": \"nope\" is not a host name "
		     "or address");
	hostport_bad(":25", "\":25\": \"\" is not a host name or address");
	hostport_bad("a:0", "\"a:0\": port \"0\" is not a number from 1 to "
		     "65535");
	hostport_bad("a:65536", "\"a:65536\": port \"65536\" is not a number "
		     "from 1 to 65535");
	hostport_bad("a:", "\"a:\": port \"\" is not a number from 1 to "
		     "65535");
	hostport_bad("a:smtp", "\"a:smtp\": port \"smtp\" is not a number "
		     "from 1 to 65535");
	hostport_bad("a:99999999999999999999", "\"a:99999999999999999999\": "
		     "port \"99999999999999999999\" is not a number from 1 to "
		     "65535");
}

static void
test_config_hostport_empty_only_where_allowed(void)
{
	struct config *cfg = expect_ok("[ingress]\nlmtp_listen = [::1]:24\n"
				       "lmtp_listen =\n[smtp]\nrelay =\n");

	CU_ASSERT_PTR_NULL(cfg->ingress_lmtp_listen.host);
	CU_ASSERT_PTR_NULL(cfg->smtp.relay.host);
	config_unref(&cfg);
	expect_error("[smtp]\nrelay = [::1]\n",
		     "[smtp] relay: \"[::1]\" is not [address]:port");
}

static void
test_config_reload_keeps_old_snapshot(void)
{
	struct config *current = expect_ok("[workers]\ncount = 3\n");
	struct config *worker = config_ref(current), *fresh;

	fresh = expect_ok("[workers]\ncount = 5\n");
	/* what SIGHUP does: swap in the new one, drop the old reference */
	config_unref(&current);
	CU_ASSERT_PTR_NULL(current);
	current = fresh;
	fresh = NULL;
	CU_ASSERT_EQUAL(worker->workers_count, 3);
	CU_ASSERT_STRING_EQUAL(worker->store_path, "/var/lib/postern");
	CU_ASSERT_EQUAL(current->workers_count, 5);
	config_unref(&worker);
	config_unref(&current);
	config_unref(&current);		/* NULL: does nothing */
}

static void
test_config_failed_reload_leaves_pointer_alone(void)
{
	struct config *cfg = expect_ok("[workers]\ncount = 3\n");
	struct config *keep = cfg;
	const char *error = NULL;

	write_conf("[workers]\ncount = x\n");
	CU_ASSERT_EQUAL(config_load(path, &cfg, &error), -1);
	CU_ASSERT_PTR_EQUAL(cfg, keep);
	config_unref(&cfg);
}

static void *
stress_thread(void *arg)
{
	struct config *shared = arg;
	int i;

	for (i = 0; i < STRESS_ROUNDS; i++) {
		struct config *mine = config_ref(shared);

		if (mine->workers_count != 16)
			abort();
		config_unref(&mine);
	}
	return NULL;
}

static void
test_config_refcount_stress(void)
{
	pthread_t th[STRESS_THREADS];
	struct config *cfg = NULL;
	const char *error = NULL;
	int i;

	CU_ASSERT_EQUAL_FATAL(config_load(NULL, &cfg, &error), 0);
	for (i = 0; i < STRESS_THREADS; i++)
		CU_ASSERT_FATAL(pthread_create(&th[i], NULL, stress_thread,
					       cfg) == 0);
	for (i = 0; i < STRESS_THREADS; i++)
		pthread_join(th[i], NULL);
	CU_ASSERT_EQUAL(atomic_load(&cfg->refs), 1);
	config_unref(&cfg);
}

/*
 * A second unref of the last reference: the count reads 0, so unref must
 * panic. Once the last reference is really gone the memory is freed, so
 * the child puts the live snapshot in exactly that state instead of
 * reading freed memory.
 */
static void
test_config_double_unref_aborts(void)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		struct config *cfg = NULL, *again;
		const char *error = NULL;

		if (config_load(NULL, &cfg, &error) != 0)
			_exit(2);
		again = config_ref(cfg);
		config_unref(&cfg);
		/* the holder of "again" drops a reference it no longer has */
		atomic_store(&again->refs, 0);
		config_unref(&again);
		_exit(0);
	}
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT_TRUE(WIFSIGNALED(status));
	if (WIFSIGNALED(status))
		CU_ASSERT_EQUAL(WTERMSIG(status), SIGABRT);
}

static CU_TestInfo config_tests[] = {
	{ "defaults_without_file", test_config_defaults_without_file },
	{ "empty_file_gives_defaults", test_config_empty_file_gives_defaults },
	{ "file_sets_every_type", test_config_file_sets_every_type },
	{ "integer_rejects_junk_negative_overflow",
	  test_config_integer_rejects_junk_negative_overflow },
	{ "size_suffixes", test_config_size_suffixes },
	{ "duration_suffixes", test_config_duration_suffixes },
	{ "obsolete_key", test_config_obsolete_key },
	{ "boolean_values", test_config_boolean_values },
	{ "enum_values", test_config_enum_values },
	{ "string_values", test_config_string_values },
	{ "ccmail_section", test_config_ccmail_section },
	{ "error_names_file_line_and_key",
	  test_config_error_names_file_line_and_key },
	{ "log_format_and_syslog_name",
	  test_config_log_format_and_syslog_name },
	{ "unknown_key", test_config_unknown_key },
	{ "unknown_section", test_config_unknown_section },
	{ "error_quotes_no_control_bytes",
	  test_config_error_quotes_no_control_bytes },
	{ "key_outside_section", test_config_key_outside_section },
	{ "missing_file", test_config_missing_file },
	{ "syntax_error", test_config_syntax_error },
	{ "duplicate_key_last_wins", test_config_duplicate_key_last_wins },
	{ "comments_and_indentation", test_config_comments_and_indentation },
	{ "long_line_rejected", test_config_long_line_rejected },
	{ "ingress_tls_and_auth", test_config_ingress_tls_and_auth },
	{ "cross_checks", test_config_cross_checks },
	{ "imap_section", test_config_imap_section },
	{ "jmap_section", test_config_jmap_section },
	{ "peer_defaults_are_rfc5321", test_config_peer_defaults_are_rfc5321 },
	{ "peer_keys_are_read", test_config_peer_keys_are_read },
	{ "cidr_matches_ipv4", test_config_cidr_matches_ipv4 },
	{ "cidr_matches_ipv6", test_config_cidr_matches_ipv6 },
	{ "cidr_matches_mapped_ipv4", test_config_cidr_matches_mapped_ipv4 },
	{ "cidr_rejected", test_config_cidr_rejected },
	{ "domain_matching", test_config_domain_matching },
	{ "domain_wildcard_matches_subdomains",
	  test_config_domain_wildcard_matches_subdomains },
	{ "hostport_parsing", test_config_hostport_parsing },
	{ "hostport_rejected", test_config_hostport_rejected },
	{ "hostport_empty_only_where_allowed",
	  test_config_hostport_empty_only_where_allowed },
	{ "reload_keeps_old_snapshot", test_config_reload_keeps_old_snapshot },
	{ "failed_reload_leaves_pointer_alone",
	  test_config_failed_reload_leaves_pointer_alone },
	{ "refcount_stress", test_config_refcount_stress },
	{ "double_unref_aborts", test_config_double_unref_aborts },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "config", suite_init, suite_cleanup, NULL, NULL, config_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
