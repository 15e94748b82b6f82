/*-------------------------------------------------------------------------
 *
 * ik_worker.c
 *	  The background worker that drains imagekit.jobs.
 *
 * The launcher (ik_launcher.c) starts a worker with a slot (its
 * bgw_main_arg) and a database (its bgw_extra).  The worker connects, and
 * exits at once if the extension is not there; otherwise it loops, in
 * named steps:
 *
 *	1. ik_worker_record: record the finished jobs, a batch in one short
 *	   transaction (a job whose row or job row an application holds locked
 *	   is kept and tried again a second later);
 *	2. ik_worker_queue_and_claim: one short transaction to look up the
 *	   content hashes just downloaded, move the inbox into the queue, queue
 *	   a batch of a pending backfill, and claim more jobs when there is room
 *	   for a good part of a batch;
 *	3. ik_jobs_start_requests: outside any transaction, start downloads and
 *	   uploads, never more than imagekit.max_concurrent_uploads HTTP
 *	   requests at once (nor more than the server's file descriptors allow),
 *	   all on the process's one curl multi handle;
 *	4. ik_worker_wait: wait on the latch and the sockets (ik_http_pump),
 *	   move each finished request's job on (ik_jobs_collect), and start
 *	   at once what the ended requests leave room for.  Steps 1 and 2 do
 *	   the same, and look up what was downloaded, before their database
 *	   work and between a batch's jobs (ik_worker_pump), so that no request
 *	   waits for a whole step.
 *
 * What happens to a job is ik_jobs.c's state machine; what a failure means
 * (retry, give up, pause, hold) is ik_protocol.c's policy.  A failure is
 * retried later by the queue (the job goes back with next_attempt_at in
 * the future; the worker never sleeps on it).
 *
 * Idle, the worker sleeps on its latch: a commit that queued jobs sets it
 * (see ik_shmem.c), and the next due retry bounds the sleep.  Every few
 * seconds while busy, and every 30 s when idle, it puts back the jobs of
 * lost leases (a worker that died, a server restarted: their lease token
 * is no running worker's), folds the job counts of imagekit.status and
 * removes finished jobs older than imagekit.job_retention (every second
 * while more than a batch of them is due).  Asked to stop
 * (database DDL, or the launcher), it records what it finished, gives back
 * what it holds and exits.  Errors end the worker; the launcher starts it
 * again after a backoff, and it first gives back what the dead process
 * held.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ik_compat.h"
#include "ik_guc.h"
#include "ik_http.h"
#include "ik_jobs.h"
#include "ik_protocol.h"
#include "ik_queue.h"
#include "ik_shmem.h"
#include "ik_source.h"
#include "ik_stats.h"
#include "ik_worker.h"

#define IK_IDLE_WAIT_MS 30000
#define IK_LOG_URL_LEN 300

static int	ik_slot;
static char ik_database_name[NAMEDATALEN];
static bool ik_serving = false; /* the extension found: serving */
static bool ik_settings_stale = true;	/* read the database's settings */
static int64 ik_token;			/* the lease token of this worker's claims */

/*
 * Memory: the loop runs in ik_loop_cxt, reset at the top of every
 * iteration; a job's memory is in a context of its own (ik_jobs.c).
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
/* a finished job waits at most this long for others to record it with */
#define IK_RECORD_DELAY_MS 50
/*
 * A batch takes no new job after this long, so that an application waits
 * for the locks of a batch (its job rows) about this long at most, unless
 * a table's own triggers make one store slow.
 */
#define IK_RECORD_BUDGET_MS 50
#define IK_INBOX_BATCH 10000
/*
 * An idle worker moves a smaller first step, so that its first requests
 * start without waiting for a large insert's whole inbox to move (2000 rows
 * take about 50 ms); the rest follows while they run.
 */
#define IK_INBOX_FIRST_BATCH 256
#define IK_BACKFILL_BATCH 10000
#define IK_RETENTION_BATCH 10000
/*
 * While a housekeeping step leaves finished jobs past their retention (it
 * removed a whole batch), the next comes after this long instead of
 * IK_LEASE_CHECK_MS: retention keeps up with a drain of up to
 * IK_RETENTION_BATCH jobs a second, and imagekit.jobs stops growing.
 */
#define IK_RETENTION_AGAIN_MS 1000
static bool ik_retention_behind = false;

/* the inbox had more rows, or a backfill is under way: queue more soon */
static bool ik_more_to_queue = false;

/*
 * Whether to look at the inbox and the backfills before claiming: only
 * when a commit queued jobs for this worker since it last looked (the
 * wakes of its slot), when the last look left more, and every
 * IK_LEASE_CHECK_MS and idle poll, for what came without a wake (a
 * prepared transaction); not at every claim, as an empty look costs as
 * much as a claim.
 */
static bool ik_queue_wanted = true;
static uint32 ik_wakes_seen = 0;

/* a backfill's table was locked: not before this (0: any time) */
#define IK_BACKFILL_RETRY_MS 1000
static TimestampTz ik_backfill_after = 0;

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

static void ik_worker_record(void);
static void ik_worker_pump(void);
static uint32 ik_worker_wait_event(void);

/*
 * End this worker, telling the launcher why.  Asked to stop (database DDL,
 * settings, a fairer share), it first records what it has finished and
 * gives back the jobs it holds, their attempt not counted, so that a stop
 * costs the queue nothing.
 */
static void
ik_worker_exit(IkExitReason reason)
{
	int			held = ik_jobs_count();

	Assert(CurrentMemoryContext == ik_loop_cxt);
	if (reason == IK_EXIT_STOPPED && ik_serving && held > 0)
	{
		ik_worker_record();
		ik_worker_begin("imagekit: giving back jobs");
		if (ik_queue_installed())
			ik_queue_release(ik_token);
		ik_worker_commit();
	}
	ik_jobs_forget();
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
 * Record the finished jobs, all in one transaction: their job rows are
 * locked in one statement (ik_queue_lock()), each job's row is stored, and
 * its record staged, in a subtransaction of its own (ik_queue_finish()),
 * and then the batch's assets and records are written in one statement
 * each (ik_queue_flush()).  Jobs are freed once that has
 * committed, so a job's upload lock on its content lasts until its asset
 * is there for others to find.  With synchronous_commit off the commit is
 * cheap; a crash can lose the last batch, and its jobs are then done
 * again, harmlessly (uploads are named by content).
 */
static void
ik_worker_record(void)
{
	dlist_iter	it;
	List	   *batch = NIL;
	List	   *recorded = NIL;
	List	   *queue_jobs = NIL;
	List	   *fallbacks = NIL;
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();

	ik_worker_begin("imagekit: recording jobs");
	if (!ik_queue_installed())
	{
		ik_worker_commit();
		ik_worker_exit(IK_EXIT_NOT_INSTALLED);
	}
	/* the batch: their job rows locked at once */
	dlist_foreach(it, ik_jobs_list())
	{
		IkJob	   *job = dlist_container(IkJob, node, it.cur);

		if (job->phase == IK_PHASE_FINISHED && job->record_after <= now)
		{
			batch = lappend(batch, job);
			queue_jobs = lappend(queue_jobs, &job->q);
		}
	}
	ik_queue_lock(queue_jobs, ik_token);
	queue_jobs = NIL;
	ik_worker_pump();

	foreach(lc, batch)
	{
		IkJob	   *job = (IkJob *) lfirst(lc);
		IkFinishOutcome outcome;
		MemoryContext old;

		/* (the rest, their job rows locked for nothing, in the next batch) */
		if (recorded != NIL &&
			TimestampDifferenceExceeds(now, GetCurrentTimestamp(), IK_RECORD_BUDGET_MS))
			break;
		outcome = ik_queue_finish(&job->q, ik_token);
		if (outcome == IK_FINISH_LATER)
		{
			/* an application holds the job's row: keep it, try again */
			job->record_after = TimestampTzPlusMilliseconds(now, IK_RECORD_RETRY_MS);
			continue;
		}
		/* (lists that outlive the transaction) */
		old = MemoryContextSwitchTo(ik_loop_cxt);
		recorded = lappend(recorded, job);
		queue_jobs = lappend(queue_jobs, &job->q);
		if (outcome == IK_FINISH_RECORDED && job->q.result == IK_JOB_FALLBACK)
			fallbacks = lappend(fallbacks, job);
		MemoryContextSwitchTo(old);
		ik_worker_pump();
	}
	ik_queue_flush(queue_jobs, ik_token);
	ik_worker_commit();

	foreach(lc, fallbacks)
	{
		ik_stats_count(IK_STAT_FALLBACKS, 1);
		ik_worker_log_fallback((IkJob *) lfirst(lc));
	}
	foreach(lc, recorded)
		ik_job_free((IkJob *) lfirst(lc));
	if (recorded != NIL)
	{
		pgstat_report_stat(false);
		/* a result may have put a re-pointed job back in the queue */
		ik_claim_wanted = true;
	}
}

/*
 * Between two jobs of a batch being recorded: move on the jobs whose
 * requests have ended, look up the contents just downloaded, and give the
 * slots to the jobs waiting for one, so that the requests of a
 * latency-bound drain do not wait for the batch (benchmark scenario 1).
 * The jobs that finish meanwhile are the next batch's.  A look-up only
 * reads imagekit.assets and takes no lock it would wait for (the upload
 * lock of a content is tried, see ik_asset_trylock()): the batch's
 * transaction is the look-up's as well as step 2's would be.
 */
static void
ik_worker_pump(void)
{
	MemoryContext old;

	if (ik_jobs_requests() == 0)
		return;
	old = MemoryContextSwitchTo(ik_loop_cxt);
	if (ik_http_pump(0, ik_worker_wait_event()) & WL_LATCH_SET)
		ik_claim_wanted = true;
	ik_jobs_collect();
	if (ik_jobs_lookup_due())
		ik_jobs_look_up();
	ik_jobs_start_requests();
	MemoryContextSwitchTo(old);
}

/*
 * When the finished jobs are to be recorded: at once when nothing else is
 * under way (the commit-to-URL latency of a quiet table), otherwise once
 * half a batch has finished or the first of them has waited
 * IK_RECORD_DELAY_MS, so that a busy worker records many jobs per
 * transaction.  A job an application held (record_after) waits for that.
 * Returns 0 when nothing is finished.
 */
static TimestampTz
ik_worker_record_at(void)
{
	dlist_iter	it;
	TimestampTz at = 0;
	int			n = 0;

	dlist_foreach(it, ik_jobs_list())
	{
		IkJob	   *job = dlist_container(IkJob, node, it.cur);
		TimestampTz t;

		if (job->phase != IK_PHASE_FINISHED)
			continue;
		t = Max(job->record_after,
				TimestampTzPlusMilliseconds(job->finished_at, IK_RECORD_DELAY_MS));
		if (at == 0 || t < at)
			at = t;
		if (job->record_after <= GetCurrentTimestamp())
			n++;
	}
	if (n > 0 && (n >= Max(1, ik_jobs_concurrency() / 2) ||
				  ik_jobs_requests() == 0))
		return GetCurrentTimestamp();
	return at;
}

static bool
ik_worker_record_due(void)
{
	TimestampTz at = ik_worker_record_at();

	return at != 0 && at <= GetCurrentTimestamp();
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

	if (!ik_guc_enabled || ik_protocol_key_refused(NULL))
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

static bool ik_worker_should_claim(void);

/* How often leases are checked and housekeeping done. */
static int
ik_worker_housekeeping_ms(void)
{
	return ik_retention_behind ? IK_RETENTION_AGAIN_MS : IK_LEASE_CHECK_MS;
}

/*
 * One transaction: dedup downloaded jobs, move the inbox into the queue,
 * backfill, keep house, and claim more if there is room.
 */
static void
ik_worker_queue_and_claim(void)
{
	int			room;
	TimestampTz now = GetCurrentTimestamp();

	ik_worker_begin("imagekit: claiming jobs");
	if (!ik_queue_installed())
	{
		ik_worker_commit();
		ik_worker_exit(IK_EXIT_NOT_INSTALLED);
	}
	/* (the requests started last send what they can before this step) */
	ik_worker_pump();
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
	if (TimestampDifferenceExceeds(ik_leases_checked, now, ik_worker_housekeeping_ms()))
	{
		ik_queue_requeue_lost();
		ik_retention_behind = ik_queue_housekeeping(ik_guc_job_retention,
													IK_RETENTION_BATCH);
		ik_leases_checked = now;
		ik_queue_wanted = true;
	}
	if (ik_shmem_worker_wakes(ik_slot) != ik_wakes_seen)
	{
		ik_wakes_seen = ik_shmem_worker_wakes(ik_slot);
		ik_queue_wanted = true;
	}

	ik_jobs_look_up();
	room = ik_jobs_capacity() - ik_jobs_active();

	ik_more_to_queue = false;
	if (ik_guc_enabled && ik_claim_wanted && ik_queue_wanted)
	{
		int			limit = ik_jobs_count() == 0 ? IK_INBOX_FIRST_BATCH : IK_INBOX_BATCH;
		int			moved = ik_queue_absorb_inbox(limit);
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
		ik_more_to_queue = (moved == limit || backfilling);
		ik_queue_wanted = ik_more_to_queue;
		if (moved > 0 || backfilled > 0)
			ik_wake_on_commit();	/* the other workers can help */
		if (!ik_worker_may_claim())
			ik_claim_wanted = ik_more_to_queue; /* until woken again */
	}

	/* (this transaction may be for look-ups only: claim when it is time) */
	ik_worker_pump();
	if (ik_worker_should_claim())
	{
		int			limit = Min(room, ik_guc_batch_size);
		List	   *claimed = ik_jobs_claim(ik_token, limit);

		/*
		 * The claim counts an attempt, which is there to count this worker's
		 * death: it must not be lost with it, as an asynchronous commit can.
		 * (As SET LOCAL does: a source of PGC_S_OVERRIDE would make "on"
		 * the value the end of the transaction goes back to, and every
		 * later commit of the worker synchronous.)
		 */
		if (claimed != NIL)
			(void) set_config_option("synchronous_commit", "on", PGC_SUSET,
									 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0,
									 false);
		if (list_length(claimed) < limit && !ik_more_to_queue)
		{
			/* the queue is drained for now */
			ik_claim_wanted = false;
			ik_next_due = 0;
			if (room - list_length(claimed) == ik_jobs_capacity())
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

/*
 * Whether to claim now: when idle at once (latency), otherwise only once
 * half the jobs claimed ahead have started, so that a busy worker runs one
 * full claim per many jobs while the rest claimed ahead keep its HTTP
 * slots busy.
 */
static bool
ik_worker_should_claim(void)
{
	int			active = ik_jobs_active();
	int			room = ik_jobs_capacity() - active;

	if (!ik_claim_wanted || room <= 0 || !ik_worker_may_claim())
		return false;
	return active == 0 ||
		room >= Max(1, (ik_jobs_capacity() - ik_jobs_concurrency()) / 2);
}

/* How long the next wait may last. */
static long
ik_worker_wait_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		wait = IK_IDLE_WAIT_MS;
	TimestampTz paused = ik_shmem_paused_until();
	TimestampTz key_retry = ik_protocol_key_retry_at();
	TimestampTz lookup = ik_jobs_lookup_at();

	if (ik_jobs_requests() > 0)
		wait = 1000;
	if (ik_next_due != 0)
		wait = Min(wait, TimestampDifferenceMilliseconds(now, ik_next_due));
	if (paused > now && ik_jobs_has_phase(IK_PHASE_UPLOAD))
		wait = Min(wait, TimestampDifferenceMilliseconds(now, paused));
	/*
	 * a downloaded job is looked up when due (at once, or a while after
	 * another worker held its content's upload lock): the wait may have no
	 * socket to end it
	 */
	if (lookup != DT_NOEND)
		wait = Min(wait, TimestampDifferenceMilliseconds(now, lookup));
	if (ik_jobs_has_phase(IK_PHASE_FINISHED))
		wait = Min(wait, TimestampDifferenceMilliseconds(now, ik_worker_record_at()));
	if (ik_more_to_queue && ik_claim_wanted)
		wait = 0;
	if (ik_backfill_after != 0)
		wait = Min(wait, TimestampDifferenceMilliseconds(now, ik_backfill_after));
	if (key_retry > now)
		wait = Min(wait, TimestampDifferenceMilliseconds(now, key_retry));
	if (ik_retention_behind)
	{
		TimestampTz next = TimestampTzPlusMilliseconds(ik_leases_checked,
													   IK_RETENTION_AGAIN_MS);

		wait = Min(wait, TimestampDifferenceMilliseconds(now, next));
	}
	return wait;
}

/* What the next wait is for, as pg_stat_activity.wait_event shows it. */
static uint32
ik_worker_wait_event(void)
{
	if (ik_jobs_has_phase(IK_PHASE_UPLOADING))
		return ik_wait_event(IK_WAIT_UPLOAD);
	if (ik_jobs_has_phase(IK_PHASE_DOWNLOADING))
		return ik_wait_event(IK_WAIT_DOWNLOAD);
	if (ik_jobs_count() > 0)
		return ik_wait_event(IK_WAIT_BACKOFF);
	return ik_wait_event(IK_WAIT_IDLE);
}

/*
 * Wait on the latch and the sockets, then move on the jobs whose requests
 * ended, and start the requests that waited for their slots.
 */
static void
ik_worker_wait(void)
{
	int			rc = ik_http_pump(ik_worker_wait_ms(), ik_worker_wait_event());

	/* woken by a commit, or idle long enough to look anyway */
	if ((rc & WL_LATCH_SET) || ((rc & WL_TIMEOUT) && ik_jobs_count() == 0))
		ik_claim_wanted = true;
	if ((rc & WL_TIMEOUT) && ik_jobs_count() == 0)
		ik_queue_wanted = true;
	ik_jobs_collect();
	/* (before steps 1 and 2 take their time) */
	ik_jobs_start_requests();
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
	(void) ik_protocol_key_generation();
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

	ik_jobs_init(ik_slot);
	ik_loop_cxt = AllocSetContextCreate(TopMemoryContext, "imagekit worker loop",
										ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		MemoryContextSwitchTo(ik_loop_cxt);
		MemoryContextReset(ik_loop_cxt);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* a new key: a refusal of the old one says nothing of it */
			(void) ik_protocol_key_generation();
			ik_claim_wanted = ik_queue_wanted = true;
		}
		if (ik_shmem_worker_should_stop(ik_slot))
			ik_worker_exit(IK_EXIT_STOPPED);
		if (ik_shmem_take_settings_change())
			ik_settings_stale = true;

		if (RecoveryInProgress() || (!ik_guc_enabled && ik_jobs_count() == 0))
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

		/* 1. */
		if (ik_serving && ik_worker_record_due())
			ik_worker_record();
		if (ik_next_due != 0 && ik_next_due <= GetCurrentTimestamp())
		{
			ik_claim_wanted = true;
			ik_next_due = 0;
		}
		if (ik_backfill_after != 0 && ik_backfill_after <= GetCurrentTimestamp())
		{
			ik_claim_wanted = ik_queue_wanted = true;
			ik_backfill_after = 0;
		}
		/* 2. */
		if (!ik_serving || ik_settings_stale || ik_worker_should_claim() ||
			ik_jobs_lookup_due() || ik_worker_should_queue())
		{
			ik_worker_queue_and_claim();
			/* dedup hits are finished at once */
			if (ik_worker_record_due())
				ik_worker_record();
		}

		/* 3. */
		ik_jobs_start_requests();

		/* 4. */
		ik_worker_wait();
		Assert(CurrentMemoryContext == ik_loop_cxt);
	}
}
