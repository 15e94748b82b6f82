/*-------------------------------------------------------------------------
 *
 * ik_protocol.h
 *	  The ImageKit upload protocol: request building, response parsing,
 *	  error classification and retry policy.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_PROTOCOL_H
#define IK_PROTOCOL_H

#include "utils/timestamp.h"

#include "ik_assets.h"
#include "ik_http.h"

/* SQLSTATEs of the errors ImageKit can cause; documented in README.md */
#define ERRCODE_IK_NOT_CONFIGURED	MAKE_SQLSTATE('I','K','0','0','0')
#define ERRCODE_IK_AUTH_FAILED		MAKE_SQLSTATE('I','K','0','0','1')
#define ERRCODE_IK_REJECTED			MAKE_SQLSTATE('I','K','0','0','2')
#define ERRCODE_IK_UNAVAILABLE		MAKE_SQLSTATE('I','K','0','0','3')
#define ERRCODE_IK_BAD_RESPONSE		MAKE_SQLSTATE('I','K','0','0','4')

/* the upload answer is small JSON; anything larger is not ImageKit's */
#define IK_MAX_RESPONSE_SIZE	(1024 * 1024)

/*
 * A table's upload options as they travel (ik_protocol_table_options); each
 * NULL when the table has none.
 */
typedef struct IkTableOptions
{
	const char *folder;			/* overrides imagekit.folder */
	const char *transformation; /* JSON; overrides imagekit.transformation */
	const char *tags;			/* comma-joined */
	const char *custom_metadata;	/* JSON object */
	const char *extensions;		/* JSON array */
	const char *is_private_file;	/* "true" or "false" */
} IkTableOptions;

typedef struct IkUploadOptions
{
	const char *endpoint;
	const char *private_key;
	const char *folder;
	bool		use_unique_file_name;
	const char *transformation; /* "pre" value, or empty for none */
	const IkTableOptions *table;	/* or NULL */
	int			timeout_ms;
	int			connect_timeout_ms;
	int			max_retries;
	int			retry_base_delay_ms;
	int			retry_max_delay_ms;
} IkUploadOptions;

typedef enum IkOutcome
{
	IK_OUTCOME_OK,
	IK_OUTCOME_RETRYABLE,		/* connection trouble, 408, 409, 429, 5xx */
	IK_OUTCOME_AUTH,			/* 401, 403 */
	IK_OUTCOME_REJECTED,		/* any other 4xx */
	IK_OUTCOME_BAD_RESPONSE,	/* 3xx, or a body that is not an answer */
	IK_OUTCOME_TRANSPORT		/* a transport failure retrying won't cure */
} IkOutcome;

typedef struct IkUploadError
{
	IkOutcome	outcome;
	long		status;			/* HTTP status, 0 if none */
	char	   *message;		/* ImageKit's message, or what went wrong */
	bool		from_imagekit;	/* message is ImageKit's own words */
	char	   *request_id;		/* x-ik-requestId, or NULL */
	long		retry_hint_ms;	/* from Retry-After / X-RateLimit-Reset; -1 */
} IkUploadError;

extern IkHttpRequest *ik_upload_request(const IkUploadOptions *opts,
										const char *data, size_t len,
										const char *file_name);
extern IkOutcome ik_upload_parse(IkHttpRequest *req, IkUploadResult *result,
								 IkUploadError *err);
extern long ik_retry_hint_ms(const char *retry_after,
							 const char *ratelimit_reset);
extern long ik_retry_delay_ms(int retry, int base_ms, int max_ms,
							  long hint_ms);
extern void ik_upload_sync(const IkUploadOptions *opts, const char *data,
						   size_t len, const char *file_name,
						   IkUploadResult *result);
extern const char *ik_protocol_config_problem(void);
extern void ik_protocol_options(IkUploadOptions *opts);
extern char *ik_protocol_table_options(const char *json, IkTableOptions *table);
extern void ik_sleep_ms(long ms, uint32 wait_event);

/* the workers' retry policy */
extern uint32 ik_protocol_key_generation(void);
extern bool ik_protocol_key_refused(long *status);
extern TimestampTz ik_protocol_key_retry_at(void);
extern void ik_protocol_key_refused_by(const IkUploadError *err,
									   uint32 generation);
extern long ik_protocol_job_retry(int attempts, long hint_ms);
extern bool ik_protocol_job_gave_up(int attempts);
extern void ik_protocol_rate_limited(const IkUploadError *err);
extern char *ik_utf8_to_server(const char *s, size_t len);

#endif							/* IK_PROTOCOL_H */
