/*-------------------------------------------------------------------------
 *
 * ik_launcher.c
 *	  The launcher: one background worker, connected to no database, that
 *	  starts and stops the workers of every database with the extension;
 *	  and the utility hook that keeps them out of the way of database DDL.
 *
 * The launcher reads pg_database (a shared catalog) and the per-database
 * settings (pg_db_role_setting, shared too).  It cannot see a database's
 * own catalogs, so it learns which databases have the extension from their
 * workers: a database it has not heard of gets one worker, which exits at
 * once, saying so, if the extension is not there (an idle database costs
 * nothing after that); if it is, the worker serves it and the launcher
 * starts the database's other workers (imagekit.workers, which ALTER
 * DATABASE ... SET can set per database).  A database is asked again when
 * a transaction in it wants workers (CREATE EXTENSION, attach, rows queued:
 * ik_wake_on_commit), and all are asked again when the launcher starts.
 *
 * Its loop, as named steps: reap the workers that exited (an error: start
 * again after a backoff); take the requests; read pg_database again when
 * it changed (database DDL tells it at commit) or every 30 s; balance:
 * every database with work gets one worker before any gets a second,
 * within imagekit.max_workers, surplus workers are asked to stop.
 *
 * Database DDL: DROP DATABASE, ALTER DATABASE ... RENAME TO / SET
 * TABLESPACE and CREATE DATABASE ... TEMPLATE need no one else connected
 * to the database.  The hook holds that database (ik_shmem.c) and waits
 * for its workers to exit: they record what they finished, give back the
 * jobs they hold, and exit.  The hold ends with the transaction, and the
 * launcher starts them again if the database lives on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_db_role_setting.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/procarray.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ik_compat.h"
#include "ik_guc.h"
#include "ik_launcher.h"
#include "ik_shmem.h"
#include "ik_stats.h"
#include "ik_worker.h"

#define IK_RESCAN_MS 30000
#define IK_BACKOFF_MAX_MS 60000
#define IK_HEALTHY_MS 60000		/* a worker that ran this long resets the
								 * backoff */
#define IK_STOP_WAIT_MS 10000	/* how long DDL waits for the workers */

typedef enum IkDbStatus
{
	IK_DB_UNKNOWN,				/* to ask: start one worker */
	IK_DB_SERVED,				/* the extension is there */
	IK_DB_IDLE					/* it is not: nothing until asked again */
} IkDbStatus;

typedef struct IkDb
{
	Oid			dboid;			/* hash key */
	char		name[NAMEDATALEN];
	bool		present;		/* in pg_database, and to be served */
	int			db_workers;		/* its own imagekit.workers; -1: none */
	IkDbStatus	status;
	int			failures;		/* workers that ended in an error, in a row */
	TimestampTz restart_after;	/* backoff after a failure */
	TimestampTz asked_at;		/* when a transaction last asked for workers */
	/* computed by ik_launcher_balance */
	int			live;			/* workers running, not stopping */
	int			target;
	bool		counted;		/* among the databases left without one */
} IkDb;

static HTAB *ik_dbs = NULL;
static BackgroundWorkerHandle **ik_handles = NULL;
static TimestampTz *ik_started_at = NULL;
static bool ik_rescan = true;
static TimestampTz ik_scanned_at = 0;
static bool ik_warned_cap = false;
static bool ik_warned_slots = false;

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* ---- registration ---- */

/* From _PG_init, while preloading: the launcher, started by the postmaster. */
void
ik_launcher_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* on a hot standby it waits for promotion */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "imagekit_ext");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ik_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "imagekit launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "imagekit launcher");
	RegisterBackgroundWorker(&worker);
}

/* Start a worker for "db" in a free slot; false if none could start. */
static bool
ik_launcher_start_worker(IkDb *db)
{
	BackgroundWorker worker;
	IkWorkerExtra extra;
	int			slot = ik_shmem_slot_claim(db->dboid);

	if (slot < 0)
		return false;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION | IK_BGWORKER_INTERRUPTIBLE;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	/* the launcher restarts it, with a backoff */
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "imagekit_ext");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ik_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "imagekit worker %d", slot);
	snprintf(worker.bgw_type, BGW_MAXLEN, "imagekit worker");
	worker.bgw_main_arg = Int32GetDatum(slot);
	worker.bgw_notify_pid = MyProcPid;
	memset(&extra, 0, sizeof(extra));
	extra.dboid = db->dboid;
	extra.generation = ik_shmem_slot_generation(slot);
	strlcpy(extra.dbname, db->name, sizeof(extra.dbname));
	StaticAssertStmt(sizeof(extra) <= BGW_EXTRALEN, "IkWorkerExtra too large");
	memcpy(worker.bgw_extra, &extra, sizeof(extra));

	if (!RegisterDynamicBackgroundWorker(&worker, &ik_handles[slot]))
	{
		ik_shmem_slot_release(slot);
		if (!ik_warned_slots)
			ereport(WARNING,
					(errmsg("imagekit launcher: no background worker slot is free for database \"%s\"",
							db->name),
					 errhint("Raise max_worker_processes (a restart): it must leave room for imagekit.max_workers, the launcher, parallel query and logical replication.")));
		ik_warned_slots = true;
		return false;
	}
	ik_warned_slots = false;
	ik_started_at[slot] = GetCurrentTimestamp();
	return true;
}

/* ---- the launcher's steps ---- */

static IkDb *
ik_launcher_db(Oid dboid, bool create)
{
	bool		found;
	IkDb	   *db = hash_search(ik_dbs, &dboid,
								 create ? HASH_ENTER : HASH_FIND, &found);

	if (create && !found)
	{
		db->name[0] = '\0';
		db->present = false;
		db->db_workers = -1;
		db->status = IK_DB_UNKNOWN;
		db->failures = 0;
		db->restart_after = 0;
		db->asked_at = 0;
	}
	return db;
}

/*
 * Workers that exited: free their slots and learn why.  Started ones that
 * found the extension make their database served.
 */
static void
ik_launcher_reap(void)
{
	TimestampTz now = GetCurrentTimestamp();

	for (int slot = 0; slot < ik_shmem_max_workers(); slot++)
	{
		IkSlotInfo	info;
		IkDb	   *db;
		pid_t		pid;
		BgwHandleStatus status;

		if (ik_handles[slot] == NULL)
			continue;
		ik_shmem_slot_get(slot, &info);
		db = ik_launcher_db(info.dboid, false);
		status = GetBackgroundWorkerPid(ik_handles[slot], &pid);
		if (status == BGWH_POSTMASTER_DIED)
			proc_exit(1);
		if (status != BGWH_STOPPED)
		{
			/* what its worker found in ALTER DATABASE ... SET */
			if (db != NULL && info.db_workers != IK_DB_WORKERS_UNKNOWN)
				db->db_workers = info.db_workers;
			if (db != NULL && info.state == IK_SLOT_SERVING)
			{
				db->status = IK_DB_SERVED;
				if (TimestampDifferenceExceeds(ik_started_at[slot], now, IK_HEALTHY_MS))
					db->failures = 0;
			}
			continue;
		}

		pfree(ik_handles[slot]);
		ik_handles[slot] = NULL;
		ik_shmem_slot_release(slot);
		if (db == NULL)
			continue;
		switch (info.exit_reason)
		{
			case IK_EXIT_NOT_INSTALLED:
				/* asked since it started: it may have looked too early */
				db->status = db->asked_at >= ik_started_at[slot] ?
					IK_DB_UNKNOWN : IK_DB_IDLE;
				db->failures = 0;
				break;
			case IK_EXIT_STOPPED:
				break;
			case IK_EXIT_UNKNOWN:
				/* an error or a signal: maybe the database is going away */
				db->failures++;
				db->restart_after = TimestampTzPlusMilliseconds(now,
																Min(IK_BACKOFF_MAX_MS,
																	1000L << Min(db->failures - 1, 6)));
				ik_rescan = true;
				break;
		}
	}
}

/* Databases whose transactions asked for workers: ask them again. */
static void
ik_launcher_take_requests(void)
{
	Oid			dboids[64];
	int			n = ik_shmem_take_requests(dboids, lengthof(dboids));
	HASH_SEQ_STATUS seq;
	IkDb	   *db;
	TimestampTz now = GetCurrentTimestamp();

	if (n < 0)
	{
		/* too many to remember: ask every database not served */
		hash_seq_init(&seq, ik_dbs);
		while ((db = hash_seq_search(&seq)) != NULL)
		{
			db->asked_at = now;
			if (db->status == IK_DB_IDLE)
				db->status = IK_DB_UNKNOWN;
		}
		ik_rescan = true;
	}
	for (int i = 0; i < n; i++)
	{
		db = ik_launcher_db(dboids[i], false);
		if (db == NULL)
		{
			ik_rescan = true;	/* a database created since the last scan */
			continue;
		}
		db->asked_at = now;
		if (db->status == IK_DB_IDLE)
			db->status = IK_DB_UNKNOWN;
	}
}

/* Read pg_database: which databases are to be served. */
static void
ik_launcher_scan_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	HASH_SEQ_STATUS seq;
	IkDb	   *db;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());

	hash_seq_init(&seq, ik_dbs);
	while ((db = hash_seq_search(&seq)) != NULL)
		db->present = false;

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database d = (Form_pg_database) GETSTRUCT(tup);

		/*
		 * Not a template (new databases are copied from them: CREATE
		 * DATABASE needs them unused), nor one that no one may connect
		 * to, nor one that a DROP DATABASE left invalid.
		 */
		if (!d->datallowconn || d->datistemplate || database_is_invalid_form(d))
			continue;
		if (ik_guc_database[0] != '\0' &&
			strcmp(NameStr(d->datname), ik_guc_database) != 0)
			continue;
		db = ik_launcher_db(d->oid, true);
		strlcpy(db->name, NameStr(d->datname), sizeof(db->name));
		db->present = true;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(TopMemoryContext);
	ik_scanned_at = GetCurrentTimestamp();
	ik_rescan = false;
}

static int
ik_launcher_db_cmp(const void *a, const void *b)
{
	Oid			x = (*(IkDb *const *) a)->dboid;
	Oid			y = (*(IkDb *const *) b)->dboid;

	return (x > y) - (x < y);
}

/*
 * Share imagekit.max_workers: one worker for every database with work
 * (or to ask), then more, one database at a time, up to what each wants.
 * Start what is missing, ask surplus workers to stop.
 */
static void
ik_launcher_balance(void)
{
	int			max_workers = ik_shmem_max_workers();
	IkDb	  **dbs = palloc(sizeof(IkDb *) * (hash_get_num_entries(ik_dbs) + 1));
	int			ndbs = 0;
	int			assigned = 0;
	int			unserved = 0;
	bool		more;
	HASH_SEQ_STATUS seq;
	IkDb	   *db;
	TimestampTz now = GetCurrentTimestamp();

	hash_seq_init(&seq, ik_dbs);
	while ((db = hash_seq_search(&seq)) != NULL)
	{
		db->live = db->target = 0;
		db->counted = false;
		dbs[ndbs++] = db;
	}
	qsort(dbs, ndbs, sizeof(IkDb *), ik_launcher_db_cmp);

	for (int slot = 0; slot < max_workers; slot++)
	{
		IkSlotInfo	info;

		if (ik_handles[slot] == NULL)
			continue;
		ik_shmem_slot_get(slot, &info);
		if (info.state != IK_SLOT_STOPPING &&
			(db = ik_launcher_db(info.dboid, false)) != NULL)
			db->live++;
	}

	/* one each, then one more each while there are slots */
	do
	{
		more = false;
		for (int i = 0; i < ndbs; i++)
		{
			int			want;

			db = dbs[i];
			if (!db->present || db->status == IK_DB_IDLE ||
				ik_shmem_is_held(db->dboid))
				continue;
			want = db->db_workers >= 0 ? db->db_workers : ik_guc_workers;
			if (db->status == IK_DB_UNKNOWN)
				want = 1;		/* to find out */
			/* in a backoff: keep what runs, but hold no slot for the rest */
			if (db->restart_after > now)
				want = Min(want, db->live);
			if (db->target >= want)
				continue;
			if (assigned >= max_workers)
			{
				if (db->target == 0 && !db->counted)
				{
					db->counted = true;
					unserved++;
				}
				continue;
			}
			db->target++;
			assigned++;
			more = true;
		}
	} while (more);

	if (unserved > 0 && !ik_warned_cap)
		ereport(WARNING,
				(errmsg_plural("imagekit launcher: imagekit.max_workers (%d) is too small: %d database gets no worker",
							   "imagekit launcher: imagekit.max_workers (%d) is too small: %d databases get no worker",
							   unserved, max_workers, unserved),
				 errdetail("Each database with the extension needs one worker, and a database not checked yet needs one to be checked."),
				 errhint("Raise imagekit.max_workers (a restart), or set imagekit.workers to 0 for databases that need none.")));
	ik_warned_cap = unserved > 0;

	for (int slot = max_workers - 1; slot >= 0; slot--)
	{
		IkSlotInfo	info;

		if (ik_handles[slot] == NULL)
			continue;
		ik_shmem_slot_get(slot, &info);
		if (info.state == IK_SLOT_STOPPING)
			continue;
		db = ik_launcher_db(info.dboid, false);
		if (db == NULL || db->live > db->target)
		{
			ik_shmem_slot_stop(slot);
			if (db != NULL)
				db->live--;
		}
	}
	for (int i = 0; i < ndbs; i++)
	{
		db = dbs[i];
		while (db->live < db->target && ik_launcher_start_worker(db))
			db->live++;
	}

	/* forget databases that are gone and have no worker left */
	for (int i = 0; i < ndbs; i++)
	{
		bool		has_slot = false;

		if (dbs[i]->present)
			continue;
		for (int slot = 0; slot < max_workers && !has_slot; slot++)
		{
			IkSlotInfo	info;

			ik_shmem_slot_get(slot, &info);
			has_slot = ik_handles[slot] != NULL && info.dboid == dbs[i]->dboid;
		}
		if (!has_slot)
			hash_search(ik_dbs, &dbs[i]->dboid, HASH_REMOVE, NULL);
	}
	pfree(dbs);
}

/*
 * ALTER DATABASE ... SET ran somewhere: the workers of served databases
 * read their setting again themselves; a database whose workers it set to
 * 0 has none to do it, so ask it again.
 */
static void
ik_launcher_settings_changed(void)
{
	HASH_SEQ_STATUS seq;
	IkDb	   *db;

	hash_seq_init(&seq, ik_dbs);
	while ((db = hash_seq_search(&seq)) != NULL)
	{
		if (db->status == IK_DB_SERVED && db->db_workers == 0)
			db->status = IK_DB_UNKNOWN;
	}
}

/* How long the launcher may sleep. */
static long
ik_launcher_wait_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		wait = IK_RESCAN_MS;
	HASH_SEQ_STATUS seq;
	IkDb	   *db;

	hash_seq_init(&seq, ik_dbs);
	while ((db = hash_seq_search(&seq)) != NULL)
	{
		if (db->restart_after > now)
			wait = Min(wait, (long) ((db->restart_after - now) / 1000) + 1);
	}
	if (ik_scanned_at != 0)
		wait = Min(wait, Max(0, IK_RESCAN_MS -
							 (long) ((now - ik_scanned_at) / 1000)));
	return wait;
}

/* The launcher ends: its workers give back their jobs and exit too. */
static void
ik_launcher_on_exit(int code, Datum arg)
{
	for (int slot = 0; slot < ik_shmem_max_workers(); slot++)
	{
		if (ik_handles[slot] != NULL)
			ik_shmem_slot_stop(slot);
	}
}

void
ik_launcher_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* shared catalogs only */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(IkDb);
		ik_dbs = hash_create("imagekit launcher databases", 64, &ctl,
							 HASH_ELEM | HASH_BLOBS);
	}
	ik_handles = MemoryContextAllocZero(TopMemoryContext,
										sizeof(BackgroundWorkerHandle *) * ik_shmem_max_workers());
	ik_started_at = MemoryContextAllocZero(TopMemoryContext,
										   sizeof(TimestampTz) * ik_shmem_max_workers());
	ik_shmem_launcher_attach();
	/* the workers of an earlier launcher: stopped when it ended */
	ik_shmem_release_orphans();
	before_shmem_exit(ik_launcher_on_exit, (Datum) 0);
	elog(LOG, "imagekit launcher started (imagekit.max_workers = %d)",
		 ik_shmem_max_workers());

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			ik_rescan = true;
			ik_launcher_settings_changed();
		}

		if (RecoveryInProgress())
		{
			pgstat_report_activity(STATE_IDLE, "imagekit: waiting for the end of recovery");
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000L, ik_wait_event(IK_WAIT_LAUNCHER));
			ResetLatch(MyLatch);
			continue;
		}

		ik_launcher_reap();
		ik_launcher_take_requests();
		ik_shmem_prune_holds();
		if (ik_shmem_take_settings_change())
			ik_launcher_settings_changed();
		if (ik_shmem_take_rescan() || ik_rescan ||
			TimestampDifferenceExceeds(ik_scanned_at, GetCurrentTimestamp(), IK_RESCAN_MS))
			ik_launcher_scan_databases();
		ik_launcher_balance();
		pgstat_report_activity(STATE_IDLE, NULL);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ik_launcher_wait_ms(), ik_wait_event(IK_WAIT_LAUNCHER));
		ResetLatch(MyLatch);
	}
}

/* ---- database DDL ---- */

/*
 * Hold database "name" for the rest of this transaction: its workers give
 * back their jobs and exit, and none starts until the transaction ends.
 * Waits for them to be gone, since the DDL fails while they are connected.
 */
static void
ik_launcher_hold_database(const char *name)
{
	Oid			dboid = get_database_oid(name, true);
	int		   *pids;
	TimestampTz start = GetCurrentTimestamp();

	/*
	 * Only for a role that may run the command (its owner, or a
	 * superuser): anyone else's attempt fails, and must not stop the
	 * workers on the way.
	 */
	if (!OidIsValid(dboid) ||
		!(superuser() || ik_database_ownercheck(dboid, GetUserId())) ||
		!ik_shmem_hold(dboid))
		return;
	pids = palloc(sizeof(int) * Max(ik_shmem_max_workers(), 1));
	for (;;)
	{
		int			n = ik_shmem_database_pids(dboid, pids);
		bool		running = false;

		for (int i = 0; i < n && !running; i++)
			running = BackendPidGetProc(pids[i]) != NULL;
		if (!running)
			break;
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), IK_STOP_WAIT_MS))
		{
			ereport(WARNING,
					(errmsg("imagekit workers of database \"%s\" did not stop within %d ms",
							name, IK_STOP_WAIT_MS)));
			break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, ik_wait_event(IK_WAIT_STOP));
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	pfree(pids);
}

/* Does a DROP or ALTER EXTENSION name imagekit_ext? */
static bool
ik_names_us(List *names)
{
	ListCell   *lc;

	foreach(lc, names)
	{
		Node	   *n = lfirst(lc);

		if (IsA(n, String) && strcmp(strVal(n), "imagekit_ext") == 0)
			return true;
	}
	return false;
}

static void
ik_launcher_process_utility(PlannedStmt *pstmt, const char *queryString,
							bool readOnlyTree, ProcessUtilityContext context,
							ParamListInfo params, QueryEnvironment *queryEnv,
							DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	const char *hold = NULL;
	Oid			dropped = InvalidOid;
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			hold = ((DropdbStmt *) stmt)->dbname;
			dropped = get_database_oid(hold, true);
			ik_rescan_on_commit();
			break;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
			{
				hold = ((RenameStmt *) stmt)->subname;
				ik_rescan_on_commit();
			}
			break;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
			{
				if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
					hold = ((AlterDatabaseStmt *) stmt)->dbname;
			}
			ik_rescan_on_commit();
			break;
		case T_CreatedbStmt:
			hold = "template1";
			foreach(lc, ((CreatedbStmt *) stmt)->options)
			{
				DefElem    *def = lfirst(lc);

				if (strcmp(def->defname, "template") == 0 && def->arg != NULL)
					hold = defGetString(def);
			}
			ik_rescan_on_commit();
			break;
		case T_AlterDatabaseSetStmt:
			/* imagekit.workers of a database, maybe */
			ik_settings_on_commit();
			break;
		case T_DropStmt:
			/* the workers find the extension gone, and exit */
			if (((DropStmt *) stmt)->removeType == OBJECT_EXTENSION &&
				ik_names_us(((DropStmt *) stmt)->objects))
				ik_wake_on_commit();
			break;
		case T_AlterExtensionStmt:
			/* an update may make the extension one they can drain */
			if (strcmp(((AlterExtensionStmt *) stmt)->extname, "imagekit_ext") == 0)
				ik_wake_on_commit();
			break;
		default:
			break;
	}
	if (hold != NULL)
		ik_launcher_hold_database(hold);

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	if (OidIsValid(dropped))
		ik_stats_forget(dropped);
}

/* From _PG_init, while preloading. */
void
ik_launcher_install_hook(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = ik_launcher_process_utility;
}
