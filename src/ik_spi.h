/*-------------------------------------------------------------------------
 *
 * ik_spi.h
 *	  Prepared SPI plans kept for the life of the process, and arrays to
 *	  pass to them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IK_SPI_H
#define IK_SPI_H

#include "executor/spi.h"

extern int	ik_spi_execute(const char *sql, int nargs, Oid *argtypes,
						   Datum *args, const char *nulls, bool read_only,
						   long count);
extern Datum ik_spi_array(Datum *elems, bool *nulls, int n, Oid type);
extern Datum ik_spi_text_or_null(const char *s, bool *isnull);

#endif							/* IK_SPI_H */
