/*-------------------------------------------------------------------------
 *
 * ik_enqueue.c
 *	  The INSERT trigger of attached tables: new rows without a URL go to
 *	  imagekit.inbox.
 *
 * It runs for every INSERT statement on an attached table, so it is written
 * to cost as little as possible: a statement-level trigger with a
 * transition table (a bulk INSERT or COPY is one call, not one per row),
 * plain heap inserts into an inbox without indexes, and no SPI, no
 * PL/pgSQL and no SECURITY DEFINER switch.  The workers move the inbox into
 * imagekit.jobs.  Only superusers (that is, imagekit.attach()) may create a
 * trigger on it: EXECUTE is revoked from PUBLIC.
 *
 * Trigger arguments: the key column, the source column, the target column.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "catalog/namespace.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"


#include "ik_shmem.h"
#include "ik_source.h"

PG_FUNCTION_INFO_V1(imagekit_enqueue_insert);

/*
 * Count "n" rows of table "relid" put in the inbox, for imagekit.status:
 * the inbox's own count trigger does not see plain heap inserts, so one
 * row is appended to imagekit.job_counts the same way (it has no index).
 */
static void
ik_count_inbox(Oid nspid, Datum relid, int64 n)
{
	Oid			counts_oid = get_relname_relid("job_counts", nspid);
	Relation	counts;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (!OidIsValid(counts_oid))
		elog(ERROR, "table imagekit.job_counts does not exist");
	counts = table_open(counts_oid, RowExclusiveLock);
	values[0] = relid;
	values[1] = CStringGetTextDatum("inbox");
	values[2] = Int64GetDatum(n);
	simple_heap_insert(counts, heap_form_tuple(RelationGetDescr(counts), values, nulls));
	table_close(counts, NoLock);
}

static int
ik_column(Relation rel, const char *name)
{
	int			attno = SPI_fnumber(RelationGetDescr(rel), name);

	if (attno <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of table \"%s\" does not exist",
						name, RelationGetRelationName(rel)),
				 errhint("Detach and attach the table again with imagekit.detach() and imagekit.attach().")));
	return attno;
}

Datum
imagekit_enqueue_insert(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Relation	rel;
	Relation	inbox;
	Oid			inbox_oid;
	int			keyno;
	int			srcno;
	int			tgtno;
	Oid			keyout;
	bool		keyvarlena;
	TupleTableSlot *slot;
	MemoryContext rowcxt;
	MemoryContext oldcxt;
	Datum		now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	Datum		seq = Int64GetDatum(0);
	int			natts;
	Oid			nspid;
	Datum		relid;
	int64		queued = 0;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		trigdata->tg_newtable == NULL)
		elog(ERROR, "imagekit_enqueue_insert must be an AFTER INSERT statement trigger with a NEW TABLE");
	trigger = trigdata->tg_trigger;
	if (trigger->tgnargs != 3)
		elog(ERROR, "imagekit_enqueue_insert takes 3 arguments");

	rel = trigdata->tg_relation;
	relid = ObjectIdGetDatum(RelationGetRelid(rel));
	keyno = ik_column(rel, trigger->tgargs[0]);
	srcno = ik_column(rel, trigger->tgargs[1]);
	tgtno = ik_column(rel, trigger->tgargs[2]);
	getTypeOutputInfo(TupleDescAttr(RelationGetDescr(rel), keyno - 1)->atttypid,
					  &keyout, &keyvarlena);
	/* the table may have changed since attach(): the source must be text */
	switch (TupleDescAttr(RelationGetDescr(rel), srcno - 1)->atttypid)
	{
		case TEXTOID:
		case VARCHAROID:
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of table \"%s\" is not of type text",
							trigger->tgargs[1], RelationGetRelationName(rel)),
					 errhint("Detach the table with imagekit.detach(), or change the column back to text.")));
	}

	nspid = get_namespace_oid("imagekit", false);
	inbox_oid = get_relname_relid("inbox", nspid);
	if (!OidIsValid(inbox_oid))
		elog(ERROR, "table imagekit.inbox does not exist");
	inbox = table_open(inbox_oid, RowExclusiveLock);
	/* 4 columns: version 1.1, not updated yet (no seq, no counts) */
	natts = RelationGetDescr(inbox)->natts;
	if (natts != 4 && natts != 5)
		elog(ERROR, "table imagekit.inbox does not have the columns of any known version");

	slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsMinimalTuple);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "imagekit enqueue",
								   ALLOCSET_SMALL_SIZES);
	tuplestore_rescan(trigdata->tg_newtable);
	while (tuplestore_gettupleslot(trigdata->tg_newtable, true, false, slot))
	{
		bool		isnull;
		Datum		src;
		Datum		key;
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};
		HeapTuple	tuple;

		(void) slot_getattr(slot, tgtno, &isnull);
		if (!isnull)
			continue;			/* it has its URL already */
		src = slot_getattr(slot, srcno, &isnull);
		if (isnull || VARSIZE_ANY_EXHDR(DatumGetPointer(src)) == 0)
			continue;			/* nothing to fetch */

		key = slot_getattr(slot, keyno, &isnull);
		if (isnull)
			continue;			/* no key, no way to find the row again */
		if (VARSIZE_ANY_EXHDR(DatumGetPointer(src)) > IK_SOURCE_MAX_URL_LEN)
			continue;			/* not a URL anyone serves; left alone */

		if (queued == 0 && natts == 5)
		{
			/*
			 * One number orders this statement's rows after every earlier
			 * queuing of the same keys (a statement has each key once).
			 */
			Oid			seqid = get_relname_relid("row_seq", nspid);

			if (!OidIsValid(seqid))
				elog(ERROR, "sequence imagekit.row_seq does not exist");
			seq = Int64GetDatum(nextval_internal(seqid, false));
		}

		oldcxt = MemoryContextSwitchTo(rowcxt);
		values[0] = relid;
		values[1] = CStringGetTextDatum(OidOutputFunctionCall(keyout, key));
		values[2] = src;		/* text or varchar, binary-compatible */
		values[3] = now;
		values[4] = seq;
		tuple = heap_form_tuple(RelationGetDescr(inbox), values, nulls);
		simple_heap_insert(inbox, tuple);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(rowcxt);
		queued++;
	}

	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(rowcxt);
	table_close(inbox, NoLock);

	if (queued > 0 && natts == 5)
		ik_count_inbox(nspid, relid, queued);
	if (queued > 0)
		ik_wake_on_commit();
	return PointerGetDatum(NULL);
}
