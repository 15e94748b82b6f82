/*-------------------------------------------------------------------------
 *
 * ik_assets.c
 *	  Content dedup: imagekit.assets, one row per uploaded content hash
 *	  and the digest of the options it was uploaded with (the same bytes in
 *	  another folder, with other tags or private, are another file).
 *
 * Lookups and inserts go through SPI in the caller's transaction.  Two
 * sessions that upload the same bytes at once both insert; ON CONFLICT DO
 * NOTHING lets the second wait for the first and then keep the first's row,
 * so both succeed and one row remains; the second then answers with the
 * first's row (a new statement sees it once committed).
 *
 * The workers dedup across processes before they upload: a worker holds a
 * session-level advisory lock on a content hash from the moment it decides
 * to upload those bytes until its asset row is committed; another worker
 * that downloads the same bytes meanwhile does not upload them, but looks
 * the row up again a moment later.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "ik_assets.h"
#include "ik_spi.h"

static char *
ik_spi_text(HeapTuple tup, TupleDesc desc, int col, MemoryContext mcxt)
{
	char	   *s = SPI_getvalue(tup, desc, col);

	return s ? MemoryContextStrdup(mcxt, s) : NULL;
}

static int64
ik_spi_int(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	if (isnull)
		return -1;
	return (SPI_gettypeid(desc, col) == INT8OID) ?
		DatumGetInt64(d) : (int64) DatumGetInt32(d);
}

/* Fill "asset" from the first row "sql" (with text arguments a, b) finds. */
static bool
ik_asset_fetch(const char *sql, const char *a, const char *b,
			   IkUploadResult *asset)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	bool		found = false;

	args[0] = CStringGetTextDatum(a);
	args[1] = CStringGetTextDatum(b);
	SPI_connect();
	if (ik_spi_execute(sql, 2, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up imagekit.assets");
	if (SPI_processed > 0)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		asset->url = ik_spi_text(tup, desc, 1, caller);
		asset->file_id = ik_spi_text(tup, desc, 2, caller);
		asset->file_path = ik_spi_text(tup, desc, 3, caller);
		asset->name = ik_spi_text(tup, desc, 4, caller);
		asset->size = ik_spi_int(tup, desc, 5);
		asset->width = (int32) ik_spi_int(tup, desc, 6);
		asset->height = (int32) ik_spi_int(tup, desc, 7);
		found = true;
	}
	SPI_finish();
	return found;
}

/*
 * Does imagekit.assets have options_digest (1.4)?  Until ALTER EXTENSION
 * UPDATE, imagekit_upload() runs against the table of an earlier version,
 * where every asset is one of no options.
 */
static bool
ik_assets_by_options(void)
{
	Oid			relid = RangeVarGetRelid(makeRangeVar("imagekit", "assets", -1),
										 NoLock, true);

	return OidIsValid(relid) &&
		get_attnum(relid, "options_digest") != InvalidAttrNumber;
}

/*
 * Fill "asset" from imagekit.assets: the content uploaded with the options
 * of digest "options_digest" ("" for none); false if it is not there.
 */
bool
ik_asset_lookup(const char *content_hash, const char *options_digest,
				IkUploadResult *asset)
{
	if (!ik_assets_by_options())
	{
		Assert(options_digest[0] == '\0');
		return ik_asset_fetch("SELECT url, file_id, file_path, name, size, width, height "
							  "FROM imagekit.assets WHERE content_hash = $1 AND $2 = ''",
							  content_hash, options_digest, asset);
	}
	return ik_asset_fetch("SELECT url, file_id, file_path, name, size, width, height "
						  "FROM imagekit.assets WHERE content_hash = $1 AND options_digest = $2",
						  content_hash, options_digest, asset);
}

/* The same, for the asset of a content at a given URL. */
bool
ik_asset_lookup_url(const char *content_hash, const char *url,
					IkUploadResult *asset)
{
	return ik_asset_fetch("SELECT url, file_id, file_path, name, size, width, height "
						  "FROM imagekit.assets WHERE content_hash = $1 AND url = $2",
						  content_hash, url, asset);
}

/* A size in pixels or bytes, or a null one (-1: ImageKit did not say). */
static Datum
ik_int_or_null(int64 v, bool is64, bool *isnull)
{
	*isnull = (v < 0);
	if (v < 0)
		return (Datum) 0;
	return is64 ? Int64GetDatum(v) : Int32GetDatum((int32) v);
}

/* The columns of "asset"'s row in imagekit.assets, as args[] and isnull[]. */
static void
ik_asset_values(const char *content_hash, const char *options_digest,
				const IkUploadResult *asset, Datum *args, bool *isnull)
{
	args[0] = ik_spi_text_or_null(content_hash, &isnull[0]);
	args[1] = ik_spi_text_or_null(asset->url, &isnull[1]);
	args[2] = ik_spi_text_or_null(asset->file_id, &isnull[2]);
	args[3] = ik_spi_text_or_null(asset->file_path, &isnull[3]);
	args[4] = ik_spi_text_or_null(asset->name, &isnull[4]);
	args[5] = ik_int_or_null(asset->size, true, &isnull[5]);
	args[6] = ik_int_or_null(asset->width, false, &isnull[6]);
	args[7] = ik_int_or_null(asset->height, false, &isnull[7]);
	args[8] = ik_spi_text_or_null(options_digest, &isnull[8]);
}

/*
 * Record a successful upload; a row already there for the hash and options
 * is kept.  Returns whether this call inserted the row.
 */
bool
ik_asset_record(const char *content_hash, const char *options_digest,
				const IkUploadResult *asset)
{
	Oid			argtypes[9] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	INT8OID, INT4OID, INT4OID, TEXTOID};
	Datum		args[9];
	bool		isnull[9];
	char		nulls[9];
	bool		inserted;

	ik_asset_values(content_hash, options_digest, asset, args, isnull);
	for (int c = 0; c < 9; c++)
		nulls[c] = isnull[c] ? 'n' : ' ';

	SPI_connect();
	if (ik_spi_execute(ik_assets_by_options() ?
					   "INSERT INTO imagekit.assets "
					   "(content_hash, url, file_id, file_path, name, size, width, height,"
					   " options_digest) "
					   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
					   "ON CONFLICT (content_hash, options_digest) DO NOTHING" :
					   "INSERT INTO imagekit.assets "
					   "(content_hash, url, file_id, file_path, name, size, width, height) "
					   "SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE $9 = '' "
					   "ON CONFLICT (content_hash) DO NOTHING",
					   9, argtypes, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the upload in imagekit.assets");
	inserted = SPI_processed > 0;
	SPI_finish();
	return inserted;
}

/*
 * Record "n" successful uploads at once (the worker's batch), as
 * ik_asset_record() does one; the assets table is 1.4's or later's.
 */
void
ik_asset_record_many(int n, const char **hashes, const char **digests,
					 const IkUploadResult **assets)
{
	Oid			types[9] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	INT8OID, INT4OID, INT4OID, TEXTOID};
	Oid			argtypes[9];
	Datum		args[9];
	Datum	   *v[9];
	bool	   *isnull[9];

	for (int c = 0; c < 9; c++)
	{
		v[c] = palloc(sizeof(Datum) * n);
		isnull[c] = palloc(sizeof(bool) * n);
		argtypes[c] = get_array_type(types[c]);
	}
	for (int i = 0; i < n; i++)
	{
		Datum		row[9];
		bool		rownull[9];

		ik_asset_values(hashes[i], digests[i], assets[i], row, rownull);
		for (int c = 0; c < 9; c++)
		{
			v[c][i] = row[c];
			isnull[c][i] = rownull[c];
		}
	}
	for (int c = 0; c < 9; c++)
		args[c] = ik_spi_array(v[c], isnull[c], n, types[c]);

	SPI_connect();
	if (ik_spi_execute("INSERT INTO imagekit.assets "
					   "(content_hash, url, file_id, file_path, name, size, width, height,"
					   " options_digest) "
					   "SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9) "
					   "ON CONFLICT (content_hash, options_digest) DO NOTHING",
					   9, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record uploads in imagekit.assets");
	SPI_finish();
}

/* The advisory lock tag of a content hash (its first 64 bits). */
static void
ik_asset_locktag(LOCKTAG *tag, const char *content_hash)
{
	char		part[9];
	uint32		hi;
	uint32		lo;

	memcpy(part, content_hash, 8);
	part[8] = '\0';
	hi = (uint32) strtoul(part, NULL, 16);
	memcpy(part, content_hash + 8, 8);
	lo = (uint32) strtoul(part, NULL, 16);

	/* field4 = 0x494b ("IK") keeps clear of applications' advisory locks */
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, hi, lo, 0x494b);
}

/* Take the upload lock of a content hash, if no other process has it. */
bool
ik_asset_trylock(const char *content_hash)
{
	LOCKTAG		tag;

	ik_asset_locktag(&tag, content_hash);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

void
ik_asset_unlock(const char *content_hash)
{
	LOCKTAG		tag;

	ik_asset_locktag(&tag, content_hash);
	LockRelease(&tag, ExclusiveLock, true);
}
