/*-------------------------------------------------------------------------
 *
 * ik_queue.c
 *	  The job queue: the worker's calls of the queue's SQL functions
 *	  (imagekit.claim(), imagekit.record(), ...; sql/imagekit_ext--1.1--1.2.sql),
 *	  and storing results in the attached tables.
 *
 * The INSERT triggers write to imagekit.inbox, the cheapest possible queue;
 * before claiming, a worker moves the inbox into imagekit.jobs, one job per
 * (table, row key).  The statements live once, as SQL functions of the
 * extension, which the isolation specs run as they are.
 *
 * A job is claimed with FOR UPDATE SKIP LOCKED and marked in_flight with a
 * lease, the worker's slot and its lease token (the worker's start time),
 * in one short transaction; several workers therefore never claim the same
 * job.  The claim counts the attempt, so that a job whose processing kills
 * its worker falls back after imagekit.max_retries deaths.  A job whose
 * lease expired, or whose token no running worker has (its worker died,
 * the server restarted, the row came from a dump), goes back to the queue.
 *
 * Completion is done for a batch of jobs in one transaction: their job
 * rows are locked first, where the job is still this worker's (same
 * generation: the triggers bump it when the row's source URL changes; in
 * flight; held by this token), then each row is stored, and then the jobs
 * and their assets are written, one statement each for the batch.  A stale
 * result is not written; the job goes back to the queue.  The row is
 * updated as the table's owner, only where its
 * source URL is still the one downloaded; when that updates nothing, the
 * row is looked up (as the worker) to tell a deleted row (the job ends)
 * from one whose source changed (the job follows it, should the triggers
 * not have seen the change) and from one the owner may not update
 * (row-level security, a trigger: fallback with the reason).
 *
 * Storing runs the table's triggers, that is, code of the table's owner.
 * It runs in a subtransaction, as the owner, in a security-restricted
 * operation, with deferred constraints fired at once (a deferred trigger
 * may not outlive a security-restricted operation) and every setting the
 * owner's code changes undone afterwards (as PostgreSQL does around index
 * builds), so that an error fails the job, never the worker, and nothing
 * the owner's code sets reaches other owners' jobs; a timer (which the
 * owner's code cannot change, as it could lock_timeout) ends a store that
 * takes too long.  No lock is waited on for long: a row locked by an
 * application keeps its result in the job (pending_state) to be stored
 * later without another upload.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "ik_assets.h"
#include "ik_guc.h"
#include "ik_hash.h"
#include "ik_queue.h"
#include "ik_shmem.h"
#include "ik_spi.h"

/*
 * How long recording a result may wait for a lock held by someone else; a
 * result kept because its row was locked already waits only briefly, so
 * that many locked rows cost the worker little.  Never more than half of
 * deadlock_timeout: an application that waits for a lock of the worker's
 * batch while the worker waits for one of its own is let go by the worker
 * giving up, before the application's deadlock check could see the cycle.
 */
#define IK_STORE_LOCK_TIMEOUT_MS 50
#define IK_STORE_LOCK_TIMEOUT_PENDING_MS 5

static const char *
ik_store_lock_timeout(bool pending)
{
	int			ms = pending ? IK_STORE_LOCK_TIMEOUT_PENDING_MS : IK_STORE_LOCK_TIMEOUT_MS;

	return psprintf("%dms", Max(1, Min(ms, DeadlockTimeout / 2)));
}
/* how long the row update may take, the table's triggers included */
#define IK_STORE_TIMEOUT_MS 5000
/* when a result kept because its row was locked is tried again */
#define IK_PARK_DELAY_MS 1000

/* the table this worker is storing a result in, for the UPDATE trigger */
static Oid	ik_storing_relid = InvalidOid;

static const char *ik_queue_table_name(IkQueueJob *job);
static const char *ik_queue_column_name(IkQueueJob *job, AttrNumber attnum);
static Oid	ik_queue_table_owner(IkQueueJob *job);

/*
 * Is the extension installed here, at a version this library drives?  The
 * lock taken on imagekit.jobs lasts until the end of the caller's
 * transaction, so that a concurrent DROP EXTENSION waits for it rather than
 * pulling the tables away from under its queries.
 */
bool
ik_queue_installed(void)
{
	static bool warned = false;

	if (!OidIsValid(RangeVarGetRelid(makeRangeVar("imagekit", "jobs", -1),
									 AccessShareLock, true)))
		return false;
	/* the newest object the library needs (1.5) */
	if (OidIsValid(LookupFuncName(list_make2(makeString("imagekit"),
											 makeString("record_batch")),
								  -1, NULL, true)))
		return true;
	if (!warned)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("imagekit: extension imagekit_ext needs an update before the worker can drain its queue"),
				 errhint("Run ALTER EXTENSION imagekit_ext UPDATE.")));
	warned = true;
	return false;
}

/*
 * Run one call of the queue's functions (SELECT f(...)): its one value.
 */
static Datum
ik_queue_call_value(const char *sql, int nargs, Oid *argtypes, Datum *args,
					const char *nulls, bool *isnull)
{
	Datum		d;

	SPI_connect();
	if (ik_spi_execute(sql, nargs, argtypes, args, nulls, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "imagekit queue call failed: %s", sql);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
	SPI_finish();
	return d;
}

/* The same, for a call whose value is not needed. */
static void
ik_queue_call(const char *sql, int nargs, Oid *argtypes, Datum *args,
			  const char *nulls)
{
	bool		isnull;

	(void) ik_queue_call_value(sql, nargs, argtypes, args, nulls, &isnull);
}

/*
 * In-flight jobs whose lease expired or whose worker is gone (a token no
 * running worker has) go back to the queue.  A worker that still holds one
 * in memory then finds it is no longer its own when it completes it.
 */
void
ik_queue_requeue_lost(void)
{
	int64	   *tokens;
	int			n = ik_shmem_live_tokens(&tokens);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		args[1];

	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(tokens[i]);
	args[0] = PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	ik_queue_call("SELECT imagekit.requeue_lost($1)", 1, argtypes, args, NULL);
}

/*
 * This database's own imagekit.workers (ALTER DATABASE ... SET), read from
 * the catalog since a change after the worker connected is not applied to
 * it; -1 when it has none.
 */
int
ik_queue_database_workers(void)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(MyDatabaseId)};
	int			n = -1;

	SPI_connect();
	if (ik_spi_execute("SELECT split_part(c, '=', 2) FROM pg_catalog.pg_db_role_setting s,"
					   " unnest(s.setconfig) c WHERE s.setdatabase = $1 AND s.setrole = 0"
					   " AND lower(split_part(c, '=', 1)) = 'imagekit.workers'",
					   1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "imagekit: could not read the database's settings");
	if (SPI_processed == 1)
	{
		char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		int			parsed;

		if (value != NULL && parse_int(value, &parsed, 0, NULL))
			n = Max(parsed, 0);
	}
	SPI_finish();
	return n;
}

/*
 * The jobs that the worker with lease "token" holds go back to the queue,
 * their attempt not counted: the worker stops (for database DDL, or at the
 * launcher's request), it did not fail.
 */
void
ik_queue_release(int64 token)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(token)};

	ik_queue_call("SELECT imagekit.release_jobs($1)", 1, argtypes, args, NULL);
}

/*
 * Move what the INSERT triggers queued in imagekit.inbox into imagekit.jobs,
 * up to "limit" rows; returns how many were taken from the inbox.
 */
int
ik_queue_absorb_inbox(int limit)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(limit)};
	bool		isnull;

	return DatumGetInt32(ik_queue_call_value("SELECT imagekit.absorb_inbox($1)",
											 1, argtypes, args, NULL, &isnull));
}

/*
 * Queue the next "limit" existing rows of a table whose backfill is
 * pending.  Returns whether one was pending; *queued is how many rows were
 * queued, or -1 when the table was locked (by someone else).
 */
bool
ik_queue_backfill_step(int limit, int64 *queued)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(limit)};
	bool		isnull;
	Datum		d = ik_queue_call_value("SELECT imagekit.backfill_step($1)",
										1, argtypes, args, NULL, &isnull);

	*queued = isnull ? 0 : DatumGetInt64(d);
	return !isnull;
}

/*
 * Housekeeping, every few seconds: fold the job counts of imagekit.status
 * together, and remove finished jobs older than imagekit.job_retention (in
 * seconds; -1: never), at most "limit" of them.  Returns whether "limit"
 * went: there may be more.
 */
bool
ik_queue_housekeeping(int retention_s, int limit)
{
	bool		isnull;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(retention_s), Int32GetDatum(limit)};

	ik_queue_call("SELECT imagekit.compact_counts()", 0, NULL, NULL, NULL);
	if (retention_s < 0)
		return false;
	return DatumGetInt32(ik_queue_call_value("SELECT imagekit.remove_finished($1 * interval '1 second', $2)",
											 2, argtypes, args, NULL, &isnull)) >= limit;
}

/*
 * What the claim says about a job's upload and store, in the current
 * memory context: its options (converted to UTF-8, as they travel) and
 * their digest, the numbers of its result columns, its notification
 * channel.
 */
/* Column numbers from an int2[] of the claim (0: none) into attnums[n]. */
static void
ik_queue_attnums(Datum d, AttrNumber *attnums, int n)
{
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;

	deconstruct_array(DatumGetArrayTypeP(d), INT2OID, sizeof(int16), true,
					  TYPALIGN_SHORT, &elems, &nulls, &nelems);
	for (int i = 0; i < nelems && i < n; i++)
		attnums[i] = nulls[i] ? 0 : DatumGetInt16(elems[i]);
}

static void
ik_queue_set_options(IkQueueJob *job, const char *options)
{
	job->options = NULL;
	job->options_digest[0] = '\0';
	if (options != NULL && strcmp(options, "{}") != 0)
	{
		job->options = pg_server_to_any(options, strlen(options), PG_UTF8);
		if (job->options == options)
			job->options = pstrdup(options);	/* in this memory context */
		ik_sha256_hex(job->options, strlen(job->options), job->options_digest);
	}
}

static void
ik_queue_claimed_options(IkQueueJob *job, HeapTuple tup, TupleDesc desc)
{
	bool		isnull;
	Datum		d;

	ik_queue_set_options(job, SPI_getvalue(tup, desc, 17));

	d = SPI_getbinval(tup, desc, 18, &isnull);
	if (!isnull)
		ik_queue_attnums(d, job->result_attnums, IK_NUM_RESULT_COLUMNS);
	job->notify_channel = SPI_getvalue(tup, desc, 19);
}

/*
 * A step on a job's table, run in an internal subtransaction, so that what
 * the table's owner's code does, its errors included, stays in the step;
 * within IK_STORE_TIMEOUT_MS (a timer, which the owner's code cannot change
 * as it could a setting).
 */
typedef struct IkStep
{
	MemoryContext mcxt;			/* the caller's */
	ResourceOwner owner;
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;		/* of the settings made as the owner */
} IkStep;

static void
ik_step_begin(IkStep *step)
{
	step->mcxt = CurrentMemoryContext;
	step->owner = CurrentResourceOwner;
	GetUserIdAndSecContext(&step->save_userid, &step->save_sec);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(step->mcxt);
	enable_timeout_after(STATEMENT_TIMEOUT, IK_STORE_TIMEOUT_MS);
}

/*
 * Act as the job's table's owner (now, not at the claim: ownership may have
 * changed), in a security-restricted operation; nothing the owner's code
 * sets outlives ik_step_as_worker().
 */
static void
ik_step_as_owner(IkStep *step, IkQueueJob *job)
{
	Oid			table_owner = ik_queue_table_owner(job);

	step->nestlevel = NewGUCNestLevel();
	SetUserIdAndSecContext(table_owner, step->save_sec | SECURITY_RESTRICTED_OPERATION);
}

static void
ik_step_as_worker(IkStep *step)
{
	SetUserIdAndSecContext(step->save_userid, step->save_sec);
	AtEOXact_GUC(false, step->nestlevel);
}

/* The step went through: keep what it did ("commit") or not. */
static void
ik_step_end(IkStep *step, bool commit)
{
	disable_timeout(STATEMENT_TIMEOUT, false);
	if (commit)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(step->mcxt);
	CurrentResourceOwner = step->owner;
}

/* In PG_CATCH: undo the step (its settings too) and return its error. */
static ErrorData *
ik_step_failed(IkStep *step)
{
	ErrorData  *edata;

	disable_timeout(STATEMENT_TIMEOUT, false);
	ik_storing_relid = InvalidOid;
	SetUserIdAndSecContext(step->save_userid, step->save_sec);
	MemoryContextSwitchTo(step->mcxt);
	edata = CopyErrorData();
	FlushErrorState();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(step->mcxt);
	CurrentResourceOwner = step->owner;
	return edata;
}

/* An error after which the step is tried again later: a lock not free. */
static bool
ik_step_blocked(ErrorData *edata)
{
	return edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		edata->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		edata->sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE;
}

/*
 * Read the tags and the custom metadata of a job's row (columns
 * option_attnums), as text, into the caller's memory context: as the
 * table's owner (the worker is a superuser; reading a row can run the
 * owner's code: a cast, an index expression), in a step (IkStep), without
 * waiting on a lock for more than IK_STORE_LOCK_TIMEOUT_MS.  Returns false when
 * the table is locked (or the read deadlocked: to try again later); sets
 * *error when the row cannot be read, *gone when it is not there.
 */
static bool
ik_queue_read_row_options(IkQueueJob *job, char **tags, char **meta,
						  bool *gone, char **error)
{
	IkStep		step;
	volatile bool locked = false;

	*tags = *meta = *error = NULL;
	*gone = false;
	ik_step_begin(&step);
	PG_TRY();
	{
		Oid			argtypes[1] = {TEXTOID};
		Datum		args[1];
		char	   *sql;

		sql = psprintf("SELECT %s, %s FROM %s WHERE %s = $1::%s",
					   job->option_attnums[0] ?
					   psprintf("%s::pg_catalog.text[]",
								ik_queue_column_name(job, job->option_attnums[0])) :
					   "NULL",
					   job->option_attnums[1] ?
					   psprintf("%s::pg_catalog.jsonb",
								ik_queue_column_name(job, job->option_attnums[1])) :
					   "NULL",
					   ik_queue_table_name(job),
					   ik_queue_column_name(job, job->key_attnum), job->key_type);
		args[0] = CStringGetTextDatum(job->row_key);

		ik_step_as_owner(&step, job);
		(void) set_config_option("lock_timeout", ik_store_lock_timeout(false),
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
		SPI_connect();
		if (SPI_execute_with_args(sql, 1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read a row of %s.%s", job->nspname, job->relname);
		if (SPI_processed == 0)
			*gone = true;
		else
		{
			char	   *t = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			char	   *m = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

			*tags = t ? MemoryContextStrdup(step.mcxt, t) : NULL;
			*meta = m ? MemoryContextStrdup(step.mcxt, m) : NULL;
		}
		SPI_finish();
		ik_step_as_worker(&step);
		ik_step_end(&step, true);
	}
	PG_CATCH();
	{
		ErrorData  *edata = ik_step_failed(&step);

		if (ik_step_blocked(edata))
			locked = true;		/* try again later */
		else
			*error = psprintf("could not read the row's tags or metadata: %s",
							  edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return !locked;
}

/*
 * The options of a job whose row adds tags or metadata of its own: read
 * from the row (ik_queue_read_row_options) and merged with the table's by
 * imagekit.job_options(), in the job's memory context.  A job of a table
 * an application holds (ALTER TABLE, LOCK) waits in the queue rather than
 * the worker.
 */
static void
ik_queue_row_options(IkQueueJob *job)
{
	Oid			argtypes[3] = {OIDOID, TEXTOID, TEXTOID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	char	   *tags;
	char	   *meta;
	char	   *error;
	bool		gone;
	MemoryContext old;

	if (!ConditionalLockRelationOid(job->relid, AccessShareLock) ||
		!ik_queue_read_row_options(job, &tags, &meta, &gone, &error))
	{
		job->options_locked = true;
		return;
	}
	old = MemoryContextSwitchTo(job->mcxt);
	if (error != NULL || gone)
	{
		StringInfoData buf;

		/* {"error": "..."}, JSON-escaped */
		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"error\": ");
		escape_json(&buf, gone ? "the row is gone" : error);
		appendStringInfoChar(&buf, '}');
		ik_queue_set_options(job, buf.data);
		MemoryContextSwitchTo(old);
		return;
	}
	MemoryContextSwitchTo(old);

	args[0] = ObjectIdGetDatum(job->relid);
	if (tags != NULL)
		args[1] = CStringGetTextDatum(tags);
	else
		nulls[1] = 'n';
	if (meta != NULL)
		args[2] = CStringGetTextDatum(meta);
	else
		nulls[2] = 'n';
	SPI_connect();
	if (ik_spi_execute("SELECT imagekit.job_options($1::pg_catalog.regclass, $2::pg_catalog.text[],"
					   " $3::pg_catalog.jsonb)",
					   3, argtypes, args, nulls, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not merge the options of a row of %s.%s",
			 job->nspname, job->relname);
	old = MemoryContextSwitchTo(job->mcxt);
	ik_queue_set_options(job, SPI_getvalue(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1));
	MemoryContextSwitchTo(old);
	SPI_finish();
}

/*
 * Claim up to "limit" due jobs for worker "slot" with lease token "token".
 * Each job is allocated with job_size bytes (a caller's struct that starts
 * with an IkQueueJob) in a memory context of its own under "parent"; the
 * list is in CurrentMemoryContext.
 */
List *
ik_queue_claim(int slot, int64 token, int limit, int lease_ms,
			   MemoryContext parent, Size job_size)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[4] = {INT4OID, INT8OID, INT4OID, INT4OID};
	Datum		args[4] = {Int32GetDatum(slot), Int64GetDatum(token),
	Int32GetDatum(limit), Int32GetDatum(lease_ms)};
	List	   *jobs = NIL;
	ListCell   *lc;

	SPI_connect();
	if (ik_spi_execute("SELECT * FROM imagekit.claim($1, $2, $3,"
					   " $4 * interval '1 millisecond')",
					   4, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
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
		char	   *pending;
		char	   *hash;

		job->mcxt = jcxt;
		job->asset.size = -1;	/* unknown until an asset says */
		job->asset.width = job->asset.height = -1;
		job->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		job->generation = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		job->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		job->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
		job->nspname = SPI_getvalue(tup, desc, 5);
		job->relname = SPI_getvalue(tup, desc, 6);
		job->key_type = SPI_getvalue(tup, desc, 7);
		job->key_attnum = DatumGetInt16(SPI_getbinval(tup, desc, 8, &isnull));
		job->source_attnum = DatumGetInt16(SPI_getbinval(tup, desc, 9, &isnull));
		job->target_attnum = DatumGetInt16(SPI_getbinval(tup, desc, 10, &isnull));
		job->row_key = SPI_getvalue(tup, desc, 11);
		job->source_url = SPI_getvalue(tup, desc, 12);
		ik_queue_claimed_options(job, tup, desc);
		pending = SPI_getvalue(tup, desc, 13);
		if (pending != NULL)
		{
			/* a result kept while its row was locked: store it now */
			job->pending = true;
			job->no_attempt = true;
			job->result = strcmp(pending, "done") == 0 ? IK_JOB_DONE : IK_JOB_FALLBACK;
			job->url = SPI_getvalue(tup, desc, 14);
			job->error = SPI_getvalue(tup, desc, 15);
			job->http_status = DatumGetInt32(SPI_getbinval(tup, desc, 16, &isnull));
			if (isnull)
				job->http_status = 0;
			/* the content it stands for, for the result columns */
			hash = SPI_getvalue(tup, desc, 20);
			if (hash != NULL && strlen(hash) == IK_HASH_HEX_LEN)
				strlcpy(job->hash, hash, sizeof(job->hash));
		}
		else
		{
			Datum		d = SPI_getbinval(tup, desc, 21, &isnull);

			if (!isnull)
				ik_queue_attnums(d, job->option_attnums, 2);
		}
		MemoryContextSwitchTo(caller);
		jobs = lappend(jobs, job);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();

	foreach(lc, jobs)
	{
		IkQueueJob *job = (IkQueueJob *) lfirst(lc);

		/* its row adds tags or metadata of its own */
		if (job->option_attnums[0] != 0 || job->option_attnums[1] != 0)
			ik_queue_row_options(job);
	}
	return jobs;
}

/*
 * imagekit.record(), staged: keep in the job what to set ("state";
 * "attempts_delta" corrects the count the claim made; "pending", done or
 * fallback, keeps the result in the job, to be stored later), for
 * ik_queue_flush() to write with the rest of the batch, if the job is still
 * this worker's (ik_queue_lock() locked it).  Returns whether it is.
 */
static bool
ik_queue_record(IkQueueJob *job, const char *state, int attempts_delta,
				long delay_ms, const char *url, const char *pending)
{
	if (!job->locked)
		return false;
	job->staged = true;
	job->staged_state = state;
	job->staged_attempts_delta = attempts_delta;
	job->staged_delay_ms = delay_ms;
	job->staged_url = url;
	job->staged_pending = pending;
	return true;
}

/*
 * Which of "jobs" the query "sql" returns (its first column, a job's id),
 * in found[].
 */
static void
ik_queue_jobs_found(const char *sql, int nargs, Oid *argtypes, Datum *args,
					IkQueueJob **jobs, int n, bool *found)
{
	for (int i = 0; i < n; i++)
		found[i] = false;
	SPI_connect();
	if (ik_spi_execute(sql, nargs, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not run \"%s\"", sql);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
													 SPI_tuptable->tupdesc, 1, &isnull));

		for (int i = 0; i < n; i++)
			found[i] |= (jobs[i]->id == id);
	}
	SPI_finish();
}

/*
 * Lock the job rows of "jobs" (a batch about to be finished) that are still
 * this worker's (this generation, in flight, this token), in one statement,
 * in the caller's transaction: job->locked.  A job whose row another
 * transaction holds (an application updating its row, whose trigger
 * re-points the job) is not waited for: job->busy, kept for later.  Taken
 * by the top-level transaction before the rows are stored, the locks make
 * ik_queue_flush()'s UPDATE cost no MultiXact, as a subtransaction's lock
 * would; an application that waits for one meanwhile waits for the batch
 * (the worker never waits long for the application's locks, so the two
 * cannot deadlock).  (The state is compared as an expression the partial
 * indexes' predicate does not match, so that the jobs are found by their
 * key instead of by a walk of every job in flight.)
 */
void
ik_queue_lock(List *jobs, int64 token)
{
	int			n = list_length(jobs);
	IkQueueJob **js = palloc(sizeof(IkQueueJob *) * Max(n, 1));
	bool	   *locked = palloc(sizeof(bool) * Max(n, 1));
	bool	   *ours = palloc(sizeof(bool) * Max(n, 1));
	bool		all = true;
	int			i = 0;
	ListCell   *lc;
	Oid			argtypes[3] = {INT8ARRAYOID, INT4ARRAYOID, INT8OID};
	Datum		args[3];
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *gens = palloc(sizeof(Datum) * Max(n, 1));

	if (n == 0)
		return;
	foreach(lc, jobs)
	{
		js[i] = (IkQueueJob *) lfirst(lc);
		ids[i] = Int64GetDatum(js[i]->id);
		gens[i] = Int32GetDatum(js[i]->generation);
		i++;
	}
	args[0] = ik_spi_array(ids, NULL, n, INT8OID);
	args[1] = ik_spi_array(gens, NULL, n, INT4OID);
	args[2] = Int64GetDatum(token);
	ik_queue_jobs_found("SELECT j.id FROM imagekit.jobs j"
						" JOIN unnest($1, $2) AS k(id, gen) ON j.id = k.id AND j.generation = k.gen"
						" WHERE j.id = ANY ($1) AND j.state || '' = 'in_flight' AND j.lease_token = $3"
						" FOR UPDATE OF j SKIP LOCKED",
						3, argtypes, args, js, n, locked);
	for (i = 0; i < n; i++)
		all &= locked[i];
	if (!all)
		ik_queue_jobs_found("SELECT j.id FROM imagekit.jobs j"
							" JOIN unnest($1, $2) AS k(id, gen) ON j.id = k.id AND j.generation = k.gen"
							" WHERE j.id = ANY ($1) AND j.state || '' = 'in_flight' AND j.lease_token = $3",
							3, argtypes, args, js, n, ours);
	for (i = 0; i < n; i++)
	{
		js[i]->locked = locked[i];
		js[i]->busy = !all && !locked[i] && ours[i];
	}
}

/* A stale result: put the job back in the queue if this worker holds it. */
static void
ik_queue_requeue_if_held(IkQueueJob *job, int64 token)
{
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2] = {Int64GetDatum(job->id), Int64GetDatum(token)};

	ik_queue_call("SELECT imagekit.requeue_if_held($1, $2)", 2, argtypes, args, NULL);
}

/*
 * Is this backend a worker storing a result in table "relid"?  (Or does a
 * test say so, with imagekit.worker_storing.)
 */
bool
ik_queue_storing_in(Oid relid)
{
	return ik_guc_worker_storing || (OidIsValid(relid) && relid == ik_storing_relid);
}

typedef enum IkStoreResult
{
	IK_STORE_OK,				/* row updated, job recorded */
	IK_STORE_GONE,				/* the row was deleted: nothing done */
	IK_STORE_STALE,				/* the job is no longer ours: nothing done */
	IK_STORE_CHANGED,			/* the row's source changed, unseen: *source */
	IK_STORE_BLOCKED,			/* a lock was held: nothing done */
	IK_STORE_FAILED				/* the row could not be updated: see *error */
} IkStoreResult;

/*
 * The table's and the column's names as they are now (renames since the
 * claim are followed; dropping an attached column is refused).
 */
static const char *
ik_queue_table_name(IkQueueJob *job)
{
	char	   *relname = get_rel_name(job->relid);

	if (relname == NULL)
		elog(ERROR, "table %u of imagekit job " INT64_FORMAT " is gone",
			 job->relid, job->id);
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(job->relid)),
									  relname);
}

static const char *
ik_queue_column_name(IkQueueJob *job, AttrNumber attnum)
{
	char	   *name = get_attname(job->relid, attnum, true);

	if (name == NULL)
		elog(ERROR, "column %d of table %u of imagekit job " INT64_FORMAT " is gone",
			 attnum, job->relid, job->id);
	return quote_identifier(name);
}

/* Is column "attnum" of the job's table there, not dropped? */
static bool
ik_queue_column_exists(IkQueueJob *job, AttrNumber attnum)
{
	HeapTuple	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(job->relid),
									  Int16GetDatum(attnum));
	bool		exists;

	if (!HeapTupleIsValid(tup))
		return false;
	exists = !((Form_pg_attribute) GETSTRUCT(tup))->attisdropped;
	ReleaseSysCache(tup);
	return exists;
}

/* The table's owner now (not at the claim: ownership may have changed). */
static Oid
ik_queue_table_owner(IkQueueJob *job)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(job->relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "table %u of imagekit job " INT64_FORMAT " is gone",
			 job->relid, job->id);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * The job's row was not updated: look it up, as the worker (which sees
 * every row, whatever its policies), with a snapshot of now, to say why.
 * *source: the row's source when it changed; *error (in the caller's
 * memory context) when the owner may not update it.
 */
static IkStoreResult
ik_queue_look_up_row(IkQueueJob *job, char **source, char **error)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *sql;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	IkStoreResult result;

	sql = psprintf("SELECT %s FROM %s WHERE %s = $1::%s",
				   ik_queue_column_name(job, job->source_attnum),
				   ik_queue_table_name(job),
				   ik_queue_column_name(job, job->key_attnum), job->key_type);
	args[0] = CStringGetTextDatum(job->row_key);

	SPI_connect();
	if (SPI_execute_with_args(sql, 1, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up a row of %s.%s", job->nspname, job->relname);
	if (SPI_processed == 0)
		result = IK_STORE_GONE;
	else
	{
		char	   *current = SPI_getvalue(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1);

		if (current == NULL || strcmp(current, job->source_url) != 0)
		{
			/* the source changed meanwhile */
			result = IK_STORE_CHANGED;
			*source = current ? MemoryContextStrdup(caller, current) : NULL;
		}
		else
		{
			result = IK_STORE_FAILED;
			*error = MemoryContextStrdup(caller,
										 psprintf("could not store the URL in %s.%s: the row was not updated, "
												  "because the table's owner cannot see it (row-level security) "
												  "or a trigger of the table skipped the update",
												  job->nspname, job->relname));
		}
	}
	SPI_finish();
	return result;
}

/*
 * The value of result column "col" for a job stored as done (what ImageKit
 * said of its asset) or not (NULL: a fallback leaves them empty).
 */
static void
ik_queue_result_value(IkResultColumn col, IkQueueJob *job, bool done,
					  Oid *type, Datum *value, char *null)
{
	const IkUploadResult *a = &job->asset;
	int64		n = -1;
	const char *t = NULL;

	*type = TEXTOID;
	switch (col)
	{
		case IK_COL_WIDTH:
			*type = INT4OID;
			n = a->width;
			break;
		case IK_COL_HEIGHT:
			*type = INT4OID;
			n = a->height;
			break;
		case IK_COL_SIZE:
			*type = INT8OID;
			n = a->size;
			break;
		case IK_COL_FILE_ID:
			t = a->file_id;
			break;
		case IK_COL_FILE_PATH:
			t = a->file_path;
			break;
		case IK_COL_NAME:
			t = a->name;
			break;
		case IK_COL_CONTENT_HASH:
			t = job->hash[0] != '\0' ? job->hash : NULL;
			break;
	}
	*null = 'n';
	*value = (Datum) 0;
	if (!done)
		return;
	if (*type == TEXTOID && t != NULL)
	{
		*value = CStringGetTextDatum(t);
		*null = ' ';
	}
	else if (*type != TEXTOID && n >= 0)
	{
		*value = (*type == INT8OID) ? Int64GetDatum(n) : Int32GetDatum((int32) n);
		*null = ' ';
	}
}

/*
 * Tell the listeners of the job's channel that its row is ready: a JSON
 * object with the table, the row's key, the state (done or fallback) and
 * the URL stored (null: its result could not be stored in the row).  A payload over PostgreSQL's limit goes without the URL
 * (and the key shortened), marked "truncated".  While the notification
 * queue is more than half full (a listener that does not read), nothing is
 * sent, so that the worker's commits never fail on it; that is logged.
 */
static void
ik_queue_notify(IkQueueJob *job, const char *state, const char *url)
{
	static TimestampTz warned_at = 0;
	Oid			argtypes[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		args[5];
	bool		sent;

	args[0] = CStringGetTextDatum(job->notify_channel);
	args[1] = CStringGetTextDatum(psprintf("%s.%s", job->nspname, job->relname));
	args[2] = CStringGetTextDatum(job->row_key);
	args[3] = CStringGetTextDatum(state);
	args[4] = url ? CStringGetTextDatum(url) : (Datum) 0;
	SPI_connect();
	if (ik_spi_execute("SELECT pg_catalog.pg_notify($1, CASE WHEN pg_catalog.octet_length(p) < 7900 THEN p"
					   " ELSE pg_catalog.jsonb_build_object('table', $2, 'key', pg_catalog.left($3, 1000),"
					   "   'state', $4, 'url', NULL, 'truncated', true)::text END)"
					   " FROM (SELECT pg_catalog.jsonb_build_object('table', $2, 'key', $3,"
					   "   'state', $4, 'url', $5)::text AS p) s"
					   " WHERE pg_catalog.pg_notification_queue_usage() < 0.5",
					   5, argtypes, args, url ? NULL : "    n", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not notify channel \"%s\"", job->notify_channel);
	sent = SPI_processed > 0;
	SPI_finish();
	if (sent)
		return;
	if (TimestampDifferenceExceeds(warned_at, GetCurrentTimestamp(), 60 * 1000))
	{
		ereport(WARNING,
				(errmsg("imagekit: notifications on channel \"%s\" are not sent while the notification queue is half full",
						job->notify_channel),
				 errdetail("A session that listens does not read its notifications."),
				 errhint("Find it with pg_stat_activity (LISTEN without reading) and end it.")));
		warned_at = GetCurrentTimestamp();
	}
}

/*
 * Store "url" in the job's row and record the job as "state", together or
 * not at all, in a subtransaction.  The row is updated first, as the
 * table's owner in a security-restricted operation, and only where its
 * source URL is still the one we downloaded, within IK_STORE_TIMEOUT_MS
 * (a timer, which the owner's code cannot change as it could a setting).
 */
static IkStoreResult
ik_queue_store(IkQueueJob *job, int64 token, const char *state,
			   int attempts_delta, const char *url, char **source,
			   char **error)
{
	IkStep		step;
	volatile IkStoreResult result = IK_STORE_OK;

	ik_step_begin(&step);
	PG_TRY();
	{
		Oid			argtypes[3 + IK_NUM_RESULT_COLUMNS] = {TEXTOID, TEXTOID, TEXTOID};
		Datum		args[3 + IK_NUM_RESULT_COLUMNS];
		char		nulls[3 + IK_NUM_RESULT_COLUMNS];
		StringInfoData sql;
		int			nargs = 3;
		int			stored;

		initStringInfo(&sql);
		appendStringInfo(&sql, "UPDATE %s SET %s = $1",
						 ik_queue_table_name(job),
						 ik_queue_column_name(job, job->target_attnum));
		memset(nulls, ' ', sizeof(nulls));
		args[0] = CStringGetTextDatum(url);
		args[1] = CStringGetTextDatum(job->row_key);
		args[2] = CStringGetTextDatum(job->source_url);
		for (int i = 0; i < IK_NUM_RESULT_COLUMNS; i++)
		{
			/* (a column taken out by configure() may be dropped since) */
			if (job->result_attnums[i] == 0 ||
				!ik_queue_column_exists(job, job->result_attnums[i]))
				continue;
			appendStringInfo(&sql, ", %s = $%d",
							 ik_queue_column_name(job, job->result_attnums[i]),
							 nargs + 1);
			ik_queue_result_value((IkResultColumn) i, job,
								  strcmp(state, "done") == 0,
								  &argtypes[nargs], &args[nargs], &nulls[nargs]);
			nargs++;
		}
		appendStringInfo(&sql, " WHERE %s = $2::%s AND %s = $3",
						 ik_queue_column_name(job, job->key_attnum), job->key_type,
						 ik_queue_column_name(job, job->source_attnum));

		ik_step_as_owner(&step, job);
		ik_storing_relid = job->relid;
		SPI_connect();
		/* deferred constraint triggers fire now, as the owner */
		if (ik_spi_execute("SET CONSTRAINTS ALL IMMEDIATE", 0, NULL, NULL, NULL,
						   false, 0) != SPI_OK_UTILITY ||
			ik_spi_execute(sql.data, nargs, argtypes, args, nulls, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update %s.%s", job->nspname, job->relname);
		stored = (int) SPI_processed;
		SPI_finish();
		ik_storing_relid = InvalidOid;
		ik_step_as_worker(&step);

		/* listeners hear of it when this commits (as the worker) */
		if (stored > 0 && job->notify_channel != NULL)
			ik_queue_notify(job, state, url);

		if (stored == 0)
			result = ik_queue_look_up_row(job, source, error);
		if (result == IK_STORE_OK &&
			!ik_queue_record(job, state, attempts_delta, 0, url, NULL))
			result = IK_STORE_STALE;	/* re-pointed or re-claimed meanwhile */
		ik_step_end(&step, result == IK_STORE_OK);
	}
	PG_CATCH();
	{
		ErrorData  *edata = ik_step_failed(&step);

		if (ik_step_blocked(edata))
			result = IK_STORE_BLOCKED;	/* try again later */
		else if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		{
			result = IK_STORE_FAILED;
			*error = psprintf("could not store the URL in %s.%s: the update took longer than %d ms (the table's triggers?)",
							  job->nspname, job->relname, IK_STORE_TIMEOUT_MS);
		}
		else
		{
			result = IK_STORE_FAILED;
			*error = psprintf("could not store the URL in %s.%s: %s",
							  job->nspname, job->relname, edata->message);
		}
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return result;
}

/* Record the outcome of a job, in the caller's transaction. */
static IkFinishOutcome
ik_queue_finish_job(IkQueueJob *job, int64 token)
{
	const char *state;
	const char *url;
	char	   *source = NULL;
	char	   *error = NULL;

	/* no longer ours (ik_queue_lock()): its result is stale, not stored */
	if (!job->locked)
	{
		ik_queue_requeue_if_held(job, token);
		return IK_FINISH_RECORDED;
	}

	/* (an upload's asset is recorded by ik_queue_flush()) */
	if (!job->uploaded && job->pending && job->result == IK_JOB_DONE &&
		job->hash[0] != '\0')
	{
		/* a result kept while the row was locked: what its asset said */
		MemoryContext old = MemoryContextSwitchTo(job->mcxt);

		(void) ik_asset_lookup_url(job->hash, job->url, &job->asset);
		MemoryContextSwitchTo(old);
	}

	if (job->result == IK_JOB_RETRY || job->result == IK_JOB_HOLD)
	{
		/* a held job's attempt does not count */
		if (!ik_queue_record(job, "queued",
							 job->result == IK_JOB_HOLD ? -1 : 0,
							 job->retry_delay_ms, NULL, NULL))
			ik_queue_requeue_if_held(job, token);
		return IK_FINISH_RECORDED;
	}

	if (job->result == IK_JOB_FALLBACK)
	{
		state = "fallback";
		url = job->source_url;
	}
	else
	{
		state = "done";
		url = job->url;
	}

	if (job->no_store)
	{
		/* even storing the fallback ended the worker: record it only */
		if (!ik_queue_record(job, "fallback", 0, 0, NULL, NULL))
			ik_queue_requeue_if_held(job, token);
		else if (job->notify_channel != NULL)
			ik_queue_notify(job, "fallback", NULL);
		return IK_FINISH_RECORDED;
	}

	/* attempts counts failures: a success, or a claim to store, is none */
	switch (ik_queue_store(job, token, state,
						   job->result == IK_JOB_FALLBACK && !job->no_attempt ? 0 : -1,
						   url, &source, &error))
	{
		case IK_STORE_OK:
			break;
		case IK_STORE_GONE:
			{
				/* the row was deleted: the job ends quietly */
				Oid			argtypes[3] = {INT8OID, INT4OID, INT8OID};
				Datum		args[3] = {Int64GetDatum(job->id),
				Int32GetDatum(job->generation), Int64GetDatum(token)};
				bool		isnull;

				/* (unless the key was queued again meanwhile) */
				if (!DatumGetBool(ik_queue_call_value("SELECT imagekit.forget_job($1, $2, $3)",
													  3, argtypes, args, NULL, &isnull)))
					ik_queue_requeue_if_held(job, token);
				break;
			}
		case IK_STORE_STALE:
			ik_queue_requeue_if_held(job, token);
			break;
		case IK_STORE_CHANGED:
			{
				/*
				 * Usually the UPDATE trigger has re-pointed the job already;
				 * if it has not (the change did not go through it), the job
				 * takes the row's source now, or ends when it has none.
				 */
				Oid			argtypes[4] = {INT8OID, INT4OID, INT8OID, TEXTOID};
				Datum		args[4] = {Int64GetDatum(job->id),
					Int32GetDatum(job->generation), Int64GetDatum(token),
				source ? CStringGetTextDatum(source) : (Datum) 0};
				bool		isnull;

				if (!DatumGetBool(ik_queue_call_value("SELECT imagekit.repoint_job($1, $2, $3, $4)",
													  4, argtypes, args,
													  source ? NULL : "   n", &isnull)))
					ik_queue_requeue_if_held(job, token);
				break;
			}
		case IK_STORE_BLOCKED:
			/* keep the result in the job; stored when the lock is gone */
			if (!ik_queue_record(job, "queued", -1, IK_PARK_DELAY_MS,
								 url, state))
				ik_queue_requeue_if_held(job, token);
			return IK_FINISH_PARKED;
		case IK_STORE_FAILED:
			ereport(WARNING,
					(errmsg("imagekit: could not store the URL for %s.%s row %s",
							job->nspname, job->relname, job->row_key),
					 errdetail_internal("%s", error)));
			job->result = IK_JOB_FALLBACK;
			/* the message must outlive this transaction */
			job->error = MemoryContextStrdup(job->mcxt, error);
			job->url = NULL;
			if (!ik_queue_record(job, "fallback", 0, 0, NULL, NULL))
				ik_queue_requeue_if_held(job, token);
			else if (job->notify_channel != NULL)
				ik_queue_notify(job, "fallback", NULL);
			break;
	}
	return IK_FINISH_RECORDED;
}

/*
 * Store the outcome of a job, and stage its record for ik_queue_flush(),
 * in a subtransaction; the caller finishes a batch of jobs in one
 * transaction, their job rows locked first (ik_queue_lock()).  No lock an
 * application holds is waited on for more than IK_STORE_LOCK_TIMEOUT_MS (a
 * locked table row keeps the result in the job, to be stored later).
 * IK_FINISH_LATER: even the job could not be recorded (an application
 * holds the job's row); the caller keeps it and tries again later.
 */
IkFinishOutcome
ik_queue_finish(IkQueueJob *job, int64 token)
{
	MemoryContext mcxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile IkFinishOutcome outcome;
	int			nestlevel;

	job->staged = false;
	if (job->busy)
		return IK_FINISH_LATER; /* another transaction holds its job row */
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("lock_timeout",
							 ik_store_lock_timeout(job->pending),
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(mcxt);
	PG_TRY();
	{
		outcome = ik_queue_finish_job(job, token);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(mcxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(mcxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			PG_RE_THROW();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(mcxt);
		CurrentResourceOwner = owner;
		FreeErrorData(edata);
		job->staged = false;	/* what it staged went with the subtransaction */
		outcome = IK_FINISH_LATER;
	}
	PG_END_TRY();
	AtEOXact_GUC(false, nestlevel);
	return outcome;
}

/*
 * Write what ik_queue_finish() staged for "jobs", in the caller's
 * transaction, before it commits: the assets of their uploads, then their
 * records, each in one statement (imagekit.record_batch()).  A job locked
 * by this transaction but changed by it since (a table's trigger that
 * re-pointed it while another job's row was stored) is not recorded: it
 * goes back to the queue, as a stale result does.
 */
void
ik_queue_flush(List *jobs, int64 token)
{
	int			n = list_length(jobs);
	int			nassets = 0;
	int			nrec = 0;
	const char **hashes = palloc(sizeof(char *) * Max(n, 1));
	const char **digests = palloc(sizeof(char *) * Max(n, 1));
	const IkUploadResult **assets = palloc(sizeof(IkUploadResult *) * Max(n, 1));
	IkQueueJob **staged = palloc(sizeof(IkQueueJob *) * Max(n, 1));
	ListCell   *lc;

	foreach(lc, jobs)
	{
		IkQueueJob *job = (IkQueueJob *) lfirst(lc);

		if (job->uploaded)
		{
			hashes[nassets] = job->hash;
			digests[nassets] = job->options_digest;
			assets[nassets] = &job->asset;
			nassets++;
		}
		if (job->staged)
			staged[nrec++] = job;
	}
	if (nassets > 0)
		ik_asset_record_many(nassets, hashes, digests, assets);
	if (nrec > 0)
	{
		Oid			argtypes[11] = {INT8OID, INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID,
			INT4ARRAYOID, INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID};
		Datum		args[11];
		Datum	   *v[10];
		bool	   *isnull[10];
		bool	   *recorded = palloc(sizeof(bool) * nrec);

		for (int c = 0; c < 10; c++)
		{
			v[c] = palloc(sizeof(Datum) * nrec);
			isnull[c] = palloc0(sizeof(bool) * nrec);
		}
		for (int i = 0; i < nrec; i++)
		{
			IkQueueJob *job = staged[i];

			v[0][i] = Int64GetDatum(job->id);
			v[1][i] = Int32GetDatum(job->generation);
			v[2][i] = CStringGetTextDatum(job->staged_state);
			v[3][i] = Int32GetDatum(job->staged_attempts_delta);
			v[4][i] = Int64GetDatum(job->staged_delay_ms);
			v[5][i] = ik_spi_text_or_null(job->error, &isnull[5][i]);
			v[6][i] = Int32GetDatum(job->http_status);
			isnull[6][i] = (job->http_status == 0);
			v[7][i] = ik_spi_text_or_null(job->hash[0] != '\0' ? job->hash : NULL, &isnull[7][i]);
			v[8][i] = ik_spi_text_or_null(job->staged_url, &isnull[8][i]);
			v[9][i] = ik_spi_text_or_null(job->staged_pending, &isnull[9][i]);
		}
		args[0] = Int64GetDatum(token);
		for (int c = 0; c < 10; c++)
			args[c + 1] = ik_spi_array(v[c], isnull[c], nrec,
										 get_element_type(argtypes[c + 1]));

		ik_queue_jobs_found("SELECT * FROM imagekit.record_batch($1, $2, $3, $4, $5,"
							" $6, $7, $8, $9, $10, $11)",
							11, argtypes, args, staged, nrec, recorded);
		for (int i = 0; i < nrec; i++)
		{
			if (!recorded[i])
				ik_queue_requeue_if_held(staged[i], token);
		}
	}
}

/*
 * Milliseconds until the next queued job is due; -1: none.  (Lost leases
 * are found by the periodic ik_queue_requeue_lost().)
 */
long
ik_queue_next_due_ms(void)
{
	bool		isnull;
	Datum		d = ik_queue_call_value("SELECT imagekit.next_due_ms()", 0, NULL,
										NULL, NULL, &isnull);

	return isnull ? -1 : Max(0, (long) DatumGetInt64(d));
}
