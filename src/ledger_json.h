/*
 * ledger_json.h - ledger records and strings as JSON, the same for
 * postern audit --json, show --json and ledger export (so that the fleet
 * audit can rebuild an export's line from its record and compare).
 *
 * Threads: any (no state).
 */
#ifndef POSTERN_LEDGER_JSON_H
#define POSTERN_LEDGER_JSON_H

#include "ledger.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* A JSON string of s. jansson refuses bytes that are not UTF-8 (a
 * foreign reply or an 8-bit address may hold them) and json_object_set_new
 * would then drop the field without a word: such bytes become '?'. */
json_t *
json_text(const char *s);

/* µs since the epoch as ISO 8601 UTC ("2026-12-04T08:03:55Z"); "" for 0. */
void
fmt_iso(uint64_t us, char *buf, size_t cap);

/* One ledger record as the JSON object audit --json prints (a new
 * reference). */
json_t *
ledger_json(const struct ledger_rec *r);

#endif
