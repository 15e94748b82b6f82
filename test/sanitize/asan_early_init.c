/*-------------------------------------------------------------------------
 *
 * asan_early_init.c
 *	  Preloaded after the ASan runtime when the suites run with the
 *	  extension built with SANITIZE=1 (bash test/run-tests.sh --sanitize).
 *
 * The server is not instrumented, so the ASan runtime is preloaded into it,
 * and the runtime initialises itself lazily, on the first malloc() it sees.
 * In the server that first malloc() happens inside bindtextdomain(), called
 * by libgpg-error's constructor, while glibc holds its gettext lock; ASan's
 * initialisation calls dlerror(), which takes that lock again and corrupts
 * it: the server then hangs at start in its own bindtextdomain().  In
 * initdb and psql the same happens inside setlocale() and, from
 * libp11-kit's constructor, newlocale().  These wrappers make the first
 * malloc() happen before the lock is taken.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <locale.h>
#include <stdlib.h>

/* let ASan initialise now, before the caller's function takes its lock */
static void
ik_asan_touch(void)
{
	void	   *volatile p = malloc(1);	/* volatile: not optimised away */

	free(p);
}

extern char *bindtextdomain(const char *domainname, const char *dirname);
extern char *setlocale(int category, const char *locale);
extern locale_t newlocale(int category_mask, const char *locale, locale_t base);

char *
bindtextdomain(const char *domainname, const char *dirname)
{
	static char *(*real) (const char *, const char *) = NULL;

	ik_asan_touch();
	if (real == NULL)
		real = (char *(*) (const char *, const char *)) dlsym(RTLD_NEXT, "bindtextdomain");
	return real(domainname, dirname);
}

char *
setlocale(int category, const char *locale)
{
	static char *(*real) (int, const char *) = NULL;

	ik_asan_touch();
	if (real == NULL)
		real = (char *(*) (int, const char *)) dlsym(RTLD_NEXT, "setlocale");
	return real(category, locale);
}

locale_t
newlocale(int category_mask, const char *locale, locale_t base)
{
	static locale_t (*real) (int, const char *, locale_t) = NULL;

	ik_asan_touch();
	if (real == NULL)
		real = (locale_t (*) (int, const char *, locale_t)) dlsym(RTLD_NEXT, "newlocale");
	return real(category_mask, locale, base);
}
