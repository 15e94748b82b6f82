/*-------------------------------------------------------------------------
 *
 * ik_shmem.c
 *	  Shared state: the worker slots the launcher hands out, the databases
 *	  held by database DDL, the launcher's requests, and a cluster-wide
 *	  rate-limit pause.  (The counters of imagekit.stats(): ik_stats.c.)
 *
 * The memory is requested only when the library is preloaded; without it
 * there is no launcher nor worker, and wake-ups are no-ops.
 *
 * Locking: a slot's identity (database, pid, state, stop request, exit
 * reason), the holds and the requests are under one spinlock, held for a
 * few instructions at a time and never across a call.  The rest (latches,
 * lease tokens, requests in flight, the pause) are atomics.
 *
 * A slot's life: the launcher claims it for a database (STARTING) and
 * starts a worker with the slot's number; the worker attaches (its pid),
 * unless the database is held or the slot was stopped meanwhile, then
 * reports SERVING once it has found the extension; it tells why it exits;
 * the launcher releases the slot once the postmaster says the process is
 * gone.  After a crash, shared memory starts empty.
 *
 * Holds: a backend about to run DROP, ALTER or CREATE DATABASE on a
 * database holds it (ik_launcher.c): its workers stop and none starts
 * until the backend's transaction ends, when the hold goes (here, in the
 * transaction callback) and the launcher is woken.
 *
 * Wake-on-commit: a transaction that queued jobs calls ik_wake_on_commit();
 * when (and only if) it commits, the workers of its database are woken, or,
 * if none serves it, the launcher is asked for some.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/wait_event.h"

#include "ik_compat.h"
#include "ik_shmem.h"
#include "ik_stats.h"

#define IK_MAX_HOLDS 64
#define IK_MAX_REQUESTS 64

typedef struct IkWorkerSlot
{
	/* under IkShared.mutex */
	Oid			dboid;
	int			pid;
	IkSlotState state;
	IkExitReason exit_reason;
	bool		stop;
	uint32		generation;		/* bumped at each claim */
	int			db_workers;		/* its database's own imagekit.workers */
	/* read without the mutex */
	pg_atomic_uint32 pgprocno;	/* IK_NO_PROC_NUMBER: no process */
	pg_atomic_uint32 in_flight;
	pg_atomic_uint32 wakes;		/* commits that queued jobs for it */
	pg_atomic_uint64 token;		/* lease token; 0: none */
} IkWorkerSlot;

typedef struct IkHold
{
	Oid			dboid;
	int			pid;			/* the backend running the DDL */
} IkHold;

typedef struct IkShared
{
	slock_t		mutex;
	int			nholds;
	IkHold		holds[IK_MAX_HOLDS];
	int			nrequests;		/* -1: overflowed, ask every database */
	Oid			requests[IK_MAX_REQUESTS];
	int			launcher_pid;

	pg_atomic_uint32 launcher_pgprocno;
	pg_atomic_uint32 rescan;	/* pg_database changed: read it again */
	pg_atomic_uint32 settings;	/* bumped by ALTER DATABASE ... SET */
	pg_atomic_uint64 paused_until;	/* TimestampTz */

	int			max_workers;
	IkWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} IkShared;

static IkShared *ik_shared = NULL;
static int	ik_max_workers = 0;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool ik_wake_pending = false;
static bool ik_rescan_pending = false;
static bool ik_settings_pending = false;
static bool ik_holding = false;

static Size
ik_shmem_size(void)
{
	return add_size(offsetof(IkShared, slots),
					mul_size(ik_max_workers, sizeof(IkWorkerSlot)));
}

static void
ik_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(ik_shmem_size()));
	RequestAddinShmemSpace(MAXALIGN(ik_stats_shmem_size()));
}

static void
ik_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ik_shared = ShmemInitStruct("imagekit_ext", ik_shmem_size(), &found);
	if (!found)
	{
		memset(ik_shared, 0, ik_shmem_size());
		SpinLockInit(&ik_shared->mutex);
		ik_shared->max_workers = ik_max_workers;
		pg_atomic_init_u32(&ik_shared->launcher_pgprocno, IK_NO_PROC_NUMBER);
		pg_atomic_init_u32(&ik_shared->rescan, 0);
		pg_atomic_init_u32(&ik_shared->settings, 0);
		pg_atomic_init_u64(&ik_shared->paused_until, 0);
		for (int i = 0; i < ik_max_workers; i++)
		{
			IkWorkerSlot *s = &ik_shared->slots[i];

			s->dboid = InvalidOid;
			pg_atomic_init_u32(&s->pgprocno, IK_NO_PROC_NUMBER);
			pg_atomic_init_u32(&s->in_flight, 0);
			pg_atomic_init_u32(&s->wakes, 0);
			pg_atomic_init_u64(&s->token, 0);
		}
	}
	ik_stats_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
}

static void
ik_set_latch_of(uint32 procno)
{
	if (procno != IK_NO_PROC_NUMBER)
		SetLatch(&GetPGProcByNumber(procno)->procLatch);
}

static void
ik_wake_launcher(void)
{
	ik_set_latch_of(pg_atomic_read_u32(&ik_shared->launcher_pgprocno));
}

/* Under the mutex: is "dboid" held by a backend's DDL? */
static bool
ik_is_held_locked(Oid dboid)
{
	for (int i = 0; i < ik_shared->nholds; i++)
	{
		if (ik_shared->holds[i].dboid == dboid)
			return true;
	}
	return false;
}

/*
 * At commit, wake the workers of this database; if none serves it, ask the
 * launcher for some (CREATE EXTENSION, attach, or rows queued in a database
 * whose workers stopped).
 */
static void
ik_wake_database(Oid dboid)
{
	bool		served = false;

	for (int i = 0; i < ik_shared->max_workers; i++)
	{
		IkWorkerSlot *s = &ik_shared->slots[i];
		uint32		procno = pg_atomic_read_u32(&s->pgprocno);

		/* an unlocked read: at worst a latch set for nothing */
		if (s->dboid == dboid && s->state == IK_SLOT_SERVING &&
			procno != IK_NO_PROC_NUMBER)
		{
			pg_atomic_fetch_add_u32(&s->wakes, 1);
			ik_set_latch_of(procno);
			served = true;
		}
	}
	if (served)
		return;

	SpinLockAcquire(&ik_shared->mutex);
	if (ik_shared->nrequests >= 0)
	{
		bool		found = false;

		for (int i = 0; i < ik_shared->nrequests; i++)
			found |= ik_shared->requests[i] == dboid;
		if (!found && ik_shared->nrequests < IK_MAX_REQUESTS)
			ik_shared->requests[ik_shared->nrequests++] = dboid;
		else if (!found)
			ik_shared->nrequests = -1;
	}
	SpinLockRelease(&ik_shared->mutex);
	ik_wake_launcher();
}

/* Give up the holds of this backend, and let the launcher act on it. */
static void
ik_release_holds(void)
{
	int			n = 0;

	SpinLockAcquire(&ik_shared->mutex);
	for (int i = 0; i < ik_shared->nholds; i++)
	{
		if (ik_shared->holds[i].pid != MyProcPid)
			ik_shared->holds[n++] = ik_shared->holds[i];
	}
	ik_shared->nholds = n;
	SpinLockRelease(&ik_shared->mutex);
	ik_holding = false;
	pg_atomic_write_u32(&ik_shared->rescan, 1);
	ik_wake_launcher();
}

static void
ik_xact_callback(XactEvent event, void *arg)
{
	if (ik_shared == NULL)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (ik_wake_pending && OidIsValid(MyDatabaseId))
				ik_wake_database(MyDatabaseId);
			if (ik_rescan_pending)
			{
				pg_atomic_write_u32(&ik_shared->rescan, 1);
				ik_wake_launcher();
			}
			if (ik_settings_pending)
			{
				pg_atomic_fetch_add_u32(&ik_shared->settings, 1);
				for (int i = 0; i < ik_shared->max_workers; i++)
					ik_set_latch_of(pg_atomic_read_u32(&ik_shared->slots[i].pgprocno));
				ik_wake_launcher();
			}
			ik_wake_pending = ik_rescan_pending = ik_settings_pending = false;
			if (ik_holding)
				ik_release_holds();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction is found by the worker's next poll */
			ik_wake_pending = ik_rescan_pending = ik_settings_pending = false;
			if (ik_holding)
				ik_release_holds();
			break;
		default:
			break;
	}
}

/* From _PG_init, with imagekit.max_workers. */
void
ik_shmem_init(int max_workers)
{
	RegisterXactCallback(ik_xact_callback, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;
	ik_max_workers = max_workers;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ik_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ik_shmem_startup;
}

/* Is the shared memory there (the library preloaded)? */
bool
ik_shmem_available(void)
{
	return ik_shared != NULL;
}

int
ik_shmem_max_workers(void)
{
	return ik_shared ? ik_shared->max_workers : 0;
}

/* ---- the launcher ---- */

static void
ik_shmem_launcher_detach(int code, Datum arg)
{
	pg_atomic_write_u32(&ik_shared->launcher_pgprocno, IK_NO_PROC_NUMBER);
	SpinLockAcquire(&ik_shared->mutex);
	ik_shared->launcher_pid = 0;
	SpinLockRelease(&ik_shared->mutex);
}

/* Called by the launcher once it runs, so that backends can wake it. */
void
ik_shmem_launcher_attach(void)
{
	SpinLockAcquire(&ik_shared->mutex);
	ik_shared->launcher_pid = MyProcPid;
	SpinLockRelease(&ik_shared->mutex);
	pg_atomic_write_u32(&ik_shared->launcher_pgprocno, IK_MY_PROC_NUMBER);
	before_shmem_exit(ik_shmem_launcher_detach, (Datum) 0);
}

int
ik_shmem_launcher_pid(void)
{
	int			pid;

	if (ik_shared == NULL)
		return 0;
	SpinLockAcquire(&ik_shared->mutex);
	pid = ik_shared->launcher_pid;
	SpinLockRelease(&ik_shared->mutex);
	return pid;
}

/* A free slot, now STARTING for "dboid"; -1 if none is free. */
int
ik_shmem_slot_claim(Oid dboid)
{
	int			slot = -1;

	SpinLockAcquire(&ik_shared->mutex);
	for (int i = 0; i < ik_shared->max_workers; i++)
	{
		IkWorkerSlot *s = &ik_shared->slots[i];

		if (s->state == IK_SLOT_FREE)
		{
			s->dboid = dboid;
			s->pid = 0;
			s->state = IK_SLOT_STARTING;
			s->exit_reason = IK_EXIT_UNKNOWN;
			s->stop = false;
			s->generation++;
			s->db_workers = IK_DB_WORKERS_UNKNOWN;
			slot = i;
			break;
		}
	}
	SpinLockRelease(&ik_shared->mutex);
	return slot;
}

uint32
ik_shmem_slot_generation(int slot)
{
	uint32		generation;

	SpinLockAcquire(&ik_shared->mutex);
	generation = ik_shared->slots[slot].generation;
	SpinLockRelease(&ik_shared->mutex);
	return generation;
}

/*
 * At the launcher's start: the slots of an earlier launcher (which asked
 * their workers to stop as it ended) are freed once their processes are
 * gone.
 */
void
ik_shmem_release_orphans(void)
{
	for (int waited = 0; waited < 10000; waited += 100)
	{
		bool		running = false;

		for (int i = 0; i < ik_shared->max_workers && !running; i++)
		{
			IkSlotInfo	info;

			ik_shmem_slot_get(i, &info);
			running = info.pid != 0 &&
				pg_atomic_read_u32(&ik_shared->slots[i].pgprocno) != IK_NO_PROC_NUMBER;
		}
		if (!running)
			break;
		for (int i = 0; i < ik_shared->max_workers; i++)
			ik_shmem_slot_stop(i);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100L, ik_wait_event(IK_WAIT_LAUNCHER));
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	for (int i = 0; i < ik_shared->max_workers; i++)
		ik_shmem_slot_release(i);
}

/* The slot's process is gone (or never ran): free it. */
void
ik_shmem_slot_release(int slot)
{
	IkWorkerSlot *s = &ik_shared->slots[slot];

	SpinLockAcquire(&ik_shared->mutex);
	s->dboid = InvalidOid;
	s->pid = 0;
	s->state = IK_SLOT_FREE;
	s->stop = false;
	SpinLockRelease(&ik_shared->mutex);
	pg_atomic_write_u32(&s->pgprocno, IK_NO_PROC_NUMBER);
	pg_atomic_write_u32(&s->in_flight, 0);
	pg_atomic_write_u64(&s->token, 0);
}

void
ik_shmem_slot_get(int slot, IkSlotInfo *info)
{
	IkWorkerSlot *s = &ik_shared->slots[slot];

	SpinLockAcquire(&ik_shared->mutex);
	info->dboid = s->dboid;
	info->pid = s->pid;
	info->state = s->state;
	info->exit_reason = s->exit_reason;
	info->db_workers = s->db_workers;
	SpinLockRelease(&ik_shared->mutex);
	info->in_flight = pg_atomic_read_u32(&s->in_flight);
}

/* Ask the slot's worker to give back its jobs and exit. */
void
ik_shmem_slot_stop(int slot)
{
	IkWorkerSlot *s = &ik_shared->slots[slot];

	SpinLockAcquire(&ik_shared->mutex);
	if (s->state != IK_SLOT_FREE)
	{
		s->stop = true;
		s->state = IK_SLOT_STOPPING;
	}
	SpinLockRelease(&ik_shared->mutex);
	ik_set_latch_of(pg_atomic_read_u32(&s->pgprocno));
}

/*
 * The databases that asked for workers since the last call, into
 * dboids[max]; -1 when more asked than could be kept (ask them all).
 */
int
ik_shmem_take_requests(Oid *dboids, int max)
{
	int			n;

	SpinLockAcquire(&ik_shared->mutex);
	n = ik_shared->nrequests;
	if (n > max)
		n = -1;
	if (n > 0)
		memcpy(dboids, ik_shared->requests, n * sizeof(Oid));
	ik_shared->nrequests = 0;
	SpinLockRelease(&ik_shared->mutex);
	return n;
}

/* Has ALTER DATABASE ... SET run since the last call? */
bool
ik_shmem_take_settings_change(void)
{
	static uint32 seen = 0;
	uint32		now = pg_atomic_read_u32(&ik_shared->settings);
	bool		changed = now != seen;

	seen = now;
	return changed;
}

/* Has pg_database (or a hold) changed since the last call? */
bool
ik_shmem_take_rescan(void)
{
	return pg_atomic_exchange_u32(&ik_shared->rescan, 0) != 0;
}

bool
ik_shmem_is_held(Oid dboid)
{
	bool		held;

	SpinLockAcquire(&ik_shared->mutex);
	held = ik_is_held_locked(dboid);
	SpinLockRelease(&ik_shared->mutex);
	return held;
}

/* Drop the holds of backends that are gone without releasing them. */
void
ik_shmem_prune_holds(void)
{
	IkHold		holds[IK_MAX_HOLDS];
	int			nholds;

	SpinLockAcquire(&ik_shared->mutex);
	nholds = ik_shared->nholds;
	memcpy(holds, ik_shared->holds, nholds * sizeof(IkHold));
	SpinLockRelease(&ik_shared->mutex);

	for (int i = 0; i < nholds; i++)
	{
		if (BackendPidGetProc(holds[i].pid) != NULL)
			continue;
		SpinLockAcquire(&ik_shared->mutex);
		for (int j = 0; j < ik_shared->nholds; j++)
		{
			if (ik_shared->holds[j].pid == holds[i].pid)
			{
				ik_shared->holds[j] = ik_shared->holds[--ik_shared->nholds];
				j--;
			}
		}
		SpinLockRelease(&ik_shared->mutex);
	}
}

/* ---- a worker ---- */

static void
ik_shmem_worker_detach(int code, Datum arg)
{
	IkWorkerSlot *s = &ik_shared->slots[DatumGetInt32(arg)];

	pg_atomic_write_u32(&s->pgprocno, IK_NO_PROC_NUMBER);
	pg_atomic_write_u32(&s->in_flight, 0);
	pg_atomic_write_u64(&s->token, 0);
}

/*
 * Called by the worker of "slot" first thing, before it connects: false
 * if it must not run (its database is held, or the slot was stopped or
 * given to another database meanwhile).
 */
bool
ik_shmem_worker_attach(int slot, Oid dboid, uint32 generation)
{
	IkWorkerSlot *s = &ik_shared->slots[slot];
	bool		ok;

	Assert(slot >= 0 && slot < ik_shared->max_workers);
	SpinLockAcquire(&ik_shared->mutex);
	ok = s->dboid == dboid && s->generation == generation && !s->stop &&
		!ik_is_held_locked(dboid);
	if (ok)
		s->pid = MyProcPid;
	else if (s->generation == generation)
		s->exit_reason = IK_EXIT_STOPPED;
	SpinLockRelease(&ik_shared->mutex);
	if (!ok)
		return false;
	pg_atomic_write_u32(&s->pgprocno, IK_MY_PROC_NUMBER);
	before_shmem_exit(ik_shmem_worker_detach, Int32GetDatum(slot));
	return true;
}

/*
 * The worker found the extension: commits wake it from now on, and its
 * claims carry "token".  Jobs held under a token that no running worker
 * has are lost leases (ik_shmem_live_tokens).
 */
void
ik_shmem_worker_serving(int slot, int64 token)
{
	IkWorkerSlot *s = &ik_shared->slots[slot];

	pg_atomic_write_u64(&s->token, (uint64) token);
	SpinLockAcquire(&ik_shared->mutex);
	if (s->state == IK_SLOT_STARTING)
		s->state = IK_SLOT_SERVING;
	SpinLockRelease(&ik_shared->mutex);
}

/*
 * How many commits queued jobs for this worker since it started serving
 * (wrapping around): while it has not changed, the inbox has nothing new
 * for it, but for what a prepared transaction or a commit without the
 * library queued (its periodic look finds those).
 */
uint32
ik_shmem_worker_wakes(int slot)
{
	return pg_atomic_read_u32(&ik_shared->slots[slot].wakes);
}

/*
 * The worker read its database's own imagekit.workers (-1: none set).
 * The launcher is told if it changed.
 */
void
ik_shmem_worker_report_db_workers(int slot, int n)
{
	IkWorkerSlot *s = &ik_shared->slots[slot];
	bool		changed;

	SpinLockAcquire(&ik_shared->mutex);
	changed = s->db_workers != n;
	s->db_workers = n;
	SpinLockRelease(&ik_shared->mutex);
	if (changed)
		ik_wake_launcher();
}

/* Must the worker of "slot" stop (asked to, or its database held)? */
bool
ik_shmem_worker_should_stop(int slot)
{
	IkWorkerSlot *s = &ik_shared->slots[slot];
	bool		stop;

	SpinLockAcquire(&ik_shared->mutex);
	stop = s->stop || ik_is_held_locked(s->dboid);
	SpinLockRelease(&ik_shared->mutex);
	return stop;
}

/* Tell the launcher why this worker exits, just before it does. */
void
ik_shmem_worker_exiting(int slot, IkExitReason reason)
{
	IkWorkerSlot *s = &ik_shared->slots[slot];

	SpinLockAcquire(&ik_shared->mutex);
	s->exit_reason = reason;
	SpinLockRelease(&ik_shared->mutex);
}

/* The lease tokens of the running workers, palloc'd; returns how many. */
int
ik_shmem_live_tokens(int64 **tokens)
{
	int			n = 0;

	*tokens = palloc(sizeof(int64) * Max(ik_shmem_max_workers(), 1));
	for (int i = 0; i < ik_shmem_max_workers(); i++)
	{
		uint64		t = pg_atomic_read_u64(&ik_shared->slots[i].token);

		if (t != 0)
			(*tokens)[n++] = (int64) t;
	}
	return n;
}

void
ik_shmem_set_in_flight(int slot, uint32 n)
{
	if (ik_shared != NULL)
		pg_atomic_write_u32(&ik_shared->slots[slot].in_flight, n);
}

/* Pause every worker's uploads until "until" (a rate limit); never shorten. */
void
ik_shmem_pause_until(TimestampTz until)
{
	uint64		cur;

	if (ik_shared == NULL)
		return;
	cur = pg_atomic_read_u64(&ik_shared->paused_until);
	while ((TimestampTz) cur < until &&
		   !pg_atomic_compare_exchange_u64(&ik_shared->paused_until, &cur,
										   (uint64) until))
		;
}

TimestampTz
ik_shmem_paused_until(void)
{
	return ik_shared ? (TimestampTz) pg_atomic_read_u64(&ik_shared->paused_until) : 0;
}

/* ---- any backend ---- */

/* Wake the workers of this database when the current transaction commits. */
void
ik_wake_on_commit(void)
{
	ik_wake_pending = true;
}

/*
 * When this transaction commits, have the workers read their database's
 * settings again (ALTER DATABASE ... SET).
 */
void
ik_settings_on_commit(void)
{
	ik_settings_pending = true;
}

/* Have the launcher read pg_database again when this transaction commits. */
void
ik_rescan_on_commit(void)
{
	ik_rescan_pending = true;
}

/*
 * Hold "dboid" until the end of this transaction: its workers stop (the
 * caller waits for them, ik_shmem_database_pids) and none starts.  False
 * if the holds are all taken.
 */
bool
ik_shmem_hold(Oid dboid)
{
	bool		ok = false;

	if (ik_shared == NULL)
		return false;
	SpinLockAcquire(&ik_shared->mutex);
	if (ik_shared->nholds < IK_MAX_HOLDS)
	{
		ik_shared->holds[ik_shared->nholds].dboid = dboid;
		ik_shared->holds[ik_shared->nholds].pid = MyProcPid;
		ik_shared->nholds++;
		ok = true;
	}
	/* stopped for good: the hold may end before a worker has seen it */
	for (int i = 0; i < ik_shared->max_workers; i++)
	{
		if (ik_shared->slots[i].dboid == dboid &&
			ik_shared->slots[i].state != IK_SLOT_FREE)
		{
			ik_shared->slots[i].stop = true;
			ik_shared->slots[i].state = IK_SLOT_STOPPING;
		}
	}
	SpinLockRelease(&ik_shared->mutex);
	ik_holding |= ok;

	/* wake them: they see the hold and stop */
	for (int i = 0; i < ik_shared->max_workers; i++)
	{
		if (ik_shared->slots[i].dboid == dboid)
			ik_set_latch_of(pg_atomic_read_u32(&ik_shared->slots[i].pgprocno));
	}
	return ok;
}

/*
 * The pids of the processes that run (or ran) for "dboid", into
 * pids[max_workers]; returns how many.
 */
int
ik_shmem_database_pids(Oid dboid, int *pids)
{
	int			n = 0;

	if (ik_shared == NULL)
		return 0;
	SpinLockAcquire(&ik_shared->mutex);
	for (int i = 0; i < ik_shared->max_workers; i++)
	{
		if (ik_shared->slots[i].dboid == dboid && ik_shared->slots[i].pid != 0)
			pids[n++] = ik_shared->slots[i].pid;
	}
	SpinLockRelease(&ik_shared->mutex);
	return n;
}

/* Requests in flight of the current database's workers. */
uint32
ik_shmem_in_flight(void)
{
	uint32		n = 0;

	if (ik_shared == NULL)
		return 0;
	for (int i = 0; i < ik_shared->max_workers; i++)
	{
		if (ik_shared->slots[i].dboid == MyDatabaseId)
			n += pg_atomic_read_u32(&ik_shared->slots[i].in_flight);
	}
	return n;
}
