/*-------------------------------------------------------------------------
 *
 * ik_worker.h
 *	  The background worker that drains the queue of one database.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_WORKER_H
#define IK_WORKER_H

/* What the launcher tells a worker, in its bgw_extra; its slot: bgw_main_arg */
typedef struct IkWorkerExtra
{
	Oid			dboid;
	uint32		generation;		/* of the slot, when the launcher started it */
	char		dbname[NAMEDATALEN];	/* for messages */
} IkWorkerExtra;

extern PGDLLEXPORT void ik_worker_main(Datum arg);

#endif							/* IK_WORKER_H */
