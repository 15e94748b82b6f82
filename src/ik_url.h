/*-------------------------------------------------------------------------
 *
 * ik_url.h
 *	  Delivery URLs as ImageKit's official SDKs build them, signed or not.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_URL_H
#define IK_URL_H

typedef struct IkUrlOptions
{
	const char *src;			/* a path, or an absolute http(s) URL */
	const char *transformation; /* ImageKit's string form; NULL or "": none */
	bool		path_position;	/* "/tr:.../" in the path (relative src) */
	bool		sign;
	int64		expires_in;		/* seconds; <= 0: does not expire */
	int64		now;			/* seconds since the epoch */
	const char *endpoint;		/* https://ik.imagekit.io/your_id */
	const char *private_key;	/* when signing */
} IkUrlOptions;

extern char *ik_url_build(const IkUrlOptions *opts);

#endif							/* IK_URL_H */
