/*-------------------------------------------------------------------------
 *
 * fuzz_retry_headers.c
 *	  libFuzzer harness for the parsing of the Retry-After and
 *	  X-RateLimit-Reset headers: ik_response_retry_hint_ms.
 *
 * The input holds two header values separated by the first newline: the
 * Retry-After value before it, X-RateLimit-Reset after it (NUL bytes end a
 * value early, as they would in a C string from the transport).  Without a
 * newline the whole input is tried as either header with the other absent.
 * "now" is fixed, so a crash reproduces.  Asserted: the hint is -1 or a
 * non-negative number of milliseconds, the same on a second call, never less
 * than what either header alone gives, and -1 only when both alone give -1.
 * Built and run by test/fuzz/run.sh.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ik_response.h"

/* Wed, 21 Oct 2015 07:28:00 GMT, the date in RFC 9110's example */
#define IK_FUZZ_NOW		((time_t) 1445412480)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
ik_fuzz_fail(const char *what)
{
	fprintf(stderr, "invariant violated: %s\n", what);
	abort();
}

static long
ik_fuzz_hint(const char *retry_after, const char *reset)
{
	long		hint = ik_response_retry_hint_ms(retry_after, reset, IK_FUZZ_NOW);

	if (hint < -1)
		ik_fuzz_fail("hint below -1");
	if (hint != ik_response_retry_hint_ms(retry_after, reset, IK_FUZZ_NOW))
		ik_fuzz_fail("hint differs between two calls");
	return hint;
}

/* A NUL-terminated malloc'd copy of data[0..len). */
static char *
ik_fuzz_strndup(const uint8_t *data, size_t len)
{
	char	   *s = malloc(len + 1);

	if (s == NULL)
		abort();
	memcpy(s, data, len);
	s[len] = '\0';
	return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);

	if (nl != NULL)
	{
		char	   *retry_after = ik_fuzz_strndup(data, nl - data);
		char	   *reset = ik_fuzz_strndup(nl + 1, size - (nl - data) - 1);
		long		both = ik_fuzz_hint(retry_after, reset);
		long		ra = ik_fuzz_hint(retry_after, NULL);
		long		rs = ik_fuzz_hint(NULL, reset);

		if (both < ra || both < rs)
			ik_fuzz_fail("hint less than one header alone gives");
		if (both != Max(ra, rs))
			ik_fuzz_fail("hint is not the larger of the two");
		free(retry_after);
		free(reset);
	}
	else
	{
		char	   *value = ik_fuzz_strndup(data, size);

		(void) ik_fuzz_hint(value, NULL);
		(void) ik_fuzz_hint(NULL, value);
		free(value);
	}
	if (ik_fuzz_hint(NULL, NULL) != -1)
		ik_fuzz_fail("a hint without headers");
	return 0;
}
