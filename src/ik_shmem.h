/*-------------------------------------------------------------------------
 *
 * ik_shmem.h
 *	  Shared state: the worker slots the launcher hands out, the databases
 *	  held by database DDL, the launcher's requests, and a cluster-wide
 *	  rate-limit pause.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_SHMEM_H
#define IK_SHMEM_H

#include "port/atomics.h"
#include "utils/timestamp.h"

/* A worker slot's state, as imagekit.workers shows it. */
typedef enum IkSlotState
{
	IK_SLOT_FREE,
	IK_SLOT_STARTING,			/* started by the launcher, not connected yet */
	IK_SLOT_SERVING,			/* connected; the extension is there */
	IK_SLOT_STOPPING			/* asked to stop (DDL, surplus, settings) */
} IkSlotState;

/* Why a worker ended, as it tells the launcher before it exits. */
typedef enum IkExitReason
{
	IK_EXIT_UNKNOWN,			/* an error, a crash, a signal */
	IK_EXIT_STOPPED,			/* asked to stop: jobs given back */
	IK_EXIT_NOT_INSTALLED		/* the extension is not (or no longer) there */
} IkExitReason;

#define IK_DB_WORKERS_UNKNOWN (-2)	/* not read yet; -1: not set */

typedef struct IkSlotInfo
{
	Oid			dboid;			/* InvalidOid: the slot is free */
	int			pid;			/* 0: the process has not run yet */
	IkSlotState state;
	IkExitReason exit_reason;
	uint32		in_flight;
	int			db_workers;		/* the database's own imagekit.workers */
} IkSlotInfo;

/* start-up */
extern void ik_shmem_init(int max_workers);
extern bool ik_shmem_available(void);
extern int	ik_shmem_max_workers(void);

/* the launcher */
extern void ik_shmem_launcher_attach(void);
extern int	ik_shmem_launcher_pid(void);
extern int	ik_shmem_slot_claim(Oid dboid);
extern uint32 ik_shmem_slot_generation(int slot);
extern void ik_shmem_release_orphans(void);
extern void ik_shmem_slot_release(int slot);
extern void ik_shmem_slot_get(int slot, IkSlotInfo *info);
extern void ik_shmem_slot_stop(int slot);
extern int	ik_shmem_take_requests(Oid *dboids, int max);
extern bool ik_shmem_take_rescan(void);
extern bool ik_shmem_take_settings_change(void);
extern bool ik_shmem_is_held(Oid dboid);
extern void ik_shmem_prune_holds(void);

/* a worker */
extern bool ik_shmem_worker_attach(int slot, Oid dboid, uint32 generation);
extern void ik_shmem_worker_serving(int slot, int64 token);
extern uint32 ik_shmem_worker_wakes(int slot);
extern void ik_shmem_worker_report_db_workers(int slot, int n);
extern bool ik_shmem_worker_should_stop(int slot);
extern void ik_shmem_worker_exiting(int slot, IkExitReason reason);
extern int	ik_shmem_live_tokens(int64 **tokens);
extern void ik_shmem_set_in_flight(int slot, uint32 n);
extern void ik_shmem_pause_until(TimestampTz until);
extern TimestampTz ik_shmem_paused_until(void);

/* any backend */
extern void ik_wake_on_commit(void);
extern void ik_rescan_on_commit(void);
extern void ik_settings_on_commit(void);
extern bool ik_shmem_hold(Oid dboid);
extern int	ik_shmem_database_pids(Oid dboid, int *pids);
extern uint32 ik_shmem_in_flight(void);

#endif							/* IK_SHMEM_H */
