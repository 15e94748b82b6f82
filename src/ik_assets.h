/*-------------------------------------------------------------------------
 *
 * ik_assets.h
 *	  Content dedup: imagekit.assets, one row per uploaded content hash.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_ASSETS_H
#define IK_ASSETS_H

#include "ik_protocol.h"

extern bool ik_asset_lookup(const char *content_hash, IkUploadResult *asset);
extern bool ik_asset_record(const char *content_hash,
							const IkUploadResult *asset);

#endif							/* IK_ASSETS_H */
