/*-------------------------------------------------------------------------
 *
 * ik_url.c
 *	  Delivery URLs as ImageKit's official SDKs build them: an endpoint and
 *	  a path (or an absolute URL), a transformation in the path or in the
 *	  query, and a signature.
 *
 * The model is @imagekit/nodejs 7.11.0, helper.buildSrc() and
 * getSignature() (docs/research/issue12-url.md): the SDK assembles the URL
 * with the WHATWG URL parser, so the encoding here is WHATWG's: the path
 * percent-encode set for the path (with "?" and "#" of a relative path
 * encoded too, as the pathname setter does), the special-query set for the
 * query, the fragment set for the fragment; TAB, LF and CR are removed,
 * "\" is "/", dot segments are resolved, uppercase hex.  The
 * transformation string goes in as it is, in either position.
 *
 * The signature is the lowercase hex HMAC-SHA1, keyed with the private
 * key, of the final URL without its first occurrence of the endpoint (with
 * a trailing "/"), followed by the expiry time in decimal (9999999999 when
 * the URL does not expire); it is appended as ik-t=<expiry>&ik-s=<sig>, or
 * ik-s=<sig> alone.  PostgreSQL's own HMAC (common/hmac.h) computes it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/hmac.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#include "ik_url.h"

#define IK_URL_NO_EXPIRY INT64CONST(9999999999)
#define IK_SHA1_LEN 20
/* where the transformation goes, replaced once the URL is encoded */
#define IK_URL_PLACEHOLDER "PLEASEREPLACEJUSTBEFORESIGN"

typedef enum IkUrlSet
{
	IK_SET_PATH,				/* a path given as a path: "?" and "#" too */
	IK_SET_URL_PATH,			/* the path of an absolute URL */
	IK_SET_QUERY,				/* special-query set */
	IK_SET_FRAGMENT
} IkUrlSet;

static bool
ik_url_encodes(unsigned char c, IkUrlSet set)
{
	if (c < 0x20 || c >= 0x7f || c == ' ' || c == '"' || c == '<' || c == '>')
		return true;
	switch (set)
	{
		case IK_SET_PATH:
			return c == '?' || c == '#' || c == '`' || c == '{' || c == '}';
		case IK_SET_URL_PATH:
			return c == '`' || c == '{' || c == '}';
		case IK_SET_QUERY:
			return c == '\'';
		case IK_SET_FRAGMENT:
			return c == '`';
	}
	return false;
}

/* Append s[0..len) to buf, percent-encoding the bytes of "set". */
static void
ik_url_encode(StringInfo buf, const char *s, size_t len, IkUrlSet set)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '\t' || c == '\n' || c == '\r')
			continue;
		if (ik_url_encodes(c, set))
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[c >> 4]);
			appendStringInfoChar(buf, hex[c & 15]);
		}
		else
			appendStringInfoChar(buf, (char) c);
	}
}

/* Is the segment s[0..len) "." (or "%2e"), or ".." (in any spelling)? */
static int
ik_url_dots(const char *s, size_t len)
{
	int			dots = 0;

	for (size_t i = 0; i < len;)
	{
		if (s[i] == '.')
			i++;
		else if (i + 3 <= len && s[i] == '%' && s[i + 1] == '2' &&
				 (s[i + 2] == 'e' || s[i + 2] == 'E'))
			i += 3;
		else
			return 0;
		if (++dots > 2)
			return 0;
	}
	return dots;
}

/*
 * Append the path "path" (starting with "/"), as the WHATWG parser leaves
 * it: "\" is "/", dot segments resolved, the bytes of "set" encoded.
 */
static void
ik_url_append_path(StringInfo buf, const char *path, IkUrlSet set)
{
	char	   *p = pstrdup(path);
	List	   *segs = NIL;
	int			n;
	char	   *seg;
	bool		trailing = false;
	ListCell   *lc;

	/* without TAB, LF and CR, which WHATWG removes before anything */
	n = 0;
	for (char *q = p; *q; q++)
	{
		if (*q != '\t' && *q != '\n' && *q != '\r')
			p[n++] = (*q == '\\') ? '/' : *q;
	}
	p[n] = '\0';

	Assert(p[0] == '/');
	seg = p + 1;
	for (;;)
	{
		char	   *end = strchr(seg, '/');
		size_t		len = end ? (size_t) (end - seg) : strlen(seg);
		int			dots = ik_url_dots(seg, len);

		trailing = false;
		if (dots == 2)
		{
			if (segs != NIL)
				segs = list_delete_last(segs);
			trailing = true;
		}
		else if (dots == 1)
			trailing = true;
		else
			segs = lappend(segs, pnstrdup(seg, len));
		if (end == NULL)
			break;
		seg = end + 1;
	}

	if (segs == NIL)
		appendStringInfoChar(buf, '/');
	foreach(lc, segs)
	{
		const char *s = lfirst(lc);

		appendStringInfoChar(buf, '/');
		ik_url_encode(buf, s, strlen(s), set);
	}
	if (trailing && segs != NIL)
		appendStringInfoChar(buf, '/');
}

typedef struct IkUrlParts
{
	char	   *scheme;			/* "http" or "https" */
	char	   *host;			/* lowercase */
	char	   *port;			/* NULL: the scheme's default */
	char	   *path;			/* starts with "/" */
	char	   *query;			/* NULL: none */
	char	   *fragment;		/* NULL: none */
} IkUrlParts;

/*
 * Split an http(s) URL as the WHATWG parser does (ASCII hosts only, no
 * user name or password); false when it cannot be.
 */
static bool
ik_url_split(const char *url, IkUrlParts *parts)
{
	const char *start = url;
	const char *end = url + strlen(url);
	const char *auth;
	const char *p;
	const char *colon;

	/* leading and trailing C0 controls and spaces are not part of it */
	while (start < end && (unsigned char) *start <= ' ')
		start++;
	while (end > start && (unsigned char) end[-1] <= ' ')
		end--;
	if (strncmp(start, "https://", 8) == 0)
		parts->scheme = "https";
	else if (strncmp(start, "http://", 7) == 0)
		parts->scheme = "http";
	else
		return false;
	auth = start + strlen(parts->scheme) + 3;
	for (p = auth; p < end && !strchr("/?#\\", *p); p++)
	{
		if (*p == '@' || (unsigned char) *p >= 0x7f || (unsigned char) *p <= ' ')
			return false;
	}
	colon = memchr(auth, ':', p - auth);
	if (p == auth || colon == auth)
		return false;
	parts->host = pnstrdup(auth, (colon ? colon : p) - auth);
	for (char *h = parts->host; *h; h++)
		*h = pg_ascii_tolower((unsigned char) *h);
	parts->port = NULL;
	if (colon && colon + 1 < p)
	{
		parts->port = pnstrdup(colon + 1, p - colon - 1);
		if (strspn(parts->port, "0123456789") != strlen(parts->port))
			return false;
		while (parts->port[0] == '0' && parts->port[1] != '\0')
			parts->port++;
		if (strcmp(parts->port, strcmp(parts->scheme, "https") == 0 ? "443" : "80") == 0)
			parts->port = NULL;
	}

	/* the path, the query, the fragment */
	{
		const char *q = p;
		const char *hash;
		const char *qmark;

		while (q < end && *q != '?' && *q != '#')
			q++;
		parts->path = (q == p) ? pstrdup("/") : pnstrdup(p, q - p);
		hash = memchr(q, '#', end - q);
		qmark = (q < end && *q == '?') ? q : NULL;
		parts->query = qmark ? pnstrdup(qmark + 1, (hash ? hash : end) - qmark - 1) : NULL;
		parts->fragment = hash ? pnstrdup(hash + 1, end - hash - 1) : NULL;
	}
	return true;
}

/* Does a query have a parameter (a character other than "&")? */
static bool
ik_url_has_params(const char *query)
{
	return query != NULL && strspn(query, "&") != strlen(query);
}

/* The query of an assembled URL: after the first "?", before any "#". */
static bool
ik_url_final_has_params(const char *url)
{
	const char *q = strchr(url, '?');
	const char *h = strchr(url, '#');
	char	   *query;

	if (q == NULL || (h != NULL && h < q))
		return false;
	query = h ? pnstrdup(q + 1, h - q - 1) : pstrdup(q + 1);
	return ik_url_has_params(query);
}

/* Lowercase hex HMAC-SHA1 of "data" keyed with "key", into hex[41]. */
static void
ik_url_hmac_sha1(const char *key, const char *data, char *hex)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA1);
	uint8		digest[IK_SHA1_LEN];

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, (const uint8 *) key, strlen(key)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) data, strlen(data)) < 0 ||
		pg_hmac_final(ctx, digest, sizeof(digest)) < 0)
	{
		const char *why = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		elog(ERROR, "could not compute HMAC-SHA1: %s", why);
	}
	pg_hmac_free(ctx);
	for (int i = 0; i < IK_SHA1_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

/* The URL without the first occurrence of "cut". */
static char *
ik_url_cut(const char *url, const char *cut)
{
	const char *at = strstr(url, cut);
	StringInfoData buf;

	if (at == NULL)
		return pstrdup(url);
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, url, at - url);
	appendStringInfoString(&buf, at + strlen(cut));
	return buf.data;
}

/*
 * The delivery URL of "opts", palloc'd.  The caller has validated the
 * options (ik_sql.c): an https endpoint, a transformation of ImageKit's
 * characters, a private key when signing.
 */
char *
ik_url_build(const IkUrlOptions *opts)
{
	StringInfoData buf;
	const char *tr = opts->transformation;
	bool		has_tr = tr != NULL && tr[0] != '\0';
	bool		absolute = strncmp(opts->src, "http://", 7) == 0 ||
		strncmp(opts->src, "https://", 8) == 0;
	bool		in_query = absolute || !opts->path_position;
	IkUrlParts	parts;
	const char *query;
	char	   *url;
	int64		expiry;

	if (!ik_url_split(absolute ? opts->src : opts->endpoint, &parts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a URL that ImageKit serves",
						absolute ? opts->src : opts->endpoint),
				 errdetail("An http or https URL with a host name of ASCII characters and no user name is expected.")));

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s://%s", parts.scheme, parts.host);
	if (parts.port)
		appendStringInfo(&buf, ":%s", parts.port);
	if (absolute)
		ik_url_append_path(&buf, parts.path, IK_SET_URL_PATH);
	else
	{
		/* endpoint path / [tr:<transformation>/] src, runs of "/" as one */
		StringInfoData joined;
		int			n = 0;

		initStringInfo(&joined);
		appendStringInfo(&joined, "%s/%s%s", parts.path,
						 has_tr && !in_query ? "tr:" IK_URL_PLACEHOLDER "/" : "",
						 opts->src);
		for (int i = 0; i < joined.len; i++)
		{
			if (joined.data[i] == '/' && n > 0 && joined.data[n - 1] == '/')
				continue;
			joined.data[n++] = joined.data[i];
		}
		joined.data[n] = '\0';
		ik_url_append_path(&buf, joined.data, IK_SET_PATH);
	}
	query = parts.query;
	if (query != NULL)
	{
		appendStringInfoChar(&buf, '?');
		ik_url_encode(&buf, query, strlen(query), IK_SET_QUERY);
	}
	if (parts.fragment != NULL)
	{
		appendStringInfoChar(&buf, '#');
		ik_url_encode(&buf, parts.fragment, strlen(parts.fragment), IK_SET_FRAGMENT);
	}
	if (has_tr && in_query)
		appendStringInfo(&buf, "%ctr=%s", ik_url_has_params(query) ? '&' : '?', tr);
	url = buf.data;
	if (has_tr && !in_query)
	{
		/* the transformation goes in as it is */
		char	   *at = strstr(url, IK_URL_PLACEHOLDER);

		if (at != NULL)
		{
			StringInfoData out;

			initStringInfo(&out);
			appendBinaryStringInfo(&out, url, at - url);
			appendStringInfoString(&out, tr);
			appendStringInfoString(&out, at + strlen(IK_URL_PLACEHOLDER));
			url = out.data;
		}
	}

	if (!opts->sign && opts->expires_in <= 0)
		return url;

	expiry = opts->expires_in > 0 ? (int64) opts->now + opts->expires_in : IK_URL_NO_EXPIRY;
	{
		size_t		elen = strlen(opts->endpoint);
		char	   *cut = (elen > 0 && opts->endpoint[elen - 1] == '/') ?
			pstrdup(opts->endpoint) : psprintf("%s/", opts->endpoint);
		char	   *to_sign = psprintf("%s" INT64_FORMAT, ik_url_cut(url, cut), expiry);
		char		sig[2 * IK_SHA1_LEN + 1];
		char		sep = ik_url_final_has_params(url) ? '&' : '?';

		ik_url_hmac_sha1(opts->private_key, to_sign, sig);
		if (expiry != IK_URL_NO_EXPIRY)
			return psprintf("%s%cik-t=" INT64_FORMAT "&ik-s=%s", url, sep, expiry, sig);
		return psprintf("%s%cik-s=%s", url, sep, sig);
	}
}
