/*
 * ccmail_map.c - the address map and the fallback rule of the ccmail
 * driver.
 *
 * Owns:    struct ccmail_map and its entries; the thread-local error
 *          buffer behind ccmail_map_load()'s *error_r.
 * Threads: any; a loaded map is read-only, and each driver has its own.
 *
 * Entries are kept twice, sorted by address and by name, so both
 * directions are a binary search. A duplicate address or name is an error
 * at load: a name mapped from two addresses could not be answered inbound.
 */
#include "ccmail_map.h"
#include "lib/xmalloc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAP_ERR_LEN	1024

static _Thread_local char errbuf[MAP_ERR_LEN];

struct entry {
	char *addr;			/* owned, lower case */
	char *name;			/* owned */
};

struct ccmail_map {
	struct entry *by_addr;		/* owned, sorted by addr */
	struct entry **by_name;		/* owned array, borrowed entries */
	size_t n;
};

static char *
trim(char *s)
{
	char *end;

	s += strspn(s, " \t");
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' ||
			   end[-1] == '\r' || end[-1] == '\n'))
		*--end = '\0';
	return s;
}

static bool
printable(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/* One "address = name" line into *e. 0, or -1 with why. */
static int
parse_entry(char *line, const char *postoffice, struct entry *e, char *why,
	    size_t len)
{
	char *eq = strchr(line, '='), *addr, *name, *p;
	char full[CCMAIL_NAME_MAX];
	int n;

	if (eq == NULL) {
		snprintf(why, len, "expected \"address = cc:Mail name\"");
		return -1;
	}
	*eq = '\0';
	addr = trim(line);
	name = trim(eq + 1);
	if (*addr == '\0' || strchr(addr, '@') == NULL ||
	    strpbrk(addr, " \t") != NULL || !printable(addr)) {
		snprintf(why, len, "\"%.200s\" is not an address", addr);
		return -1;
	}
	if (*name == '\0' || !printable(name)) {
		snprintf(why, len, "the cc:Mail name is empty or has control "
			 "characters");
		return -1;
	}
	if (strstr(name, " at ") != NULL)
		n = snprintf(full, sizeof(full), "%s", name);
	else
		n = snprintf(full, sizeof(full), "%s at %s", name, postoffice);
	if (n < 0 || (size_t)n >= sizeof(full)) {
		snprintf(why, len, "the cc:Mail name is longer than %d bytes",
			 CCMAIL_NAME_MAX - 1);
		return -1;
	}
	for (p = addr; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	e->addr = xstrdup(addr);
	e->name = xstrdup(full);
	return 0;
}

static int
cmp_addr(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->addr,
		      ((const struct entry *)b)->addr);
}

static int
cmp_name(const void *a, const void *b)
{
	return strcasecmp((*(struct entry *const *)a)->name,
			  (*(struct entry *const *)b)->name);
}

struct ccmail_map *
ccmail_map_new_empty(void)
{
	return xcalloc(1, sizeof(struct ccmail_map));
}

void
ccmail_map_free(struct ccmail_map **mapp)
{
	struct ccmail_map *map = *mapp;

	*mapp = NULL;
	if (map == NULL)
		return;
	for (size_t i = 0; i < map->n; i++) {
		free(map->by_addr[i].addr);
		free(map->by_addr[i].name);
	}
	free(map->by_addr);
	free(map->by_name);
	free(map);
}

/* Sort both indexes; a duplicate is an error (its line is not known any
 * more, so the message names the value). */
static int
index_map(struct ccmail_map *map, char *why, size_t len)
{
	qsort(map->by_addr, map->n, sizeof(*map->by_addr), cmp_addr);
	map->by_name = xcalloc(map->n + 1, sizeof(*map->by_name));
	for (size_t i = 0; i < map->n; i++) {
		map->by_name[i] = &map->by_addr[i];
		if (i > 0 && cmp_addr(&map->by_addr[i - 1],
				      &map->by_addr[i]) == 0) {
			snprintf(why, len, "address %.200s is mapped twice",
				 map->by_addr[i].addr);
			return -1;
		}
	}
	qsort(map->by_name, map->n, sizeof(*map->by_name), cmp_name);
	for (size_t i = 1; i < map->n; i++) {
		if (cmp_name(&map->by_name[i - 1], &map->by_name[i]) == 0) {
			snprintf(why, len, "cc:Mail name \"%.200s\" is mapped "
				 "from two addresses", map->by_name[i]->name);
			return -1;
		}
	}
	return 0;
}

static int
read_lines(FILE *fp, const char *path, const char *postoffice,
	   struct ccmail_map *map)
{
	char *line = NULL, why[512];
	size_t cap = 0, alloc = 0;
	unsigned lineno = 0;
	ssize_t got;
	int rc = -1;

	while ((got = getline(&line, &cap, fp)) >= 0) {
		char *s;

		lineno++;
		if (strlen(line) != (size_t)got) {
			snprintf(why, sizeof(why), "the line contains a NUL");
			goto fail;
		}
		s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		if (map->n == alloc) {
			alloc = alloc == 0 ? 16 : alloc * 2;
			map->by_addr = xrealloc(map->by_addr,
						alloc * sizeof(*map->by_addr));
		}
		if (parse_entry(s, postoffice, &map->by_addr[map->n], why,
				sizeof(why)) < 0)
			goto fail;
		map->n++;
	}
	if (ferror(fp)) {
		snprintf(errbuf, sizeof(errbuf), "%s: read: %s", path,
			 strerror(errno));
		goto out;
	}
	if (index_map(map, why, sizeof(why)) < 0) {
		snprintf(errbuf, sizeof(errbuf), "%s: %s", path, why);
		goto out;
	}
	rc = 0;
	goto out;
fail:
	snprintf(errbuf, sizeof(errbuf), "%s:%u: %s", path, lineno, why);
out:
	free(line);
	return rc;
}

int
ccmail_map_load(const char *path, const char *postoffice,
		struct ccmail_map **map_r, const char **error_r)
{
	struct ccmail_map *map = ccmail_map_new_empty();
	FILE *fp;

	if (path == NULL || *path == '\0') {
		*map_r = map;
		return 0;
	}
	fp = fopen(path, "re");
	if (fp == NULL) {
		snprintf(errbuf, sizeof(errbuf), "%s: %s", path,
			 strerror(errno));
		*error_r = errbuf;
		ccmail_map_free(&map);
		return -1;
	}
	if (read_lines(fp, path, postoffice, map) < 0) {
		fclose(fp);
		*error_r = errbuf;
		ccmail_map_free(&map);
		return -1;
	}
	fclose(fp);
	*map_r = map;
	return 0;
}

size_t
ccmail_map_count(const struct ccmail_map *map)
{
	return map == NULL ? 0 : map->n;
}

const char *
ccmail_map_name(const struct ccmail_map *map, const char *addr)
{
	char low[CCMAIL_NAME_MAX];
	struct entry key = { .addr = low }, *e;
	size_t len;

	if (map == NULL || map->n == 0 || addr == NULL)
		return NULL;
	len = strlen(addr);
	if (len >= sizeof(low))
		return NULL;
	for (size_t i = 0; i <= len; i++)
		low[i] = addr[i] >= 'A' && addr[i] <= 'Z' ?
			 (char)(addr[i] - 'A' + 'a') : addr[i];
	e = bsearch(&key, map->by_addr, map->n, sizeof(*map->by_addr),
		    cmp_addr);
	return e == NULL ? NULL : e->name;
}

const char *
ccmail_map_address(const struct ccmail_map *map, const char *name)
{
	struct entry key = { .name = (char *)name }, *kp = &key, **e;

	if (map == NULL || map->n == 0 || name == NULL)
		return NULL;
	e = bsearch(&kp, map->by_name, map->n, sizeof(*map->by_name),
		    cmp_name);
	return e == NULL ? NULL : (*e)->addr;
}

int
ccmail_fallback_check(const char *rule, char *why, size_t len)
{
	if (rule == NULL || *rule == '\0') {
		snprintf(why, len, "must be \"none\" or a pattern");
		return -1;
	}
	if (strcmp(rule, "none") == 0)
		return 0;
	if (!printable(rule)) {
		snprintf(why, len, "contains control characters");
		return -1;
	}
	for (const char *p = rule; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		p++;
		if (*p == '\0' || strchr("ufldFLp%", *p) == NULL) {
			snprintf(why, len, "\"%s\": unknown escape %%%c (use "
				 "%%u %%f %%l %%F %%L %%d %%p %%%%)", rule,
				 *p == '\0' ? ' ' : *p);
			return -1;
		}
	}
	if (strstr(rule, " at ") == NULL) {
		snprintf(why, len, "\"%s\" has no \" at \" (a cc:Mail name is "
			 "\"name at POSTOFFICE\")", rule);
		return -1;
	}
	return 0;
}

/* Append s[0..n) to out at *at; upper: first letter upper case, rest
 * lower. false if it does not fit. */
static bool
put(char *out, size_t *at, const char *s, size_t n, bool upper)
{
	if (*at + n >= CCMAIL_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (upper && i == 0 && c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		else if (upper && i > 0 && c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out[(*at)++] = c;
	}
	return true;
}

/* Only plain printable ASCII from an address goes into a name. */
static bool
ascii_word(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '"')
			return false;
	return n > 0;
}

static int
expand(const char *rule, const char *postoffice, const char *addr,
       char *name_r)
{
	const char *at_sign = strrchr(addr, '@'), *dot;
	size_t llen, at = 0;

	if (at_sign == NULL || at_sign == addr ||
	    !ascii_word(addr, strlen(addr)))
		return 0;
	llen = (size_t)(at_sign - addr);
	dot = memchr(addr, '.', llen);
	for (const char *p = rule; *p != '\0'; p++) {
		const char *s = p;
		size_t n = 1;
		bool up = false, ok = true;

		if (*p == '%') {
			switch (*++p) {
			case 'u': s = addr; n = llen; break;
			case 'F': up = true; /* fall through */
			case 'f': s = addr; n = dot == NULL ? 0 :
				  (size_t)(dot - addr); break;
			case 'L': up = true; /* fall through */
			case 'l': s = dot == NULL ? addr : dot + 1;
				  n = dot == NULL ? 0 :
				  llen - (size_t)(dot + 1 - addr); break;
			case 'd': s = at_sign + 1; n = strlen(s); break;
			case 'p': s = postoffice; n = strlen(s); break;
			default: s = p; n = 1; break;
			}
			/* "%f"/"%l" need a first.last local part */
			if (n == 0 && strchr("fFlL", *p) != NULL)
				return 0;
		}
		ok = put(name_r, &at, s, n, up);
		if (!ok)
			return 0;
	}
	name_r[at] = '\0';
	return 1;
}

int
ccmail_address_to_name(const struct ccmail_map *map, const char *rule,
		       const char *postoffice, const char *addr,
		       char *name_r)
{
	const char *name = ccmail_map_name(map, addr);

	if (name != NULL) {
		snprintf(name_r, CCMAIL_NAME_MAX, "%s", name);
		return 1;
	}
	if (rule == NULL || strcmp(rule, "none") == 0 || addr == NULL)
		return 0;
	return expand(rule, postoffice, addr, name_r);
}
