/*-------------------------------------------------------------------------
 *
 * ik_queue.c
 *	  The job queue: SQL that claims and completes jobs in imagekit.jobs.
 *
 * The INSERT triggers write to imagekit.inbox, the cheapest possible queue;
 * before claiming, a worker moves the inbox into imagekit.jobs, one job per
 * (table, row key).
 *
 * A job is claimed with FOR UPDATE SKIP LOCKED and marked in_flight with a
 * lease and the worker's slot, in one short transaction; several workers
 * therefore never claim the same job.  A lease that expires (its worker
 * died) sends the job back to the queue, and a restarted worker releases at
 * once the jobs its slot held before.
 *
 * Completion checks that the job is still this worker's: same generation
 * (the trigger bumps it when the row's source URL changes), in flight, and
 * claimed by this slot (not re-claimed after our lease expired).  A stale
 * result is not written; the job goes back to the queue.  The table row is
 * updated only where its source URL is still the one downloaded; if the row
 * is gone the job ends quietly.  The row update runs as the table's owner,
 * in a subtransaction with the job's update, so that a table that changed
 * under us fails one job, not the worker.
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
#include "ik_spi.h"
#include "ik_settings.h"

/*
 * Is the extension (at a version with a queue) installed here?  The lock
 * taken on imagekit.jobs lasts until the end of the caller's transaction,
 * so that a concurrent DROP EXTENSION waits for it rather than pulling the
 * tables away from under its queries.
 */
bool
ik_queue_installed(void)
{
	return OidIsValid(RangeVarGetRelid(makeRangeVar("imagekit", "jobs", -1),
									   AccessShareLock, true));
}

/* Run one statement of the queue; ERROR unless it returns "expected". */
static void
ik_queue_exec(const char *sql, int nargs, Oid *argtypes, Datum *args,
			  const char *nulls, int expected)
{
	int			rc;

	SPI_connect();
	rc = ik_spi_execute(sql, nargs, argtypes, args, nulls, false, 0);
	if (rc != expected)
		elog(ERROR, "imagekit queue query failed: %s", SPI_result_code_string(rc));
	SPI_finish();
}

/* A restarted worker gives back what its slot held before. */
void
ik_queue_release_worker(int slot)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(slot)};

	ik_queue_exec("UPDATE imagekit.jobs SET state = 'queued', "
				  "lease_expires_at = NULL, worker = NULL, updated_at = now() "
				  "WHERE state = 'in_flight' AND worker = $1",
				  1, argtypes, args, NULL, SPI_OK_UPDATE);
}

/*
 * Move what the INSERT triggers queued in imagekit.inbox into imagekit.jobs,
 * up to "limit" rows; returns how many were moved.  Rows of tables that are
 * no longer attached are dropped.  An inbox row replaces an existing job only
 * if it is newer (a row deleted and inserted again); a job the UPDATE trigger
 * made since (the source changed, even in the same transaction) is kept.
 */
int
ik_queue_absorb_inbox(int limit)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(limit)};
	int			moved;

	SPI_connect();
	if (ik_spi_execute("WITH moved AS ("
					   "  DELETE FROM imagekit.inbox WHERE ctid = ANY (ARRAY("
					   "    SELECT ctid FROM imagekit.inbox LIMIT $1 FOR UPDATE SKIP LOCKED))"
					   "  RETURNING tbl, row_key, source_url, queued_at) "
					   "INSERT INTO imagekit.jobs AS j (tbl, row_key, source_url, updated_at) "
					   "SELECT DISTINCT ON (m.tbl, m.row_key) m.tbl, m.row_key, m.source_url, m.queued_at"
					   "  FROM moved m"
					   " WHERE EXISTS (SELECT FROM imagekit.attachments a WHERE a.tbl = m.tbl)"
					   " ORDER BY m.tbl, m.row_key, m.queued_at DESC "
					   "ON CONFLICT (tbl, row_key) DO UPDATE"
					   "   SET source_url = EXCLUDED.source_url,"
					   "       state = CASE WHEN j.state = 'in_flight' THEN 'in_flight' ELSE 'queued' END,"
					   "       generation = j.generation + 1, attempts = 0,"
					   "       next_attempt_at = now(), last_error = NULL,"
					   "       last_http_status = NULL, updated_at = EXCLUDED.updated_at"
					   "   WHERE j.updated_at < EXCLUDED.updated_at",
					   1, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not move the imagekit inbox into the queue");
	moved = (int) SPI_processed;
	SPI_finish();
	return moved;
}

/*
 * Jobs whose lease expired (their worker died, or is far too slow) go back
 * to the queue.  A worker that still holds one in memory then finds it is
 * no longer its own when it completes it.
 */
void
ik_queue_requeue_expired(void)
{
	ik_queue_exec("UPDATE imagekit.jobs SET state = 'queued', next_attempt_at = now(),"
				  " lease_expires_at = NULL, worker = NULL, updated_at = now() "
				  "WHERE id IN (SELECT id FROM imagekit.jobs"
				  "  WHERE state = 'in_flight' AND lease_expires_at < now()"
				  "  FOR UPDATE SKIP LOCKED)",
				  0, NULL, NULL, NULL, SPI_OK_UPDATE);
}

/*
 * Claim up to "limit" due jobs, oldest due first, through the partial index
 * on queued jobs, so that a claim costs the same whatever the backlog.  Each job is allocated with job_size bytes
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
	/* the attached tables as a one-time array: an ordered partial-index scan */
	if (ik_spi_execute("WITH c AS ("
							  "  SELECT q.id FROM imagekit.jobs q"
							  "   WHERE q.state = 'queued' AND q.next_attempt_at <= now()"
							  "     AND q.tbl = ANY (ARRAY(SELECT a.tbl FROM imagekit.attachments a"
							  "                             WHERE EXISTS (SELECT FROM pg_catalog.pg_class r"
							  "                                            WHERE r.oid = a.tbl)))"
							  "   ORDER BY q.next_attempt_at"
							  "   LIMIT $1"
							  "   FOR UPDATE OF q SKIP LOCKED) "
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
							  "  a.source_column, a.target_column, j.row_key, j.source_url, j.tbl",
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
		job->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 13, &isnull));
		MemoryContextSwitchTo(caller);
		jobs = lappend(jobs, job);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return jobs;
}

/*
 * Set the job's state and outcome, if it is still this worker's: the same
 * generation (not re-pointed), in flight, and claimed by this slot (not
 * re-claimed by another worker after our lease expired).
 */
static bool
ik_queue_update_job(IkQueueJob *job, int slot, const char *state,
					bool counts_attempt)
{
	Oid			argtypes[10] = {INT8OID, INT4OID, TEXTOID, INT4OID, INT8OID,
	TEXTOID, INT4OID, TEXTOID, TEXTOID, INT4OID};
	Datum		args[10];
	char		nulls[10];
	bool		updated;

	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int64GetDatum(job->id);
	args[1] = Int32GetDatum(job->generation);
	args[2] = CStringGetTextDatum(state);
	args[3] = Int32GetDatum(counts_attempt ? 1 : 0);
	args[4] = Int64GetDatum(job->result == IK_JOB_DONE ||
							job->result == IK_JOB_FALLBACK ? 0 : job->retry_delay_ms);
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
	if (job->url && job->result != IK_JOB_RETRY && job->result != IK_JOB_HOLD)
		args[8] = CStringGetTextDatum(job->url);
	else
		nulls[8] = 'n';
	args[9] = Int32GetDatum(slot);

	SPI_connect();
	if (ik_spi_execute("UPDATE imagekit.jobs SET state = $3,"
							  " attempts = attempts + $4,"
							  " next_attempt_at = now() + $5 * interval '1 millisecond',"
							  " lease_expires_at = NULL, worker = NULL,"
							  " last_error = $6, last_http_status = $7,"
							  " content_hash = coalesce($8, content_hash),"
							  " result_url = $9, updated_at = now() "
							  "WHERE id = $1 AND generation = $2"
							  " AND state = 'in_flight' AND worker = $10",
							  10, argtypes, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update imagekit job " INT64_FORMAT, job->id);
	updated = SPI_processed > 0;
	SPI_finish();
	return updated;
}

/* A stale result: put the job back in the queue if this worker holds it. */
static void
ik_queue_requeue_if_mine(IkQueueJob *job, int slot)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		args[2] = {Int64GetDatum(job->id), Int32GetDatum(slot)};

	ik_queue_exec("UPDATE imagekit.jobs SET state = 'queued', next_attempt_at = now(),"
				  " lease_expires_at = NULL, worker = NULL, updated_at = now() "
				  "WHERE id = $1 AND state = 'in_flight' AND worker = $2",
				  2, argtypes, args, NULL, SPI_OK_UPDATE);
}

/* the table this worker is storing a result in, for the UPDATE trigger */
static Oid	ik_storing_relid = InvalidOid;

/*
 * Is this backend a worker storing a result in table "relid"?  (Or does a
 * test say so, with imagekit.worker_storing.)
 */
bool
ik_queue_storing_in(Oid relid)
{
	return ik_worker_storing || (OidIsValid(relid) && relid == ik_storing_relid);
}

typedef enum IkStoreResult
{
	IK_STORE_OK,				/* row updated (or gone), job recorded */
	IK_STORE_STALE,				/* the job is no longer ours: nothing done */
	IK_STORE_FAILED				/* the row update failed: see *error */
} IkStoreResult;

/*
 * Store "url" in the job's row and record the job as "state", together or
 * not at all, in a subtransaction.  The row is updated first, as the
 * table's owner, and only where its source URL is still the one we
 * downloaded; *stored says how many rows that was.
 */
static IkStoreResult
ik_queue_store(IkQueueJob *job, int slot, const char *state, const char *url,
			   int *stored, char **error)
{
	MemoryContext mcxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Oid			save_userid;
	int			save_sec;
	volatile IkStoreResult result = IK_STORE_OK;
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
		ik_storing_relid = job->relid;
		SPI_connect();
		if (ik_spi_execute(sql, 3, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update %s.%s", job->nspname, job->relname);
		*stored = (int) SPI_processed;
		SPI_finish();
		ik_storing_relid = InvalidOid;
		SetUserIdAndSecContext(save_userid, save_sec);

		if (ik_queue_update_job(job, slot, state, job->result != IK_JOB_DONE))
			ReleaseCurrentSubTransaction();
		else
		{
			/* re-pointed or re-claimed meanwhile: undo the row update */
			result = IK_STORE_STALE;
			RollbackAndReleaseCurrentSubTransaction();
		}
		MemoryContextSwitchTo(mcxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		ik_storing_relid = InvalidOid;
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
		result = IK_STORE_FAILED;
	}
	PG_END_TRY();
	return result;
}

/*
 * Record the outcome of a job; the caller runs one transaction per job.
 * Locks are taken in the order an application takes them (the table row by
 * its UPDATE, then the job row by the enqueue trigger), so the two never
 * deadlock.
 */
void
ik_queue_finish(IkQueueJob *job, int slot)
{
	const char *state;
	int			stored = 0;
	char	   *error = NULL;

	if (job->uploaded)
		ik_asset_record(job->hash, &job->asset);

	if (job->result == IK_JOB_RETRY || job->result == IK_JOB_HOLD)
	{
		if (!ik_queue_update_job(job, slot, "queued",
								 job->result == IK_JOB_RETRY))
			ik_queue_requeue_if_mine(job, slot);
		return;
	}

	if (job->result == IK_JOB_FALLBACK)
	{
		state = "fallback";
		job->url = job->source_url;
	}
	else
		state = "done";

	switch (ik_queue_store(job, slot, state, job->url, &stored, &error))
	{
		case IK_STORE_STALE:
			ik_queue_requeue_if_mine(job, slot);
			break;
		case IK_STORE_FAILED:
			ereport(WARNING,
					(errmsg("imagekit: could not store the URL for %s.%s row %s",
							job->nspname, job->relname, job->row_key),
					 errdetail_internal("%s", error)));
			job->result = IK_JOB_FALLBACK;
			/* the message must outlive this transaction */
			job->error = MemoryContextStrdup(job->mcxt, error);
			job->url = NULL;
			if (!ik_queue_update_job(job, slot, "fallback", true))
				ik_queue_requeue_if_mine(job, slot);
			break;
		case IK_STORE_OK:
			if (stored == 0)
			{
				/* the row was deleted: the job ends quietly */
				Oid			argtypes[1] = {INT8OID};
				Datum		args[1] = {Int64GetDatum(job->id)};

				ik_queue_exec("DELETE FROM imagekit.jobs WHERE id = $1",
							  1, argtypes, args, NULL, SPI_OK_DELETE);
			}
			break;
	}
}

/*
 * Milliseconds until the next queued job is due; -1: none.  (Expired
 * leases are found by the periodic ik_queue_requeue_expired().)
 */
long
ik_queue_next_due_ms(void)
{
	long		ms = -1;
	bool		isnull;
	Datum		d;

	SPI_connect();
	/* NULL when nothing is queued (greatest() would turn that into 0) */
	if (SPI_execute("SELECT ceil(extract(epoch FROM ("
					"  (SELECT min(next_attempt_at) FROM imagekit.jobs j"
					"    WHERE state = 'queued' AND EXISTS (SELECT FROM imagekit.attachments a"
					"      JOIN pg_catalog.pg_class r ON r.oid = a.tbl WHERE a.tbl = j.tbl))"
					"  - clock_timestamp())) * 1000)::bigint",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the imagekit queue");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		ms = Max(0, (long) DatumGetInt64(d));
	SPI_finish();
	return ms;
}
