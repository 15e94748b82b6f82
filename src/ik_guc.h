/*-------------------------------------------------------------------------
 *
 * ik_guc.h
 *	  The imagekit.* settings, defined in ik_guc.c.
 *
 * This header includes nothing of src/: any file may read the settings,
 * and the settings depend on nothing else of the extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_GUC_H
#define IK_GUC_H

/* the bound of imagekit.workers and imagekit.max_workers */
#define IK_MAX_WORKERS 64

/* imagekit.allow_private_sources */
typedef enum IkPrivateSources
{
	IK_PRIVATE_SOURCES_OFF,		/* public addresses only */
	IK_PRIVATE_SOURCES_LOOPBACK,	/* and this host's loopback addresses */
	IK_PRIVATE_SOURCES_ON		/* any address */
} IkPrivateSources;

/* the upload client */
extern char *ik_guc_private_key;
extern char *ik_guc_public_key;
extern char *ik_guc_url_endpoint;
extern char *ik_guc_upload_endpoint;
extern char *ik_guc_folder;
extern bool ik_guc_use_unique_file_name;
extern char *ik_guc_transformation;
extern int	ik_guc_max_file_size;
extern int	ik_guc_timeout;
extern int	ik_guc_connect_timeout;
extern int	ik_guc_max_retries;
extern int	ik_guc_retry_base_delay;
extern int	ik_guc_retry_max_delay;

/* the pipeline */
extern char *ik_guc_database;
extern bool ik_guc_enabled;
extern int	ik_guc_allow_private_sources;
extern bool ik_guc_worker_storing;
extern int	ik_guc_workers;
extern int	ik_guc_max_workers;
extern int	ik_guc_max_concurrent_uploads;
extern int	ik_guc_batch_size;
extern int	ik_guc_lease_timeout;
extern int	ik_guc_job_retention;

extern void ik_guc_define(void);

#endif							/* IK_GUC_H */
