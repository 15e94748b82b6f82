/*-------------------------------------------------------------------------
 *
 * ik_response.c
 *	  Parsing of ImageKit's answers: the upload response body, the error
 *	  message, and the Retry-After / X-RateLimit-Reset headers.
 *
 * This is the part of the protocol that reads bytes from the network, kept
 * apart so that it can be fuzzed: it compiles in the backend and, with
 * FRONTEND defined, in a standalone program linked with libpgcommon (see
 * test/fuzz/).  Hence its rules: no palloc, no ereport, no PG_TRY.  Results
 * are malloc'd and freed by the caller (ik_response_upload_free, free);
 * json-c objects never outlive the function that parsed them, whatever the
 * path out of it.  Allocation failure reads as an unusable answer.
 *
 * Text from the wire must be valid UTF-8 without NUL bytes; anything else is
 * treated as absent.  Conversion to the server encoding is the caller's
 * business (ik_protocol.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"
#endif

#include <curl/curl.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>

#include "mb/pg_wchar.h"

#include "ik_response.h"

/* ImageKit's answers are flat; deeper nesting is not an answer */
#define IK_JSON_MAX_DEPTH	16

/* Parse a whole body as one JSON object, or return NULL. */
static json_object *
ik_response_parse_object(const char *body, size_t len)
{
	json_tokener *tok;
	json_object *obj;
	size_t		end;

	if (len == 0 || len > INT_MAX)
		return NULL;
	tok = json_tokener_new_ex(IK_JSON_MAX_DEPTH);
	if (tok == NULL)
		return NULL;
	obj = json_tokener_parse_ex(tok, body, (int) len);
	end = json_tokener_get_parse_end(tok);
	if (obj != NULL && json_tokener_get_error(tok) != json_tokener_success)
	{
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	if (obj == NULL)
		return NULL;

	/* nothing but white space may follow */
	while (end < len && (body[end] == ' ' || body[end] == '\t' ||
						 body[end] == '\r' || body[end] == '\n'))
		end++;
	if (end != len || !json_object_is_type(obj, json_type_object))
	{
		json_object_put(obj);
		return NULL;
	}
	return obj;
}

/*
 * A malloc'd copy of a string member, or NULL if it is absent, not a string,
 * not valid UTF-8 or holds a NUL byte.
 */
static char *
ik_response_string(json_object *obj, const char *key)
{
	json_object *v;
	const char *s;
	int			len;
	char	   *copy;

	if (!json_object_object_get_ex(obj, key, &v) ||
		!json_object_is_type(v, json_type_string))
		return NULL;
	s = json_object_get_string(v);
	len = json_object_get_string_len(v);
	if (s == NULL || len < 0 || pg_encoding_verifymbstr(PG_UTF8, s, len) != len)
		return NULL;
	copy = malloc((size_t) len + 1);
	if (copy == NULL)
		return NULL;
	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}

/* A non-negative number member no larger than max, or -1. */
static int64
ik_response_int(json_object *obj, const char *key, int64 max)
{
	json_object *v;
	int64		n;

	if (!json_object_object_get_ex(obj, key, &v))
		return -1;
	if (json_object_is_type(v, json_type_double))
	{
		double		d = json_object_get_double(v);

		/*
		 * json-c accepts NaN and Infinity.  (double) PG_INT64_MAX rounds up
		 * to 2^63, which does not fit in an int64: reject it explicitly.
		 */
		if (!isfinite(d) || d < 0 || d > (double) max ||
			d >= -(double) PG_INT64_MIN)
			return -1;
		return (int64) d;
	}
	if (!json_object_is_type(v, json_type_int))
		return -1;
	n = json_object_get_int64(v);
	return (n < 0 || n > max) ? -1 : n;
}

/*
 * The length of the longest prefix of the valid UTF-8 string s[0..len) that
 * has at most maxlen bytes and does not split a character.
 */
static size_t
ik_response_utf8_cliplen(const char *s, size_t len, size_t maxlen)
{
	if (len <= maxlen)
		return len;
	/* back up over the continuation bytes of the character cut in two */
	while (maxlen > 0 && ((unsigned char) s[maxlen] & 0xC0) == 0x80)
		maxlen--;
	return maxlen;
}

/*
 * Parse a 2xx body.  True if it is one JSON object (nothing but white space
 * after it) with a non-empty "url" string; then "out" holds the fields, to be
 * released with ik_response_upload_free.  On false there is nothing to free.
 */
bool
ik_response_parse_upload(const char *body, size_t len, IkResponseUpload *out)
{
	json_object *obj;
	bool		ok = false;

	memset(out, 0, sizeof(IkResponseUpload));
	out->size = -1;
	out->width = -1;
	out->height = -1;

	obj = ik_response_parse_object(body, len);
	if (obj == NULL)
		return false;
	out->url = ik_response_string(obj, "url");
	if (out->url != NULL && out->url[0] != '\0')
	{
		out->file_id = ik_response_string(obj, "fileId");
		out->file_path = ik_response_string(obj, "filePath");
		out->name = ik_response_string(obj, "name");
		out->size = ik_response_int(obj, "size", PG_INT64_MAX);
		out->width = (int32) ik_response_int(obj, "width", PG_INT32_MAX);
		out->height = (int32) ik_response_int(obj, "height", PG_INT32_MAX);
		ok = true;
	}
	json_object_put(obj);
	if (!ok)
		ik_response_upload_free(out);
	return ok;
}

/* Release the strings of an upload answer; safe to call twice. */
void
ik_response_upload_free(IkResponseUpload *upload)
{
	free(upload->url);
	free(upload->file_id);
	free(upload->file_path);
	free(upload->name);
	upload->url = NULL;
	upload->file_id = NULL;
	upload->file_path = NULL;
	upload->name = NULL;
}

/*
 * ImageKit's "message" from an error body ({"message": "...", "help":
 * "..."}), cut to at most maxlen bytes at a character boundary; malloc'd, or
 * NULL when the body has no usable message.
 */
char *
ik_response_error_message(const char *body, size_t len, size_t maxlen)
{
	json_object *obj = ik_response_parse_object(body, len);
	char	   *msg;

	if (obj == NULL)
		return NULL;
	msg = ik_response_string(obj, "message");
	json_object_put(obj);
	if (msg != NULL)
		msg[ik_response_utf8_cliplen(msg, strlen(msg), maxlen)] = '\0';
	return msg;
}

/*
 * A non-negative decimal integer, possibly with white space around; or -1.
 * LONG_MAX when it is larger.
 */
static long
ik_response_parse_count(const char *s)
{
	long		n = 0;
	bool		digits = false;

	while (*s == ' ' || *s == '\t')
		s++;
	for (; *s >= '0' && *s <= '9'; s++)
	{
		/* too large: saturate, but still check what follows */
		n = (n > (LONG_MAX - 9) / 10) ? LONG_MAX : n * 10 + (*s - '0');
		digits = true;
	}
	while (*s == ' ' || *s == '\t')
		s++;
	return (digits && *s == '\0') ? n : -1;
}

/*
 * How long the server asked us to wait, in milliseconds, from Retry-After
 * (delay-seconds or an HTTP date, compared with "now", a time() value) and
 * X-RateLimit-Reset (milliseconds); -1 when neither says anything usable.
 * Either may be NULL.  A value too large for a long is LONG_MAX.
 */
long
ik_response_retry_hint_ms(const char *retry_after, const char *ratelimit_reset,
						  time_t now)
{
	long		hint = -1;

	if (retry_after != NULL)
	{
		long		secs = ik_response_parse_count(retry_after);

		if (secs >= 0)
			hint = (secs > LONG_MAX / 1000) ? LONG_MAX : secs * 1000;
		else
		{
			time_t		when = curl_getdate(retry_after, NULL);

			/* curl_getdate takes years far beyond 9999 */
			if (when == (time_t) -1)
				hint = -1;
			else if (when <= now)
				hint = 0;
			else if (when - now > LONG_MAX / 1000)
				hint = LONG_MAX;
			else
				hint = (long) (when - now) * 1000;
		}
	}
	if (ratelimit_reset != NULL)
	{
		long		ms = ik_response_parse_count(ratelimit_reset);

		if (ms > hint)
			hint = ms;
	}
	return hint;
}
