/*
 * claim_result.h - the result of one delivery attempt of one
 * (message, recipient), as a driver reports it and claim_outcome()
 * records it.
 *
 * A header of its own so that drivers (driver.h) and the metrics can
 * name a result without seeing the claim API and the store behind it.
 * Threads: a type only.
 */
#ifndef POSTERN_CLAIM_RESULT_H
#define POSTERN_CLAIM_RESULT_H

enum claim_result {
	CLAIM_DELIVERED = 1,
	CLAIM_TEMPFAIL,		/* deferred, retried after a backoff */
	CLAIM_PERMFAIL,		/* bounced */
	CLAIM_UNKNOWN,		/* reply lost: in-doubt */
};

#endif
