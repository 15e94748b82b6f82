/*-------------------------------------------------------------------------
 *
 * ik_hash.h
 *	  Content hashing: the lowercase hex SHA-256 that names and dedups
 *	  uploaded content.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_HASH_H
#define IK_HASH_H

#define IK_HASH_HEX_LEN 64

extern void ik_sha256_hex(const char *data, size_t len,
						  char hex[IK_HASH_HEX_LEN + 1]);

#endif							/* IK_HASH_H */
