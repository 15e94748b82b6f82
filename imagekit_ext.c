/*-------------------------------------------------------------------------
 *
 * imagekit_ext.c
 *	  The front door of imagekit_ext: module initialisation, settings, and
 *	  the SQL-callable functions.
 *
 * The SQL functions are thin: they validate their arguments and the
 * settings, then delegate to src/ (protocol, transport, hashing, dedup).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "tcop/utility.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "ik_assets.h"
#include "ik_hash.h"
#include "ik_http.h"
#include "ik_protocol.h"
#include "ik_queue.h"
#include "ik_redact.h"
#include "ik_settings.h"
#include "ik_shmem.h"
#include "ik_worker.h"

PG_MODULE_MAGIC;

#define IK_MAX_FILE_NAME_LEN 255

/* settings; see README.md */
char	   *ik_private_key = NULL;
static char *ik_public_key = NULL;
static char *ik_url_endpoint = NULL;
char	   *ik_upload_endpoint = NULL;
static char *ik_folder = NULL;
static bool ik_use_unique_file_name = true;
static char *ik_transformation = NULL;
int			ik_max_retries = 3;
int			ik_retry_base_delay = 500;
int			ik_retry_max_delay = 30000;
int			ik_timeout = 30000;
int			ik_connect_timeout = 5000;
int			ik_max_file_size = 25 * 1024 * 1024;
char	   *ik_database = NULL;
bool		ik_enabled = true;
int			ik_allow_private_sources = IK_PRIVATE_SOURCES_OFF;
bool		ik_worker_storing = false;
int			ik_workers = 1;
int			ik_max_concurrent_uploads = 16;
int			ik_batch_size = 64;
int			ik_lease_timeout = 300000;
int			ik_job_retention = 7 * 24 * 3600;

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

void		_PG_init(void);

PG_FUNCTION_INFO_V1(imagekit_upload);
PG_FUNCTION_INFO_V1(imagekit_wake_worker_on_commit);
PG_FUNCTION_INFO_V1(imagekit_stats);
PG_FUNCTION_INFO_V1(imagekit_worker_is_storing);

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

void
_PG_init(void)
{
	ik_http_init();

	DefineCustomStringVariable("imagekit.private_key",
							   gettext_noop("ImageKit private API key used for uploads."),
							   gettext_noop("Sent as the HTTP Basic user name; never shown in logs or errors."),
							   &ik_private_key,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("imagekit.public_key",
							   gettext_noop("ImageKit public API key (informational)."),
							   NULL,
							   &ik_public_key,
							   "",
							   PGC_SIGHUP,
							   0,
							   ik_check_public_key, NULL, NULL);
	DefineCustomStringVariable("imagekit.url_endpoint",
							   gettext_noop("ImageKit URL endpoint, such as https://ik.imagekit.io/your_id."),
							   NULL,
							   &ik_url_endpoint,
							   "",
							   PGC_SIGHUP,
							   0,
							   ik_check_url_endpoint, NULL, NULL);
	DefineCustomStringVariable("imagekit.upload_endpoint",
							   gettext_noop("URL of the ImageKit upload API."),
							   gettext_noop("Must be https; plain http is accepted only for a loopback host."),
							   &ik_upload_endpoint,
							   "https://upload.imagekit.io/api/v1/files/upload",
							   PGC_SIGHUP,
							   0,
							   ik_check_upload_endpoint, NULL, NULL);
	DefineCustomStringVariable("imagekit.folder",
							   gettext_noop("ImageKit folder that uploads go to."),
							   NULL,
							   &ik_folder,
							   "/coffee-images/",
							   PGC_USERSET,
							   0,
							   ik_check_folder, NULL, NULL);
	DefineCustomBoolVariable("imagekit.use_unique_file_name",
							 gettext_noop("Whether ImageKit appends a random suffix to uploaded file names."),
							 NULL,
							 &ik_use_unique_file_name,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("imagekit.transformation",
							   gettext_noop("Pre-transformation applied by ImageKit on upload; empty for none."),
							   NULL,
							   &ik_transformation,
							   "w-800,h-800,c-maintain_ratio",
							   PGC_USERSET,
							   0,
							   ik_check_transformation, NULL, NULL);
	DefineCustomIntVariable("imagekit.max_retries",
							gettext_noop("Retries after the first attempt of an upload."),
							NULL,
							&ik_max_retries,
							3, 0, 10,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.retry_base_delay",
							gettext_noop("Base of the exponential backoff between retries."),
							NULL,
							&ik_retry_base_delay,
							500, 1, 60000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.retry_max_delay",
							gettext_noop("Longest wait between retries, server hints included."),
							NULL,
							&ik_retry_max_delay,
							30000, 1, 3600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.timeout",
							gettext_noop("Time limit of one upload attempt."),
							NULL,
							&ik_timeout,
							30000, 100, 3600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.connect_timeout",
							gettext_noop("Time limit for connecting to ImageKit."),
							NULL,
							&ik_connect_timeout,
							5000, 100, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.max_file_size",
							gettext_noop("Largest content uploaded; larger content is refused before any request."),
							NULL,
							&ik_max_file_size,
							25 * 1024 * 1024, 1, MaxAllocSize,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomStringVariable("imagekit.database",
							   gettext_noop("Database the background worker drains the queue of."),
							   NULL,
							   &ik_database,
							   "postgres",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	DefineCustomBoolVariable("imagekit.enabled",
							 gettext_noop("Whether the background worker processes the queue; off pauses it."),
							 NULL,
							 &ik_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	DefineCustomEnumVariable("imagekit.allow_private_sources",
							 gettext_noop("Whether the worker may download sources from loopback, private and link-local addresses."),
							 gettext_noop("Off protects the server's network from source URLs written by applications; loopback allows this host only."),
							 &ik_allow_private_sources,
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
							 &ik_worker_storing,
							 false,
							 PGC_SUSET,
							 GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_NO_RESET_ALL,
							 NULL, NULL, NULL);
	/* server-start-only settings can be defined only while preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("imagekit.workers",
								gettext_noop("Number of background worker processes."),
								NULL,
								&ik_workers,
								1, 0, IK_MAX_WORKERS,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.max_concurrent_uploads",
							gettext_noop("HTTP requests (downloads and uploads) a worker has in flight at once."),
							NULL,
							&ik_max_concurrent_uploads,
							16, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.batch_size",
							gettext_noop("Jobs a worker claims per step."),
							NULL,
							&ik_batch_size,
							64, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.lease_timeout",
							gettext_noop("How long a claimed job stays reserved for its worker."),
							gettext_noop("A job whose worker died is claimed again after this."),
							&ik_lease_timeout,
							300000, 1000, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("imagekit.job_retention",
							gettext_noop("How long finished jobs (done, fallback) are kept in imagekit.jobs."),
							gettext_noop("The workers remove older ones; -1 keeps them for ever."),
							&ik_job_retention,
							7 * 24 * 3600, -1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("imagekit");
	ik_redact_install(&ik_private_key);
	ik_shmem_init();

	/*
	 * No workers in a server that pg_upgrade runs (old or new): they would
	 * change the queue while it is dumped or restored.
	 */
	if (process_shared_preload_libraries_in_progress && !IsBinaryUpgrade)
	{
		int			free_slots;

		for (int i = 0; i < ik_workers; i++)
			ik_worker_register(i);
		/* the slots left once these and the logical replication launcher run */
		free_slots = max_worker_processes - ik_workers - 1;
		if (free_slots <= 0)
			ereport(WARNING,
					(errmsg("imagekit.workers (%d) leaves no background worker slot free (max_worker_processes = %d)",
							ik_workers, max_worker_processes),
					 free_slots < 0 ?
					 errdetail("Parallel query and logical replication get no worker, and %d imagekit workers cannot start.",
							   -free_slots) :
					 errdetail("Parallel query and logical replication get no worker."),
					 errhint("Set max_worker_processes to at least imagekit.workers + 1 (the logical replication launcher) + max_parallel_workers + max_logical_replication_workers.")));
	}
}

/* Refuse a file name that ImageKit cannot use as one. */
static void
ik_validate_file_name(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("file name must not be empty")));
	if (len > IK_MAX_FILE_NAME_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("file name is too long"),
				 errdetail("The file name is %zu bytes long; the limit is %d bytes.",
						   len, IK_MAX_FILE_NAME_LEN)));
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("file name \"%s\" is not usable", name)));
	for (const char *p = name; *p; p++)
	{
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("file name must not contain control characters")));
		if (*p == '/' || *p == '\\')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("file name must not contain a path"),
					 errdetail("The file name is \"%s\".", name),
					 errhint("Set imagekit.folder to choose the destination folder.")));
	}
}

/*
 * What keeps the settings from uploading, as a message; NULL if nothing.
 * Never quotes the key.
 */
const char *
ik_upload_config_problem(void)
{
	if (ik_private_key == NULL || ik_private_key[0] == '\0')
		return "imagekit.private_key is not set";
	for (const char *p = ik_private_key; *p; p++)
	{
		if (*p <= ' ' || *p >= 0x7f || *p == ':')
			return "imagekit.private_key contains characters that cannot be sent";
	}
	if (ik_upload_endpoint == NULL || ik_upload_endpoint[0] == '\0')
		return "imagekit.upload_endpoint is not set";
	return NULL;
}

/* Upload options from the settings; refuse a configuration that can't work. */
void
ik_upload_options(IkUploadOptions *opts)
{
	const char *problem = ik_upload_config_problem();

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_IK_NOT_CONFIGURED),
				 errmsg_internal("%s", problem),
				 errhint("A superuser sets the imagekit.* server settings in postgresql.conf or with ALTER SYSTEM, then reloads the configuration.")));

	opts->endpoint = ik_upload_endpoint;
	opts->private_key = ik_private_key;
	opts->folder = ik_folder;
	opts->use_unique_file_name = ik_use_unique_file_name;
	opts->transformation = ik_transformation;
	opts->timeout_ms = ik_timeout;
	opts->connect_timeout_ms = ik_connect_timeout;
	opts->max_retries = ik_max_retries;
	opts->retry_base_delay_ms = ik_retry_base_delay;
	opts->retry_max_delay_ms = ik_retry_max_delay;
}

/*
 * imagekit_upload(content bytea, file_name text) returns record
 *
 * Upload "content" under "file_name" unless the same bytes were uploaded
 * before, and return the asset.
 */
Datum
imagekit_upload(PG_FUNCTION_ARGS)
{
	bytea	   *content = PG_GETARG_BYTEA_PP(0);
	char	   *file_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *data = VARDATA_ANY(content);
	size_t		len = VARSIZE_ANY_EXHDR(content);
	TupleDesc	tupdesc;
	IkUploadResult res;
	char		hash[IK_HASH_HEX_LEN + 1];
	bool		dedup;
	Datum		values[9];
	bool		nulls[9];

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("content must not be empty")));
	if (len > (size_t) ik_max_file_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("content is too large to upload"),
				 errdetail("The content is %zu bytes; imagekit.max_file_size is %d bytes.",
						   len, ik_max_file_size)));
	ik_validate_file_name(file_name);

	ik_sha256_hex(data, len, hash);
	memset(&res, 0, sizeof(res));
	dedup = ik_asset_lookup(hash, &res);
	if (!dedup)
	{
		IkUploadOptions opts;
		char	   *wire_name;

		/* recording the asset needs a writable transaction: ask first */
		PreventCommandIfReadOnly("imagekit_upload()");
		ik_upload_options(&opts);
		/* ImageKit takes UTF-8 */
		wire_name = pg_server_to_any(file_name, strlen(file_name), PG_UTF8);
		ik_upload_sync(&opts, data, len, wire_name, &res);
		if (!ik_asset_record(hash, &res))
		{
			/*
			 * Another session recorded the same bytes meanwhile: answer with
			 * its asset, so that every caller sees the one stored URL.
			 */
			dedup = ik_asset_lookup(hash, &res);
		}
	}

	memset(nulls, false, sizeof(nulls));
	values[0] = CStringGetTextDatum(res.url);
#define IK_TEXT_OR_NULL(i, s) \
	do { if ((s) != NULL) values[i] = CStringGetTextDatum(s); else nulls[i] = true; } while (0)
	IK_TEXT_OR_NULL(1, res.file_id);
	IK_TEXT_OR_NULL(2, res.file_path);
	IK_TEXT_OR_NULL(3, res.name);
#undef IK_TEXT_OR_NULL
	values[4] = Int64GetDatum(res.size);
	nulls[4] = res.size < 0;
	values[5] = Int32GetDatum(res.width);
	nulls[5] = res.width < 0;
	values[6] = Int32GetDatum(res.height);
	nulls[6] = res.height < 0;
	values[7] = CStringGetTextDatum(hash);
	values[8] = BoolGetDatum(dedup);

	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * imagekit.wake_worker_on_commit(): called by the enqueue triggers, so that
 * the workers start at once when the transaction that queued jobs commits.
 */
Datum
imagekit_wake_worker_on_commit(PG_FUNCTION_ARGS)
{
	ik_wake_on_commit();
	PG_RETURN_VOID();
}

/* imagekit.stats(): the counters in shared memory. */
Datum
imagekit_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8];

	if (!ik_shmem_available())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("imagekit_ext must be loaded via \"shared_preload_libraries\" to count in shared memory"),
				 errhint("Add imagekit_ext to shared_preload_libraries and restart the server.")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	memset(nulls, false, sizeof(nulls));
	values[0] = Int64GetDatum((int64) ik_shmem_counter(IK_STAT_UPLOADS));
	values[1] = Int64GetDatum((int64) ik_shmem_counter(IK_STAT_UPLOAD_BYTES));
	values[2] = Int64GetDatum((int64) ik_shmem_counter(IK_STAT_DEDUP_HITS));
	values[3] = Int64GetDatum((int64) ik_shmem_counter(IK_STAT_RETRIES));
	values[4] = Int64GetDatum((int64) ik_shmem_counter(IK_STAT_FALLBACKS));
	values[5] = Int64GetDatum((int64) ik_shmem_counter(IK_STAT_DOWNLOADS));
	values[6] = Int64GetDatum((int64) ik_shmem_counter(IK_STAT_DOWNLOAD_BYTES));
	values[7] = Int32GetDatum((int32) ik_shmem_in_flight());
	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* imagekit.worker_is_storing(tbl oid): see the UPDATE triggers. */
Datum
imagekit_worker_is_storing(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(ik_queue_storing_in(PG_GETARG_OID(0)));
}
