/*-------------------------------------------------------------------------
 *
 * ik_worker.c
 *	  The background worker that drains imagekit.jobs.
 *
 * Each worker owns a slot (its bgw_main_arg), connects to imagekit.database
 * and loops:
 *
 *	1. record each finished job in a short transaction of its own (one
 *	   whose row or job row an application holds locked is kept and tried
 *	   again a second later);
 *	2. one short transaction: look up the content hashes that were just
 *	   downloaded, move the inbox into the queue, queue a batch of a pending
 *	   backfill, claim more jobs when there is room for a good part of a
 *	   batch (a job claimed more than imagekit.max_retries times without a
 *	   result killed its worker each time: it falls back);
 *	3. outside any transaction: start downloads and uploads, never more than
 *	   imagekit.max_concurrent_uploads HTTP requests at once (nor more than
 *	   the server's file descriptors allow), all on the process's one curl
 *	   multi handle;
 *	4. wait on the latch and the sockets (ik_http_pump) and move each
 *	   finished request's job on.
 *
 * A job goes: download -> hash -> dedup (imagekit.assets, another job in
 * memory uploading the same bytes, or another worker holding the hash's
 * advisory lock) -> upload as <sha256>.<ext> with useUniqueFileName=false
 * (so a repeated upload replaces the same file) -> finished.  A failure is
 * retried later by the queue (the job goes back with next_attempt_at in
 * the future; the worker never sleeps on it), or
 * falls back to the source URL when it is permanent or retries ran out.
 * A 429 pauses the uploads of every worker until the server's reset time;
 * a 401/403 holds this worker's jobs in the queue until the key changes.
 *
 * Idle, the worker sleeps on its latch: a commit that queued jobs sets it
 * (see ik_shmem.c), and the next due retry bounds the sleep.  Every few
 * seconds while busy, and every 30 s when idle, it puts back the jobs of
 * lost leases (a worker that died, a server restarted: their lease token
 * is no running worker's), folds the job counts of imagekit.status and
 * removes finished jobs older than imagekit.job_retention.  On a hot
 * standby it waits for promotion.  Errors end the worker; the postmaster
 * restarts it and it first gives back what the dead process held.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "lib/ilist.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "ik_assets.h"
#include "ik_compat.h"
#include "ik_guc.h"
#include "ik_http.h"
#include "ik_queue.h"
#include "ik_shmem.h"
#include "ik_source.h"
#include "ik_worker.h"

#define IK_IDLE_WAIT_MS 30000
#define IK_LOG_URL_LEN 300

typedef enum IkPhase
{
	IK_PHASE_DOWNLOAD,			/* waiting for an HTTP slot to download */
	IK_PHASE_DOWNLOADING,
	IK_PHASE_HASHED,			/* downloaded; dedup not looked up yet */
	IK_PHASE_UPLOAD,			/* waiting for an HTTP slot to upload */
	IK_PHASE_UPLOADING,
	IK_PHASE_WAITING,			/* another job uploads the same bytes */
	IK_PHASE_FINISHED			/* outcome known, not recorded yet */
} IkPhase;

typedef struct IkJob
{
	IkQueueJob	q;				/* first: allocated by ik_queue_claim */
	IkPhase		phase;
	IkHttpRequest *download;	/* holds the bytes until the upload ends */
	IkHttpRequest *upload;
	const char *ext;
	struct IkJob *leader;		/* in IK_PHASE_WAITING */
	uint32		key_generation; /* of the key its upload was sent with */
	bool		holds_lock;		/* the advisory lock on its content hash */
	TimestampTz dedup_after;	/* in IK_PHASE_HASHED: when to look again */
	TimestampTz record_after;	/* in IK_PHASE_FINISHED: when to record */
	dlist_node	node;
} IkJob;

static int	ik_slot;
static char ik_database_name[NAMEDATALEN];
static bool ik_serving = false; /* the extension found: serving */
static bool ik_settings_stale = true;	/* read the database's settings */
static int64 ik_token;			/* the lease token of this worker's claims */
static dlist_head ik_jobs = DLIST_STATIC_INIT(ik_jobs);
static int	ik_njobs = 0;			/* in memory, finished ones included */
static int	ik_nrequests = 0;		/* HTTP requests in flight */
static MemoryContext ik_jobs_cxt;

/*
 * Memory: the loop runs in ik_loop_cxt, reset at the top of every
 * iteration; a job's memory is in a context of its own under ik_jobs_cxt.
 * A transaction (ik_worker_begin .. ik_worker_commit) starts and ends in
 * ik_loop_cxt, so that nothing allocated after a commit lands in
 * TopMemoryContext, where CommitTransactionCommand() leaves us.
 */
static MemoryContext ik_loop_cxt;
static bool ik_claim_wanted = true;
static TimestampTz ik_next_due = 0; /* 0: nothing known to be due */
static TimestampTz ik_leases_checked = 0;

#define IK_LEASE_CHECK_MS 5000
#define IK_RECORD_RETRY_MS 1000
#define IK_INBOX_BATCH 10000
#define IK_BACKFILL_BATCH 10000
#define IK_RETENTION_BATCH 10000

/* the inbox had more rows, or a backfill is under way: queue more soon */
static bool ik_more_to_queue = false;

/* a backfill's table was locked: not before this (0: any time) */
#define IK_BACKFILL_RETRY_MS 1000
static TimestampTz ik_backfill_after = 0;

/*
 * A 401/403 from ImageKit means that no upload can succeed with this key.
 * The worker then holds its jobs in the queue (no attempt counted, nothing
 * falls back) and claims nothing until imagekit.private_key changes or
 * imagekit.retry_max_delay has passed, when it tries again.
 */
#define IK_HOLD_MS 1000
static char *ik_refused_key = NULL; /* the key ImageKit refused, or NULL */
static TimestampTz ik_refused_until = 0;
static long ik_refused_status = 0;

/*
 * Bumped when a reload changes imagekit.private_key: a 401 to an upload
 * sent with an older key says nothing about the current one.
 */
static char *ik_seen_key = NULL;
static uint32 ik_key_generation = 0;

/*
 * HTTP requests in flight at once: imagekit.max_concurrent_uploads, but no
 * more than the connections the server's file descriptors allow.
 */
static int
ik_worker_concurrency(void)
{
	return Min(ik_guc_max_concurrent_uploads, ik_http_max_connections());
}

/* Is the current key one that ImageKit refused a moment ago? */
static bool
ik_key_refused(void)
{
	if (ik_refused_key == NULL)
		return false;
	if (strcmp(ik_refused_key, ik_guc_private_key ? ik_guc_private_key : "") != 0 ||
		GetCurrentTimestamp() >= ik_refused_until)
	{
		/* a new key, or time to try the old one again */
		pfree(ik_refused_key);
		ik_refused_key = NULL;
		return false;
	}
	return true;
}

/* Note a change of imagekit.private_key (after a reload). */
static void
ik_key_check_changed(void)
{
	const char *key = ik_guc_private_key ? ik_guc_private_key : "";

	if (ik_seen_key != NULL && strcmp(ik_seen_key, key) == 0)
		return;
	if (ik_seen_key != NULL)
		pfree(ik_seen_key);
	ik_seen_key = MemoryContextStrdup(TopMemoryContext, key);
	ik_key_generation++;
}

static void
ik_key_refused_by(const IkUploadError *err)
{
	if (ik_key_refused())
		return;
	ik_refused_key = MemoryContextStrdup(TopMemoryContext,
										 ik_guc_private_key ? ik_guc_private_key : "");
	ik_refused_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												   ik_guc_retry_max_delay);
	ik_refused_status = err->status;
	ereport(WARNING,
			(errmsg("imagekit: ImageKit refused the private key (HTTP status %ld): uploads are held",
					err->status),
			 errdetail("ImageKit said: %s", err->message ? err->message : "nothing"),
			 errhint("Jobs stay queued.  Set a valid imagekit.private_key and reload; the worker tries the current key again in %d ms.",
					 ik_guc_retry_max_delay)));
}

static void
ik_job_finish(IkJob *job, IkJobResult result, const char *error, int status,
			  long hint_ms)
{
	job->q.result = result;
	job->q.http_status = status;
	job->q.error = error ? MemoryContextStrdup(job->q.mcxt, error) : NULL;
	if (result == IK_JOB_HOLD)
		job->q.retry_delay_ms = hint_ms;
	else if (result == IK_JOB_RETRY)
	{
		if (job->q.attempts + 1 > ik_guc_max_retries)
			job->q.result = IK_JOB_FALLBACK;
		else
		{
			job->q.retry_delay_ms = ik_retry_delay_ms(job->q.attempts,
													  ik_guc_retry_base_delay,
													  ik_guc_retry_max_delay,
													  hint_ms);
			ik_shmem_count(IK_STAT_RETRIES, 1);
		}
	}
	if (job->download)
		ik_http_request_free(job->download);
	if (job->upload)
		ik_http_request_free(job->upload);
	job->download = job->upload = NULL;
	job->phase = IK_PHASE_FINISHED;
}

/* The job's content is on ImageKit already, at "url". */
static void
ik_job_dedup_hit(IkJob *job, const char *url)
{
	job->q.url = MemoryContextStrdup(job->q.mcxt, url);
	job->q.dedup_hit = true;
	ik_shmem_count(IK_STAT_DEDUP_HITS, 1);
	ik_job_finish(job, IK_JOB_DONE, NULL, 0, -1);
}

/* Jobs that wait on "leader" share its fate. */
static void
ik_job_finish_waiters(IkJob *leader)
{
	dlist_iter	it;

	dlist_foreach(it, &ik_jobs)
	{
		IkJob	   *w = dlist_container(IkJob, node, it.cur);

		if (w->phase != IK_PHASE_WAITING || w->leader != leader)
			continue;
		w->leader = NULL;
		if (leader->q.result == IK_JOB_DONE)
			ik_job_dedup_hit(w, leader->q.url);
		else
			ik_job_finish(w, leader->q.result, leader->q.error,
						  leader->q.http_status, leader->q.retry_delay_ms);
	}
}

static void
ik_job_start_download(IkJob *job)
{
	MemoryContext old;

	if (strlen(job->q.source_url) > IK_SOURCE_MAX_URL_LEN)
	{
		ik_job_finish(job, IK_JOB_FALLBACK, "source URL is too long", 0, -1);
		return;
	}
	old = MemoryContextSwitchTo(job->q.mcxt);

	job->download = ik_source_request(job->q.source_url, (size_t) ik_guc_max_file_size,
									  ik_guc_timeout, ik_guc_connect_timeout,
									  ik_guc_allow_private_sources);
	job->download->arg = job;
	ik_http_start(job->download);
	MemoryContextSwitchTo(old);
	job->phase = IK_PHASE_DOWNLOADING;
	ik_nrequests++;
}

static void
ik_job_start_upload(IkJob *job)
{
	MemoryContext old = MemoryContextSwitchTo(job->q.mcxt);
	IkUploadOptions opts;
	char	   *name;

	ik_protocol_options(&opts);
	/* named after the content, so a repeated upload replaces the same file */
	opts.use_unique_file_name = false;
	name = psprintf("%s.%s", job->q.hash, job->ext);
	job->upload = ik_upload_request(&opts, job->download->body,
									job->download->body_len, name);
	job->upload->arg = job;
	job->key_generation = ik_key_generation;
	ik_http_start(job->upload);
	MemoryContextSwitchTo(old);
	job->phase = IK_PHASE_UPLOADING;
	ik_nrequests++;
}

/* Start what waits for an HTTP slot, as long as there are slots. */
static void
ik_worker_start_requests(void)
{
	dlist_iter	it;
	bool		paused = ik_shmem_paused_until() > GetCurrentTimestamp();
	const char *problem = ik_protocol_config_problem();
	long		status = 0;

	if (problem == NULL && ik_key_refused())
	{
		problem = "ImageKit refused the private key";
		status = ik_refused_status;
	}

	dlist_foreach(it, &ik_jobs)
	{
		IkJob	   *job = dlist_container(IkJob, node, it.cur);

		if (ik_nrequests >= ik_worker_concurrency())
			break;
		if (job->phase == IK_PHASE_DOWNLOAD)
			ik_job_start_download(job);
		else if (job->phase == IK_PHASE_UPLOAD && problem != NULL)
		{
			ik_job_finish(job, IK_JOB_HOLD, problem, (int) status, IK_HOLD_MS);
			ik_job_finish_waiters(job);
		}
		else if (job->phase == IK_PHASE_UPLOAD && !paused)
			ik_job_start_upload(job);
	}
	ik_shmem_set_in_flight(ik_slot, ik_nrequests);
}

static void
ik_worker_download_done(IkJob *job)
{
	IkHttpRequest *req = job->download;
	IkSourceOutcome outcome;
	char	   *error;
	long		hint_ms;

	outcome = ik_source_check(req, (size_t) ik_guc_max_file_size, &job->ext,
							  &error, &hint_ms);
	if (outcome != IK_SOURCE_OK)
	{
		ik_job_finish(job, outcome == IK_SOURCE_RETRYABLE ? IK_JOB_RETRY : IK_JOB_FALLBACK,
					  error, (int) req->status, hint_ms);
		return;
	}
	ik_shmem_count(IK_STAT_DOWNLOADS, 1);
	ik_shmem_count(IK_STAT_DOWNLOAD_BYTES, req->body_len);
	ik_sha256_hex(req->body, req->body_len, job->q.hash);
	job->phase = IK_PHASE_HASHED;
}

/* "<what>: <message>, request ID <id>", for the job's last_error */
static char *
ik_upload_error_text(const char *what, const IkUploadError *err)
{
	return psprintf("%s: %s%s%s", what,
					err->message ? err->message : "no message",
					err->request_id ? ", request ID " : "",
					err->request_id ? err->request_id : "");
}

static void
ik_worker_upload_done(IkJob *job)
{
	IkUploadError err;
	IkOutcome	outcome;
	MemoryContext old = MemoryContextSwitchTo(job->q.mcxt);

	outcome = ik_upload_parse(job->upload, &job->q.asset, &err);
	MemoryContextSwitchTo(old);

	switch (outcome)
	{
		case IK_OUTCOME_OK:
			ik_shmem_count(IK_STAT_UPLOADS, 1);
			ik_shmem_count(IK_STAT_UPLOAD_BYTES, job->download->body_len);
			job->q.url = job->q.asset.url;
			job->q.uploaded = true;
			ik_job_finish(job, IK_JOB_DONE, NULL, 0, -1);
			break;
		case IK_OUTCOME_AUTH:
			/* no upload can succeed with this key: keep the job queued */
			if (job->key_generation == ik_key_generation)
				ik_key_refused_by(&err);
			ik_job_finish(job, IK_JOB_HOLD,
						  ik_upload_error_text("upload failed", &err),
						  (int) err.status, IK_HOLD_MS);
			break;
		case IK_OUTCOME_RETRYABLE:
			{
				char	   *msg = ik_upload_error_text("upload failed", &err);

				if (err.status == 429)
				{
					long		pause = err.retry_hint_ms > 0 ? err.retry_hint_ms :
					ik_guc_retry_base_delay;

					pause = Min(pause, ik_guc_retry_max_delay);
					ik_shmem_pause_until(TimestampTzPlusMilliseconds(GetCurrentTimestamp(), pause));
				}
				ik_job_finish(job, IK_JOB_RETRY, msg, (int) err.status, err.retry_hint_ms);
				break;
			}
		default:
			ik_job_finish(job, IK_JOB_FALLBACK,
						  ik_upload_error_text("ImageKit refused the upload", &err),
						  (int) err.status, -1);
			break;
	}
	ik_job_finish_waiters(job);
}

/*
 * The session-level advisory lock that a worker holds on a content hash
 * from the moment it decides to upload it until its asset row is committed:
 * other workers that download the same bytes meanwhile wait for the row
 * instead of uploading again.
 */
static void
ik_hash_locktag(LOCKTAG *tag, const char *hash)
{
	char		part[9];
	uint32		hi;
	uint32		lo;

	memcpy(part, hash, 8);
	part[8] = '\0';
	hi = (uint32) strtoul(part, NULL, 16);
	memcpy(part, hash + 8, 8);
	lo = (uint32) strtoul(part, NULL, 16);

	/* field4 = 0x494b ("IK") keeps clear of applications' advisory locks */
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, hi, lo, 0x494b);
}

static bool
ik_hash_trylock(const char *hash)
{
	LOCKTAG		tag;

	ik_hash_locktag(&tag, hash);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

static void
ik_hash_unlock(const char *hash)
{
	LOCKTAG		tag;

	ik_hash_locktag(&tag, hash);
	LockRelease(&tag, ExclusiveLock, true);
}

/*
 * Dedup a downloaded job: against jobs in memory, then imagekit.assets, then
 * against other workers (the hash lock).  In a transaction.
 */
static void
ik_worker_dedup(IkJob *job)
{
	dlist_iter	it;
	MemoryContext old;

	dlist_foreach(it, &ik_jobs)
	{
		IkJob	   *other = dlist_container(IkJob, node, it.cur);

		if (other != job &&
			(other->phase == IK_PHASE_UPLOAD || other->phase == IK_PHASE_UPLOADING) &&
			strcmp(other->q.hash, job->q.hash) == 0)
		{
			job->leader = other;
			job->phase = IK_PHASE_WAITING;
			ik_http_request_free(job->download);
			job->download = NULL;
			return;
		}
	}

	old = MemoryContextSwitchTo(job->q.mcxt);
	if (ik_asset_lookup(job->q.hash, &job->q.asset))
		ik_job_dedup_hit(job, job->q.asset.url);
	else if (ik_hash_trylock(job->q.hash))
	{
		job->holds_lock = true;
		/* the holder before us may have recorded it just now */
		if (ik_asset_lookup(job->q.hash, &job->q.asset))
			ik_job_dedup_hit(job, job->q.asset.url);
		else
			job->phase = IK_PHASE_UPLOAD;
	}
	else
	{
		/* another worker uploads these bytes: look again shortly */
		job->dedup_after = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 50);
	}
	MemoryContextSwitchTo(old);
}

/* Downloaded jobs whose dedup lookup is due. */
static bool
ik_worker_dedup_due(void)
{
	dlist_iter	it;
	TimestampTz now = GetCurrentTimestamp();

	dlist_foreach(it, &ik_jobs)
	{
		IkJob	   *job = dlist_container(IkJob, node, it.cur);

		if (job->phase == IK_PHASE_HASHED && job->dedup_after <= now)
			return true;
	}
	return false;
}

static void
ik_worker_log_fallback(IkJob *job)
{
	char	   *url = ik_source_url_for_log(job->q.source_url, IK_LOG_URL_LEN);

	ereport(WARNING,
			(errmsg("imagekit: using the source URL for %s.%s row %s",
					job->q.nspname, job->q.relname, job->q.row_key),
			 errdetail_internal("URL: %s. HTTP status: %d. Error: %s. Attempts: %d.",
								url, job->q.http_status,
								job->q.error ? job->q.error : "none",
								job->q.attempts + 1)));
}

static void
ik_worker_begin(const char *activity)
{
	Assert(CurrentMemoryContext == ik_loop_cxt);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
ik_worker_commit(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(ik_loop_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Drop a job from memory with what it holds: its hash lock, its requests. */
static void
ik_job_free(IkJob *job)
{
	if (job->holds_lock)
		ik_hash_unlock(job->q.hash);
	dlist_delete(&job->node);
	ik_njobs--;
	/* frees its requests too, taking them off the multi handle */
	MemoryContextDelete(job->q.mcxt);
}

/* The extension is gone: drop every job in memory. */
static void
ik_worker_forget_jobs(void)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &ik_jobs)
	{
		IkJob	   *job = dlist_container(IkJob, node, it.cur);

		if (job->phase == IK_PHASE_DOWNLOADING || job->phase == IK_PHASE_UPLOADING)
			ik_nrequests--;
		ik_job_free(job);
	}
	ik_shmem_set_in_flight(ik_slot, ik_nrequests);
}

static void ik_worker_record_finished(void);

/*
 * End this worker, telling the launcher why.  Asked to stop (database DDL,
 * settings, a fairer share), it first records what it has finished and
 * gives back the jobs it holds, their attempt not counted, so that a stop
 * costs the queue nothing.
 */
static void
ik_worker_exit(IkExitReason reason)
{
	int			held = ik_njobs;

	Assert(CurrentMemoryContext == ik_loop_cxt);
	if (reason == IK_EXIT_STOPPED && ik_serving && ik_njobs > 0)
	{
		ik_worker_record_finished();
		ik_worker_begin("imagekit: giving back jobs");
		if (ik_queue_installed())
			ik_queue_release(ik_token);
		ik_worker_commit();
	}
	ik_worker_forget_jobs();
	ik_shmem_worker_exiting(ik_slot, reason);
	if (reason == IK_EXIT_STOPPED)
		elog(LOG, "imagekit worker %d for database \"%s\" stopped; %d jobs given back",
			 ik_slot, ik_database_name, held);
	else if (ik_serving)
		elog(LOG, "imagekit worker %d for database \"%s\" exits: extension imagekit_ext is not installed there (any more)",
			 ik_slot, ik_database_name);
	proc_exit(0);
}

/*
 * Record each finished job in a transaction of its own (so that a worker
 * never holds row locks of several rows at once, which could deadlock with
 * an application updating them), then free it.  With synchronous_commit off
 * these commits are cheap; a crash can lose the last of them, and the jobs
 * are then done again, harmlessly (uploads are named by content).
 */
static void
ik_worker_record_finished(void)
{
	dlist_mutable_iter it;
	bool		any = false;
	TimestampTz now = GetCurrentTimestamp();

	dlist_foreach_modify(it, &ik_jobs)
	{
		IkJob	   *job = dlist_container(IkJob, node, it.cur);
		IkFinishOutcome outcome;

		if (job->phase != IK_PHASE_FINISHED || job->record_after > now)
			continue;
		ik_worker_begin("imagekit: recording a job");
		if (!ik_queue_installed())
		{
			ik_worker_commit();
			ik_worker_exit(IK_EXIT_NOT_INSTALLED);
		}
		outcome = ik_queue_finish(&job->q, ik_token);
		ik_worker_commit();
		if (outcome == IK_FINISH_LATER)
		{
			/* an application holds the job's row: keep it, try again */
			job->record_after = TimestampTzPlusMilliseconds(now, IK_RECORD_RETRY_MS);
			continue;
		}
		if (outcome == IK_FINISH_RECORDED && job->q.result == IK_JOB_FALLBACK)
		{
			ik_shmem_count(IK_STAT_FALLBACKS, 1);
			ik_worker_log_fallback(job);
		}
		ik_job_free(job);
		any = true;
	}
	if (any)
	{
		pgstat_report_stat(false);
		/* a result may have put a re-pointed job back in the queue */
		ik_claim_wanted = true;
	}
}

/*
 * May this worker claim jobs at all?  Not when disabled, nor while
 * ImageKit refuses the key or the configuration cannot upload: jobs then
 * wait in the queue rather than being downloaded only to be held or all
 * falling back.
 */
static bool
ik_worker_may_claim(void)
{
	static bool warned = false;

	if (!ik_guc_enabled || ik_key_refused())
		return false;
	if (ik_protocol_config_problem() == NULL)
		return true;
	if (!warned)
		ereport(WARNING,
				(errmsg("imagekit: the worker cannot upload: %s",
						ik_protocol_config_problem()),
				 errhint("Jobs stay queued until the configuration is fixed and reloaded.")));
	warned = true;
	return false;
}

/* One transaction: dedup downloaded jobs, claim more if there is room. */
static void
ik_worker_dedup_and_claim(void)
{
	dlist_iter	it;
	int			room = ik_worker_concurrency();
	TimestampTz now = GetCurrentTimestamp();

	ik_worker_begin("imagekit: claiming jobs");
	if (!ik_queue_installed())
	{
		ik_worker_commit();
		ik_worker_exit(IK_EXIT_NOT_INSTALLED);
	}
	if (!ik_serving)
	{
		/* from now on, commits in this database wake this worker */
		ik_shmem_worker_serving(ik_slot, ik_token);
		ik_serving = true;
		elog(LOG, "imagekit worker %d serves database \"%s\"",
			 ik_slot, ik_database_name);
	}
	if (ik_settings_stale)
	{
		/* the launcher sizes this database's share with it */
		ik_shmem_worker_report_db_workers(ik_slot, ik_queue_database_workers());
		ik_settings_stale = false;
	}
	/* at once when starting: what this slot held before is given back */
	if (TimestampDifferenceExceeds(ik_leases_checked, now, IK_LEASE_CHECK_MS))
	{
		ik_queue_requeue_lost();
		ik_queue_housekeeping(ik_guc_job_retention, IK_RETENTION_BATCH);
		ik_leases_checked = now;
	}

	dlist_foreach(it, &ik_jobs)
	{
		IkJob	   *job = dlist_container(IkJob, node, it.cur);

		if (job->phase == IK_PHASE_HASHED && job->dedup_after <= now)
			ik_worker_dedup(job);
		if (job->phase != IK_PHASE_FINISHED)
			room--;
	}

	ik_more_to_queue = false;
	if (ik_guc_enabled && ik_claim_wanted)
	{
		int			moved = ik_queue_absorb_inbox(IK_INBOX_BATCH);
		int64		backfilled = 0;
		bool		backfilling = false;

		if (ik_backfill_after == 0)
			backfilling = ik_queue_backfill_step(IK_BACKFILL_BATCH, &backfilled);
		if (backfilled < 0)
		{
			/* its table is locked: not every loop, or all else would wait */
			ik_backfill_after = TimestampTzPlusMilliseconds(now, IK_BACKFILL_RETRY_MS);
			backfilling = false;
		}

		/* more: come back soon */
		ik_more_to_queue = (moved == IK_INBOX_BATCH || backfilling);
		if (moved > 0 || backfilled > 0)
			ik_wake_on_commit();	/* the other workers can help */
		if (!ik_worker_may_claim())
			ik_claim_wanted = ik_more_to_queue; /* until woken again */
	}

	if (ik_worker_may_claim() && ik_claim_wanted && room > 0)
	{
		int			limit = Min(room, ik_guc_batch_size);
		List	   *claimed;
		ListCell   *lc;

		claimed = ik_queue_claim(ik_slot, ik_token, limit, ik_guc_lease_timeout,
								 ik_jobs_cxt, sizeof(IkJob));

		/*
		 * The claim counts an attempt, which is there to count this worker's
		 * death: it must not be lost with it, as an asynchronous commit can.
		 */
		if (claimed != NIL)
			(void) set_config_option("synchronous_commit", "on", PGC_SUSET,
									 PGC_S_OVERRIDE, GUC_ACTION_LOCAL, true, 0,
									 false);
		foreach(lc, claimed)
		{
			IkJob	   *job = (IkJob *) lfirst(lc);

			dlist_push_tail(&ik_jobs, &job->node);
			ik_njobs++;
			if (job->q.attempts > ik_guc_max_retries)
			{
				/* claimed that often, it ended its worker every time */
				char	   *error = psprintf("gave up after %d attempts that ended without a result "
											 "(the worker processing the job died: a crash, a kill or out of memory)",
											 job->q.attempts);

				ik_job_finish(job, IK_JOB_FALLBACK, error, 0, -1);
				job->q.no_attempt = true;
				/* once more: storing the fallback ended it too */
				job->q.no_store = job->q.attempts > ik_guc_max_retries + 1;
				job->q.attempts--;	/* as logged: the deaths */
			}
			else if (job->q.pending)
				job->phase = IK_PHASE_FINISHED; /* only its result to store */
			else
				job->phase = IK_PHASE_DOWNLOAD;
		}
		if (list_length(claimed) < limit && !ik_more_to_queue)
		{
			/* the queue is drained for now */
			ik_claim_wanted = false;
			ik_next_due = 0;
			if (room - list_length(claimed) == ik_worker_concurrency())
			{
				/* and we are idle: sleep until the next due job */
				long		due = ik_queue_next_due_ms();

				if (due >= 0)
					ik_next_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															  Max(due, 50));
			}
		}
	}
	ik_worker_commit();
}

/*
 * Whether to move the inbox, backfill and keep house without claiming:
 * when there is more to queue, or when no claim is possible (no key, a
 * refused key) but rows are still to be queued and counted.
 */
static bool
ik_worker_should_queue(void)
{
	return ik_guc_enabled && ik_claim_wanted &&
		(ik_more_to_queue || !ik_worker_may_claim());
}

/* Jobs in memory that are not finished. */
static int
ik_worker_active_jobs(void)
{
	dlist_iter	it;
	int			n = 0;

	dlist_foreach(it, &ik_jobs)
	{
		if (dlist_container(IkJob, node, it.cur)->phase != IK_PHASE_FINISHED)
			n++;
	}
	return n;
}

/*
 * Whether to claim now: when idle at once (latency), otherwise only once
 * there is room for a good part of a batch, so that a busy worker runs one
 * claim per several jobs rather than one per job.
 */
static bool
ik_worker_should_claim(void)
{
	int			active = ik_worker_active_jobs();
	int			room = ik_worker_concurrency() - active;

	if (!ik_claim_wanted || room <= 0 || !ik_worker_may_claim())
		return false;
	return active == 0 ||
		room >= Max(1, Min(ik_guc_batch_size, ik_worker_concurrency() / 4));
}

static bool
ik_worker_has_phase(IkPhase phase)
{
	dlist_iter	it;

	dlist_foreach(it, &ik_jobs)
	{
		if (dlist_container(IkJob, node, it.cur)->phase == phase)
			return true;
	}
	return false;
}

/* How long the next wait may last. */
static long
ik_worker_wait_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		wait = IK_IDLE_WAIT_MS;
	TimestampTz paused = ik_shmem_paused_until();

	if (ik_nrequests > 0)
		wait = 1000;
	if (ik_next_due != 0)
		wait = Min(wait, Max(0, (long) ((ik_next_due - now) / 1000)));
	if (paused > now && ik_worker_has_phase(IK_PHASE_UPLOAD))
		wait = Min(wait, (long) ((paused - now) / 1000) + 1);
	if (ik_worker_has_phase(IK_PHASE_HASHED))
		wait = Min(wait, 50);
	if (ik_worker_has_phase(IK_PHASE_FINISHED))
		wait = Min(wait, IK_RECORD_RETRY_MS);	/* a job kept to record later */
	if (ik_more_to_queue && ik_claim_wanted)
		wait = 0;
	if (ik_backfill_after != 0)
		wait = Min(wait, Max(0, (long) ((ik_backfill_after - now) / 1000)));
	if (ik_refused_key != NULL && ik_refused_until > now)
		wait = Min(wait, (long) ((ik_refused_until - now) / 1000) + 1);
	return wait;
}

/* What the next wait is for, as pg_stat_activity.wait_event shows it. */
static uint32
ik_worker_wait_event(void)
{
	if (ik_worker_has_phase(IK_PHASE_UPLOADING))
		return ik_wait_event(IK_WAIT_UPLOAD);
	if (ik_worker_has_phase(IK_PHASE_DOWNLOADING))
		return ik_wait_event(IK_WAIT_DOWNLOAD);
	if (ik_njobs > 0)
		return ik_wait_event(IK_WAIT_BACKOFF);
	return ik_wait_event(IK_WAIT_IDLE);
}

void
ik_worker_main(Datum arg)
{
	IkWorkerExtra extra;

	ik_slot = DatumGetInt32(arg);
	memcpy(&extra, MyBgworkerEntry->bgw_extra, sizeof(extra));
	strlcpy(ik_database_name, extra.dbname, sizeof(ik_database_name));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* not even connect to a database held by DDL: it waits for us */
	if (!ik_shmem_worker_attach(ik_slot, extra.dboid, extra.generation))
		proc_exit(0);
	BackgroundWorkerInitializeConnectionByOid(extra.dboid, InvalidOid, 0);
	/* unique to this process: claims of an earlier one are lost leases */
	ik_token = (int64) GetCurrentTimestamp();
	ik_key_check_changed();
	/* the worker's own SQL is schema-qualified; trust nothing else */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	/* results lost in a crash are redone: no need to wait for WAL flushes */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/*
	 * The worker reads attached tables as itself (a row's look-up, the
	 * backfill): constraint exclusion could evaluate a table owner's CHECK
	 * constraint of an inheritance child, as a superuser, while planning.
	 */
	SetConfigOption("constraint_exclusion", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Image buffers are large and short-lived: keep them out of the heap,
	 * so that freeing one gives its memory back to the system at once.
	 */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);

	ik_jobs_cxt = AllocSetContextCreate(TopMemoryContext, "imagekit jobs",
										ALLOCSET_DEFAULT_SIZES);
	ik_loop_cxt = AllocSetContextCreate(TopMemoryContext, "imagekit worker loop",
										ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		IkHttpRequest *req;
		int			rc;

		MemoryContextSwitchTo(ik_loop_cxt);
		MemoryContextReset(ik_loop_cxt);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			ik_key_check_changed();
			ik_claim_wanted = true;
		}
		if (ik_shmem_worker_should_stop(ik_slot))
			ik_worker_exit(IK_EXIT_STOPPED);
		if (ik_shmem_take_settings_change())
			ik_settings_stale = true;

		if (RecoveryInProgress() || (!ik_guc_enabled && ik_njobs == 0))
		{
			/* shown in pg_stat_activity.query: what the worker waits for */
			pgstat_report_activity(STATE_IDLE, RecoveryInProgress() ?
									"imagekit: waiting for the end of recovery" :
									"imagekit: paused (imagekit.enabled = off)");
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 RecoveryInProgress() ? 1000L : IK_IDLE_WAIT_MS,
							 ik_wait_event(IK_WAIT_IDLE));
			ResetLatch(MyLatch);
			ik_claim_wanted = true;
			continue;
		}

		if (ik_serving && ik_worker_has_phase(IK_PHASE_FINISHED))
			ik_worker_record_finished();
		if (ik_next_due != 0 && ik_next_due <= GetCurrentTimestamp())
		{
			ik_claim_wanted = true;
			ik_next_due = 0;
		}
		if (ik_backfill_after != 0 && ik_backfill_after <= GetCurrentTimestamp())
		{
			ik_claim_wanted = true;
			ik_backfill_after = 0;
		}
		if (!ik_serving || ik_settings_stale || ik_worker_should_claim() || ik_worker_dedup_due() ||
			ik_worker_should_queue())
		{
			ik_worker_dedup_and_claim();
			/* dedup hits are finished at once */
			if (ik_worker_has_phase(IK_PHASE_FINISHED))
				ik_worker_record_finished();
		}

		ik_worker_start_requests();

		rc = ik_http_pump(ik_worker_wait_ms(), ik_worker_wait_event());
		/* woken by a commit, or idle long enough to look anyway */
		if ((rc & WL_LATCH_SET) || ((rc & WL_TIMEOUT) && ik_njobs == 0))
			ik_claim_wanted = true;

		while ((req = ik_http_next_done()) != NULL)
		{
			IkJob	   *job = (IkJob *) req->arg;

			ik_nrequests--;
			if (req == job->download && job->phase == IK_PHASE_DOWNLOADING)
				ik_worker_download_done(job);
			else if (req == job->upload)
				ik_worker_upload_done(job);
		}
		ik_shmem_set_in_flight(ik_slot, ik_nrequests);
		Assert(CurrentMemoryContext == ik_loop_cxt);
	}
}
