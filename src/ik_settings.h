/*-------------------------------------------------------------------------
 *
 * ik_settings.h
 *	  The imagekit.* settings, defined in imagekit_ext.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_SETTINGS_H
#define IK_SETTINGS_H

#include "ik_protocol.h"

#define IK_MAX_WORKERS 16

/* upload client */
extern char *ik_private_key;
extern char *ik_upload_endpoint;
extern int	ik_max_file_size;
extern int	ik_timeout;
extern int	ik_connect_timeout;
extern int	ik_max_retries;
extern int	ik_retry_base_delay;
extern int	ik_retry_max_delay;

/* pipeline */
extern char *ik_database;
extern bool ik_enabled;
/* imagekit.allow_private_sources */
typedef enum IkPrivateSources
{
	IK_PRIVATE_SOURCES_OFF,		/* public addresses only */
	IK_PRIVATE_SOURCES_LOOPBACK,	/* and this host's loopback addresses */
	IK_PRIVATE_SOURCES_ON		/* any address */
} IkPrivateSources;

extern int	ik_allow_private_sources;
extern bool ik_worker_storing;
extern int	ik_workers;
extern int	ik_max_concurrent_uploads;
extern int	ik_batch_size;
extern int	ik_lease_timeout;
extern int	ik_job_retention;

extern void ik_upload_options(IkUploadOptions *opts);
extern const char *ik_upload_config_problem(void);

#endif							/* IK_SETTINGS_H */
