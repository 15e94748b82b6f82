/*-------------------------------------------------------------------------
 *
 * ik_redact.c
 *	  Keep the private key out of the server log and pg_stat_activity.
 *
 * The extension itself never puts the key in a message, but PostgreSQL may:
 * the postmaster logs "parameter "imagekit.private_key" changed to "..."" on
 * a reload, and log_statement logs an ALTER SYSTEM that sets it.  An
 * emit_log_hook, installed by _PG_init (so in the postmaster too when the
 * library is preloaded), rewrites such messages before they are written:
 *
 * - any text that gives imagekit.private_key a value (=, TO, a comma as in
 *   set_config(), "changed to") is cut after the name, case-insensitively;
 * - any occurrence of the current key's value is masked;
 * - when the statement names the setting or holds the key, the STATEMENT
 *   line and the bind parameters are suppressed.
 *
 * A ProcessUtility_hook does the same for pg_stat_activity: a top-level
 * utility statement that names the setting or holds the key (ALTER SYSTEM
 * SET imagekit.private_key = '...', the way to rotate the key) reports a
 * redacted text as the session's query before it runs, so the key is not
 * shown there while it runs nor afterwards while the session is idle.
 * Whether the statement sets the key is read from its parse tree, so that
 * comments or odd spacing cannot hide the value from the cut.  A statement
 * that fails before it gets there (a syntax error) is redacted in
 * pg_stat_activity by the log hook, when its ERROR is reported.
 *
 * The log hook must not fail: it allocates in ErrorContext and does nothing
 * else that can raise an error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/parsenodes.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/backend_status.h"
#include "utils/elog.h"

#include "ik_redact.h"

#define IK_SECRET_SETTING "private_key"
#define IK_MASK "********"

static emit_log_hook_type prev_emit_log_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;
static char **ik_secret = NULL;

/* Case-insensitive strstr; setting names are case-insensitive. */
static const char *
ik_find_setting(const char *text)
{
	size_t		n = strlen(IK_SECRET_SETTING);

	for (const char *p = text; *p; p++)
	{
		if (pg_strncasecmp(p, IK_SECRET_SETTING, n) == 0)
			return p;
	}
	return NULL;
}

static bool
ik_is_ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '_' || IS_HIGHBIT_SET(c);
}

/* Skip white space and SQL comments (not nested ones). */
static const char *
ik_skip_space(const char *q)
{
	for (;;)
	{
		if (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r' || *q == '\f')
			q++;
		else if (q[0] == '-' && q[1] == '-')
		{
			while (*q != '\0' && *q != '\n')
				q++;
		}
		else if (q[0] == '/' && q[1] == '*')
		{
			const char *end = strstr(q + 2, "*/");

			q = end ? end + 2 : q + strlen(q);
		}
		else
			return q;
	}
}

/*
 * Where a value is being given to the setting in "text"
 * ("private_key = ...", "private_key TO ...", "private_key" changed to",
 * set_config('imagekit.private_key', ...)): the position just after the
 * setting's name, or NULL.
 */
static const char *
ik_find_assignment(const char *text)
{
	const char *p = text;

	while ((p = ik_find_setting(p)) != NULL)
	{
		const char *q;

		p += strlen(IK_SECRET_SETTING);
		if (*p == '"' || *p == '\'')
			p++;
		q = ik_skip_space(p);
		if (*q == '=' || *q == ',' ||
			(pg_strncasecmp(q, "to", 2) == 0 && !ik_is_ident_char(q[2])) ||
			pg_strncasecmp(q, "changed to", 10) == 0)
			return p;
	}
	return NULL;
}

static bool
ik_text_is_sensitive(const char *text)
{
	const char *secret = *ik_secret;

	if (text == NULL)
		return false;
	if (ik_find_assignment(text) != NULL)
		return true;
	return secret != NULL && secret[0] != '\0' && strstr(text, secret) != NULL;
}

/*
 * A copy of "text" with the key masked and any assignment to it cut; with
 * "cut_at_name", cut just after the first mention of the setting.
 */
static char *
ik_redact_text(const char *text, bool cut_at_name)
{
	const char *secret = *ik_secret;
	size_t		slen = (secret != NULL) ? strlen(secret) : 0;
	const char *cut = ik_find_assignment(text);
	StringInfoData buf;
	const char *p = text;

	if (cut_at_name && ik_find_setting(text) != NULL)
		cut = ik_find_setting(text) + strlen(IK_SECRET_SETTING);
	initStringInfo(&buf);
	while (*p != '\0')
	{
		if (p == cut)
		{
			appendStringInfoString(&buf, " [redacted]");
			break;
		}
		if (slen > 0 && strncmp(p, secret, slen) == 0)
		{
			appendStringInfoString(&buf, IK_MASK);
			p += slen;
			continue;
		}
		appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
}

static void
ik_redact_field(char **field)
{
	if (ik_text_is_sensitive(*field))
		*field = ik_redact_text(*field, false);
}

static void
ik_emit_log_hook(ErrorData *edata)
{
	ik_redact_field(&edata->message);
	ik_redact_field(&edata->detail);
	ik_redact_field(&edata->detail_log);
	ik_redact_field(&edata->hint);
	ik_redact_field(&edata->context);
	ik_redact_field(&edata->internalquery);

	/*
	 * A statement that names the setting may carry a new key anywhere, in
	 * its text or in its bind parameters: keep both out.
	 */
	if (debug_query_string != NULL &&
		(ik_find_setting(debug_query_string) != NULL ||
		 ik_text_is_sensitive(debug_query_string)))
	{
		/* log_statement's line is the statement itself: cut it at the name */
		if (edata->message && ik_find_setting(edata->message) != NULL &&
			strstr(edata->message, debug_query_string) != NULL)
			edata->message = ik_redact_text(edata->message, true);

		/*
		 * A statement that fails (before ProcessUtility, say, with a syntax
		 * error) stays in pg_stat_activity while the session is idle.
		 */
		if (edata->elevel >= ERROR)
			pgstat_report_activity(STATE_RUNNING,
								   ik_redact_text(debug_query_string, true));
		edata->hide_stmt = true;
		if (edata->detail_log && strncmp(edata->detail_log, "parameters:", 11) == 0)
			edata->detail_log = pstrdup("parameters: [redacted]");
		if (edata->detail && strncmp(edata->detail, "parameters:", 11) == 0)
			edata->detail = pstrdup("parameters: [redacted]");
	}

	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* Does this utility statement give the setting a value? */
static bool
ik_statement_sets_secret(Node *stmt)
{
	VariableSetStmt *set = NULL;

	if (IsA(stmt, AlterSystemStmt))
		set = ((AlterSystemStmt *) stmt)->setstmt;
	else if (IsA(stmt, VariableSetStmt))
		set = (VariableSetStmt *) stmt;
	return set != NULL && set->name != NULL &&
		ik_find_setting(set->name) != NULL;
}

static void
ik_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	if (context == PROCESS_UTILITY_TOPLEVEL && queryString != NULL &&
		(ik_find_setting(queryString) != NULL ||
		 ik_text_is_sensitive(queryString)))
	{
		/* cut at the name whatever the syntax when it is being set */
		char	   *shown = ik_redact_text(queryString,
										   ik_statement_sets_secret(pstmt->utilityStmt));

		pgstat_report_activity(STATE_RUNNING, shown);
		pfree(shown);
	}

	if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context,
								  params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* Watch *secret (a GUC variable) from now on. */
void
ik_redact_install(char **secret)
{
	ik_secret = secret;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = ik_emit_log_hook;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = ik_process_utility;
}
