/*-------------------------------------------------------------------------
 *
 * ik_http.h
 *	  HTTP transport: libcurl requests driven by one long-lived curl multi
 *	  handle and the backend's latch.
 *
 * The transport knows nothing of ImageKit.  A caller creates a request,
 * configures it (URL, body, authentication, limits), starts it, and pumps
 * the transport until the request completes.  Several requests may be in
 * flight at once.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_HTTP_H
#define IK_HTTP_H

#include <curl/curl.h>
#include <sys/socket.h>

#include "lib/ilist.h"

/* decides whether a connection to an address may be made */
typedef bool (*IkAddressFilter) (const struct sockaddr *addr);

typedef struct IkHttpRequest
{
	MemoryContext mcxt;			/* owns this struct; deleting it frees all */
	CURL	   *easy;
	curl_mime  *mime;
	struct curl_slist *headers;
	size_t		max_body;		/* response bytes kept at the most */
	void	   *arg;			/* for the caller */
	IkAddressFilter address_filter; /* NULL: any address */

	/* state kept by the transport */
	bool		in_multi;
	bool		done;
	dlist_node	done_node;		/* in the list of completed requests */

	/* outcome, valid once done */
	CURLcode	result;
	long		status;			/* HTTP status, 0 when none was received */
	bool		body_too_large; /* the response exceeded max_body */
	bool		address_refused;	/* address_filter refused a connection */
	char	   *body;			/* NUL-terminated; may hold NUL bytes */
	size_t		body_len;
	size_t		body_cap;
	double		elapsed;		/* seconds */
	char		errbuf[CURL_ERROR_SIZE];
} IkHttpRequest;

extern void ik_http_init(void);
extern int	ik_http_max_connections(void);
extern IkHttpRequest *ik_http_request_create(const char *url, size_t max_body);
extern void ik_http_request_free(IkHttpRequest *req);
extern curl_mime *ik_http_request_mime(IkHttpRequest *req);
extern void ik_http_request_add_header(IkHttpRequest *req, const char *header);
extern void ik_http_request_set_timeouts(IkHttpRequest *req, long total_ms,
										 long connect_ms);
extern void ik_http_request_set_address_filter(IkHttpRequest *req,
											   IkAddressFilter filter);
extern void ik_http_request_set_basic_auth(IkHttpRequest *req,
										   const char *user,
										   const char *password);

extern void ik_http_start(IkHttpRequest *req);
extern int	ik_http_pump(long max_wait_ms, uint32 wait_event);
extern IkHttpRequest *ik_http_next_done(void);
extern void ik_http_perform(IkHttpRequest *req, uint32 wait_event);

extern char *ik_http_header(IkHttpRequest *req, const char *name);
extern const char *ik_http_error_string(IkHttpRequest *req);

#endif							/* IK_HTTP_H */
