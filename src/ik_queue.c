/*-------------------------------------------------------------------------
 *
 * ik_queue.c
 *	  The job queue: SQL that claims and completes jobs in imagekit.jobs.
 *
 * A job is claimed with FOR UPDATE SKIP LOCKED and marked in_flight with a
 * lease and the worker's slot, in one short transaction; several workers
 * therefore never claim the same job.  A lease that expires (its worker
 * died) makes the job claimable again, and a restarted worker releases at
 * once the jobs its slot held before.
 *
 * Completion checks the job's generation: the trigger bumps it when the
 * row's source URL changes, and a stale result is then not written (the job
 * goes back to the queue for the new URL).  The table row is updated only
 * where its source URL is still the one downloaded; if the row is gone the
 * job ends quietly.  The row update runs as the table's owner, in a
 * subtransaction, so that a table that changed under us fails one job, not
 * the worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "ik_assets.h"
#include "ik_queue.h"

/* Is the extension (at a version with a queue) installed here? */
bool
ik_queue_installed(void)
{
	return OidIsValid(RangeVarGetRelid(makeRangeVar("imagekit", "jobs", -1),
									   NoLock, true));
}

/* A restarted worker gives back what its slot held before. */
void
ik_queue_release_worker(int slot)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(slot)};

	SPI_connect();
	if (SPI_execute_with_args("UPDATE imagekit.jobs SET state = 'queued', "
							  "lease_expires_at = NULL, worker = NULL, updated_at = now() "
							  "WHERE state = 'in_flight' AND worker = $1",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not release the jobs of worker %d", slot);
	SPI_finish();
}

/*
 * Claim up to "limit" due jobs.  Each job is allocated with job_size bytes
 * (a caller's struct that starts with an IkQueueJob) in a memory context of
 * its own under "parent"; the list is in CurrentMemoryContext.
 */
List *
ik_queue_claim(int slot, int limit, int lease_ms, MemoryContext parent,
			   Size job_size)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[3] = {INT4OID, INT4OID, INT4OID};
	Datum		args[3] = {Int32GetDatum(limit), Int32GetDatum(slot),
	Int32GetDatum(lease_ms)};
	List	   *jobs = NIL;

	SPI_connect();
	if (SPI_execute_with_args("WITH c AS ("
							  "  SELECT id FROM imagekit.jobs"
							  "   WHERE (state = 'queued' AND next_attempt_at <= now())"
							  "      OR (state = 'in_flight' AND lease_expires_at < now())"
							  "   ORDER BY next_attempt_at, id"
							  "   LIMIT $1"
							  "   FOR UPDATE SKIP LOCKED) "
							  "UPDATE imagekit.jobs j"
							  "   SET state = 'in_flight', worker = $2,"
							  "       lease_expires_at = now() + $3 * interval '1 millisecond',"
							  "       updated_at = now()"
							  "  FROM c, imagekit.attachments a, pg_catalog.pg_class r,"
							  "       pg_catalog.pg_namespace n"
							  " WHERE j.id = c.id AND a.tbl = j.tbl AND r.oid = j.tbl"
							  "   AND n.oid = r.relnamespace "
							  "RETURNING j.id, j.generation, j.attempts, r.relowner,"
							  "  n.nspname, r.relname, a.key_column, a.key_type,"
							  "  a.source_column, a.target_column, j.row_key, j.source_url",
							  3, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim imagekit jobs");

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext jcxt = AllocSetContextCreate(parent, "imagekit job",
												   ALLOCSET_SMALL_SIZES);
		MemoryContext old = MemoryContextSwitchTo(jcxt);
		IkQueueJob *job = palloc0(job_size);
		bool		isnull;

		job->mcxt = jcxt;
		job->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		job->generation = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		job->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		job->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
		job->nspname = SPI_getvalue(tup, desc, 5);
		job->relname = SPI_getvalue(tup, desc, 6);
		job->key_column = SPI_getvalue(tup, desc, 7);
		job->key_type = SPI_getvalue(tup, desc, 8);
		job->source_column = SPI_getvalue(tup, desc, 9);
		job->target_column = SPI_getvalue(tup, desc, 10);
		job->row_key = SPI_getvalue(tup, desc, 11);
		job->source_url = SPI_getvalue(tup, desc, 12);
		MemoryContextSwitchTo(caller);
		jobs = lappend(jobs, job);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return jobs;
}

/*
 * Store "url" in the job's row, as the table's owner and in a
 * subtransaction.  Returns the number of rows updated (0: the row is gone or
 * points elsewhere now), or -1 with *error set when the update failed.
 */
static int
ik_queue_store_url(IkQueueJob *job, const char *url, char **error)
{
	MemoryContext mcxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Oid			save_userid;
	int			save_sec;
	int			updated = -1;
	char	   *sql;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		args[3];

	sql = psprintf("UPDATE %s.%s SET %s = $1 WHERE %s = $2::%s AND %s = $3",
				   quote_identifier(job->nspname), quote_identifier(job->relname),
				   quote_identifier(job->target_column),
				   quote_identifier(job->key_column), job->key_type,
				   quote_identifier(job->source_column));
	args[0] = CStringGetTextDatum(url);
	args[1] = CStringGetTextDatum(job->row_key);
	args[2] = CStringGetTextDatum(job->source_url);

	GetUserIdAndSecContext(&save_userid, &save_sec);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(mcxt);
	PG_TRY();
	{
		SetUserIdAndSecContext(job->owner, save_sec | SECURITY_RESTRICTED_OPERATION);
		SPI_connect();
		if (SPI_execute_with_args(sql, 3, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update %s.%s", job->nspname, job->relname);
		updated = (int) SPI_processed;
		SPI_finish();
		SetUserIdAndSecContext(save_userid, save_sec);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(mcxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		SetUserIdAndSecContext(save_userid, save_sec);
		MemoryContextSwitchTo(mcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(mcxt);
		CurrentResourceOwner = owner;
		*error = psprintf("could not store the URL in %s.%s: %s",
						  job->nspname, job->relname, edata->message);
		FreeErrorData(edata);
		updated = -1;
	}
	PG_END_TRY();
	return updated;
}

static void
ik_queue_exec(const char *sql, int nargs, Oid *argtypes, Datum *args,
			  const char *nulls, int expected)
{
	int			rc;

	SPI_connect();
	rc = SPI_execute_with_args(sql, nargs, argtypes, args, nulls, false, 0);
	if (rc != expected)
		elog(ERROR, "imagekit queue query failed: %s", SPI_result_code_string(rc));
	SPI_finish();
}

static bool
ik_queue_update_job(IkQueueJob *job, const char *state, bool counts_attempt)
{
	Oid			argtypes[9] = {INT8OID, INT4OID, TEXTOID, INT4OID, INT8OID,
	TEXTOID, INT4OID, TEXTOID, TEXTOID};
	Datum		args[9];
	char		nulls[9];
	bool		updated;

	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int64GetDatum(job->id);
	args[1] = Int32GetDatum(job->generation);
	args[2] = CStringGetTextDatum(state);
	args[3] = Int32GetDatum(counts_attempt ? 1 : 0);
	args[4] = Int64GetDatum(job->result == IK_JOB_RETRY ? job->retry_delay_ms : 0);
	if (job->error)
		args[5] = CStringGetTextDatum(job->error);
	else
		nulls[5] = 'n';
	args[6] = Int32GetDatum(job->http_status);
	if (job->http_status == 0)
		nulls[6] = 'n';
	if (job->hash[0] != '\0')
		args[7] = CStringGetTextDatum(job->hash);
	else
		nulls[7] = 'n';
	if (job->url)
		args[8] = CStringGetTextDatum(job->url);
	else
		nulls[8] = 'n';

	SPI_connect();
	if (SPI_execute_with_args("UPDATE imagekit.jobs SET state = $3,"
							  " attempts = attempts + $4,"
							  " next_attempt_at = now() + $5 * interval '1 millisecond',"
							  " lease_expires_at = NULL, worker = NULL,"
							  " last_error = $6, last_http_status = $7,"
							  " content_hash = coalesce($8, content_hash),"
							  " result_url = $9, updated_at = now() "
							  "WHERE id = $1 AND generation = $2",
							  9, argtypes, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update imagekit job " INT64_FORMAT, job->id);
	updated = SPI_processed > 0;
	SPI_finish();
	return updated;
}

/* Record the outcome of a job. */
void
ik_queue_finish(IkQueueJob *job)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(job->id)};
	const char *state;
	int			stored;
	char	   *error = NULL;

	switch (job->result)
	{
		case IK_JOB_RETRY:
			state = "queued";
			break;
		case IK_JOB_FALLBACK:
			state = "fallback";
			job->url = job->source_url;
			break;
		default:
			state = "done";
			break;
	}

	if (!ik_queue_update_job(job, state, job->result != IK_JOB_DONE))
	{
		/* re-pointed while in flight: the new URL's job wins */
		ik_queue_exec("UPDATE imagekit.jobs SET state = 'queued', next_attempt_at = now(), "
					  "lease_expires_at = NULL, worker = NULL "
					  "WHERE id = $1 AND state = 'in_flight'",
					  1, argtypes, args, NULL, SPI_OK_UPDATE);
		return;
	}
	if (job->result == IK_JOB_RETRY)
		return;

	if (job->uploaded)
		ik_asset_record(job->hash, &job->asset);

	stored = ik_queue_store_url(job, job->url, &error);
	if (stored == 0)
	{
		/* the row was deleted: the job ends quietly */
		ik_queue_exec("DELETE FROM imagekit.jobs WHERE id = $1",
					  1, argtypes, args, NULL, SPI_OK_DELETE);
	}
	else if (stored < 0)
	{
		ereport(WARNING,
				(errmsg("imagekit: could not store the URL for %s.%s row %s",
						job->nspname, job->relname, job->row_key),
				 errdetail_internal("%s", error)));
		job->result = IK_JOB_FALLBACK;
		job->error = error;
		job->url = NULL;
		(void) ik_queue_update_job(job, "fallback", true);
	}
}

/* Milliseconds until the next job is due (or a lease expires); -1: none. */
long
ik_queue_next_due_ms(void)
{
	long		ms = -1;
	bool		isnull;
	Datum		d;

	SPI_connect();
	if (SPI_execute("SELECT greatest(0, ceil(extract(epoch FROM (least("
					"  (SELECT min(next_attempt_at) FROM imagekit.jobs WHERE state = 'queued'),"
					"  (SELECT min(lease_expires_at) FROM imagekit.jobs WHERE state = 'in_flight'))"
					"  - clock_timestamp())) * 1000))::bigint",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the imagekit queue");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		ms = (long) DatumGetInt64(d);
	SPI_finish();
	return ms;
}
