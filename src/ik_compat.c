/*-------------------------------------------------------------------------
 *
 * ik_compat.c
 *	  The parts of ik_compat.h that need a body: the wait events.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/wait_event.h"

#include "ik_compat.h"

#if PG_VERSION_NUM >= 170000
static const char *const ik_wait_names[IK_WAIT_COUNT] = {
	[IK_WAIT_UPLOAD] = "ImageKitUpload",
	[IK_WAIT_DOWNLOAD] = "ImageKitDownload",
	[IK_WAIT_BACKOFF] = "ImageKitBackoff",
	[IK_WAIT_IDLE] = "ImageKitIdle",
	[IK_WAIT_LAUNCHER] = "ImageKitLauncher",
	[IK_WAIT_STOP] = "ImageKitWorkerStop",
};

/* this process's numbers for them, 0 until first used */
static uint32 ik_wait_events[IK_WAIT_COUNT];
#endif

/*
 * The wait_event_info to wait with.  From 17, the first use in a process
 * registers the name (or finds it registered by another process) in the
 * server's shared table of custom wait events, which needs no preloading.
 */
uint32
ik_wait_event(IkWait wait)
{
	Assert(wait >= 0 && wait < IK_WAIT_COUNT);
#if PG_VERSION_NUM >= 170000
	if (ik_wait_events[wait] == 0)
		ik_wait_events[wait] = WaitEventExtensionNew(ik_wait_names[wait]);
	return ik_wait_events[wait];
#else
	return PG_WAIT_EXTENSION;
#endif
}
