/*-------------------------------------------------------------------------
 *
 * ik_assets.h
 *	  Content dedup: imagekit.assets, one row per content uploaded with
 *	  given options.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_ASSETS_H
#define IK_ASSETS_H

/* What ImageKit answered to an upload; an asset of imagekit.assets. */
typedef struct IkUploadResult
{
	char	   *url;
	char	   *file_id;
	char	   *file_path;
	char	   *name;
	int64		size;			/* -1 when unknown */
	int32		width;			/* -1 when unknown */
	int32		height;			/* -1 when unknown */
} IkUploadResult;

extern bool ik_asset_lookup(const char *content_hash,
							const char *options_digest,
							IkUploadResult *asset);
extern bool ik_asset_lookup_url(const char *content_hash, const char *url,
								IkUploadResult *asset);
extern bool ik_asset_record(const char *content_hash,
							const char *options_digest,
							const IkUploadResult *asset);
extern void ik_asset_record_many(int n, const char **hashes,
								 const char **digests,
								 const IkUploadResult **assets);
extern bool ik_asset_trylock(const char *content_hash);
extern void ik_asset_unlock(const char *content_hash);

#endif							/* IK_ASSETS_H */
