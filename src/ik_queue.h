/*-------------------------------------------------------------------------
 *
 * ik_queue.h
 *	  The job queue: SQL that claims and completes jobs in imagekit.jobs.
 *
 * Every function here runs SQL through SPI and must be called inside a
 * transaction with an active snapshot; none does any network I/O.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_QUEUE_H
#define IK_QUEUE_H

#include "nodes/pg_list.h"

#include "ik_hash.h"
#include "ik_protocol.h"

typedef enum IkJobResult
{
	IK_JOB_DONE,				/* url is the CDN URL */
	IK_JOB_RETRY,				/* try again after retry_delay_ms */
	IK_JOB_HOLD,				/* back to the queue, no attempt counted */
	IK_JOB_FALLBACK				/* store the source URL, keep the error */
} IkJobResult;

typedef struct IkQueueJob
{
	MemoryContext mcxt;			/* owns the job; deleting it frees all */

	/* as claimed */
	int64		id;
	int32		generation;
	int32		attempts;		/* failed attempts so far */
	Oid			relid;			/* the table */
	Oid			owner;			/* the table's owner */
	char	   *nspname;
	char	   *relname;
	char	   *key_column;
	char	   *key_type;
	char	   *source_column;
	char	   *target_column;
	char	   *row_key;
	char	   *source_url;

	/* outcome, filled by the worker */
	IkJobResult result;
	char	   *url;
	bool		uploaded;		/* record "asset" in imagekit.assets */
	bool		dedup_hit;
	IkUploadResult asset;
	char		hash[IK_HASH_HEX_LEN + 1];
	char	   *error;
	int			http_status;
	long		retry_delay_ms;
} IkQueueJob;

extern bool ik_queue_installed(void);
extern void ik_queue_release_worker(int slot);
extern void ik_queue_requeue_expired(void);
extern int	ik_queue_absorb_inbox(int limit);
extern List *ik_queue_claim(int slot, int limit, int lease_ms,
							MemoryContext parent, Size job_size);
extern void ik_queue_finish(IkQueueJob *job, int slot);
extern long ik_queue_next_due_ms(void);
extern bool ik_queue_storing_in(Oid relid);

#endif							/* IK_QUEUE_H */
