/*-------------------------------------------------------------------------
 *
 * ik_response.h
 *	  Parsing of ImageKit's answers: the upload response body, the error
 *	  message, and the Retry-After / X-RateLimit-Reset headers.
 *
 * Usable in the backend and in frontend programs (the fuzz harnesses under
 * test/fuzz/): everything returned is malloc'd, never palloc'd, and nothing
 * here raises an ERROR.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_RESPONSE_H
#define IK_RESPONSE_H

#include <time.h>

/*
 * The fields of an upload answer the extension keeps.  The strings are
 * valid UTF-8 without NUL bytes, malloc'd, or NULL when the member is absent,
 * not a string, or not valid UTF-8.
 */
typedef struct IkResponseUpload
{
	char	   *url;			/* never NULL nor empty after a success */
	char	   *file_id;
	char	   *file_path;
	char	   *name;
	int64		size;			/* -1 when absent or out of range */
	int32		width;			/* -1 when absent or out of range */
	int32		height;			/* -1 when absent or out of range */
} IkResponseUpload;

extern bool ik_response_parse_upload(const char *body, size_t len,
									 IkResponseUpload *out);
extern void ik_response_upload_free(IkResponseUpload *upload);
extern char *ik_response_error_message(const char *body, size_t len,
									   size_t maxlen);
extern long ik_response_retry_hint_ms(const char *retry_after,
									  const char *ratelimit_reset,
									  time_t now);

#endif							/* IK_RESPONSE_H */
