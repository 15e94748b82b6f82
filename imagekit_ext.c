/*-------------------------------------------------------------------------
 *
 * imagekit_ext.c
 *	  Module initialisation of imagekit_ext.
 *
 * The settings are defined in src/ik_guc.c, the SQL-callable functions in
 * src/ik_sql.c, the background workers in src/ik_worker.c.  Shared memory
 * and the workers exist only when the library is preloaded
 * (shared_preload_libraries).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"

#include "ik_guc.h"
#include "ik_http.h"
#include "ik_redact.h"
#include "ik_shmem.h"
#include "ik_worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	ik_http_init();
	ik_guc_define();
	ik_redact_install(&ik_guc_private_key);
	ik_shmem_init();

	/*
	 * No workers in a server that pg_upgrade runs (old or new): they would
	 * change the queue while it is dumped or restored.
	 */
	if (process_shared_preload_libraries_in_progress && !IsBinaryUpgrade)
	{
		int			free_slots;

		for (int i = 0; i < ik_guc_workers; i++)
			ik_worker_register(i);
		/* the slots left once these and the logical replication launcher run */
		free_slots = max_worker_processes - ik_guc_workers - 1;
		if (free_slots <= 0)
			ereport(WARNING,
					(errmsg("imagekit.workers (%d) leaves no background worker slot free (max_worker_processes = %d)",
							ik_guc_workers, max_worker_processes),
					 free_slots < 0 ?
					 errdetail("Parallel query and logical replication get no worker, and %d imagekit workers cannot start.",
							   -free_slots) :
					 errdetail("Parallel query and logical replication get no worker."),
					 errhint("Set max_worker_processes to at least imagekit.workers + 1 (the logical replication launcher) + max_parallel_workers + max_logical_replication_workers.")));
	}
}
