/*-------------------------------------------------------------------------
 *
 * ik_sql.c
 *	  The SQL-callable functions.
 *
 * They are thin: they validate their arguments and the settings, then
 * delegate to the rest of src/ (protocol, transport, hashing, dedup,
 * shared memory).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "ik_assets.h"
#include "ik_guc.h"
#include "ik_hash.h"
#include "ik_protocol.h"
#include "ik_queue.h"
#include "ik_shmem.h"
#include "ik_stats.h"
#include "ik_url.h"

#define IK_MAX_FILE_NAME_LEN 255

PG_FUNCTION_INFO_V1(imagekit_upload);
PG_FUNCTION_INFO_V1(imagekit_wake_worker_on_commit);
PG_FUNCTION_INFO_V1(imagekit_stats);
PG_FUNCTION_INFO_V1(imagekit_worker_is_storing);
PG_FUNCTION_INFO_V1(imagekit_worker_slots);
PG_FUNCTION_INFO_V1(imagekit_url);

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
	if (len > (size_t) ik_guc_max_file_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("content is too large to upload"),
				 errdetail("The content is %zu bytes; imagekit.max_file_size is %d bytes.",
						   len, ik_guc_max_file_size)));
	ik_validate_file_name(file_name);

	ik_sha256_hex(data, len, hash);
	memset(&res, 0, sizeof(res));
	dedup = ik_asset_lookup(hash, "", &res);
	if (!dedup)
	{
		IkUploadOptions opts;
		char	   *wire_name;

		/* recording the asset needs a writable transaction: ask first */
		PreventCommandIfReadOnly("imagekit_upload()");
		ik_protocol_options(&opts);
		/* ImageKit takes UTF-8 */
		wire_name = pg_server_to_any(file_name, strlen(file_name), PG_UTF8);
		ik_upload_sync(&opts, data, len, wire_name, &res);
		if (!ik_asset_record(hash, "", &res))
		{
			/*
			 * Another session recorded the same bytes meanwhile: answer with
			 * its asset, so that every caller sees the one stored URL.
			 */
			dedup = ik_asset_lookup(hash, "", &res);
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

static void
ik_sql_require_shmem(void)
{
	if (!ik_shmem_available())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("imagekit_ext must be loaded via \"shared_preload_libraries\" to count in shared memory"),
				 errhint("Add imagekit_ext to shared_preload_libraries and restart the server.")));
}

/* imagekit.stats(): the current database's counters in shared memory. */
Datum
imagekit_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8];

	ik_sql_require_shmem();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	memset(nulls, false, sizeof(nulls));
	values[0] = Int64GetDatum((int64) ik_stats_counter(IK_STAT_UPLOADS));
	values[1] = Int64GetDatum((int64) ik_stats_counter(IK_STAT_UPLOAD_BYTES));
	values[2] = Int64GetDatum((int64) ik_stats_counter(IK_STAT_DEDUP_HITS));
	values[3] = Int64GetDatum((int64) ik_stats_counter(IK_STAT_RETRIES));
	values[4] = Int64GetDatum((int64) ik_stats_counter(IK_STAT_FALLBACKS));
	values[5] = Int64GetDatum((int64) ik_stats_counter(IK_STAT_DOWNLOADS));
	values[6] = Int64GetDatum((int64) ik_stats_counter(IK_STAT_DOWNLOAD_BYTES));
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
/*
 * imagekit.worker_slots(): the launcher and the workers of every database,
 * for the imagekit.workers view.
 */
Datum
imagekit_worker_slots(PG_FUNCTION_ARGS)
{
	static const char *const states[] = {
		[IK_SLOT_FREE] = "free",
		[IK_SLOT_STARTING] = "starting",
		[IK_SLOT_SERVING] = "serving",
		[IK_SLOT_STOPPING] = "stopping",
	};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[5];
	bool		nulls[5];
	int			pid;

	ik_sql_require_shmem();
	InitMaterializedSRF(fcinfo, 0);

	pid = ik_shmem_launcher_pid();
	if (pid != 0)
	{
		memset(nulls, false, sizeof(nulls));
		values[0] = CStringGetTextDatum("launcher");
		values[1] = Int32GetDatum(pid);
		nulls[2] = true;
		values[3] = CStringGetTextDatum("running");
		nulls[4] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	for (int slot = 0; slot < ik_shmem_max_workers(); slot++)
	{
		IkSlotInfo	info;

		ik_shmem_slot_get(slot, &info);
		if (info.state == IK_SLOT_FREE)
			continue;
		memset(nulls, false, sizeof(nulls));
		values[0] = CStringGetTextDatum("worker");
		values[1] = Int32GetDatum(info.pid);
		nulls[1] = info.pid == 0;
		values[2] = ObjectIdGetDatum(info.dboid);
		values[3] = CStringGetTextDatum(states[info.state]);
		values[4] = Int32GetDatum((int32) info.in_flight);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* A transformation in ImageKit's string form: key-value parts, "," and ":". */
static void
ik_sql_check_transformation(const char *t)
{
	bool		at_part_start = true;

	for (const char *p = t; *p; p++)
	{
		bool		sep = (*p == ',' || *p == ':');

		if ((sep && at_part_start) ||
			!(sep || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || strchr("-_.@~%+=", *p) != NULL))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("transformation \"%s\" is malformed", t),
					 errdetail("A transformation is ImageKit's string form, such as \"w-300,h-200:rt-90\": parts of letters, digits and \"-_.@~%%+=\", separated by \",\" within a step and \":\" between steps, none empty.")));
		at_part_start = sep;
	}
	if (t[0] != '\0' && at_part_start)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("transformation \"%s\" is malformed", t),
				 errdetail("It ends with a separator.")));
}

/*
 * imagekit.url(src, transformation, signed, expires_in,
 *				transformation_position, url_endpoint) returns text
 *
 * The delivery URL of "src", as the official SDKs build it (ik_url.c).
 */
Datum
imagekit_url(PG_FUNCTION_ARGS)
{
	IkUrlOptions opts;
	const char *position;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	memset(&opts, 0, sizeof(opts));
	opts.src = text_to_cstring(PG_GETARG_TEXT_PP(0));
	opts.transformation = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	opts.sign = !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);
	opts.expires_in = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3);
	position = PG_ARGISNULL(4) ? "query" : text_to_cstring(PG_GETARG_TEXT_PP(4));
	opts.endpoint = PG_ARGISNULL(5) ? ik_guc_url_endpoint : text_to_cstring(PG_GETARG_TEXT_PP(5));
	/* the transaction's time: one expiry for every URL of a statement */
	opts.now = (int64) timestamptz_to_time_t(GetCurrentTransactionStartTimestamp());

	if (opts.src[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("src must not be empty")));
	if (opts.transformation)
		ik_sql_check_transformation(opts.transformation);
	if (strcmp(position, "query") == 0)
		opts.path_position = false;
	else if (strcmp(position, "path") == 0)
		opts.path_position = true;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("transformation_position must be \"query\" or \"path\", not \"%s\"", position)));
	if (opts.expires_in < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expires_in must not be negative")));
	if (opts.endpoint == NULL || opts.endpoint[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_IK_NOT_CONFIGURED),
				 errmsg("imagekit.url_endpoint is not set"),
				 errhint("Set imagekit.url_endpoint, or pass url_endpoint.")));
	if (strncmp(opts.endpoint, "https://", 8) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url_endpoint must be an https URL")));
	if (opts.sign || opts.expires_in > 0)
	{
		if (ik_guc_private_key == NULL || ik_guc_private_key[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_IK_NOT_CONFIGURED),
					 errmsg("a signed URL needs imagekit.private_key"),
					 errhint("A superuser sets imagekit.private_key in postgresql.conf or with ALTER SYSTEM, then reloads the configuration.")));
		opts.private_key = ik_guc_private_key;
	}
	PG_RETURN_TEXT_P(cstring_to_text(ik_url_build(&opts)));
}
