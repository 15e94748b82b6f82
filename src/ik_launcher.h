/*-------------------------------------------------------------------------
 *
 * ik_launcher.h
 *	  The launcher of the per-database workers, and the utility hook that
 *	  keeps them out of the way of database DDL.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_LAUNCHER_H
#define IK_LAUNCHER_H

extern void ik_launcher_register(void);
extern void ik_launcher_install_hook(void);
extern PGDLLEXPORT void ik_launcher_main(Datum arg);

#endif							/* IK_LAUNCHER_H */
