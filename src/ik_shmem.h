/*-------------------------------------------------------------------------
 *
 * ik_shmem.h
 *	  Shared state: the workers' latches, a worker-wide rate-limit pause,
 *	  and the counters shown by imagekit.stats().
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_SHMEM_H
#define IK_SHMEM_H

#include "port/atomics.h"
#include "utils/timestamp.h"

typedef enum IkCounter
{
	IK_STAT_UPLOADS,
	IK_STAT_UPLOAD_BYTES,
	IK_STAT_DEDUP_HITS,
	IK_STAT_RETRIES,
	IK_STAT_FALLBACKS,
	IK_STAT_DOWNLOADS,
	IK_STAT_DOWNLOAD_BYTES,
	IK_STAT_NUM_COUNTERS
} IkCounter;

extern void ik_shmem_init(void);
extern bool ik_shmem_available(void);
extern void ik_shmem_register_worker(int slot, int64 token);
extern int	ik_shmem_live_tokens(int64 *tokens);
extern void ik_shmem_wake_workers(void);
extern void ik_shmem_count(IkCounter counter, uint64 n);
extern uint64 ik_shmem_counter(IkCounter counter);
extern void ik_shmem_set_in_flight(int slot, uint32 n);
extern uint32 ik_shmem_in_flight(void);
extern void ik_shmem_pause_until(TimestampTz until);
extern TimestampTz ik_shmem_paused_until(void);
extern void ik_wake_on_commit(void);

#endif							/* IK_SHMEM_H */
