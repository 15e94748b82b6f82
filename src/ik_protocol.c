/*-------------------------------------------------------------------------
 *
 * ik_protocol.c
 *	  The ImageKit upload protocol: request building, response parsing,
 *	  error classification and retry policy.
 *
 * The upload API takes a multipart/form-data POST with HTTP Basic
 * authentication (user: the private key, empty password) and answers JSON.
 * See ../shared/imagekit-api/ for the contract.  This file knows nothing of
 * SPI or tables; it turns options and bytes into a request for the
 * transport, and a finished request into a result or a classified error.
 *
 * The parsing of what comes back is in ik_response.c, which knows nothing of
 * the backend; this file converts its results to the server encoding.
 *
 * Retry policy, as ImageKit's official SDKs do it and a bit more: connection
 * failures, timeouts, 408, 409, 429 and 5xx are retried with exponential
 * backoff (base * 2^n, capped, minus up to 25% jitter); Retry-After (seconds
 * or an HTTP date) and X-RateLimit-Reset (milliseconds) lengthen the wait;
 * the cap bounds everything.  Other 4xx are never retried.
 *
 * For the workers, the rest of the policy is here too: when a job's retries
 * run out (ik_protocol_job_retry), a 429 that pauses every worker's uploads
 * (ik_protocol_rate_limited), and a refused key.  A 401/403 means that no
 * upload can succeed with this key: the worker then holds its jobs in the
 * queue (no attempt counted, nothing falls back) and claims nothing until
 * imagekit.private_key changes or imagekit.retry_max_delay has passed,
 * when it tries again (ik_protocol_key_refused).  A 401 to an upload sent
 * with an older key says nothing about the current one: each upload notes
 * the generation of the key it was sent with.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <json-c/json.h>
#include <math.h>
#include <time.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "common/pg_prng.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "ik_compat.h"
#include "ik_guc.h"
#include "ik_protocol.h"
#include "ik_response.h"
#include "ik_shmem.h"

#define IK_MAX_MESSAGE_LEN	500

typedef struct IkReadState
{
	const char *data;
	size_t		len;
	size_t		pos;
} IkReadState;

static size_t
ik_read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	IkReadState *st = (IkReadState *) arg;
	size_t		n = Min(size * nitems, st->len - st->pos);

	memcpy(buf, st->data + st->pos, n);
	st->pos += n;
	return n;
}

static int
ik_seek_cb(void *arg, curl_off_t offset, int origin)
{
	IkReadState *st = (IkReadState *) arg;

	if (origin != SEEK_SET || offset < 0 || (size_t) offset > st->len)
		return CURL_SEEKFUNC_FAIL;
	st->pos = (size_t) offset;
	return CURL_SEEKFUNC_OK;
}

static void
ik_add_field(curl_mime *mime, const char *name, const char *value)
{
	curl_mimepart *part = curl_mime_addpart(mime);

	if (part == NULL ||
		curl_mime_name(part, name) != CURLE_OK ||
		curl_mime_data(part, value, CURL_ZERO_TERMINATED) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
}

/* {"pre": "<transformation>"}, JSON-encoded by json-c */
static char *
ik_transformation_json(const char *pre)
{
	json_object *obj = json_object_new_object();
	char	   *volatile result = NULL;

	if (obj == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	PG_TRY();
	{
		json_object_object_add(obj, "pre", json_object_new_string(pre));
		result = pstrdup(json_object_to_json_string_ext(obj,
														JSON_C_TO_STRING_PLAIN));
	}
	PG_FINALLY();
	{
		json_object_put(obj);
	}
	PG_END_TRY();
	return result;
}

/* jsonb's own limit is the stack depth; this is far above any real options */
#define IK_OPTIONS_MAX_DEPTH 1000

/* Parse "json" (UTF-8) as one JSON object with json-c; NULL if it is not. */
static json_object *
ik_options_parse(const char *json)
{
	json_tokener *tok;
	json_object *obj;

	if (json == NULL)
		return NULL;
	/* as deep as jsonb nests (json-c's default stops at 32) */
	tok = json_tokener_new_ex(IK_OPTIONS_MAX_DEPTH);
	if (tok == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	obj = json_tokener_parse_ex(tok, json, (int) strlen(json));
	if (obj != NULL && json_tokener_get_error(tok) != json_tokener_success)
	{
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	if (obj != NULL && !json_object_is_type(obj, json_type_object))
	{
		json_object_put(obj);
		obj = NULL;
	}
	return obj;
}

/* A member as the SDKs send it: JSON text, without escaped slashes. */
static char *
ik_options_json(json_object *member)
{
	return pstrdup(json_object_to_json_string_ext(member,
												  JSON_C_TO_STRING_PLAIN |
												  JSON_C_TO_STRING_NOSLASHESCAPE));
}

/*
 * A table's upload options ("json": imagekit.job_options() made them, in
 * UTF-8) as the official SDKs send them, into "table", allocated in the
 * current memory context: "tags" comma-joined, "transformation" (pre and
 * post), "custom_metadata" and "extensions" as JSON text, "is_private_file"
 * as true or false.  Returns why they cannot be sent ({"error": "..."}, or
 * not a JSON object), or NULL.
 */
char *
ik_protocol_table_options(const char *json, IkTableOptions *table)
{
	json_object *obj = ik_options_parse(json);
	json_object *member;
	char	   *volatile error = NULL;

	memset(table, 0, sizeof(*table));
	if (obj == NULL)
		return pstrdup("the upload options are not a JSON object");
	PG_TRY();
	{
		if (json_object_object_get_ex(obj, "error", &member))
			error = psprintf("not uploaded: %s", json_object_get_string(member));
		if (json_object_object_get_ex(obj, "folder", &member))
			table->folder = pstrdup(json_object_get_string(member));
		if (json_object_object_get_ex(obj, "transformation", &member))
			table->transformation = ik_options_json(member);
		if (json_object_object_get_ex(obj, "tags", &member) &&
			json_object_is_type(member, json_type_array))
		{
			StringInfoData tags;
			size_t		n = json_object_array_length(member);

			initStringInfo(&tags);
			for (size_t i = 0; i < n; i++)
				appendStringInfo(&tags, "%s%s", i > 0 ? "," : "",
								 json_object_get_string(json_object_array_get_idx(member, i)));
			if (n > 0)
				table->tags = tags.data;
		}
		if (json_object_object_get_ex(obj, "custom_metadata", &member))
			table->custom_metadata = ik_options_json(member);
		if (json_object_object_get_ex(obj, "is_private_file", &member))
			table->is_private_file = json_object_get_boolean(member) ? "true" : "false";
		if (json_object_object_get_ex(obj, "extensions", &member))
			table->extensions = ik_options_json(member);
	}
	PG_FINALLY();
	{
		json_object_put(obj);
	}
	PG_END_TRY();
	return error;
}

/*
 * Build an upload request for the bytes data[0..len).  The bytes are sent
 * from where they are, not copied: they must outlive the request.
 */
IkHttpRequest *
ik_upload_request(const IkUploadOptions *opts, const char *data, size_t len,
				  const char *file_name)
{
	const IkTableOptions *table = opts->table;
	IkHttpRequest *req;
	curl_mime  *mime;
	curl_mimepart *part;
	IkReadState *st;

	req = ik_http_request_create(opts->endpoint, IK_MAX_RESPONSE_SIZE);
	ik_http_request_set_timeouts(req, opts->timeout_ms, opts->connect_timeout_ms);
	ik_http_request_set_basic_auth(req, opts->private_key, "");
	/* no "Expect: 100-continue" round trip before the body */
	ik_http_request_add_header(req, "Expect:");
	ik_http_request_add_header(req, "Accept: application/json");

	mime = ik_http_request_mime(req);

	st = MemoryContextAlloc(req->mcxt, sizeof(IkReadState));
	st->data = data;
	st->len = len;
	st->pos = 0;
	part = curl_mime_addpart(mime);
	if (part == NULL ||
		curl_mime_name(part, "file") != CURLE_OK ||
		curl_mime_filename(part, file_name) != CURLE_OK ||
		curl_mime_type(part, "application/octet-stream") != CURLE_OK ||
		curl_mime_data_cb(part, (curl_off_t) len, ik_read_cb, ik_seek_cb,
						  NULL, st) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	ik_add_field(mime, "fileName", file_name);
	ik_add_field(mime, "folder",
				 table && table->folder ? table->folder : opts->folder);
	ik_add_field(mime, "useUniqueFileName",
				 opts->use_unique_file_name ? "true" : "false");
	if (table && table->transformation)
		ik_add_field(mime, "transformation", table->transformation);
	else if (opts->transformation != NULL && opts->transformation[0] != '\0')
		ik_add_field(mime, "transformation",
					 ik_transformation_json(opts->transformation));
	if (table && table->tags)
		ik_add_field(mime, "tags", table->tags);
	if (table && table->custom_metadata)
		ik_add_field(mime, "customMetadata", table->custom_metadata);
	if (table && table->is_private_file)
		ik_add_field(mime, "isPrivateFile", table->is_private_file);
	if (table && table->extensions)
		ik_add_field(mime, "extensions", table->extensions);
	return req;
}

/*
 * Validate UTF-8 text from the wire and convert it to the server encoding,
 * always into a fresh palloc'd string.  NULL if it is not valid UTF-8 (or
 * holds a NUL byte).  Never fails otherwise: a character the server
 * encoding lacks is kept as %XX escapes of its UTF-8 bytes (so a CDN URL
 * stays a valid URL for the same file, and a message stays readable).
 * Outside a transaction the conversion functions cannot be looked up, so
 * the worker, which takes in answers both outside and inside its
 * transactions, escapes every non-ASCII character wherever it is: the same
 * answer gives the same text whenever it came.
 */
char *
ik_utf8_to_server(const char *s, size_t len)
{
	int			enc = GetDatabaseEncoding();
	const unsigned char *src = (const unsigned char *) s;
	StringInfoData buf;
	Oid			proc = InvalidOid;
	int			destlen = MAX_CONVERSION_GROWTH * (int) len + 1;
	char	   *dest = NULL;
	size_t		pos = 0;

	if (!pg_verify_mbstr(PG_UTF8, s, (int) len, true))
		return NULL;
	if (enc == PG_UTF8 || enc == PG_SQL_ASCII)
		return pnstrdup(s, len);

	if (IsTransactionState() && MyBackendType != B_BG_WORKER)
	{
		proc = FindDefaultConversionProc(PG_UTF8, enc);
		dest = palloc(destlen);
	}
	initStringInfo(&buf);
	while (pos < len)
	{
		int			n;

		if (OidIsValid(proc))
		{
			/* the longest convertible run, then one character escaped */
			pos += pg_do_encoding_conversion_buf(proc, PG_UTF8, enc,
												 (unsigned char *) src + pos,
												 (int) (len - pos),
												 (unsigned char *) dest,
												 destlen, true);
			appendStringInfoString(&buf, dest);
			if (pos >= len)
				break;
		}
		n = pg_utf_mblen(src + pos);
		if (!IS_HIGHBIT_SET(src[pos]))
			appendStringInfoChar(&buf, (char) src[pos]);
		else
			for (int i = 0; i < n; i++)
				appendStringInfo(&buf, "%%%02X", src[pos + i]);
		pos += n;
	}
	if (dest)
		pfree(dest);
	return buf.data;
}

/* A core string converted to the server encoding, palloc'd; NULL for NULL. */
static char *
ik_server_string(const char *s)
{
	return (s == NULL) ? NULL : ik_utf8_to_server(s, strlen(s));
}

/* ImageKit's "message" from an error body, shortened, or NULL. */
static char *
ik_error_message(IkHttpRequest *req)
{
	char	   *raw;
	char	   *volatile msg = NULL;

	raw = ik_response_error_message(req->body, req->body_len,
									IK_MAX_MESSAGE_LEN);
	if (raw == NULL)
		return NULL;
	PG_TRY();
	{
		msg = ik_server_string(raw);
		/* clipped in UTF-8; the server encoding may need more bytes */
		if (msg != NULL && strlen(msg) > IK_MAX_MESSAGE_LEN)
			msg[pg_mbcliplen(msg, strlen(msg), IK_MAX_MESSAGE_LEN)] = '\0';
	}
	PG_FINALLY();
	{
		free(raw);
	}
	PG_END_TRY();
	return msg;
}

/* Fill "result" from a 2xx body; false if the body is not a usable answer. */
static bool
ik_parse_success(IkHttpRequest *req, IkUploadResult *result)
{
	IkResponseUpload answer;

	if (!ik_response_parse_upload(req->body, req->body_len, &answer))
		return false;
	PG_TRY();
	{
		result->url = ik_server_string(answer.url);
		result->file_id = ik_server_string(answer.file_id);
		result->file_path = ik_server_string(answer.file_path);
		result->name = ik_server_string(answer.name);
		result->size = answer.size;
		result->width = answer.width;
		result->height = answer.height;
	}
	PG_FINALLY();
	{
		ik_response_upload_free(&answer);
	}
	PG_END_TRY();
	return true;
}

static bool
ik_transport_error_is_permanent(CURLcode rc)
{
	switch (rc)
	{
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
		case CURLE_NOT_BUILT_IN:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_CIPHER:
		case CURLE_TOO_MANY_REDIRECTS:
			return true;
		default:
			return false;
	}
}

/*
 * Classify a finished upload request.  On success fill "result"; otherwise
 * fill "err".  Everything returned is allocated in CurrentMemoryContext, not
 * in the request's, so the request can be freed at once.
 */
IkOutcome
ik_upload_parse(IkHttpRequest *req, IkUploadResult *result, IkUploadError *err)
{
	memset(err, 0, sizeof(IkUploadError));
	err->status = req->status;
	err->request_id = ik_http_header(req, "x-ik-requestId");
	err->retry_hint_ms = -1;

	if (req->body_too_large)
	{
		err->message = psprintf("the response is larger than %d bytes",
								IK_MAX_RESPONSE_SIZE);
		return err->outcome = IK_OUTCOME_BAD_RESPONSE;
	}
	if (req->result != CURLE_OK)
	{
		err->message = pstrdup(ik_http_error_string(req));
		err->outcome = ik_transport_error_is_permanent(req->result) ?
			IK_OUTCOME_TRANSPORT : IK_OUTCOME_RETRYABLE;
		return err->outcome;
	}

	if (req->status >= 200 && req->status < 300)
	{
		memset(result, 0, sizeof(IkUploadResult));
		if (ik_parse_success(req, result))
			return err->outcome = IK_OUTCOME_OK;
		err->message = pstrdup(req->body_len == 0 ?
							   "the response body is empty" :
							   "the response is not a JSON object with a \"url\" string");
		return err->outcome = IK_OUTCOME_BAD_RESPONSE;
	}

	err->message = ik_error_message(req);
	err->from_imagekit = (err->message != NULL);
	if (req->status == 408 || req->status == 409 || req->status == 429 ||
		req->status >= 500)
	{
		char	   *retry_after = ik_http_header(req, "Retry-After");
		char	   *reset = NULL;

		if (req->status == 429)
			reset = ik_http_header(req, "X-RateLimit-Reset");
		err->retry_hint_ms = ik_retry_hint_ms(retry_after, reset);
		err->outcome = IK_OUTCOME_RETRYABLE;
	}
	else if (req->status == 401 || req->status == 403)
		err->outcome = IK_OUTCOME_AUTH;
	else if (req->status >= 400)
		err->outcome = IK_OUTCOME_REJECTED;
	else
	{
		if (err->message == NULL)
			err->message = psprintf("unexpected HTTP status %ld", req->status);
		err->outcome = IK_OUTCOME_BAD_RESPONSE;
	}
	return err->outcome;
}

/*
 * How long the server asked us to wait, in milliseconds, from Retry-After
 * (delay-seconds or an HTTP date) and X-RateLimit-Reset (milliseconds);
 * -1 when neither says anything usable.  Either may be NULL.
 */
long
ik_retry_hint_ms(const char *retry_after, const char *ratelimit_reset)
{
	return ik_response_retry_hint_ms(retry_after, ratelimit_reset, time(NULL));
}

/*
 * The wait before retry number "retry" (0 for the first retry): base * 2^n
 * minus up to 25% jitter, at least the server's hint, at most max_ms.
 */
long
ik_retry_delay_ms(int retry, int base_ms, int max_ms, long hint_ms)
{
	double		delay;

	delay = ldexp((double) base_ms, Min(retry, 30));
	if (delay > max_ms)
		delay = max_ms;
	delay -= delay * 0.25 * pg_prng_double(&pg_global_prng_state);
	if (hint_ms > delay)
		delay = hint_ms;
	if (delay > max_ms)
		delay = max_ms;
	return (long) delay;
}

/* Sleep interruptibly. */
void
ik_sleep_ms(long ms, uint32 wait_event)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	for (;;)
	{
		long		secs;
		int			usecs;
		long		left;

		CHECK_FOR_INTERRUPTS();
		TimestampDifference(GetCurrentTimestamp(), end, &secs, &usecs);
		left = secs * 1000 + usecs / 1000;
		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, wait_event);
		ResetLatch(MyLatch);
	}
}

static void
ik_upload_report(const IkUploadError *err, int attempts, const char *file_name)
{
	StringInfoData detail;
	int			code;
	const char *hint = NULL;

	initStringInfo(&detail);
	if (err->status > 0)
		appendStringInfo(&detail, "HTTP status %ld.", err->status);
	else
		appendStringInfoString(&detail, "No HTTP response was received.");
	if (err->message != NULL)
	{
		size_t		mlen = strlen(err->message);

		appendStringInfo(&detail, " %s: %s%s",
						 err->from_imagekit ? "ImageKit said" : "Error",
						 err->message,
						 (mlen > 0 && err->message[mlen - 1] == '.') ? "" : ".");
	}
	if (err->request_id != NULL)
		appendStringInfo(&detail, " Request ID: %s.", err->request_id);
	appendStringInfo(&detail, " Attempts: %d.", attempts);

	switch (err->outcome)
	{
		case IK_OUTCOME_AUTH:
			code = ERRCODE_IK_AUTH_FAILED;
			hint = "Check imagekit.private_key.";
			break;
		case IK_OUTCOME_REJECTED:
			code = ERRCODE_IK_REJECTED;
			break;
		case IK_OUTCOME_BAD_RESPONSE:
			code = ERRCODE_IK_BAD_RESPONSE;
			hint = "Check that imagekit.upload_endpoint points at the ImageKit upload API.";
			break;
		case IK_OUTCOME_TRANSPORT:
			code = ERRCODE_IK_UNAVAILABLE;
			hint = "Check imagekit.upload_endpoint.";
			break;
		default:
			code = ERRCODE_IK_UNAVAILABLE;
			hint = "Try again later, or raise imagekit.max_retries or imagekit.timeout.";
			break;
	}

	ereport(ERROR,
			(errcode(code),
			 (code == ERRCODE_IK_AUTH_FAILED) ?
			 errmsg("ImageKit refused the credentials for the upload of \"%s\"", file_name) :
			 (code == ERRCODE_IK_REJECTED) ?
			 errmsg("ImageKit rejected the upload of \"%s\"", file_name) :
			 (code == ERRCODE_IK_BAD_RESPONSE) ?
			 errmsg("unusable response from ImageKit for the upload of \"%s\"", file_name) :
			 errmsg("could not upload \"%s\" to ImageKit", file_name),
			 errdetail_internal("%s", detail.data),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * Upload with retries, raising an ERROR after the last attempt or at once on
 * a permanent error.
 */
void
ik_upload_sync(const IkUploadOptions *opts, const char *data, size_t len,
			   const char *file_name, IkUploadResult *result)
{
	for (int attempt = 0;; attempt++)
	{
		IkHttpRequest *req;
		IkUploadError err;
		IkOutcome	outcome;
		long		delay;

		req = ik_upload_request(opts, data, len, file_name);
		ik_http_perform(req, ik_wait_event(IK_WAIT_UPLOAD));
		outcome = ik_upload_parse(req, result, &err);
		ik_http_request_free(req);

		if (outcome == IK_OUTCOME_OK)
			return;
		if (outcome != IK_OUTCOME_RETRYABLE || attempt >= opts->max_retries)
			ik_upload_report(&err, attempt + 1, file_name);

		delay = ik_retry_delay_ms(attempt, opts->retry_base_delay_ms,
								  opts->retry_max_delay_ms, err.retry_hint_ms);
		ereport(DEBUG1,
				(errmsg_internal("imagekit: upload of \"%s\" failed (HTTP status %ld, %s), retry %d in %ld ms",
								 file_name, err.status,
								 err.message ? err.message : "no message",
								 attempt + 1, delay)));
		ik_sleep_ms(delay, ik_wait_event(IK_WAIT_BACKOFF));
	}
}

/*
 * What keeps the settings from uploading, as a message; NULL if nothing.
 * Never quotes the key.
 */
const char *
ik_protocol_config_problem(void)
{
	if (ik_guc_private_key == NULL || ik_guc_private_key[0] == '\0')
		return "imagekit.private_key is not set";
	for (const char *p = ik_guc_private_key; *p; p++)
	{
		if (*p <= ' ' || *p >= 0x7f || *p == ':')
			return "imagekit.private_key contains characters that cannot be sent";
	}
	if (ik_guc_upload_endpoint == NULL || ik_guc_upload_endpoint[0] == '\0')
		return "imagekit.upload_endpoint is not set";
	return NULL;
}

/* Upload options from the settings; refuse a configuration that can't work. */
void
ik_protocol_options(IkUploadOptions *opts)
{
	const char *problem = ik_protocol_config_problem();

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_IK_NOT_CONFIGURED),
				 errmsg_internal("%s", problem),
				 errhint("A superuser sets the imagekit.* server settings in postgresql.conf or with ALTER SYSTEM, then reloads the configuration.")));

	memset(opts, 0, sizeof(*opts));
	opts->endpoint = ik_guc_upload_endpoint;
	opts->private_key = ik_guc_private_key;
	opts->folder = ik_guc_folder;
	opts->use_unique_file_name = ik_guc_use_unique_file_name;
	opts->transformation = ik_guc_transformation;
	opts->timeout_ms = ik_guc_timeout;
	opts->connect_timeout_ms = ik_guc_connect_timeout;
	opts->max_retries = ik_guc_max_retries;
	opts->retry_base_delay_ms = ik_guc_retry_base_delay;
	opts->retry_max_delay_ms = ik_guc_retry_max_delay;
}

/* ---- the workers' retry policy ---- */

static char *ik_refused_key = NULL; /* the key ImageKit refused, or NULL */
static TimestampTz ik_refused_until = 0;
static long ik_refused_status = 0;
static char *ik_seen_key = NULL;
static uint32 ik_key_generation = 0;

/*
 * The generation of the current key, bumped when a reload changed
 * imagekit.private_key.
 */
uint32
ik_protocol_key_generation(void)
{
	const char *key = ik_guc_private_key ? ik_guc_private_key : "";

	if (ik_seen_key == NULL || strcmp(ik_seen_key, key) != 0)
	{
		if (ik_seen_key != NULL)
			pfree(ik_seen_key);
		ik_seen_key = MemoryContextStrdup(TopMemoryContext, key);
		ik_key_generation++;
	}
	return ik_key_generation;
}

/*
 * Is the current key one that ImageKit refused a moment ago?  Then
 * "status" is the HTTP status it refused it with.
 */
bool
ik_protocol_key_refused(long *status)
{
	if (ik_refused_key == NULL)
		return false;
	if (strcmp(ik_refused_key, ik_guc_private_key ? ik_guc_private_key : "") != 0 ||
		GetCurrentTimestamp() >= ik_refused_until)
	{
		/* a new key, or time to try the old one again */
		pfree(ik_refused_key);
		ik_refused_key = NULL;
		return false;
	}
	if (status)
		*status = ik_refused_status;
	return true;
}

/* When the refused key is to be tried again; 0 when none is refused. */
TimestampTz
ik_protocol_key_retry_at(void)
{
	return ik_refused_key != NULL ? ik_refused_until : 0;
}

/* ImageKit refused an upload sent with key generation "generation". */
void
ik_protocol_key_refused_by(const IkUploadError *err, uint32 generation)
{
	if (generation != ik_protocol_key_generation() ||
		ik_protocol_key_refused(NULL))
		return;
	ik_refused_key = MemoryContextStrdup(TopMemoryContext,
										 ik_guc_private_key ? ik_guc_private_key : "");
	ik_refused_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												   ik_guc_retry_max_delay);
	ik_refused_status = err->status;
	ereport(WARNING,
			(errmsg("imagekit: ImageKit refused the private key (HTTP status %ld): uploads are held",
					err->status),
			 errdetail("ImageKit said: %s", err->message ? err->message : "nothing"),
			 errhint("Jobs stay queued.  Set a valid imagekit.private_key and reload; the worker tries the current key again in %d ms.",
					 ik_guc_retry_max_delay)));
}

/*
 * A job failed its attempt number attempts + 1 in a way worth retrying:
 * the delay before the next one, or -1 when its retries ran out.
 */
long
ik_protocol_job_retry(int attempts, long hint_ms)
{
	if (attempts + 1 > ik_guc_max_retries)
		return -1;
	return ik_retry_delay_ms(attempts, ik_guc_retry_base_delay,
							 ik_guc_retry_max_delay, hint_ms);
}

/*
 * A job claimed "attempts" times before without a result killed its
 * worker each time (a crash, a kill, out of memory): has it used up its
 * retries?  Then it falls back without another try.
 */
bool
ik_protocol_job_gave_up(int attempts)
{
	return attempts > ik_guc_max_retries;
}

/* A 429: pause every worker's uploads until ImageKit's reset time. */
void
ik_protocol_rate_limited(const IkUploadError *err)
{
	long		pause = err->retry_hint_ms > 0 ? err->retry_hint_ms :
		ik_guc_retry_base_delay;

	pause = Min(pause, ik_guc_retry_max_delay);
	ik_shmem_pause_until(TimestampTzPlusMilliseconds(GetCurrentTimestamp(), pause));
}
