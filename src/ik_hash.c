/*-------------------------------------------------------------------------
 *
 * ik_hash.c
 *	  Content hashing with PostgreSQL's own SHA-256.
 *
 * pg_cryptohash (OpenSSL-backed) registers its context with the current
 * resource owner.  The background worker hashes outside any transaction,
 * where there is none, so a long-lived owner of our own stands in then.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "utils/builtins.h"
#include "utils/resowner.h"

#include "ik_hash.h"

static ResourceOwner ik_hash_owner = NULL;

void
ik_sha256_hex(const char *data, size_t len, char hex[IK_HASH_HEX_LEN + 1])
{
	pg_cryptohash_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	ResourceOwner save = CurrentResourceOwner;

	if (CurrentResourceOwner == NULL)
	{
		if (ik_hash_owner == NULL)
			ik_hash_owner = ResourceOwnerCreate(NULL, "imagekit hashing");
		CurrentResourceOwner = ik_hash_owner;
	}
	ctx = pg_cryptohash_create(PG_SHA256);
	CurrentResourceOwner = save;
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
	{
		const char *why = pg_cryptohash_error(ctx);

		pg_cryptohash_free(ctx);
		elog(ERROR, "could not compute SHA-256: %s", why);
	}
	pg_cryptohash_free(ctx);
	hex_encode((const char *) digest, sizeof(digest), hex);
	hex[IK_HASH_HEX_LEN] = '\0';
}
