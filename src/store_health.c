/*
 * store_health.c - whether the store can take mail: full, an I/O error
 * on commit, panicked (posternd(8), "WHEN IT CANNOT STORE").
 *
 * Owns:    nothing; the state lives in struct store (store_private.h).
 * Threads: any. io_failed and panicked are atomics; the rest is under
 *          health_lock, which is never held while txn_lock is taken, so
 *          store_room() and the writes run outside it.
 */
#include "store_private.h"
#include "lib/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define KIB(x) ((x) / 1024u)

const char *
store_health_name(enum store_health state)
{
	switch (state) {
	case STORE_HEALTH_OK:		return "ok";
	case STORE_HEALTH_FULL:		return "full";
	case STORE_HEALTH_IO_ERROR:	return "I/O error";
	case STORE_HEALTH_PANICKED:	return "panicked";
	}
	return "?";
}

void
store_health_commit(struct store *st, int rc, bool wrote)
{
	if (wrote) {
		/* cheap on the path of every commit: the lock only when
		 * there is something to clear */
		if (atomic_load(&st->io_failed)) {
			pthread_mutex_lock(&st->health_lock);
			atomic_store(&st->io_failed, false);
			st->io_why[0] = '\0';
			pthread_mutex_unlock(&st->health_lock);
		}
		return;
	}
	/* Full (the map at map_max, ENOSPC, EDQUOT) is the room's business
	 * and a panic the flag's; anything else from the commit is an I/O
	 * error: EIO from fdatasync or from writing the pages. */
	if (rc == 0 || rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT ||
	    rc == MDB_PANIC)
		return;
	pthread_mutex_lock(&st->health_lock);
	snprintf(st->io_why, sizeof(st->io_why), "%s", mdb_strerror(rc));
	atomic_store(&st->io_failed, true);
	pthread_mutex_unlock(&st->health_lock);
}

void
store_health_reopen(struct store *st, const char *err)
{
	pthread_mutex_lock(&st->health_lock);
	snprintf(st->reopen_why, sizeof(st->reopen_why), "%s",
		 err != NULL ? err : "");
	pthread_mutex_unlock(&st->health_lock);
}

void
store_health_room(struct store *st, const struct store_room *r,
		  uint64_t now)
{
	bool below_min = r != NULL && r->room < STORE_ROOM_MIN;
	bool below_again = r != NULL && r->room < STORE_ROOM_AGAIN;
	char why[sizeof(st->room_why)] = "";

	if (below_again && r->map_left <= r->disk_left)
		snprintf(why, sizeof(why), "full: %" PRIu64 " KiB of room, "
			 "takes mail again from %u KiB (the map is at %" PRIu64
			 " of its map_max %" PRIu64 " KiB)", KIB(r->room),
			 KIB(STORE_ROOM_AGAIN), KIB(r->map_max - r->map_left),
			 KIB(r->map_max));
	else if (below_again)
		snprintf(why, sizeof(why), "full: %" PRIu64 " KiB of room, "
			 "takes mail again from %u KiB (the filesystem has %"
			 PRIu64 " KiB free)", KIB(r->room),
			 KIB(STORE_ROOM_AGAIN), KIB(r->disk_left));
	pthread_mutex_lock(&st->health_lock);
	st->room_at_us = now;
	/* full below STORE_ROOM_MIN, and until STORE_ROOM_AGAIN */
	st->room_full = st->room_full ? below_again : below_min;
	snprintf(st->room_why, sizeof(st->room_why), "%s", why);
	pthread_mutex_unlock(&st->health_lock);
}

/* Look at the room if the last look is older than STORE_ROOM_CHECK_US
 * (health_lock not held). */
static void
room_look(struct store *st, uint64_t now)
{
	struct store_room r;
	bool due;

	pthread_mutex_lock(&st->health_lock);
	due = st->room_at_us == 0 || now < st->room_at_us ||
	      now - st->room_at_us >= STORE_ROOM_CHECK_US;
	if (due)
		st->room_at_us = now;	/* one look at a time is enough */
	pthread_mutex_unlock(&st->health_lock);
	if (due)
		store_health_room(st, store_room(st, &r) == 0 ? &r : NULL,
				  now);
}

void
store_health(struct store *st, struct store_health_info *h_r)
{
	uint64_t now = store_now_us();
	enum store_health state = STORE_HEALTH_OK, was;
	char why[STORE_HEALTH_WHY_LEN];
	uint64_t since;

	/* Panicked, no store to look at: the room can wait. */
	if (!atomic_load(&st->panicked))
		room_look(st, now);
	pthread_mutex_lock(&st->health_lock);
	if (atomic_load(&st->panicked)) {
		state = STORE_HEALTH_PANICKED;
		snprintf(why, sizeof(why), "panicked: MDB_PANIC, the "
			 "environment must be reopened%s%s",
			 st->reopen_why[0] != '\0' ? "; the last reopen "
			 "failed: " : "", st->reopen_why);
	} else if (atomic_load(&st->io_failed)) {
		state = STORE_HEALTH_IO_ERROR;
		snprintf(why, sizeof(why), "I/O error on commit: %s",
			 st->io_why);
	} else if (st->room_full) {
		state = STORE_HEALTH_FULL;
		snprintf(why, sizeof(why), "%s", st->room_why);
	} else {
		snprintf(why, sizeof(why), "ok");
	}
	was = st->seen;
	if (state != was) {
		st->seen = state;
		st->seen_since_us = now;
		/* Logged under the lock: a thread that sees the new state
		 * (a 220, /healthz 200) sees it only after its line is
		 * written. */
		if (state != STORE_HEALTH_OK)
			log_warn("store: cannot take mail: %s", why);
		else
			log_info("store: takes mail again (it was %s)",
				 store_health_name(was));
	}
	since = st->seen_since_us;
	pthread_mutex_unlock(&st->health_lock);
	h_r->state = state;
	h_r->since_us = state == STORE_HEALTH_OK ? 0 : since;
	if (state == STORE_HEALTH_OK)
		snprintf(h_r->why, sizeof(h_r->why), "%s", why);
	else
		snprintf(h_r->why, sizeof(h_r->why), "%.*s (for %" PRIu64
			 " s)", (int)(sizeof(h_r->why) - 32), why,
			 (now > since ? now - since : 0) / 1000000u);
}

enum store_health
store_recover(struct store *st)
{
	struct store_health_info h;
	const char *err;
	int rc;

	store_health(st, &h);
	if (h.state == STORE_HEALTH_OK || h.state == STORE_HEALTH_FULL)
		return h.state;
	for (int i = 0; i < 2; i++) {
		/* A failed write of the meta page makes the commit fail
		 * with the errno (an I/O error) and the environment fatal:
		 * the probe then meets MDB_PANIC, and a reopen comes next. */
		if (atomic_load(&st->panicked) &&
		    store_reopen(st, &err) != STORE_OK) {
			log_debug("store: reopen after a panic failed: %s",
				  err);
			break;
		}
		/* success clears io_failed (write_alone()) */
		if (!atomic_load(&st->io_failed) ||
		    (rc = store_probe(st, &err)) == STORE_OK)
			break;
		log_debug("store: probe commit failed: %s", err);
		if (rc != STORE_PANIC)
			break;
	}
	store_health(st, &h);
	return h.state;
}
