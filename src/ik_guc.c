/*-------------------------------------------------------------------------
 *
 * ik_guc.c
 *	  The imagekit.* settings: their variables, check hooks and definitions.
 *
 * Every variable is named ik_guc_<setting>.  What the settings mean, and
 * who may change them when, is in README.md ("Configuration").
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "ik_guc.h"

/* settings; see README.md */
char	   *ik_guc_private_key = NULL;
char	   *ik_guc_public_key = NULL;
char	   *ik_guc_url_endpoint = NULL;
char	   *ik_guc_upload_endpoint = NULL;
char	   *ik_guc_folder = NULL;
bool		ik_guc_use_unique_file_name = true;
char	   *ik_guc_transformation = NULL;
int			ik_guc_max_retries = 3;
int			ik_guc_retry_base_delay = 500;
int			ik_guc_retry_max_delay = 30000;
int			ik_guc_timeout = 30000;
int			ik_guc_connect_timeout = 5000;
int			ik_guc_max_file_size = 25 * 1024 * 1024;
char	   *ik_guc_database = NULL;
bool		ik_guc_enabled = true;
int			ik_guc_allow_private_sources = IK_PRIVATE_SOURCES_OFF;
bool		ik_guc_worker_storing = false;
int			ik_guc_workers = 1;
int			ik_guc_max_workers = 4;
int			ik_guc_max_concurrent_uploads = 16;
int			ik_guc_batch_size = 64;
int			ik_guc_lease_timeout = 300000;
int			ik_guc_job_retention = 7 * 24 * 3600;

/* like a boolean, plus "loopback" */
static const struct config_enum_entry ik_private_sources_options[] = {
	{"off", IK_PRIVATE_SOURCES_OFF, false},
	{"loopback", IK_PRIVATE_SOURCES_LOOPBACK, false},
	{"on", IK_PRIVATE_SOURCES_ON, false},
	{"false", IK_PRIVATE_SOURCES_OFF, true},
	{"true", IK_PRIVATE_SOURCES_ON, true},
	{"no", IK_PRIVATE_SOURCES_OFF, true},
	{"yes", IK_PRIVATE_SOURCES_ON, true},
	{"0", IK_PRIVATE_SOURCES_OFF, true},
	{"1", IK_PRIVATE_SOURCES_ON, true},
	{NULL, 0, false}
};

static bool
ik_is_loopback_host(const char *host)
{
	unsigned char addr[16];
	char		buf[64];
	size_t		len = strlen(host);

	if (pg_strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, addr) == 1)
		return addr[0] == 127;
	/* curl gives IPv6 hosts in brackets */
	if (len >= 2 && len < sizeof(buf) && host[0] == '[' && host[len - 1] == ']')
	{
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		if (inet_pton(AF_INET6, buf, addr) == 1)
		{
			static const unsigned char loopback[16] = {[15] = 1};

			return memcmp(addr, loopback, 16) == 0;
		}
	}
	return false;
}

/*
 * Validate an endpoint URL with libcurl's URL parser: https (or, when
 * allowed, http to a loopback host), a host, no user name or password.
 */
static bool
ik_check_url(const char *value, bool allow_loopback_http)
{
	CURLU	   *u;
	CURLUcode	rc;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *user = NULL;
	char	   *password = NULL;
	bool		ok = false;

	if (value == NULL || value[0] == '\0')
		return true;

	/* libcurl words this case differently from one version to the next */
	if (strstr(value, "://") == NULL)
	{
		GUC_check_errdetail("The value is not an absolute URL (such as https://upload.imagekit.io/api/v1/files/upload).");
		return false;
	}

	u = curl_url();
	if (u == NULL)
	{
		GUC_check_errdetail("Out of memory.");
		return false;
	}
	rc = curl_url_set(u, CURLUPART_URL, value, 0);
	if (rc != CURLUE_OK)
		GUC_check_errdetail("The value is not a valid URL: %s.", curl_url_strerror(rc));
	else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
			 curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		GUC_check_errdetail("The URL must have a scheme and a host.");
	else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
			 curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK)
		GUC_check_errdetail("The URL must not contain a user name or password.");
	else if (pg_strcasecmp(scheme, "https") == 0)
		ok = true;
	else if (pg_strcasecmp(scheme, "http") == 0 && allow_loopback_http &&
			 ik_is_loopback_host(host))
		ok = true;
	else if (allow_loopback_http)
		GUC_check_errdetail("The URL must use https (plain http is allowed only to a loopback host).");
	else
		GUC_check_errdetail("The URL must use https.");

	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(password);
	curl_url_cleanup(u);
	return ok;
}

static bool
ik_check_upload_endpoint(char **newval, void **extra, GucSource source)
{
	return ik_check_url(*newval, true);
}

static bool
ik_check_url_endpoint(char **newval, void **extra, GucSource source)
{
	return ik_check_url(*newval, false);
}

static bool
ik_check_public_key(char **newval, void **extra, GucSource source)
{
	for (const char *p = *newval; p && *p; p++)
	{
		if (*p <= ' ' || *p >= 0x7f)
		{
			GUC_check_errdetail("An ImageKit public key consists of printable ASCII characters without spaces.");
			return false;
		}
	}
	return true;
}

static bool
ik_check_folder(char **newval, void **extra, GucSource source)
{
	const char *f = *newval;

	if (f == NULL || f[0] != '/')
	{
		GUC_check_errdetail("The folder must start with \"/\".");
		return false;
	}
	if (strlen(f) > 255)
	{
		GUC_check_errdetail("The folder must be at most 255 bytes long.");
		return false;
	}
	for (const char *p = f; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '/' || *p == '_' ||
			  *p == '-' || *p == '.'))
		{
			GUC_check_errdetail("The folder may contain only letters, digits, \"/\", \"_\", \"-\" and \".\".");
			return false;
		}
	}
	if (strstr(f, "//") != NULL || strstr(f, "/../") != NULL ||
		strstr(f, "/./") != NULL ||
		(strlen(f) >= 3 && strcmp(f + strlen(f) - 3, "/..") == 0) ||
		(strlen(f) >= 2 && strcmp(f + strlen(f) - 2, "/.") == 0))
	{
		GUC_check_errdetail("The folder must not contain empty, \".\" or \"..\" path segments.");
		return false;
	}
	return true;
}

static bool
ik_check_transformation(char **newval, void **extra, GucSource source)
{
	const char *t = *newval;

	if (t == NULL)
		return true;
	if (strlen(t) > 1000)
	{
		GUC_check_errdetail("The transformation must be at most 1000 bytes long.");
		return false;
	}
	for (const char *p = t; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == ',' || *p == '-' ||
			  *p == '_' || *p == '.' || *p == ':'))
		{
			GUC_check_errdetail("A transformation such as \"w-800,h-800,c-maintain_ratio\" contains only letters, digits and \",-_.:\".");
			return false;
		}
	}
	return true;
}

/* From _PG_init: define every setting. */
void
ik_guc_define(void)
{
	DefineCustomStringVariable("imagekit.private_key",
							   gettext_noop("ImageKit private API key used for uploads."),
							   gettext_noop("Sent as the HTTP Basic user name; never shown in logs or errors."),
							   &ik_guc_private_key,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("imagekit.public_key",
							   gettext_noop("ImageKit public API key (informational)."),
							   NULL,
							   &ik_guc_public_key,
							   "",
							   PGC_SIGHUP,
							   0,
							   ik_check_public_key, NULL, NULL);
	DefineCustomStringVariable("imagekit.url_endpoint",
							   gettext_noop("ImageKit URL endpoint, such as https://ik.imagekit.io/your_id."),
							   NULL,
							   &ik_guc_url_endpoint,
							   "",
							   PGC_SIGHUP,
							   0,
							   ik_check_url_endpoint, NULL, NULL);
	DefineCustomStringVariable("imagekit.upload_endpoint",
							   gettext_noop("URL of the ImageKit upload API."),
							   gettext_noop("Must be https; plain http is accepted only for a loopback host."),
							   &ik_guc_upload_endpoint,
							   "https://upload.imagekit.io/api/v1/files/upload",
							   PGC_SIGHUP,
							   0,
							   ik_check_upload_endpoint, NULL, NULL);
	DefineCustomStringVariable("imagekit.folder",
							   gettext_noop("ImageKit folder that uploads go to."),
							   NULL,
							   &ik_guc_folder,
							   "/coffee-images/",
							   PGC_USERSET,
							   0,
							   ik_check_folder, NULL, NULL);
	DefineCustomBoolVariable("imagekit.use_unique_file_name",
							 gettext_noop("Whether ImageKit appends a random suffix to uploaded file names."),
							 NULL,
							 &ik_guc_use_unique_file_name,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("imagekit.transformation",
							   gettext_noop("Pre-transformation applied by ImageKit on upload; empty for none."),
							   NULL,
							   &ik_guc_transformation,
							   "w-800,h-800,c-maintain_ratio",
							   PGC_USERSET,
							   0,
							   ik_check_transformation, NULL, NULL);
	DefineCustomIntVariable("imagekit.max_retries",
							gettext_noop("Retries after the first attempt of an upload."),
							NULL,
							&ik_guc_max_retries,
							3, 0, 10,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.retry_base_delay",
							gettext_noop("Base of the exponential backoff between retries."),
							NULL,
							&ik_guc_retry_base_delay,
							500, 1, 60000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.retry_max_delay",
							gettext_noop("Longest wait between retries, server hints included."),
							NULL,
							&ik_guc_retry_max_delay,
							30000, 1, 3600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.timeout",
							gettext_noop("Time limit of one upload attempt."),
							NULL,
							&ik_guc_timeout,
							30000, 100, 3600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.connect_timeout",
							gettext_noop("Time limit for connecting to ImageKit."),
							NULL,
							&ik_guc_connect_timeout,
							5000, 100, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.max_file_size",
							gettext_noop("Largest content uploaded; larger content is refused before any request."),
							NULL,
							&ik_guc_max_file_size,
							25 * 1024 * 1024, 1, MaxAllocSize,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomStringVariable("imagekit.database",
							   gettext_noop("The only database whose queue the background workers drain; empty for every database."),
							   NULL,
							   &ik_guc_database,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	DefineCustomBoolVariable("imagekit.enabled",
							 gettext_noop("Whether the background worker processes the queue; off pauses it."),
							 NULL,
							 &ik_guc_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	DefineCustomEnumVariable("imagekit.allow_private_sources",
							 gettext_noop("Whether the worker may download sources from loopback, private and link-local addresses."),
							 gettext_noop("Off protects the server's network from source URLs written by applications; loopback allows this host only."),
							 &ik_guc_allow_private_sources,
							 IK_PRIVATE_SOURCES_OFF,
							 ik_private_sources_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	/*
	 * Tests SET it in sessions that play the worker, so that the UPDATE
	 * trigger takes their updates for the worker's own results.  (The real
	 * worker says which table it is storing in; see ik_queue_storing_in.)
	 */
	DefineCustomBoolVariable("imagekit.worker_storing",
							 gettext_noop("Internal: set while the worker stores a result."),
							 NULL,
							 &ik_guc_worker_storing,
							 false,
							 PGC_SUSET,
							 GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_NO_RESET_ALL,
							 NULL, NULL, NULL);
	/* server-start-only settings can be defined only while preloading */
	/* SUSET, so that ALTER DATABASE ... SET can give a database its count */
	DefineCustomIntVariable("imagekit.workers",
							gettext_noop("Background workers for each database with the extension."),
							gettext_noop("Set per database with ALTER DATABASE ... SET; 0 gives a database none."),
							&ik_guc_workers,
							1, 0, IK_MAX_WORKERS,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	/* server-start-only settings can be defined only while preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("imagekit.max_workers",
								gettext_noop("Background workers of all databases together (the launcher not counted)."),
								NULL,
								&ik_guc_max_workers,
								4, 0, IK_MAX_WORKERS,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.max_concurrent_uploads",
							gettext_noop("HTTP requests (downloads and uploads) a worker has in flight at once."),
							NULL,
							&ik_guc_max_concurrent_uploads,
							16, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.batch_size",
							gettext_noop("Jobs a worker claims per step."),
							NULL,
							&ik_guc_batch_size,
							64, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.lease_timeout",
							gettext_noop("How long a claimed job stays reserved for its worker."),
							gettext_noop("A job whose worker died is claimed again after this."),
							&ik_guc_lease_timeout,
							300000, 1000, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.job_retention",
							gettext_noop("How long finished jobs (done, fallback) are kept in imagekit.jobs."),
							gettext_noop("The workers remove older ones; -1 keeps them for ever."),
							&ik_guc_job_retention,
							7 * 24 * 3600, -1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("imagekit");
}
