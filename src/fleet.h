/*
 * fleet.h - a store's ledger as JSON lines (postern ledger export), and
 * the audit of several exports together (postern audit --verify --fleet):
 * each chain on its own, then no message delivered twice fleet-wide.
 *
 * Threads: the caller's only.
 */
#ifndef POSTERN_FLEET_H
#define POSTERN_FLEET_H

#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Write the ledger of st from record since (1: all) to out: one JSON
 * object per record, with the store id, the record's stored bytes
 * ("raw", base64) and their SHA-256 ("record_sha256") and the previous
 * record's ("prev_sha256"), then one line with the ledger head as it was
 * when the export began. *n_r: records written. Returns a store_rc, or
 * STORE_ERR with *error_r if out cannot be written. */
int
fleet_export(struct store *st, uint64_t since, FILE *out, uint64_t *n_r,
	     const char **error_r);

struct fleet_report {
	uint64_t exports;	/* files read */
	uint64_t instances;	/* distinct store ids */
	uint64_t records;	/* ledger records read */
	uint64_t delivered;	/* delivered records (distinct) */
	uint64_t resubmissions;	/* resubmission records */
	uint64_t twice;		/* (Message-ID, recipient, received
				   digest) delivered more than once */
	uint64_t problems;	/* chain or format problems */
};

/* Check the exports at paths (n of them): each line against its raw
 * record, each chain and its head; then, with bounded memory (the
 * delivered records are spread over 256 temporary files by their key and
 * each is sorted on its own), every (Message-ID, recipient, received
 * digest) delivered more than once, by any instance, with each copy's
 * instance, queue id and record. Writes what it finds to out. Returns 0
 * if all is sound, 1 if anything was found, -1 if the check could not
 * run (a file cannot be read: *error_r). */
int
fleet_verify(char *const *paths, size_t n, FILE *out,
	     struct fleet_report *r, const char **error_r);

#endif
