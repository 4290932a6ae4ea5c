/*
 * posternd.c - main() of the connector daemon: options, configuration,
 * signals, thread start and ordered shutdown.
 *
 * Owns:    the event base, the store, the worker pool and the ingress;
 *          it starts them in that order and stops them in reverse.
 * Threads: the main thread runs the event loop.
 */
#include "admin_http.h"
#include "admin_socket.h"
#include "claim.h"
#include "config.h"
#include "driver_table.h"
#include "ingress_server.h"
#include "store.h"
#include "worker.h"
#include "lib/fileio.h"
#include "lib/log.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

struct daemon {
	const char *config_path;	/* NULL: built-in defaults */
	struct config *cfg;		/* shared: current snapshot */
	struct event_base *base;
	struct store *st;
	struct worker_pool *pool;
	struct ingress *in;
	struct admin_socket *admin;
	struct admin_http *http;		/* NULL: no [admin] listen */
	struct event *sigterm, *sigint, *sighup;
	int lock_fd;			/* posternd.lock, held for life */
	bool stopping;
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: posternd [-f] [-n] [-c FILE]\n"
		"  -c FILE    configuration file (default %s if it exists,\n"
		"             else built-in defaults; see postern.conf(5))\n"
		"  -f         stay in the foreground and log to stderr\n"
		"  -n         check the configuration (and the store, if there "
		"is one)\n"
		"             and exit: 0 good, 1 not\n"
		"  -h, --help this help\n"
		"  --version  print the version and exit\n",
		CONFIG_DEFAULT_PATH);
}

static void
on_stop(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	if (d->stopping)
		return;
	d->stopping = true;
	log_info("signal %d: stopping: no new connections, finishing the "
		 "batches in flight", (int)sig);
	sd_notify(0, "STOPPING=1");
	ingress_stop_accepting(d->in);
	event_base_loopexit(d->base, NULL);
}

static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	struct config *cfg = NULL;
	const char *err;

	(void)sig;
	(void)what;
	sd_notify(0, "RELOADING=1");
	if (config_load(d->config_path, &cfg, &err) < 0) {
		log_err("reload: %s; keeping the running configuration", err);
		sd_notifyf(0, "READY=1\nSTATUS=reload failed: %s", err);
		return;
	}
	if (strcmp(cfg->store_path, d->cfg->store_path) != 0 ||
	    cfg->workers_count != d->cfg->workers_count ||
	    cfg->foreign_driver != d->cfg->foreign_driver ||
	    (cfg->daemon_user == NULL) != (d->cfg->daemon_user == NULL) ||
	    (cfg->daemon_user != NULL &&
	     strcmp(cfg->daemon_user, d->cfg->daemon_user) != 0) ||
	    cfg->log_format != d->cfg->log_format ||
	    strcmp(cfg->log_syslog_name, d->cfg->log_syslog_name) != 0)
		log_warn("reload: [store] path, [workers] count, [foreign] "
			 "driver, [daemon] user, [log] format and syslog_name "
			 "and listen addresses change only on restart");
	log_set_level(cfg->log_level);
	ingress_set_config(d->in, cfg);
	if (d->st != NULL)
		store_resubmit_window_set(d->st, (uint64_t)
			cfg->ingress_resubmit_window * 1000000u);
	config_unref(&d->cfg);
	d->cfg = cfg;
	sd_notify(0, "READY=1\nSTATUS=configuration reloaded");
	log_info("reload: configuration %s loaded",
		 d->config_path ? d->config_path : "(built-in defaults)");
}

/* mkdir path; when it made it, fsync the directory that names it, so
 * that a power cut cannot take the new directory (and what is later
 * stored below it) away. */
static int
mkdir_durable(char *path, mode_t mode)
{
	char *slash;
	int ret;

	if (mkdir(path, mode) < 0)
		return errno == EEXIST ? 0 : -1;
	slash = strrchr(path, '/');
	if (slash == NULL)
		return fileio_fsync_dir(".");
	if (slash == path)
		return fileio_fsync_dir("/");
	*slash = '\0';
	ret = fileio_fsync_dir(path);
	*slash = '/';
	return ret;
}

/* mkdir -p path (mode 0700 for the last one, 0755 for the ones above),
 * each directory it makes durable. */
static int
mkdir_p(const char *path)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir_durable(buf, 0755) < 0)
			return -1;
		*p = '/';
	}
	return mkdir_durable(buf, 0700);
}

/* The store directory must be the user's: made for it if missing. */
static int
check_store_owner(const struct config *cfg, const struct passwd *pw,
		  char *err, size_t len)
{
	struct stat sb;

	if (stat(cfg->store_path, &sb) < 0 && errno == ENOENT) {
		if (mkdir_p(cfg->store_path) < 0 ||
		    chown(cfg->store_path, pw->pw_uid, pw->pw_gid) < 0) {
			snprintf(err, len, "[store] path %s: cannot create it "
				 "for [daemon] user %s: %s", cfg->store_path,
				 pw->pw_name, strerror(errno));
			return -1;
		}
		return 0;
	}
	if (stat(cfg->store_path, &sb) < 0) {
		snprintf(err, len, "[store] path %s: %s", cfg->store_path,
			 strerror(errno));
		return -1;
	}
	if (sb.st_uid != pw->pw_uid) {
		snprintf(err, len, "[store] path %s belongs to uid %lu, not to "
			 "[daemon] user %s (uid %lu): chown -R %s %s",
			 cfg->store_path, (unsigned long)sb.st_uid,
			 pw->pw_name, (unsigned long)pw->pw_uid, pw->pw_name,
			 cfg->store_path);
		return -1;
	}
	return 0;
}

/* Started as root: become [daemon] user (Postfix's mail_owner) once the
 * listeners are bound. No threads run yet. "user = root" stays root on
 * purpose; no user at all stays root with a warning. */
static int
drop_root(const struct config *cfg, const char **error_r)
{
	static char err[768];
	struct passwd *pw;

	if (geteuid() != 0)
		return 0;
	if (cfg->daemon_user == NULL) {
		log_warn("running as root: set [daemon] user to run as an "
			 "unprivileged user (postern.conf(5))");
		return 0;
	}
	errno = 0;
	pw = getpwnam(cfg->daemon_user);
	if (pw == NULL) {
		snprintf(err, sizeof(err), "[daemon] user %s: %s",
			 cfg->daemon_user, errno != 0 ? strerror(errno) :
			 "no such user");
		goto fail;
	}
	if (pw->pw_uid == 0)
		return 0;
	/* The store directory was made or checked for pw by lock_store(),
	 * which start() runs first. */
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 ||
	    setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		snprintf(err, sizeof(err), "[daemon] user %s: cannot switch "
			 "to uid %lu gid %lu: %s", pw->pw_name,
			 (unsigned long)pw->pw_uid, (unsigned long)pw->pw_gid,
			 strerror(errno));
		goto fail;
	}
	if (setuid(0) == 0 || seteuid(0) == 0)
		panic("posternd: root came back after dropping it");
	log_info("running as %s (uid %lu, gid %lu)", pw->pw_name,
		 (unsigned long)pw->pw_uid, (unsigned long)pw->pw_gid);
	return 0;
fail:
	*error_r = err;
	return -1;
}

/* One store, one daemon: an exclusive flock(2) on STORE/posternd.lock,
 * held for the life of the process (the kernel drops it when the process
 * dies, however it dies). A second posternd on the same store is refused
 * with the holder's pid, before it opens the store or touches the admin
 * socket. The file holds the holder's pid, for people. */
static int
lock_store(struct daemon *d, const char **error_r)
{
	static char err[2 * 4096 + 256];
	char path[4096], pid[32];
	struct passwd *pw = NULL;
	ssize_t n;
	int fd;

	/* Still root, before binding: the directory (and so the lock file)
	 * must be [daemon] user's, as drop_root() checks later. */
	if (geteuid() == 0 && d->cfg->daemon_user != NULL &&
	    (pw = getpwnam(d->cfg->daemon_user)) != NULL && pw->pw_uid == 0)
		pw = NULL;
	if (pw != NULL) {
		if (check_store_owner(d->cfg, pw, err, sizeof(err)) < 0)
			goto fail;
	} else if (mkdir_p(d->cfg->store_path) < 0) {
		snprintf(err, sizeof(err), "[store] path %s: cannot create: %s",
			 d->cfg->store_path, strerror(errno));
		goto fail;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/posternd.lock",
			     d->cfg->store_path) >= sizeof(path)) {
		snprintf(err, sizeof(err), "[store] path %s: too long",
			 d->cfg->store_path);
		goto fail;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, sizeof(err), "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		n = e == EWOULDBLOCK ? pread(fd, pid, sizeof(pid) - 1, 0) : -1;
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		if (e == EWOULDBLOCK)
			snprintf(err, sizeof(err), "store %s is in use by "
				 "posternd pid %s (%s is locked); one store has "
				 "one daemon", d->cfg->store_path,
				 pid[0] != '\0' ? pid : "?", path);
		else
			snprintf(err, sizeof(err), "%s: lock: %s", path,
				 strerror(e));
		close(fd);
		goto fail;
	}
	if (pw != NULL && fchown(fd, pw->pw_uid, pw->pw_gid) < 0)
		log_warn("%s: cannot give it to %s: %s", path, pw->pw_name,
			 strerror(errno));
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		log_warn("%s: cannot write the pid: %s", path, strerror(errno));
	d->lock_fd = fd;
	return 0;
fail:
	*error_r = err;
	return -1;
}

/* Lock the store, bind the listeners, drop root, then open the store and
 * start the pool, the committer and the admin socket. */
static int
start(struct daemon *d, const char **error_r)
{
	struct store_settings set = {
		.map_size = d->cfg->store_map_size,
		.map_max = d->cfg->store_map_max,
		.backoff_min = d->cfg->queue_backoff_min,
		.backoff_max = d->cfg->queue_backoff_max,
		.max_lifetime = d->cfg->queue_max_lifetime,
		.max_attempts = d->cfg->queue_max_attempts,
		.group_wait_us = d->cfg->store_group_wait_ms * 1000u,
		.resubmit_window_us =
			(uint64_t)d->cfg->ingress_resubmit_window * 1000000u,
	};
	struct claim_recover_stats rs;
	static char err[512];

	/* First: a second posternd on this store stops here, before it
	 * binds a port that the running one holds. */
	if (lock_store(d, error_r) < 0)
		return -1;
	d->in = ingress_new(d->base, d->cfg, error_r);
	if (d->in == NULL)
		return -1;
	if (d->cfg->admin_listen.host != NULL) {
		d->http = admin_http_new(d->base, d->cfg->admin_listen.host,
					 d->cfg->admin_listen.port, error_r);
		if (d->http == NULL)
			return -1;
	}
	if (drop_root(d->cfg, error_r) < 0)
		return -1;
	/* The Maildir root is made at start only: at run time a missing
	 * root (an unmounted disk) must defer, not write under the mount
	 * point. */
	if (d->cfg->foreign_driver == CONFIG_DRIVER_MAILDIR &&
	    mkdir_p(d->cfg->maildir_root) < 0) {
		snprintf(err, sizeof(err), "[maildir] root %s: cannot create: "
			 "%s", d->cfg->maildir_root, strerror(errno));
		*error_r = err;
		return -1;
	}
	if (store_open(d->cfg->store_path, &set, &d->st, error_r) != STORE_OK)
		return -1;
	if (claim_recover(d->st, store_now_us(), &rs, error_r) != STORE_OK)
		return -1;
	d->pool = worker_pool_new(d->st, d->cfg, error_r);
	if (d->pool == NULL)
		return -1;
	ingress_start(d->in, d->st, d->pool);
	if (worker_pool_start(d->pool, error_r) < 0)
		return -1;
	d->admin = admin_socket_new(d->base, d->cfg->store_path, d->pool,
				    error_r);
	if (d->admin == NULL)
		return -1;
	if (d->http != NULL)
		admin_http_attach(d->http, d->st, d->pool);
	d->sigterm = evsignal_new(d->base, SIGTERM, on_stop, d);
	d->sigint = evsignal_new(d->base, SIGINT, on_stop, d);
	d->sighup = evsignal_new(d->base, SIGHUP, on_hup, d);
	event_add(d->sigterm, NULL);
	event_add(d->sigint, NULL);
	event_add(d->sighup, NULL);
	return 0;
}

static void
stop(struct daemon *d)
{
	if (d->sigterm != NULL) {
		event_free(d->sigterm);
		event_free(d->sigint);
		event_free(d->sighup);
	}
	admin_http_free(&d->http);
	admin_socket_free(&d->admin);
	ingress_free(&d->in);		/* commits in flight finish first */
	worker_pool_stop(&d->pool);	/* batches in flight finish */
	store_close(&d->st);
	config_unref(&d->cfg);
	if (d->base != NULL)
		event_base_free(d->base);
	if (d->lock_fd >= 0)
		close(d->lock_fd);	/* the last thing: the store is closed */
	d->lock_fd = -1;
}

/* posternd -n: the configuration loaded (its errors name file, line and
 * key) and the store, if there is one, opened read-only: the schema
 * version this posternd reads. Writes nothing. */
static int
check_only(struct daemon *d)
{
	struct store_settings set = { .mode = STORE_OPEN_READONLY };
	struct store *st = NULL;
	const char *err = NULL;
	char path[4096];
	struct stat sb;

	uint32_t ver;

	snprintf(path, sizeof(path), "%s/data.mdb", d->cfg->store_path);
	if (stat(path, &sb) == 0) {
		if (store_schema_version(d->cfg->store_path, &ver, &err) !=
		    STORE_OK) {
			fprintf(stderr, "posternd: %s\n", err);
			return 1;
		}
		if (ver != 0 && ver < STORE_SCHEMA_VERSION) {
			/* A start upgrades it (lmdb-schema/VERSIONS.md). */
			printf("posternd: store %s: schema version %u, "
			       "upgraded to %u when posternd starts\n",
			       d->cfg->store_path, ver, STORE_SCHEMA_VERSION);
		} else if (store_open(d->cfg->store_path, &set, &st, &err) !=
			   STORE_OK) {
			fprintf(stderr, "posternd: %s\n", err);
			return 1;
		} else {
			store_close(&st);
			printf("posternd: store %s: schema version %u, good\n",
			       d->cfg->store_path, ver);
		}
	} else {
		printf("posternd: store %s: none yet; posternd makes it at "
		       "start\n", d->cfg->store_path);
	}
	printf("posternd: configuration %s: good\n",
	       d->config_path != NULL ? d->config_path :
	       "(none: built-in defaults)");
	return 0;
}

/* Detach; the parent waits for the child to say it started, so that a
 * start-up error is printed where the operator typed the command. */
static int
detach(int *ready_fd)
{
	int fds[2], null;
	char buf[512];
	ssize_t n;
	pid_t pid;

	if (pipe(fds) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0) {
		close(fds[1]);
		n = read(fds[0], buf, sizeof(buf) - 1);
		if (n <= 0)
			_exit(1);
		buf[n] = '\0';
		if (strcmp(buf, "ok") == 0)
			_exit(0);
		fprintf(stderr, "posternd: %s\n", buf);
		_exit(1);
	}
	close(fds[0]);
	setsid();
	if (chdir("/") < 0)
		return -1;
	null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	*ready_fd = fds[1];
	return 0;
}

static void
tell(int fd, const char *msg)
{
	if (fd < 0)
		return;
	if (write(fd, msg, strlen(msg)) < 0) {
		/* the parent is gone */
	}
	close(fd);
}

int
main(int argc, char **argv)
{
	struct daemon d = { 0 };
	bool foreground = false;
	const char *err = NULL;
	char desc[600];
	struct stat sb;
	int opt, ready = -1, null;

	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	bool check = false;

	d.lock_fd = -1;
	while ((opt = getopt_long(argc, argv, "c:fhnV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': d.config_path = optarg; break;
		case 'f': foreground = true; break;
		case 'n': check = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("posternd %s\n", PACKAGE_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (d.config_path == NULL && stat(CONFIG_DEFAULT_PATH, &sb) == 0)
		d.config_path = CONFIG_DEFAULT_PATH;
	if (config_load(d.config_path, &d.cfg, &err) < 0) {
		fprintf(stderr, "posternd: %s\n", err);
		return 1;
	}
	if (check) {
		int rc = check_only(&d);

		config_unref(&d.cfg);
		return rc;
	}
	log_set_level(d.cfg->log_level);
	log_setup(d.cfg->log_syslog_name, d.cfg->log_format);
	signal(SIGPIPE, SIG_IGN);
	if (!foreground && detach(&ready) < 0) {
		fprintf(stderr, "posternd: cannot detach: %s\n",
			strerror(errno));
		return 1;
	}
	if (!foreground || d.cfg->log_syslog)
		log_use_syslog();
	evthread_use_pthreads();
	/* libcurl's global state (the jmap driver), before any thread. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_err("cannot start: libcurl did not initialise");
		tell(ready, "libcurl did not initialise");
		return 1;
	}
	d.base = event_base_new();
	if (d.base == NULL || start(&d, &err) < 0) {
		if (err == NULL)
			err = "cannot create the event loop";
		log_err("cannot start: %s", err);
		tell(ready, err);
		stop(&d);
		return 1;
	}
	driver_table_of(d.cfg)->describe(d.cfg, desc, sizeof(desc));
	log_info("started: store %s, %u worker(s), driver %s", d.cfg->store_path,
		 d.cfg->workers_count, desc);
	tell(ready, "ok");
	/* Under systemd (Type=notify): started, and which pid is the daemon
	 * after the detach. Without NOTIFY_SOCKET this does nothing. */
	sd_notifyf(0, "READY=1\nMAINPID=%ld\nSTATUS=accepting mail",
		   (long)getpid());
	if (!foreground && (null = open("/dev/null", O_WRONLY)) >= 0) {
		dup2(null, STDERR_FILENO);
		close(null);
	}
	event_base_dispatch(d.base);
	stop(&d);
	curl_global_cleanup();
	log_info("stopped");
	return 0;
}
