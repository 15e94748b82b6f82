/*-------------------------------------------------------------------------
 *
 * imagekit_ext.c
 *	  Module initialisation of imagekit_ext.
 *
 * The settings are defined in src/ik_guc.c, the SQL-callable functions are
 * in src/ik_sql.c, the launcher and its per-database workers in
 * src/ik_launcher.c and src/ik_worker.c.  Shared memory, the launcher and
 * the hook on database DDL exist only when the library is preloaded
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
#include "ik_launcher.h"
#include "ik_redact.h"
#include "ik_shmem.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	ik_http_init();
	ik_guc_define();
	ik_redact_install(&ik_guc_private_key);
	ik_shmem_init(ik_guc_max_workers);

	if (!process_shared_preload_libraries_in_progress)
		return;
	ik_launcher_install_hook();

	/*
	 * No workers in a server that pg_upgrade runs (old or new): they would
	 * change the queue while it is dumped or restored.
	 */
	if (ik_guc_max_workers > 0 && !IsBinaryUpgrade)
	{
		/* the slots left once these, the launcher and logical replication's run */
		int			free_slots = max_worker_processes - ik_guc_max_workers - 2;

		ik_launcher_register();
		if (free_slots <= 0)
			ereport(WARNING,
					(errmsg("imagekit.max_workers (%d) leaves no background worker slot free (max_worker_processes = %d)",
							ik_guc_max_workers, max_worker_processes),
					 free_slots < 0 ?
					 errdetail("Parallel query and logical replication get no worker, and up to %d imagekit workers cannot start.",
							   -free_slots) :
					 errdetail("Parallel query and logical replication get no worker."),
					 errhint("Set max_worker_processes to at least imagekit.max_workers + 2 (the imagekit launcher and the logical replication launcher) + max_parallel_workers + max_logical_replication_workers.")));
	}
}
