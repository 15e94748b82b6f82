/*-------------------------------------------------------------------------
 *
 * ik_shmem.c
 *	  Shared state: the workers' latches, a worker-wide rate-limit pause,
 *	  and the counters shown by imagekit.stats().
 *
 * Everything here is an atomic, or a pgprocno written only by the worker
 * that owns the slot, so no lock is needed.  The memory is requested only
 * when the library is preloaded; without it the workers do not exist,
 * wakeups are no-ops and the counters read as zero.
 *
 * Wake-on-commit: a transaction that queued jobs calls ik_wake_on_commit();
 * an XactCallback sets the workers' latches when (and only if) it commits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "ik_compat.h"
#include "ik_guc.h"
#include "ik_shmem.h"

typedef struct IkShared
{
	pg_atomic_uint32 pgprocno[IK_MAX_WORKERS];	/* IK_NO_PROC_NUMBER: none */
	pg_atomic_uint32 in_flight[IK_MAX_WORKERS];
	pg_atomic_uint64 token[IK_MAX_WORKERS]; /* lease token; 0: none */
	pg_atomic_uint64 paused_until;	/* TimestampTz */
	pg_atomic_uint64 counters[IK_STAT_NUM_COUNTERS];
} IkShared;

static IkShared *ik_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool ik_wake_pending = false;

static void
ik_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(IkShared)));
}

static void
ik_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ik_shared = ShmemInitStruct("imagekit_ext", sizeof(IkShared), &found);
	if (!found)
	{
		for (int i = 0; i < IK_MAX_WORKERS; i++)
		{
			pg_atomic_init_u32(&ik_shared->pgprocno[i], IK_NO_PROC_NUMBER);
			pg_atomic_init_u32(&ik_shared->in_flight[i], 0);
			pg_atomic_init_u64(&ik_shared->token[i], 0);
		}
		pg_atomic_init_u64(&ik_shared->paused_until, 0);
		for (int i = 0; i < IK_STAT_NUM_COUNTERS; i++)
			pg_atomic_init_u64(&ik_shared->counters[i], 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
ik_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (ik_wake_pending)
				ik_shmem_wake_workers();
			ik_wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction is found by the worker's next poll */
			ik_wake_pending = false;
			break;
		default:
			break;
	}
}

/* From _PG_init. */
void
ik_shmem_init(void)
{
	RegisterXactCallback(ik_xact_callback, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ik_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ik_shmem_startup;
}

static void
ik_shmem_unregister_worker(int code, Datum arg)
{
	int			slot = DatumGetInt32(arg);

	pg_atomic_write_u32(&ik_shared->pgprocno[slot], IK_NO_PROC_NUMBER);
	pg_atomic_write_u32(&ik_shared->in_flight[slot], 0);
	pg_atomic_write_u64(&ik_shared->token[slot], 0);
}

/*
 * Called by worker "slot" once it runs, so that commits can wake it, with
 * the lease token its claims carry.  A worker that exits clears it; after a
 * crash, shared memory starts empty: either way, the jobs the old token
 * held are lost leases for the other workers (ik_shmem_live_tokens).
 */
void
ik_shmem_register_worker(int slot, int64 token)
{
	Assert(ik_shared != NULL && slot >= 0 && slot < IK_MAX_WORKERS);
	pg_atomic_write_u64(&ik_shared->token[slot], (uint64) token);
	pg_atomic_write_u32(&ik_shared->pgprocno[slot], IK_MY_PROC_NUMBER);
	before_shmem_exit(ik_shmem_unregister_worker, Int32GetDatum(slot));
}

/* The lease tokens of the running workers, into tokens[IK_MAX_WORKERS]. */
int
ik_shmem_live_tokens(int64 *tokens)
{
	int			n = 0;

	if (ik_shared == NULL)
		return 0;
	for (int i = 0; i < IK_MAX_WORKERS; i++)
	{
		uint64		t = pg_atomic_read_u64(&ik_shared->token[i]);

		if (t != 0)
			tokens[n++] = (int64) t;
	}
	return n;
}

void
ik_shmem_wake_workers(void)
{
	if (ik_shared == NULL)
		return;
	for (int i = 0; i < IK_MAX_WORKERS; i++)
	{
		uint32		procno = pg_atomic_read_u32(&ik_shared->pgprocno[i]);

		if (procno != IK_NO_PROC_NUMBER)
			SetLatch(&GetPGProcByNumber(procno)->procLatch);
	}
}

/* Is the shared memory there (the library preloaded)? */
bool
ik_shmem_available(void)
{
	return ik_shared != NULL;
}

/* Wake the workers when the current transaction commits. */
void
ik_wake_on_commit(void)
{
	ik_wake_pending = true;
}

void
ik_shmem_count(IkCounter counter, uint64 n)
{
	if (ik_shared != NULL)
		pg_atomic_fetch_add_u64(&ik_shared->counters[counter], n);
}

uint64
ik_shmem_counter(IkCounter counter)
{
	return ik_shared ? pg_atomic_read_u64(&ik_shared->counters[counter]) : 0;
}

void
ik_shmem_set_in_flight(int slot, uint32 n)
{
	if (ik_shared != NULL)
		pg_atomic_write_u32(&ik_shared->in_flight[slot], n);
}

uint32
ik_shmem_in_flight(void)
{
	uint32		n = 0;

	if (ik_shared == NULL)
		return 0;
	for (int i = 0; i < IK_MAX_WORKERS; i++)
		n += pg_atomic_read_u32(&ik_shared->in_flight[i]);
	return n;
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
