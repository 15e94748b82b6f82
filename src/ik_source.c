/*-------------------------------------------------------------------------
 *
 * ik_source.c
 *	  Downloading source images: the request, and judging the answer.
 *
 * A source is fetched with GET over http or https only (redirects too, at
 * most IK_SOURCE_MAX_REDIRECTS), with the size capped while reading, a
 * whole-transfer timeout and a low-speed cut-off.  An answer is usable when
 * it is a 2xx whose bytes are an image (sniffed from the content, not
 * trusted from Content-Type): an HTML error page served with 200 is a
 * permanent failure, as are 4xx answers and oversized bodies; connection
 * trouble, 408, 429 and 5xx are worth retrying.
 *
 * Rows are written by applications, so a source URL must not reach into
 * the server's own network: every address actually connected to (after DNS
 * resolution, on every redirect hop) must be public unless
 * imagekit.allow_private_sources is on.  A refused address is permanent.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netinet/in.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "port/pg_bswap.h"

#include "ik_guc.h"
#include "ik_protocol.h"
#include "ik_source.h"

/* a source slower than this many bytes per second for 10 s is cut off */
#define IK_SOURCE_LOW_SPEED_LIMIT	1024L
#define IK_SOURCE_LOW_SPEED_TIME	10L

/* IPv4 address in host order: is it in a range not reachable publicly? */
static bool
ik_ipv4_is_private(uint32 a)
{
	return (a >> 24) == 0 ||	/* 0.0.0.0/8 "this network" */
		(a >> 24) == 10 ||		/* 10.0.0.0/8 */
		(a >> 22) == (100 << 2 | 1) ||	/* 100.64.0.0/10 shared */
		(a >> 24) == 127 ||		/* 127.0.0.0/8 loopback */
		(a >> 16) == (169 << 8 | 254) ||	/* 169.254.0.0/16 link-local */
		(a >> 20) == (172 << 4 | 1) ||	/* 172.16.0.0/12 */
		(a >> 8) == (192u << 16 | 0 << 8 | 0) ||	/* 192.0.0.0/24 */
		(a >> 16) == (192u << 8 | 168) ||	/* 192.168.0.0/16 */
		(a >> 17) == (198u << 7 | 9) || /* 198.18.0.0/15 benchmarking */
		(a >> 28) >= 14;		/* 224.0.0.0/4 multicast, 240/4, broadcast */
}

/*
 * Is "addr" a public unicast address?  Loopback, private, shared,
 * link-local, unique-local, multicast, unspecified and reserved addresses
 * are not, nor IPv4 ones mapped or translated into IPv6.
 */
bool
ik_address_is_public(const struct sockaddr *addr)
{
	if (addr->sa_family == AF_INET)
	{
		const struct sockaddr_in *in = (const struct sockaddr_in *) addr;

		return !ik_ipv4_is_private(pg_ntoh32(in->sin_addr.s_addr));
	}
	if (addr->sa_family == AF_INET6)
	{
		const uint8 *b = ((const struct sockaddr_in6 *) addr)->sin6_addr.s6_addr;
		static const uint8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		static const uint8 nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
		bool		zero = true;

		if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0)
			return !ik_ipv4_is_private((uint32) b[12] << 24 | (uint32) b[13] << 16 |
									   (uint32) b[14] << 8 | b[15]);
		for (int i = 0; i < 15; i++)
			zero = zero && b[i] == 0;
		if (zero)				/* :: and ::1 */
			return false;
		if (b[0] == 0xff ||		/* ff00::/8 multicast */
			(b[0] & 0xfe) == 0xfc ||	/* fc00::/7 unique local */
			(b[0] == 0xfe && (b[1] & 0xc0) == 0x80) ||	/* fe80::/10 link-local */
			(b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) ||	/* fec0::/10 site-local */
			(b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8))	/* doc */
			return false;
		return true;
	}
	return false;
}

/* A public address, or one of this host's loopback addresses? */
static bool
ik_address_is_public_or_loopback(const struct sockaddr *addr)
{
	if (addr->sa_family == AF_INET)
	{
		const struct sockaddr_in *in = (const struct sockaddr_in *) addr;

		if ((pg_ntoh32(in->sin_addr.s_addr) >> 24) == 127)
			return true;
	}
	else if (addr->sa_family == AF_INET6 &&
			 IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *) addr)->sin6_addr))
		return true;
	return ik_address_is_public(addr);
}

/*
 * A source URL as it may be logged: scheme, host, port and path, clipped
 * to "max" bytes.  User names, passwords, query strings (signed URLs carry
 * tokens there) and fragments are left out; a URL that does not parse is
 * not shown at all.
 */
char *
ik_source_url_for_log(const char *url, int max)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *port = NULL;
	char	   *path = NULL;
	char	   *query = NULL;
	char	   *shown;

	if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		shown = pstrdup("(not a URL)");
	else
	{
		StringInfoData buf;

		(void) curl_url_get(u, CURLUPART_PORT, &port, 0);
		(void) curl_url_get(u, CURLUPART_PATH, &path, 0);
		(void) curl_url_get(u, CURLUPART_QUERY, &query, 0);
		initStringInfo(&buf);
		appendStringInfo(&buf, "%s://%s%s%s%s%s", scheme, host,
						 port ? ":" : "", port ? port : "",
						 path ? path : "", query ? "?..." : "");
		shown = buf.data;
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	curl_url_cleanup(u);

	if (strlen(shown) > (size_t) max)
		strcpy(shown + pg_mbcliplen(shown, strlen(shown), max - 3), "...");
	return shown;
}

IkHttpRequest *
ik_source_request(const char *url, size_t max_size, long timeout_ms,
				  long connect_timeout_ms, int allow_private)
{
	IkHttpRequest *req = ik_http_request_create(url, max_size);

	if (allow_private == IK_PRIVATE_SOURCES_OFF)
		ik_http_request_set_address_filter(req, ik_address_is_public);
	else if (allow_private == IK_PRIVATE_SOURCES_LOOPBACK)
		ik_http_request_set_address_filter(req, ik_address_is_public_or_loopback);

	ik_http_request_set_timeouts(req, timeout_ms, connect_timeout_ms);
	/*
	 * Sources are never fetched through a proxy (http_proxy and friends in
	 * the server's environment): the address filter must see the source's
	 * own address.  Uploads keep the environment's proxy.
	 */
	curl_easy_setopt(req->easy, CURLOPT_PROXY, "");
	curl_easy_setopt(req->easy, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(req->easy, CURLOPT_MAXREDIRS, (long) IK_SOURCE_MAX_REDIRECTS);
	curl_easy_setopt(req->easy, CURLOPT_LOW_SPEED_LIMIT, IK_SOURCE_LOW_SPEED_LIMIT);
	curl_easy_setopt(req->easy, CURLOPT_LOW_SPEED_TIME, IK_SOURCE_LOW_SPEED_TIME);
	ik_http_request_add_header(req, "Accept: image/*");
	return req;
}

/*
 * The file extension for an image, from its first bytes; NULL when the bytes
 * are not an image we know.  SVG is text, so it is taken on its declared
 * type plus an <svg element.
 */
const char *
ik_image_extension(const char *data, size_t len, const char *content_type)
{
	const unsigned char *d = (const unsigned char *) data;

	if (len >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0)
		return "png";
	if (len >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
		return "jpg";
	if (len >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0))
		return "gif";
	if (len >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0)
		return "webp";
	if (len >= 12 && memcmp(d + 4, "ftyp", 4) == 0)
	{
		if (memcmp(d + 8, "avif", 4) == 0 || memcmp(d + 8, "avis", 4) == 0)
			return "avif";
		if (memcmp(d + 8, "heic", 4) == 0 || memcmp(d + 8, "heix", 4) == 0 ||
			memcmp(d + 8, "mif1", 4) == 0)
			return "heic";
	}
	if (len >= 4 && (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "MM\0*", 4) == 0))
		return "tiff";
	if (len >= 2 && memcmp(d, "BM", 2) == 0)
		return "bmp";
	if (len >= 4 && memcmp(d, "\0\0\1\0", 4) == 0)
		return "ico";
	if (content_type != NULL &&
		pg_strncasecmp(content_type, "image/svg+xml", 13) == 0 &&
		memmem(data, Min(len, 4096), "<svg", 4) != NULL)
		return "svg";
	return NULL;
}

static bool
ik_source_error_is_permanent(CURLcode rc)
{
	switch (rc)
	{
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
		case CURLE_TOO_MANY_REDIRECTS:
		case CURLE_FILESIZE_EXCEEDED:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_BAD_CONTENT_ENCODING:
			return true;
		default:
			return false;
	}
}

/*
 * Judge a finished download.  On IK_SOURCE_OK, *ext is the image type; else
 * *error says what went wrong, and *hint_ms the server's Retry-After.
 */
IkSourceOutcome
ik_source_check(IkHttpRequest *req, size_t max_size, const char **ext,
				char **error, long *hint_ms)
{
	char	   *content_type = NULL;

	*ext = NULL;
	*error = NULL;
	*hint_ms = -1;

	if (req->body_too_large)
	{
		*error = psprintf("source is larger than imagekit.max_file_size (%zu bytes)",
						  max_size);
		return IK_SOURCE_PERMANENT;
	}
	if (req->address_refused)
	{
		*error = pstrdup("source address is not public (set imagekit.allow_private_sources to allow it)");
		return IK_SOURCE_PERMANENT;
	}
	if (req->result != CURLE_OK)
	{
		*error = psprintf("could not download source: %s", ik_http_error_string(req));
		return ik_source_error_is_permanent(req->result) ?
			IK_SOURCE_PERMANENT : IK_SOURCE_RETRYABLE;
	}
	if (req->status == 408 || req->status == 429 || req->status >= 500)
	{
		*error = psprintf("source answered HTTP status %ld", req->status);
		*hint_ms = ik_retry_hint_ms(ik_http_header(req, "Retry-After"), NULL);
		return IK_SOURCE_RETRYABLE;
	}
	if (req->status < 200 || req->status >= 300)
	{
		*error = psprintf("source answered HTTP status %ld", req->status);
		return IK_SOURCE_PERMANENT;
	}
	if (req->body_len == 0)
	{
		*error = pstrdup("source is empty");
		return IK_SOURCE_PERMANENT;
	}

	curl_easy_getinfo(req->easy, CURLINFO_CONTENT_TYPE, &content_type);
	*ext = ik_image_extension(req->body, req->body_len, content_type);
	if (*ext == NULL)
	{
		char	   *ct = content_type ? ik_utf8_to_server(content_type, strlen(content_type)) : NULL;

		*error = psprintf("source is not an image (Content-Type: %s)",
						  ct ? ct : "none");
		return IK_SOURCE_PERMANENT;
	}
	return IK_SOURCE_OK;
}
