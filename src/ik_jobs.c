/*-------------------------------------------------------------------------
 *
 * ik_jobs.c
 *	  The jobs a worker holds in memory, and their state machine.
 *
 * A job goes:
 *
 *	CLAIMED -> DOWNLOAD -> DOWNLOADING -> HASHED -> UPLOAD -> UPLOADING
 *	   -> FINISHED
 *
 * and from HASHED to FINISHED at once when its bytes are on ImageKit
 * already (imagekit.assets), or to WAITING while another job in memory
 * uploads the same bytes, whose fate it then shares.  A failure finishes a
 * job at any step: with a retry (its next attempt later, from the queue),
 * a fallback (the source URL), or a hold (back to the queue, no attempt
 * counted: the configuration cannot upload, or ImageKit refused the key).
 * A job claimed with a result still to store goes straight to FINISHED.
 * ik_job_step() is the one transition function: the worker tells it what
 * happened (an event), it moves the job on.  Uploads are named after the
 * content (<sha256>.<ext>, useUniqueFileName=false), so that a repeated
 * upload replaces the same file.
 *
 * Dedup is three-fold: another job in memory (WAITING while it uploads,
 * or its result at once when it is done but not recorded yet),
 * imagekit.assets, and other workers (the content hash's upload lock,
 * ik_assets.c; a lock this process holds is taken again, so it never
 * stands for another job in memory): a job
 * whose lock another process holds stays HASHED and looks again shortly.
 *
 * Memory: each job is a context of its own under "imagekit jobs", which
 * holds its requests (and with them the downloaded bytes) until it is
 * freed; freeing a job takes its requests off the multi handle.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "ik_assets.h"
#include "ik_guc.h"
#include "ik_hash.h"
#include "ik_jobs.h"
#include "ik_protocol.h"
#include "ik_shmem.h"
#include "ik_source.h"
#include "ik_stats.h"

#define IK_HOLD_MS 1000
#define IK_LOOKUP_AGAIN_MS 50

static int	ik_slot;
static dlist_head ik_jobs = DLIST_STATIC_INIT(ik_jobs);
static int	ik_njobs = 0;			/* in memory, finished ones included */
static int	ik_nrequests = 0;		/* HTTP requests in flight */
static MemoryContext ik_jobs_cxt = NULL;

/* For the worker of "slot", once. */
void
ik_jobs_init(int slot)
{
	ik_slot = slot;
	ik_jobs_cxt = AllocSetContextCreate(TopMemoryContext, "imagekit jobs",
										ALLOCSET_DEFAULT_SIZES);
}

/*
 * HTTP requests in flight at once: imagekit.max_concurrent_uploads, but no
 * more than the connections the server's file descriptors allow.
 */
int
ik_jobs_concurrency(void)
{
	return Min(ik_guc_max_concurrent_uploads, ik_http_max_connections());
}

/*
 * Unfinished jobs a worker holds at once: one per HTTP slot, and up to
 * twice as many again (no more than imagekit.batch_size) claimed ahead,
 * which start as slots free; so claims can be few and full without a slot
 * ever waiting for one.
 */
int
ik_jobs_capacity(void)
{
	int			slots = ik_jobs_concurrency();

	return slots + Min(ik_guc_batch_size, 2 * slots);
}

/* ---- the steps of a job ---- */

/* The outcome is known: the job waits to be recorded. */
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
		job->q.retry_delay_ms = ik_protocol_job_retry(job->q.attempts, hint_ms);
		if (job->q.retry_delay_ms < 0)
			job->q.result = IK_JOB_FALLBACK;
		else
			ik_stats_count(IK_STAT_RETRIES, 1);
	}
	if (job->download)
		ik_http_request_free(job->download);
	if (job->upload)
		ik_http_request_free(job->upload);
	job->download = job->upload = NULL;
	job->phase = IK_PHASE_FINISHED;
	job->finished_at = GetCurrentTimestamp();
}

/* The job's content is on ImageKit already, at "url". */
static void
ik_job_dedup_hit(IkJob *job, const char *url)
{
	job->q.url = MemoryContextStrdup(job->q.mcxt, url);
	job->q.dedup_hit = true;
	ik_stats_count(IK_STAT_DEDUP_HITS, 1);
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

		if (w->phase == IK_PHASE_WAITING && w->leader == leader)
			ik_job_step(w, IK_JOB_EV_LEADER_DONE);
	}
}

static void ik_job_copy_asset(IkJob *job, const IkUploadResult *from);

/* Its options as they travel, once; why they cannot be sent, or NULL. */
static char *
ik_job_table_options(IkJob *job)
{
	MemoryContext old = MemoryContextSwitchTo(job->q.mcxt);
	char	   *error = ik_protocol_table_options(job->q.options, &job->table_options);

	MemoryContextSwitchTo(old);
	return error;
}

/* CLAIMED: fall back, store a result, or download. */
static void
ik_job_claimed(IkJob *job)
{
	char	   *error;

	if (ik_protocol_job_gave_up(job->q.attempts))
	{
		/* claimed that often, it ended its worker every time */
		error = psprintf("gave up after %d attempts that ended without a result "
						 "(the worker processing the job died: a crash, a kill or out of memory)",
						 job->q.attempts);

		ik_job_finish(job, IK_JOB_FALLBACK, error, 0, -1);
		job->q.no_attempt = true;
		/* once more: storing the fallback ended it too */
		job->q.no_store = ik_protocol_job_gave_up(job->q.attempts - 1);
		job->q.attempts--;		/* as logged: the deaths */
	}
	else if (job->q.pending)
	{
		job->phase = IK_PHASE_FINISHED; /* only its result to store */
		job->finished_at = GetCurrentTimestamp();
	}
	else if (job->q.options_locked)
	{
		/* its row's tags or metadata cannot be read now: try later */
		error = psprintf("table %s.%s is locked: its row's options are read later",
						 job->q.nspname, job->q.relname);
		ik_job_finish(job, IK_JOB_HOLD, error, 0, IK_HOLD_MS);
	}
	else if (job->q.options != NULL &&
			 (error = ik_job_table_options(job)) != NULL)
	{
		/* its row asks for options ImageKit would refuse: no upload */
		ik_job_finish(job, IK_JOB_FALLBACK, error, 0, -1);
		job->q.no_attempt = true;
	}
	else
		job->phase = IK_PHASE_DOWNLOAD;
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

/* DOWNLOADING, done: check what came, and hash it. */
static void
ik_job_downloaded(IkJob *job)
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
	ik_stats_count(IK_STAT_DOWNLOADS, 1);
	ik_stats_count(IK_STAT_DOWNLOAD_BYTES, req->body_len);
	ik_sha256_hex(req->body, req->body_len, job->q.hash);
	job->dedup_after = 0;
	job->phase = IK_PHASE_HASHED;
}

/*
 * HASHED, in a transaction: dedup against jobs in memory, imagekit.assets,
 * then other workers (the upload lock of the content hash).
 */
static void
ik_job_look_up(IkJob *job)
{
	dlist_iter	it;
	MemoryContext old;

	dlist_foreach(it, &ik_jobs)
	{
		IkJob	   *other = dlist_container(IkJob, node, it.cur);

		/* done, but its asset not recorded yet (the worker records in batches) */
		if (other != job && other->phase == IK_PHASE_FINISHED &&
			other->q.result == IK_JOB_DONE &&
			(other->q.uploaded || other->q.dedup_hit) &&
			strcmp(other->q.hash, job->q.hash) == 0 &&
			strcmp(other->q.options_digest, job->q.options_digest) == 0)
		{
			ik_job_copy_asset(job, &other->q.asset);
			ik_job_dedup_hit(job, other->q.url);
			return;
		}
		if (other != job &&
			(other->phase == IK_PHASE_UPLOAD || other->phase == IK_PHASE_UPLOADING) &&
			strcmp(other->q.hash, job->q.hash) == 0 &&
			strcmp(other->q.options_digest, job->q.options_digest) == 0)
		{
			job->leader = other;
			job->phase = IK_PHASE_WAITING;
			ik_http_request_free(job->download);
			job->download = NULL;
			return;
		}
	}

	/* one look-up: under the lock, or to see what its holder did */
	old = MemoryContextSwitchTo(job->q.mcxt);
	if (ik_asset_trylock(job->q.hash))
	{
		job->holds_lock = true;
		if (ik_asset_lookup(job->q.hash, job->q.options_digest, &job->q.asset))
			ik_job_dedup_hit(job, job->q.asset.url);
		else
			job->phase = IK_PHASE_UPLOAD;
	}
	else if (ik_asset_lookup(job->q.hash, job->q.options_digest, &job->q.asset))
		ik_job_dedup_hit(job, job->q.asset.url);
	else
	{
		/* another worker uploads these bytes: look again shortly */
		job->dedup_after = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   IK_LOOKUP_AGAIN_MS);
	}
	MemoryContextSwitchTo(old);
}

static void
ik_job_start_upload(IkJob *job)
{
	MemoryContext old = MemoryContextSwitchTo(job->q.mcxt);
	IkUploadOptions opts;
	char	   *name;

	ik_protocol_options(&opts);
	opts.table = &job->table_options;

	/*
	 * Named after the content (and the options: the same bytes with other
	 * options are another file), so a repeated upload replaces the same file.
	 */
	opts.use_unique_file_name = false;
	if (job->q.options_digest[0] == '\0')
		name = psprintf("%s.%s", job->q.hash, job->ext);
	else
		name = psprintf("%s-%.16s.%s", job->q.hash, job->q.options_digest, job->ext);
	job->upload = ik_upload_request(&opts, job->download->body,
									job->download->body_len, name);
	job->upload->arg = job;
	job->key_generation = ik_protocol_key_generation();
	ik_http_start(job->upload);
	MemoryContextSwitchTo(old);
	job->phase = IK_PHASE_UPLOADING;
	ik_nrequests++;
}

/* UPLOAD, but no upload can be made now: back to the queue. */
static void
ik_job_hold(IkJob *job)
{
	const char *problem = ik_protocol_config_problem();
	long		status = 0;

	if (problem == NULL && ik_protocol_key_refused(&status))
		problem = "ImageKit refused the private key";
	ik_job_finish(job, IK_JOB_HOLD, problem, (int) status, IK_HOLD_MS);
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

/* UPLOADING, done: the asset, or what the failure means for the job. */
static void
ik_job_uploaded(IkJob *job)
{
	IkUploadError err;
	IkOutcome	outcome;
	MemoryContext old = MemoryContextSwitchTo(job->q.mcxt);

	outcome = ik_upload_parse(job->upload, &job->q.asset, &err);
	MemoryContextSwitchTo(old);

	switch (outcome)
	{
		case IK_OUTCOME_OK:
			ik_stats_count(IK_STAT_UPLOADS, 1);
			ik_stats_count(IK_STAT_UPLOAD_BYTES, job->download->body_len);
			job->q.url = job->q.asset.url;
			job->q.uploaded = true;
			ik_job_finish(job, IK_JOB_DONE, NULL, 0, -1);
			break;
		case IK_OUTCOME_AUTH:
			/* no upload can succeed with this key: keep the job queued */
			ik_protocol_key_refused_by(&err, job->key_generation);
			ik_job_finish(job, IK_JOB_HOLD,
						  ik_upload_error_text("upload failed", &err),
						  (int) err.status, IK_HOLD_MS);
			break;
		case IK_OUTCOME_RETRYABLE:
			if (err.status == 429)
				ik_protocol_rate_limited(&err);
			ik_job_finish(job, IK_JOB_RETRY,
						  ik_upload_error_text("upload failed", &err),
						  (int) err.status, err.retry_hint_ms);
			break;
		default:
			ik_job_finish(job, IK_JOB_FALLBACK,
						  ik_upload_error_text("ImageKit refused the upload", &err),
						  (int) err.status, -1);
			break;
	}
}

/* Take a copy of what ImageKit said of the asset another job uploaded. */
static void
ik_job_copy_asset(IkJob *job, const IkUploadResult *from)
{
	MemoryContext old = MemoryContextSwitchTo(job->q.mcxt);
	IkUploadResult *to = &job->q.asset;

	to->url = from->url ? pstrdup(from->url) : NULL;
	to->file_id = from->file_id ? pstrdup(from->file_id) : NULL;
	to->file_path = from->file_path ? pstrdup(from->file_path) : NULL;
	to->name = from->name ? pstrdup(from->name) : NULL;
	to->size = from->size;
	to->width = from->width;
	to->height = from->height;
	MemoryContextSwitchTo(old);
}

/* WAITING: the leader finished; share its outcome. */
static void
ik_job_leader_done(IkJob *job)
{
	IkJob	   *leader = job->leader;

	job->leader = NULL;
	if (leader->q.result == IK_JOB_DONE)
	{
		ik_job_copy_asset(job, &leader->q.asset);
		ik_job_dedup_hit(job, leader->q.url);
	}
	else
		ik_job_finish(job, leader->q.result, leader->q.error,
					  leader->q.http_status, leader->q.retry_delay_ms);
}

/*
 * The state machine: move "job" on after "event".  An event that its phase
 * cannot take is a bug.
 */
void
ik_job_step(IkJob *job, IkJobEvent event)
{
	switch (job->phase)
	{
		case IK_PHASE_CLAIMED:
			if (event == IK_JOB_EV_CLAIMED)
			{
				ik_job_claimed(job);
				return;
			}
			break;
		case IK_PHASE_DOWNLOAD:
			if (event == IK_JOB_EV_SLOT)
			{
				ik_job_start_download(job);
				return;
			}
			break;
		case IK_PHASE_DOWNLOADING:
			if (event == IK_JOB_EV_DOWNLOADED)
			{
				ik_job_downloaded(job);
				return;
			}
			break;
		case IK_PHASE_HASHED:
			if (event == IK_JOB_EV_LOOKUP)
			{
				ik_job_look_up(job);
				return;
			}
			break;
		case IK_PHASE_UPLOAD:
			if (event == IK_JOB_EV_SLOT)
			{
				ik_job_start_upload(job);
				return;
			}
			if (event == IK_JOB_EV_HOLD)
			{
				ik_job_hold(job);
				ik_job_finish_waiters(job);
				return;
			}
			break;
		case IK_PHASE_UPLOADING:
			if (event == IK_JOB_EV_UPLOADED)
			{
				ik_job_uploaded(job);
				ik_job_finish_waiters(job);
				return;
			}
			break;
		case IK_PHASE_WAITING:
			if (event == IK_JOB_EV_LEADER_DONE)
			{
				ik_job_leader_done(job);
				return;
			}
			break;
		case IK_PHASE_FINISHED:
			break;
	}
	elog(ERROR, "imagekit: job " INT64_FORMAT " in phase %d cannot take event %d",
		 job->q.id, (int) job->phase, (int) event);
}

/* ---- the jobs in memory ---- */

/*
 * Claim up to "limit" jobs with lease "token" (in a transaction) and take
 * them in; returns them.
 */
List *
ik_jobs_claim(int64 token, int limit)
{
	List	   *claimed = ik_queue_claim(ik_slot, token, limit,
										 ik_guc_lease_timeout, ik_jobs_cxt,
										 sizeof(IkJob));
	ListCell   *lc;

	foreach(lc, claimed)
	{
		IkJob	   *job = (IkJob *) lfirst(lc);

		job->phase = IK_PHASE_CLAIMED;
		dlist_push_tail(&ik_jobs, &job->node);
		ik_njobs++;
		ik_job_step(job, IK_JOB_EV_CLAIMED);
	}
	return claimed;
}

/* Drop a job from memory with what it holds: its hash lock, its requests. */
void
ik_job_free(IkJob *job)
{
	if (job->phase == IK_PHASE_DOWNLOADING || job->phase == IK_PHASE_UPLOADING)
		ik_nrequests--;
	if (job->holds_lock)
		ik_asset_unlock(job->q.hash);
	dlist_delete(&job->node);
	ik_njobs--;
	/* frees its requests too, taking them off the multi handle */
	MemoryContextDelete(job->q.mcxt);
	ik_shmem_set_in_flight(ik_slot, ik_nrequests);
}

/* Drop every job in memory (the worker exits). */
void
ik_jobs_forget(void)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &ik_jobs)
		ik_job_free(dlist_container(IkJob, node, it.cur));
}

dlist_head *
ik_jobs_list(void)
{
	return &ik_jobs;
}

/* Jobs in memory, finished ones included. */
int
ik_jobs_count(void)
{
	return ik_njobs;
}

/* HTTP requests in flight. */
int
ik_jobs_requests(void)
{
	return ik_nrequests;
}

/* Jobs in memory that are not finished. */
int
ik_jobs_active(void)
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

bool
ik_jobs_has_phase(IkPhase phase)
{
	dlist_iter	it;

	dlist_foreach(it, &ik_jobs)
	{
		if (dlist_container(IkJob, node, it.cur)->phase == phase)
			return true;
	}
	return false;
}

/*
 * When the next dedup look-up of a downloaded job is due: at once (0) for
 * one just downloaded, later for one whose content another worker is
 * uploading; DT_NOEND when no job waits for a look-up.
 */
TimestampTz
ik_jobs_lookup_at(void)
{
	dlist_iter	it;
	TimestampTz at = DT_NOEND;

	dlist_foreach(it, &ik_jobs)
	{
		IkJob	   *job = dlist_container(IkJob, node, it.cur);

		if (job->phase == IK_PHASE_HASHED)
			at = Min(at, job->dedup_after);
	}
	return at;
}

/* Downloaded jobs whose dedup lookup is due? */
bool
ik_jobs_lookup_due(void)
{
	return ik_jobs_lookup_at() <= GetCurrentTimestamp();
}

/* In a transaction: look up the downloaded jobs that are due. */
void
ik_jobs_look_up(void)
{
	dlist_iter	it;
	TimestampTz now = GetCurrentTimestamp();

	dlist_foreach(it, &ik_jobs)
	{
		IkJob	   *job = dlist_container(IkJob, node, it.cur);

		if (job->phase == IK_PHASE_HASHED && job->dedup_after <= now)
			ik_job_step(job, IK_JOB_EV_LOOKUP);
	}
}

/*
 * Start what waits for an HTTP slot, as long as there are slots; uploads
 * wait while a rate limit pauses them, and are held when none can be made.
 * A download starts only while fewer jobs than there are slots hold a body
 * (downloading, downloaded, uploading): the worker's memory stays within
 * imagekit.max_concurrent_uploads images, also when downloads end faster
 * than their look-ups and uploads follow.
 */
void
ik_jobs_start_requests(void)
{
	dlist_iter	it;
	bool		paused = ik_shmem_paused_until() > GetCurrentTimestamp();
	bool		hold = ik_protocol_config_problem() != NULL ||
		ik_protocol_key_refused(NULL);
	int			bodies = 0;

	dlist_foreach(it, &ik_jobs)
	{
		IkPhase		phase = dlist_container(IkJob, node, it.cur)->phase;

		if (phase == IK_PHASE_DOWNLOADING || phase == IK_PHASE_HASHED ||
			phase == IK_PHASE_UPLOAD || phase == IK_PHASE_UPLOADING)
			bodies++;
	}

	dlist_foreach(it, &ik_jobs)
	{
		IkJob	   *job = dlist_container(IkJob, node, it.cur);

		if (ik_nrequests >= ik_jobs_concurrency())
			break;
		if (job->phase == IK_PHASE_DOWNLOAD && bodies < ik_jobs_concurrency())
		{
			ik_job_step(job, IK_JOB_EV_SLOT);
			if (job->phase == IK_PHASE_DOWNLOADING)
				bodies++;
		}
		else if (job->phase == IK_PHASE_UPLOAD && hold)
			ik_job_step(job, IK_JOB_EV_HOLD);
		else if (job->phase == IK_PHASE_UPLOAD && !paused)
			ik_job_step(job, IK_JOB_EV_SLOT);
	}
	ik_shmem_set_in_flight(ik_slot, ik_nrequests);
}

/* Move on the jobs whose requests have ended. */
void
ik_jobs_collect(void)
{
	IkHttpRequest *req;

	while ((req = ik_http_next_done()) != NULL)
	{
		IkJob	   *job = (IkJob *) req->arg;

		ik_nrequests--;
		if (req == job->download && job->phase == IK_PHASE_DOWNLOADING)
			ik_job_step(job, IK_JOB_EV_DOWNLOADED);
		else if (req == job->upload)
			ik_job_step(job, IK_JOB_EV_UPLOADED);
	}
	ik_shmem_set_in_flight(ik_slot, ik_nrequests);
}
