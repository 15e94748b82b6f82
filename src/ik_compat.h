/*-------------------------------------------------------------------------
 *
 * ik_compat.h
 *	  What differs between the PostgreSQL majors this extension builds
 *	  against (15 to 19), in one place.
 *
 * Each difference is a macro or an inline function named after what it
 * does here, with the version that changed it; the code elsewhere uses it
 * and tests no PG_VERSION_NUM of its own.  16 sits between 15 and 17 in
 * every difference below.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_COMPAT_H
#define IK_COMPAT_H

#include "catalog/pg_database.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/memutils.h"

/*
 * A process's number in ProcGlobal->allProcs, kept in a uint32 atomic: 17
 * replaced PGPROC.pgprocno and INVALID_PGPROCNO by MyProcNumber and
 * INVALID_PROC_NUMBER.
 */
#if PG_VERSION_NUM >= 170000
#define IK_MY_PROC_NUMBER		((uint32) MyProcNumber)
#define IK_NO_PROC_NUMBER		((uint32) INVALID_PROC_NUMBER)
#else
#define IK_MY_PROC_NUMBER		((uint32) MyProc->pgprocno)
#define IK_NO_PROC_NUMBER		((uint32) INVALID_PGPROCNO)
#endif

/*
 * A wait event set that lives as long as the process: 17 ties a set to a
 * resource owner (none: the session) instead of a memory context.
 */
static inline WaitEventSet *
ik_create_session_wait_event_set(int nevents)
{
#if PG_VERSION_NUM >= 170000
	return CreateWaitEventSet(NULL, nevents);
#else
	return CreateWaitEventSet(TopMemoryContext, nevents);
#endif
}

/*
 * What an imagekit_ext process waits for, as pg_stat_activity.wait_event
 * shows it: from 17, a custom wait event of that name (type Extension);
 * before 17, the generic "Extension".
 */
typedef enum IkWait
{
	IK_WAIT_UPLOAD,				/* "ImageKitUpload": an upload in flight */
	IK_WAIT_DOWNLOAD,			/* "ImageKitDownload": a source download */
	IK_WAIT_BACKOFF,			/* "ImageKitBackoff": a retry's delay */
	IK_WAIT_IDLE,				/* "ImageKitIdle": a worker with nothing due */
	IK_WAIT_LAUNCHER,			/* "ImageKitLauncher": the launcher, idle */
	IK_WAIT_STOP,				/* "ImageKitWorkerStop": database DDL waits
								 * for the database's workers to exit */
	IK_WAIT_COUNT
} IkWait;

extern uint32 ik_wait_event(IkWait wait);

/*
 * 19 ends a background worker flagged interruptible when database DDL
 * needs its database (the launcher starts it again); before, only our own
 * utility hook stops the workers (ik_launcher.c).
 */
#ifdef BGWORKER_INTERRUPTIBLE
#define IK_BGWORKER_INTERRUPTIBLE	BGWORKER_INTERRUPTIBLE
#else
#define IK_BGWORKER_INTERRUPTIBLE	0
#endif

/*
 * Does "roleid" own database "dboid"?  16 replaced the per-catalog owner
 * checks by object_ownercheck().
 */
#if PG_VERSION_NUM >= 160000
#define ik_database_ownercheck(dboid, roleid) \
	object_ownercheck(DatabaseRelationId, (dboid), (roleid))
#else
#define ik_database_ownercheck(dboid, roleid) \
	pg_database_ownercheck((dboid), (roleid))
#endif

#endif							/* IK_COMPAT_H */
