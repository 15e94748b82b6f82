/*-------------------------------------------------------------------------
 *
 * ik_stats.h
 *	  The per-database counters of imagekit.stats(), in shared memory.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_STATS_H
#define IK_STATS_H

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

extern Size ik_stats_shmem_size(void);
extern void ik_stats_shmem_startup(void);
extern void ik_stats_count(IkCounter counter, uint64 n);
extern uint64 ik_stats_counter(IkCounter counter);
extern void ik_stats_forget(Oid dboid);

#endif							/* IK_STATS_H */
