/*
 * ccmail_map.h - Internet address <-> cc:Mail name ("Last, First at PO"),
 * through a map file and a fallback rule (postern-ccmail(5)).
 *
 * A struct ccmail_map is loaded once and then only read. It is owned by
 * whoever loaded it (one per ccmail driver, so one per worker thread);
 * nothing in it is shared or locked.
 */
#ifndef POSTERN_CCMAIL_MAP_H
#define POSTERN_CCMAIL_MAP_H

#include <stddef.h>

/* Longest cc:Mail name, "at PO" included, that postern writes. */
#define CCMAIL_NAME_MAX		256

struct ccmail_map;

/*
 * Read the map file at path ("address = name" lines, '#' comments; see
 * postern-ccmail(5)). A name without " at " gets " at <postoffice>"
 * appended. path NULL or "" gives an empty map. Returns 0 with the new
 * map in *map_r (caller frees with ccmail_map_free()), or -1 with
 * *error_r = "path:line: reason" in a buffer owned by the calling thread,
 * valid until its next ccmail_map_* call. Any thread.
 */
int
ccmail_map_load(const char *path, const char *postoffice,
		struct ccmail_map **map_r, const char **error_r);

/* An empty map (no file), owned by the caller. */
struct ccmail_map *
ccmail_map_new_empty(void);

/* Free *map and set *map to NULL; NULL does nothing. */
void
ccmail_map_free(struct ccmail_map **map);

/* Number of entries. */
size_t
ccmail_map_count(const struct ccmail_map *map);

/* The cc:Mail name of addr (compared ignoring ASCII case), borrowed from
 * the map, or NULL if addr has no entry. */
const char *
ccmail_map_name(const struct ccmail_map *map, const char *addr);

/* The address of a cc:Mail name (exact, case-insensitive), borrowed from
 * the map, or NULL. The reverse direction, for inbound use. */
const char *
ccmail_map_address(const struct ccmail_map *map, const char *name);

/*
 * Check a fallback rule: "none", or a pattern with %u %f %l %F %L %d %p
 * and %% that contains " at ". 0, or -1 with the reason in why. Any
 * thread.
 */
int
ccmail_fallback_check(const char *rule, char *why, size_t len);

/*
 * The cc:Mail name for addr: the map entry, else the fallback rule
 * expanded (see postern-ccmail(5)). Returns 1 with the name in name_r
 * (CCMAIL_NAME_MAX bytes), 0 if addr cannot be mapped (no entry and the
 * rule is "none" or does not apply), never -1. map may be NULL; rule
 * must have passed ccmail_fallback_check().
 */
int
ccmail_address_to_name(const struct ccmail_map *map, const char *rule,
		       const char *postoffice, const char *addr,
		       char *name_r);

#endif
