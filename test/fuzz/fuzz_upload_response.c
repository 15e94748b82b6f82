/*-------------------------------------------------------------------------
 *
 * fuzz_upload_response.c
 *	  libFuzzer harness for the parsing of ImageKit's response bodies:
 *	  ik_response_parse_upload and ik_response_error_message.
 *
 * The input is a response body, as many bytes as the fuzzer likes, without a
 * terminating NUL (the parsers take a length, as the transport gives one).
 * Besides the sanitizers' checks, it asserts what the callers rely on and
 * aborts when it does not hold: every returned string is NUL-terminated
 * valid UTF-8; a successful parse has a non-empty url and sizes of -1 or
 * more; a failed one leaves nothing to free; the message clipped to maxlen
 * bytes is the longest prefix of the whole message that fits without
 * splitting a character.  Built and run by test/fuzz/run.sh.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "mb/pg_wchar.h"

#include "ik_response.h"

/* what ik_protocol.c asks for */
#define IK_MAX_MESSAGE_LEN	500

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
ik_fuzz_fail(const char *what)
{
	fprintf(stderr, "invariant violated: %s\n", what);
	abort();
}

/* NULL, or a NUL-terminated string of valid UTF-8. */
static void
ik_fuzz_check_string(const char *s, const char *what)
{
	size_t		len;

	if (s == NULL)
		return;
	len = strlen(s);
	if (len > INT_MAX ||
		pg_encoding_verifymbstr(PG_UTF8, s, (int) len) != (int) len)
		ik_fuzz_fail(what);
}

static void
ik_fuzz_upload(const char *body, size_t len)
{
	IkResponseUpload answer;

	if (ik_response_parse_upload(body, len, &answer))
	{
		if (answer.url == NULL || answer.url[0] == '\0')
			ik_fuzz_fail("success without a url");
		ik_fuzz_check_string(answer.url, "url is not valid UTF-8");
		ik_fuzz_check_string(answer.file_id, "fileId is not valid UTF-8");
		ik_fuzz_check_string(answer.file_path, "filePath is not valid UTF-8");
		ik_fuzz_check_string(answer.name, "name is not valid UTF-8");
		if (answer.size < -1 || answer.width < -1 || answer.height < -1)
			ik_fuzz_fail("a size below -1");
	}
	else if (answer.url != NULL || answer.file_id != NULL ||
			 answer.file_path != NULL || answer.name != NULL)
		ik_fuzz_fail("strings left behind by a failed parse");
	ik_response_upload_free(&answer);
	/* freeing twice is allowed */
	ik_response_upload_free(&answer);
}

/* The message clipped to maxlen, checked against the whole message. */
static void
ik_fuzz_clipped(const char *body, size_t len, const char *whole,
				size_t maxlen)
{
	char	   *msg = ik_response_error_message(body, len, maxlen);
	size_t		mlen;

	if ((msg == NULL) != (whole == NULL))
		ik_fuzz_fail("clipping changed whether there is a message");
	if (msg == NULL)
		return;
	ik_fuzz_check_string(msg, "clipped message is not valid UTF-8");
	mlen = strlen(msg);
	if (mlen > maxlen)
		ik_fuzz_fail("clipped message longer than maxlen");
	if (strncmp(msg, whole, mlen) != 0)
		ik_fuzz_fail("clipped message is not a prefix of the message");
	/* the next character, if any, would not have fitted */
	if (whole[mlen] != '\0' &&
		mlen + pg_utf_mblen((const unsigned char *) whole + mlen) <= maxlen)
		ik_fuzz_fail("clipped message is shorter than it needs to be");
	free(msg);
}

static void
ik_fuzz_error_message(const char *body, size_t len)
{
	char	   *whole = ik_response_error_message(body, len, SIZE_MAX);

	ik_fuzz_check_string(whole, "message is not valid UTF-8");
	ik_fuzz_clipped(body, len, whole, IK_MAX_MESSAGE_LEN);
	/* a small limit, so that short inputs are clipped too */
	ik_fuzz_clipped(body, len, whole, len % 8);
	free(whole);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a copy of exactly size bytes, so ASan sees any read past the end */
	char	   *body = malloc(size ? size : 1);

	if (body == NULL)
		return 0;
	memcpy(body, data, size);
	ik_fuzz_upload(body, size);
	ik_fuzz_error_message(body, size);
	free(body);
	return 0;
}
