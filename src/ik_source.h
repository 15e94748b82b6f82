/*-------------------------------------------------------------------------
 *
 * ik_source.h
 *	  Downloading source images: the request, and judging the answer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_SOURCE_H
#define IK_SOURCE_H

#include "ik_http.h"

typedef enum IkSourceOutcome
{
	IK_SOURCE_OK,
	IK_SOURCE_RETRYABLE,
	IK_SOURCE_PERMANENT
} IkSourceOutcome;

#define IK_SOURCE_MAX_REDIRECTS 5

/* longer source URLs are not fetched (no server takes URLs that long) */
#define IK_SOURCE_MAX_URL_LEN 8192

extern IkHttpRequest *ik_source_request(const char *url, size_t max_size,
										long timeout_ms, long connect_timeout_ms,
										int allow_private);
extern bool ik_address_is_public(const struct sockaddr *addr);
extern char *ik_source_url_for_log(const char *url, int max);
extern IkSourceOutcome ik_source_check(IkHttpRequest *req, size_t max_size,
									   const char **ext, char **error,
									   long *hint_ms);
extern const char *ik_image_extension(const char *data, size_t len,
									   const char *content_type);

#endif							/* IK_SOURCE_H */
