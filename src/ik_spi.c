/*-------------------------------------------------------------------------
 *
 * ik_spi.c
 *	  Prepared SPI plans kept for the life of the process.
 *
 * The worker runs the same few statements for every job, and
 * imagekit_upload() the same two for every call: parsing and planning them
 * each time would cost more than executing them.  Plans are prepared once
 * per process, keyed by their SQL text, and kept with SPI_keepplan(); the
 * plan cache re-plans them by itself when the objects they use change (a
 * table altered, the extension dropped and created again).
 *
 * Must be called between SPI_connect() and SPI_finish().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "ik_spi.h"

typedef struct IkPlan
{
	char	   *sql;
	SPIPlanPtr	plan;
	struct IkPlan *next;
} IkPlan;

static IkPlan *ik_plans = NULL;

static SPIPlanPtr
ik_spi_plan(const char *sql, int nargs, Oid *argtypes)
{
	IkPlan	   *p;
	SPIPlanPtr	plan;

	for (p = ik_plans; p != NULL; p = p->next)
	{
		if (strcmp(p->sql, sql) == 0)
			return p->plan;
	}

	plan = SPI_prepare(sql, nargs, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the plan of \"%s\"", sql);

	p = MemoryContextAlloc(TopMemoryContext, sizeof(IkPlan));
	p->sql = MemoryContextStrdup(TopMemoryContext, sql);
	p->plan = plan;
	p->next = ik_plans;
	ik_plans = p;
	return plan;
}

/* SPI_execute_with_args, with the plan prepared once per process. */
int
ik_spi_execute(const char *sql, int nargs, Oid *argtypes, Datum *args,
			   const char *nulls, bool read_only, long count)
{
	return SPI_execute_plan(ik_spi_plan(sql, nargs, argtypes), args, nulls,
							read_only, count);
}

/* A text value, or a null one. */
Datum
ik_spi_text_or_null(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* A one-dimensional array of the "n" values "elems" of type "type". */
Datum
ik_spi_array(Datum *elems, bool *nulls, int n, Oid type)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, type,
											  typlen, typbyval, typalign));
}
