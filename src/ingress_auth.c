/*
 * ingress_auth.c - the AUTH users file and password checks.
 *
 * Owns:    struct ingress_auth: the user names and their crypt(3) hashes.
 * Threads: loaded by config_load() on any thread, then read-only; checks
 *          come from the loop thread (the session's auth_check).
 */
#include "ingress_auth.h"
#include "lib/xmalloc.h"

#include <crypt.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_USER_MAX	255

struct ingress_auth {
	char **users;		/* owned */
	char **hashes;		/* owned, same index */
	size_t n;
};

static int
find_user(const struct ingress_auth *a, const char *user)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		if (strcmp(a->users[i], user) == 0)
			return (int)i;
	return -1;
}

/* One "user:HASH" line (no newline). */
static int
add_line(struct ingress_auth *a, char *line, char *why, size_t len)
{
	char *colon = strchr(line, ':'), *hash;
	int ok;

	if (colon == NULL || colon == line ||
	    (size_t)(colon - line) > AUTH_USER_MAX) {
		snprintf(why, len, "not \"user:HASH\"");
		return -1;
	}
	*colon = '\0';
	hash = colon + 1;
	for (char *p = line; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			snprintf(why, len, "the user name contains a blank or "
				 "a control character");
			return -1;
		}
	}
	if (find_user(a, line) >= 0) {
		snprintf(why, len, "user \"%s\" is named twice", line);
		return -1;
	}
	ok = crypt_checksalt(hash);
	if (hash[0] != '$' || ok == CRYPT_SALT_INVALID ||
	    ok == CRYPT_SALT_METHOD_DISABLED) {
		snprintf(why, len, "user \"%s\": the hash is not a crypt(3) "
			 "hash this system supports (make one with "
			 "\"mkpasswd -m yescrypt\" or \"openssl passwd -6\")",
			 line);
		return -1;
	}
	if (ok == CRYPT_SALT_METHOD_LEGACY) {
		snprintf(why, len, "user \"%s\": the hash method is too weak; "
			 "use yescrypt or SHA-512-crypt", line);
		return -1;
	}
	a->users = xrealloc(a->users, (a->n + 1) * sizeof(*a->users));
	a->hashes = xrealloc(a->hashes, (a->n + 1) * sizeof(*a->hashes));
	a->users[a->n] = xstrdup(line);
	a->hashes[a->n] = xstrdup(hash);
	a->n++;
	return 0;
}

int
ingress_auth_load(const char *path, struct ingress_auth **auth_r, char *why,
		  size_t len)
{
	struct ingress_auth *a = xcalloc(1, sizeof(*a));
	char *line = NULL, reason[256];
	size_t cap = 0, n;
	unsigned lineno = 0;
	ssize_t got;
	FILE *f = fopen(path, "re");
	int rc = -1;

	if (f == NULL) {
		snprintf(why, len, "cannot open %s: %s", path, strerror(errno));
		goto out;
	}
	while ((got = getline(&line, &cap, f)) >= 0) {
		lineno++;
		n = (size_t)got;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if (strlen(line) != n)
			snprintf(reason, sizeof(reason), "the line contains a "
				 "NUL byte");
		if (strlen(line) != n || add_line(a, line, reason,
						  sizeof(reason)) < 0) {
			snprintf(why, len, "%s:%u: %s", path, lineno, reason);
			goto out;
		}
	}
	if (ferror(f)) {
		snprintf(why, len, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if (a->n == 0) {
		snprintf(why, len, "%s names no users", path);
		goto out;
	}
	rc = 0;
out:
	free(line);
	if (f != NULL)
		fclose(f);
	if (rc < 0)
		ingress_auth_free(&a);
	*auth_r = a;
	return rc;
}

int
ingress_auth_check(const struct ingress_auth *a, const char *user,
		   const char *password)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	int i = find_user(a, user), rc;
	const char *hash = a->hashes[i >= 0 ? i : 0];
	const char *out;

	out = crypt_r(password, hash, cd);
	if (out == NULL || out[0] == '*')
		rc = -1;
	else
		rc = i >= 0 && strcmp(out, hash) == 0;
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return rc;
}

void
ingress_auth_free(struct ingress_auth **auth_p)
{
	struct ingress_auth *a = *auth_p;
	size_t i;

	*auth_p = NULL;
	if (a == NULL)
		return;
	for (i = 0; i < a->n; i++) {
		free(a->users[i]);
		free(a->hashes[i]);
	}
	free(a->users);
	free(a->hashes);
	free(a);
}
