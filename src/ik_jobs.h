/*-------------------------------------------------------------------------
 *
 * ik_jobs.h
 *	  The jobs a worker holds in memory, and their state machine.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_JOBS_H
#define IK_JOBS_H

#include "lib/ilist.h"
#include "utils/timestamp.h"

#include "ik_http.h"
#include "ik_protocol.h"
#include "ik_queue.h"

typedef enum IkPhase
{
	IK_PHASE_CLAIMED,			/* just claimed */
	IK_PHASE_DOWNLOAD,			/* waiting for an HTTP slot to download */
	IK_PHASE_DOWNLOADING,
	IK_PHASE_HASHED,			/* downloaded; dedup not looked up yet */
	IK_PHASE_UPLOAD,			/* waiting for an HTTP slot to upload */
	IK_PHASE_UPLOADING,
	IK_PHASE_WAITING,			/* another job uploads the same bytes */
	IK_PHASE_FINISHED			/* outcome known, not recorded yet */
} IkPhase;

/* What happens to a job: the input of its state machine (ik_job_step). */
typedef enum IkJobEvent
{
	IK_JOB_EV_CLAIMED,			/* claimed from the queue */
	IK_JOB_EV_SLOT,				/* an HTTP slot is free for it */
	IK_JOB_EV_HOLD,				/* no upload can be made now */
	IK_JOB_EV_DOWNLOADED,		/* its download ended */
	IK_JOB_EV_LOOKUP,			/* in a transaction: dedup its bytes */
	IK_JOB_EV_UPLOADED,			/* its upload ended */
	IK_JOB_EV_LEADER_DONE		/* the job it waited on is finished */
} IkJobEvent;

typedef struct IkJob
{
	IkQueueJob	q;				/* first: allocated by ik_queue_claim */
	IkPhase		phase;
	IkHttpRequest *download;	/* holds the bytes until the upload ends */
	IkHttpRequest *upload;
	const char *ext;
	IkTableOptions table_options;	/* its table's (and row's) options */
	struct IkJob *leader;		/* in IK_PHASE_WAITING */
	uint32		key_generation; /* of the key its upload was sent with */
	bool		holds_lock;		/* the upload lock of its content hash */
	TimestampTz dedup_after;	/* in IK_PHASE_HASHED: when to look again */
	TimestampTz finished_at;	/* when it reached IK_PHASE_FINISHED */
	TimestampTz record_after;	/* in IK_PHASE_FINISHED: not before this */
	dlist_node	node;
} IkJob;

extern void ik_jobs_init(int slot);
extern List *ik_jobs_claim(int64 token, int limit);
extern void ik_job_step(IkJob *job, IkJobEvent event);
extern void ik_job_free(IkJob *job);
extern void ik_jobs_forget(void);

extern dlist_head *ik_jobs_list(void);
extern int	ik_jobs_count(void);
extern int	ik_jobs_requests(void);
extern int	ik_jobs_active(void);
extern int	ik_jobs_concurrency(void);
extern int	ik_jobs_capacity(void);
extern bool ik_jobs_has_phase(IkPhase phase);
extern TimestampTz ik_jobs_lookup_at(void);
extern bool ik_jobs_lookup_due(void);
extern void ik_jobs_look_up(void);
extern void ik_jobs_start_requests(void);
extern void ik_jobs_collect(void);

#endif							/* IK_JOBS_H */
