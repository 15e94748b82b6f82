/*-------------------------------------------------------------------------
 *
 * ik_worker.h
 *	  The background worker that drains imagekit.jobs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_WORKER_H
#define IK_WORKER_H

extern void ik_worker_register(int slot);
extern PGDLLEXPORT void ik_worker_main(Datum arg);

#endif							/* IK_WORKER_H */
