/*-------------------------------------------------------------------------
 *
 * ik_http.c
 *	  HTTP transport: libcurl requests driven by one long-lived curl multi
 *	  handle and the backend's latch.
 *
 * Each process that makes requests owns one curl multi handle, created on
 * first use and kept for the life of the process, so that connections (and
 * TLS sessions, and DNS answers) are reused from one request to the next.
 * libcurl tells us which sockets it wants watched through its socket
 * callback; we keep them in an epoll set of our own, and wait on that epoll
 * descriptor together with the process latch in WaitLatchOrSocket().  A
 * wait therefore ends as soon as a socket is ready, curl's timer expires,
 * the latch is set (query cancel, termination, a wakeup), or the postmaster
 * dies; CHECK_FOR_INTERRUPTS() runs after every wait, never inside a curl
 * callback, so an ERROR never unwinds through libcurl.
 *
 * Ownership: every request lives in a memory context of its own, a child of
 * the caller's current context.  A reset callback on that context removes
 * the easy handle from the multi handle and frees every curl object, so a
 * request abandoned by an ERROR is cleaned up when the caller's context goes
 * away, and ik_http_request_free() is just MemoryContextDelete().
 *
 * File descriptors: curl's sockets and the epoll descriptor count against
 * the server's limit (AcquireExternalFD / ReleaseExternalFD, as
 * libpq-be-fe-helpers.h does for libpq connections), through curl's
 * open- and close-socket callbacks; the multi handle opens no more
 * connections than fd.c allows external descriptors, and requests beyond
 * that wait for a connection instead of failing.  The wait event set is
 * made once, with the epoll descriptor, before curl opens anything, so
 * that a wait never needs a descriptor curl might have taken.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "ik_compat.h"
#include "ik_http.h"

#define IK_HTTP_MAX_EVENTS 64

static CURLM *ik_multi = NULL;
static int	ik_epfd = -1;
static WaitEventSet *ik_wait_set = NULL;	/* the latch, the postmaster, ik_epfd */
static TimestampTz ik_timer_deadline = 0;	/* 0: no timer */
static dlist_head ik_done = DLIST_STATIC_INIT(ik_done);

static int
ik_http_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
				  void *socketp)
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		/* the socket may be closed already; epoll forgets those by itself */
		(void) epoll_ctl(ik_epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}

	memset(&ev, 0, sizeof(ev));
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	ev.data.fd = s;

	/*
	 * Never return an error: libcurl would mark the whole multi handle dead.
	 * A socket we failed to watch makes its transfer time out instead.
	 */
	if (epoll_ctl(ik_epfd, EPOLL_CTL_MOD, s, &ev) != 0)
		(void) epoll_ctl(ik_epfd, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

static int
ik_http_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		ik_timer_deadline = 0;
	else
		ik_timer_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														timeout_ms);
	return 0;
}

static size_t
ik_http_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	IkHttpRequest *req = (IkHttpRequest *) userdata;
	size_t		n = size * nmemb;
	size_t		need;

	if (n > req->max_body - req->body_len)
	{
		req->body_too_large = true;
		return 0;				/* CURLE_WRITE_ERROR */
	}

	need = req->body_len + n + 1;
	if (need > req->body_cap)
	{
		size_t		newcap = Max(req->body_cap * 2, need);
		curl_off_t	announced = -1;
		char	   *nb;

		/* size the buffer once from Content-Length, when it is honest */
		curl_easy_getinfo(req->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
		if (announced > 0 && (size_t) announced <= req->max_body &&
			(size_t) announced + 1 >= need)
			newcap = (size_t) announced + 1;

		newcap = Min(newcap, req->max_body + 1);
		/* no ERROR may escape into libcurl: ask for NULL on failure */
		nb = MemoryContextAllocExtended(req->mcxt, newcap,
										MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
		if (nb == NULL)
			return 0;
		memcpy(nb, req->body, req->body_len);
		pfree(req->body);
		req->body = nb;
		req->body_cap = newcap;
	}

	memcpy(req->body + req->body_len, ptr, n);
	req->body_len += n;
	req->body[req->body_len] = '\0';
	return n;
}

/*
 * Address filtering: every new connection, redirects included, is opened
 * here, after DNS resolution, so the address actually connected to is the
 * one checked; the prereq callback below checks reused connections too.
 */
static curl_socket_t
ik_http_opensocket_cb(void *clientp, curlsocktype purpose,
					  struct curl_sockaddr *address)
{
	IkHttpRequest *req = (IkHttpRequest *) clientp;
	curl_socket_t s;

	if (req->address_filter != NULL &&
		!req->address_filter(&address->addr))
	{
		req->address_refused = true;
		return CURL_SOCKET_BAD;
	}
	/* (no ERROR here: it would unwind through libcurl) */
	if (!AcquireExternalFD())
		return CURL_SOCKET_BAD;
	s = socket(address->family, address->socktype | SOCK_CLOEXEC,
			   address->protocol);
	if (s == CURL_SOCKET_BAD)
		ReleaseExternalFD();
	return s;
}

/* Every socket ik_http_opensocket_cb() opened is closed here. */
static int
ik_http_closesocket_cb(void *clientp, curl_socket_t s)
{
	int			rc = close(s);

	ReleaseExternalFD();
	return rc;
}

/*
 * Called once the connection is there, new or reused, before the request is
 * sent: a reused connection did not go through the opensocket callback.
 */
static int
ik_http_prereq_cb(void *clientp, char *conn_primary_ip, char *conn_local_ip,
				  int conn_primary_port, int conn_local_port)
{
	IkHttpRequest *req = (IkHttpRequest *) clientp;
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, conn_primary_ip,
				  &((struct sockaddr_in *) &ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, conn_primary_ip,
					   &((struct sockaddr_in6 *) &ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;

	if (ss.ss_family == 0 || !req->address_filter((struct sockaddr *) &ss))
	{
		req->address_refused = true;
		return CURL_PREREQFUNC_ABORT;
	}
	return CURL_PREREQFUNC_OK;
}

static void
ik_http_take_off_done_list(IkHttpRequest *req)
{
	if (req->done && !req->in_multi && req->done_node.next != NULL)
	{
		dlist_delete(&req->done_node);
		req->done_node.next = req->done_node.prev = NULL;
	}
}

static void
ik_http_request_cleanup(void *arg)
{
	IkHttpRequest *req = (IkHttpRequest *) arg;

	ik_http_take_off_done_list(req);
	if (req->in_multi)
		curl_multi_remove_handle(ik_multi, req->easy);
	req->in_multi = false;
	if (req->easy)
		curl_easy_cleanup(req->easy);
	req->easy = NULL;
	/* a mime structure must outlive the easy handle that sends it */
	if (req->mime)
		curl_mime_free(req->mime);
	req->mime = NULL;
	if (req->headers)
		curl_slist_free_all(req->headers);
	req->headers = NULL;
}

/*
 * Once per process: libcurl's global initialisation.  Called from _PG_init,
 * so that it happens before any thread could exist.
 */
void
ik_http_init(void)
{
	static bool done = false;

	if (done)
		return;
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	done = true;
}

static void
ik_http_multi_setup(void)
{
	if (ik_multi != NULL)
		return;

	if (ik_epfd < 0)
	{
		if (!AcquireExternalFD())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("could not create epoll descriptor: too many open files"),
					 errhint("Raise max_files_per_process.")));
		ik_epfd = epoll_create1(EPOLL_CLOEXEC);
		if (ik_epfd < 0)
		{
			ReleaseExternalFD();
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create epoll descriptor: %m")));
		}
	}

	if (ik_wait_set == NULL)
	{
		WaitEventSet *set = ik_create_session_wait_event_set(3);

		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		AddWaitEventToSet(set, WL_SOCKET_READABLE, ik_epfd, NULL, NULL);
		ik_wait_set = set;
	}

	ik_multi = curl_multi_init();
	if (ik_multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not create a curl multi handle.")));
	curl_multi_setopt(ik_multi, CURLMOPT_SOCKETFUNCTION, ik_http_socket_cb);
	curl_multi_setopt(ik_multi, CURLMOPT_TIMERFUNCTION, ik_http_timer_cb);
	/* as many connections as fd.c lets external descriptors be open */
	curl_multi_setopt(ik_multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
					  (long) ik_http_max_connections());
	curl_multi_setopt(ik_multi, CURLMOPT_MAXCONNECTS,
					  (long) Min(256, ik_http_max_connections()));
}

/*
 * The connections this process may have open at once: fd.c lets a third of
 * the server's safe descriptors be external ones.  Not curl's among them:
 * PostgreSQL's own (the latch's signalfd or self-pipe, the latch's wait
 * set, a short-lived wait set now and then), ours (the epoll descriptor and
 * the wait set), and a few spare.
 */
#define IK_HTTP_OTHER_EXTERNAL_FDS 8

int
ik_http_max_connections(void)
{
	return Max(1, max_safe_fds / 3 - IK_HTTP_OTHER_EXTERNAL_FDS);
}

/*
 * Create a request for "url" in a new child of CurrentMemoryContext.  At most
 * max_body bytes of the response are kept; a larger response fails the
 * request with body_too_large set.
 */
IkHttpRequest *
ik_http_request_create(const char *url, size_t max_body)
{
	MemoryContext mcxt;
	MemoryContextCallback *cb;
	IkHttpRequest *req;

	mcxt = AllocSetContextCreate(CurrentMemoryContext, "imagekit http request",
								 ALLOCSET_SMALL_SIZES);
	req = MemoryContextAllocZero(mcxt, sizeof(IkHttpRequest));
	req->mcxt = mcxt;
	req->max_body = max_body;
	req->body = MemoryContextAlloc(mcxt, 1);
	req->body[0] = '\0';
	req->body_cap = 1;

	cb = MemoryContextAlloc(mcxt, sizeof(MemoryContextCallback));
	cb->func = ik_http_request_cleanup;
	cb->arg = req;
	MemoryContextRegisterResetCallback(mcxt, cb);

	req->easy = curl_easy_init();
	if (req->easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not create a curl easy handle.")));

	if (curl_easy_setopt(req->easy, CURLOPT_URL, url) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid URL \"%s\"", url)));
	curl_easy_setopt(req->easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(req->easy, CURLOPT_NOSIGNAL, 1L);
	/* every socket counted against the server's descriptors */
	curl_easy_setopt(req->easy, CURLOPT_OPENSOCKETFUNCTION, ik_http_opensocket_cb);
	curl_easy_setopt(req->easy, CURLOPT_OPENSOCKETDATA, req);
	curl_easy_setopt(req->easy, CURLOPT_CLOSESOCKETFUNCTION, ik_http_closesocket_cb);
	curl_easy_setopt(req->easy, CURLOPT_CLOSESOCKETDATA, NULL);
	/* a security setting: refuse to go on without it */
	if (curl_easy_setopt(req->easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
		curl_easy_setopt(req->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK)
		elog(ERROR, "could not restrict libcurl to http and https");
	curl_easy_setopt(req->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(req->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(req->easy, CURLOPT_USERAGENT, "imagekit_ext/1.0");
	curl_easy_setopt(req->easy, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(req->easy, CURLOPT_WRITEFUNCTION, ik_http_write_cb);
	curl_easy_setopt(req->easy, CURLOPT_WRITEDATA, req);
	/* refuse at once a response that announces a larger body */
	curl_easy_setopt(req->easy, CURLOPT_MAXFILESIZE_LARGE,
					 (curl_off_t) max_body);

	return req;
}

void
ik_http_request_free(IkHttpRequest *req)
{
	MemoryContextDelete(req->mcxt);
}

/* The request's multipart body, created on first use. */
curl_mime *
ik_http_request_mime(IkHttpRequest *req)
{
	if (req->mime == NULL)
	{
		req->mime = curl_mime_init(req->easy);
		if (req->mime == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		curl_easy_setopt(req->easy, CURLOPT_MIMEPOST, req->mime);
	}
	return req->mime;
}

void
ik_http_request_add_header(IkHttpRequest *req, const char *header)
{
	struct curl_slist *l = curl_slist_append(req->headers, header);

	if (l == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	req->headers = l;
	curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->headers);
}

/* Check every address connected to with "filter". */
void
ik_http_request_set_address_filter(IkHttpRequest *req, IkAddressFilter filter)
{
	req->address_filter = filter;
	curl_easy_setopt(req->easy, CURLOPT_PREREQFUNCTION, ik_http_prereq_cb);
	curl_easy_setopt(req->easy, CURLOPT_PREREQDATA, req);
}

void
ik_http_request_set_timeouts(IkHttpRequest *req, long total_ms, long connect_ms)
{
	curl_easy_setopt(req->easy, CURLOPT_TIMEOUT_MS, total_ms);
	curl_easy_setopt(req->easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
}

/* HTTP Basic authentication; libcurl keeps its own copies of both strings. */
void
ik_http_request_set_basic_auth(IkHttpRequest *req, const char *user,
							   const char *password)
{
	curl_easy_setopt(req->easy, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
	curl_easy_setopt(req->easy, CURLOPT_USERNAME, user);
	curl_easy_setopt(req->easy, CURLOPT_PASSWORD, password);
}

void
ik_http_start(IkHttpRequest *req)
{
	CURLMcode	rc;

	Assert(!req->in_multi && !req->done);
	ik_http_multi_setup();
	rc = curl_multi_add_handle(ik_multi, req->easy);
	if (rc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start HTTP request: %s",
						curl_multi_strerror(rc))));
	req->in_multi = true;
}

/* Move finished transfers from the multi handle to the done list. */
static void
ik_http_collect(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(ik_multi, &left)) != NULL)
	{
		IkHttpRequest *req;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		req->result = msg->data.result;
		if (req->result == CURLE_FILESIZE_EXCEEDED)
			req->body_too_large = true;
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->status);
		curl_easy_getinfo(req->easy, CURLINFO_TOTAL_TIME, &req->elapsed);
		curl_multi_remove_handle(ik_multi, req->easy);
		req->in_multi = false;
		req->done = true;
		dlist_push_tail(&ik_done, &req->done_node);
	}
}

/*
 * Wait once for network activity, curl's timer, the latch, or max_wait_ms
 * (-1: no limit of our own), and let curl act on what happened.  Returns
 * WL_LATCH_SET, WL_SOCKET_READABLE or WL_TIMEOUT (as WaitLatchOrSocket()
 * would), so a caller can tell whether its latch was set.  Interrupts are
 * processed here.
 */
int
ik_http_pump(long max_wait_ms, uint32 wait_event)
{
	long		wait_ms = max_wait_ms;
	WaitEvent	event;
	int			running;
	int			rc;

	ik_http_multi_setup();

	if (ik_timer_deadline != 0)
	{
		long		secs;
		int			usecs;
		long		timer_ms;

		TimestampDifference(GetCurrentTimestamp(), ik_timer_deadline,
							&secs, &usecs);
		timer_ms = secs * 1000 + (usecs + 999) / 1000;
		if (wait_ms < 0 || timer_ms < wait_ms)
			wait_ms = timer_ms;
	}
	rc = WaitEventSetWait(ik_wait_set, wait_ms, &event, 1, wait_event) == 0 ?
		WL_TIMEOUT : event.events;

	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();

	/*
	 * The wait reports one event at a time, the latch first; look
	 * at the sockets after every wait so that a busy latch cannot starve
	 * them.
	 */
	{
		struct epoll_event evs[IK_HTTP_MAX_EVENTS];
		int			n;

		n = epoll_wait(ik_epfd, evs, IK_HTTP_MAX_EVENTS, 0);
		for (int i = 0; i < n; i++)
		{
			int			action = 0;

			if (evs[i].events & EPOLLIN)
				action |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				action |= CURL_CSELECT_OUT;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				action |= CURL_CSELECT_ERR;
			curl_multi_socket_action(ik_multi, evs[i].data.fd, action, &running);
		}
	}

	if (ik_timer_deadline != 0 &&
		GetCurrentTimestamp() >= ik_timer_deadline)
	{
		ik_timer_deadline = 0;
		curl_multi_socket_action(ik_multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}

	ik_http_collect();
	return rc;
}

/* A completed request, taken off the done list, or NULL. */
IkHttpRequest *
ik_http_next_done(void)
{
	IkHttpRequest *req;

	if (dlist_is_empty(&ik_done))
		return NULL;
	req = dlist_container(IkHttpRequest, done_node, dlist_pop_head_node(&ik_done));
	req->done_node.next = req->done_node.prev = NULL;
	return req;
}

/* Run one request to completion, interruptibly. */
void
ik_http_perform(IkHttpRequest *req, uint32 wait_event)
{
	ik_http_start(req);
	/* curl wants a first kick once a handle is added */
	ik_timer_deadline = GetCurrentTimestamp();
	while (!req->done)
		ik_http_pump(-1, wait_event);
	ik_http_take_off_done_list(req);
}

/*
 * The value of response header "name" of the last response, copied into
 * CurrentMemoryContext, or NULL.
 */
char *
ik_http_header(IkHttpRequest *req, const char *name)
{
	struct curl_header *h;

	if (req->easy == NULL ||
		curl_easy_header(req->easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
		return NULL;
	return pstrdup(h->value);
}

/* What went wrong at the transport level, for messages. */
const char *
ik_http_error_string(IkHttpRequest *req)
{
	if (req->result == CURLE_OK)
		return "no error";
	if (req->body_too_large)
		return "response too large";
	if (req->address_refused)
		return "the address is not allowed";
	if (req->errbuf[0] != '\0')
		return req->errbuf;
	return curl_easy_strerror(req->result);
}
