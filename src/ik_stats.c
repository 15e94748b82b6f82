/*-------------------------------------------------------------------------
 *
 * ik_stats.c
 *	  The per-database counters of imagekit.stats(), in shared memory.
 *
 * A fixed table of IK_STATS_DATABASES entries, one per database that
 * counted something since the server started; a process takes an entry for
 * its database with a compare-and-swap and remembers where it is.  Every
 * field is an atomic: no lock.  DROP DATABASE frees the database's entry
 * (ik_launcher.c).  With more databases counting than entries, the extra
 * ones are not counted.  Without preloading there is no table: nothing is
 * counted and every counter reads as zero.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/shmem.h"

#include "ik_stats.h"

#define IK_STATS_DATABASES 512

typedef struct IkDbCounters
{
	pg_atomic_uint32 dboid;		/* InvalidOid: a free entry */
	pg_atomic_uint64 counters[IK_STAT_NUM_COUNTERS];
} IkDbCounters;

static IkDbCounters *ik_stats = NULL;

Size
ik_stats_shmem_size(void)
{
	return mul_size(IK_STATS_DATABASES, sizeof(IkDbCounters));
}

/* From the shared memory start-up hook, under AddinShmemInitLock. */
void
ik_stats_shmem_startup(void)
{
	bool		found;

	ik_stats = ShmemInitStruct("imagekit_ext stats", ik_stats_shmem_size(), &found);
	if (found)
		return;
	for (int i = 0; i < IK_STATS_DATABASES; i++)
	{
		pg_atomic_init_u32(&ik_stats[i].dboid, InvalidOid);
		for (int c = 0; c < IK_STAT_NUM_COUNTERS; c++)
			pg_atomic_init_u64(&ik_stats[i].counters[c], 0);
	}
}

/*
 * The counters of "dboid"; with "create", a free entry is taken for it.
 * NULL when there is none.
 */
static IkDbCounters *
ik_stats_entry(Oid dboid, bool create)
{
	static int	cached = -1;

	if (ik_stats == NULL || !OidIsValid(dboid))
		return NULL;
	if (cached >= 0 && pg_atomic_read_u32(&ik_stats[cached].dboid) == dboid)
		return &ik_stats[cached];
	for (int i = 0; i < IK_STATS_DATABASES; i++)
	{
		if (pg_atomic_read_u32(&ik_stats[i].dboid) == dboid)
		{
			cached = i;
			return &ik_stats[i];
		}
	}
	if (!create)
		return NULL;
	for (int i = 0; i < IK_STATS_DATABASES; i++)
	{
		uint32		expected = InvalidOid;

		if (pg_atomic_compare_exchange_u32(&ik_stats[i].dboid, &expected, dboid))
		{
			cached = i;
			return &ik_stats[i];
		}
	}
	return NULL;
}

/* Count "n" in the current database's counter. */
void
ik_stats_count(IkCounter counter, uint64 n)
{
	IkDbCounters *e = ik_stats_entry(MyDatabaseId, true);

	if (e != NULL)
		pg_atomic_fetch_add_u64(&e->counters[counter], n);
}

/* The current database's count. */
uint64
ik_stats_counter(IkCounter counter)
{
	IkDbCounters *e = ik_stats_entry(MyDatabaseId, false);

	return e ? pg_atomic_read_u64(&e->counters[counter]) : 0;
}

/* The database is dropped: free its counters for another. */
void
ik_stats_forget(Oid dboid)
{
	IkDbCounters *e = ik_stats_entry(dboid, false);

	if (e == NULL)
		return;
	for (int c = 0; c < IK_STAT_NUM_COUNTERS; c++)
		pg_atomic_write_u64(&e->counters[c], 0);
	pg_atomic_write_u32(&e->dboid, InvalidOid);
}
