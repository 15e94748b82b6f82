/*-------------------------------------------------------------------------
 *
 * ik_redact.h
 *	  Keep the private key out of the server log.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_REDACT_H
#define IK_REDACT_H

extern void ik_redact_install(char **secret);

#endif							/* IK_REDACT_H */
