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

#include "access/attnum.h"
#include "nodes/pg_list.h"

#include "ik_assets.h"
#include "ik_hash.h"

typedef enum IkJobResult
{
	IK_JOB_DONE,				/* url is the CDN URL */
	IK_JOB_RETRY,				/* try again after retry_delay_ms */
	IK_JOB_HOLD,				/* back to the queue, no attempt counted */
	IK_JOB_FALLBACK				/* store the source URL, keep the error */
} IkJobResult;

typedef enum IkFinishOutcome
{
	IK_FINISH_RECORDED,			/* recorded (or found stale, or row gone) */
	IK_FINISH_PARKED,			/* row locked: the result waits in the job */
	IK_FINISH_LATER				/* job row locked: keep it, try again later */
} IkFinishOutcome;

/*
 * The columns that take what ImageKit said about an image, in the order
 * imagekit.claim() returns their numbers (result_columns).
 */
typedef enum IkResultColumn
{
	IK_COL_WIDTH,
	IK_COL_HEIGHT,
	IK_COL_SIZE,
	IK_COL_FILE_ID,
	IK_COL_FILE_PATH,
	IK_COL_NAME,
	IK_COL_CONTENT_HASH
} IkResultColumn;

#define IK_NUM_RESULT_COLUMNS (IK_COL_CONTENT_HASH + 1)

typedef struct IkQueueJob
{
	MemoryContext mcxt;			/* owns the job; deleting it frees all */

	/* as claimed */
	int64		id;
	int32		generation;
	int32		attempts;		/* failed attempts before (deaths too) */
	Oid			relid;			/* the table */
	char	   *nspname;		/* for messages: names as claimed */
	char	   *relname;
	char	   *key_type;
	AttrNumber	key_attnum;		/* the columns, as the row is stored */
	AttrNumber	source_attnum;
	AttrNumber	target_attnum;
	char	   *row_key;
	char	   *source_url;
	char	   *options;		/* upload options, JSON in UTF-8, or NULL */
	char		options_digest[IK_HASH_HEX_LEN + 1];	/* of options; "" if none */
	AttrNumber	result_attnums[IK_NUM_RESULT_COLUMNS];	/* 0: not mapped */
	char	   *notify_channel; /* or NULL */
	AttrNumber	option_attnums[2];	/* the row's tags, metadata; 0: none */
	bool		options_locked; /* its row's options not read: table locked */
	bool		pending;		/* claimed with a result to store */
	bool		no_attempt;		/* this claim is not an attempt */
	bool		no_store;		/* record the fallback without the row */

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

	/* what ik_queue_lock() found of its job row, in this transaction */
	bool		locked;			/* still this worker's, and locked */
	bool		busy;			/* still this worker's, held by another */

	/*
	 * What ik_queue_finish() found to record, for ik_queue_flush() to write
	 * together with the batch's other jobs.
	 */
	bool		staged;
	const char *staged_state;
	int			staged_attempts_delta;
	long		staged_delay_ms;
	const char *staged_url;
	const char *staged_pending;
} IkQueueJob;

extern bool ik_queue_installed(void);
extern void ik_queue_requeue_lost(void);
extern void ik_queue_release(int64 token);
extern int	ik_queue_database_workers(void);
extern int	ik_queue_absorb_inbox(int limit);
extern bool ik_queue_backfill_step(int limit, int64 *queued);
extern bool ik_queue_housekeeping(int retention_s, int limit);
extern List *ik_queue_claim(int slot, int64 token, int limit, int lease_ms,
							MemoryContext parent, Size job_size);
extern void ik_queue_lock(List *jobs, int64 token);
extern IkFinishOutcome ik_queue_finish(IkQueueJob *job, int64 token);
extern void ik_queue_flush(List *jobs, int64 token);
extern long ik_queue_next_due_ms(void);
extern bool ik_queue_storing_in(Oid relid);

#endif							/* IK_QUEUE_H */
