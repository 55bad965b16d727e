#ifndef AUTH_PQLIB_H             /* pqlib.h: libpq, opened when used */
#define AUTH_PQLIB_H
#include <stdbool.h>
#include <libpq-fe.h>

/* The daemon does not link libpq: it and the Kerberos, LDAP and SASL
 * libraries it pulls in cost every start on SQLite a few milliseconds of
 * loading (README.md, "Performance"). The PostgreSQL backend opens it
 * with pqlib_load() when AUTH_DATABASE_URL names PostgreSQL, and calls it
 * through this table: a file that includes this header calls PQexec()
 * and the rest as usual, each name being defined as its table entry. The
 * package still depends on libpq5. */
#define PQLIB_FUNCS(X)                                                      \
    X(PQclear) X(PQcmdTuples) X(PQconnectdbParams) X(PQconninfoFree)        \
    X(PQconninfoParse) X(PQconsumeInput) X(PQenterPipelineMode)             \
    X(PQerrorMessage) X(PQexec) X(PQexitPipelineMode) X(PQfinish)           \
    X(PQflush) X(PQfreemem) X(PQftype) X(PQgetResult) X(PQgetisnull)        \
    X(PQgetlength) X(PQgetvalue) X(PQisBusy) X(PQnfields) X(PQnotifies)     \
    X(PQntuples) X(PQpipelineSync) X(PQresultErrorField)                    \
    X(PQresultStatus) X(PQsendFlushRequest) X(PQsendPrepare)                \
    X(PQsendQuery) X(PQsendQueryParams)                                     \
    X(PQsendQueryPrepared) X(PQsetNoticeProcessor) X(PQsetnonblocking)      \
    X(PQsocket) X(PQstatus) X(PQtransactionStatus)

struct pqlib {
#define PQLIB_FIELD(f) __typeof__(f) *f;
    PQLIB_FUNCS(PQLIB_FIELD)
#undef PQLIB_FIELD
};

/* Filled by pqlib_load(); read only after it returned true. */
extern struct pqlib pqlib;

/* Opens libpq.so.5 and fills `pqlib`, once per process (thread-safe;
 * later calls answer the first one's result). False when it cannot be
 * opened or lacks a function; *why (static storage) says which. */
bool pqlib_load(const char **why);

#ifndef PQLIB_TABLE_ITSELF
#define PQclear pqlib.PQclear
#define PQcmdTuples pqlib.PQcmdTuples
#define PQconnectdbParams pqlib.PQconnectdbParams
#define PQconninfoFree pqlib.PQconninfoFree
#define PQconninfoParse pqlib.PQconninfoParse
#define PQconsumeInput pqlib.PQconsumeInput
#define PQenterPipelineMode pqlib.PQenterPipelineMode
#define PQerrorMessage pqlib.PQerrorMessage
#define PQexec pqlib.PQexec
#define PQexitPipelineMode pqlib.PQexitPipelineMode
#define PQfinish pqlib.PQfinish
#define PQflush pqlib.PQflush
#define PQfreemem pqlib.PQfreemem
#define PQftype pqlib.PQftype
#define PQgetResult pqlib.PQgetResult
#define PQgetisnull pqlib.PQgetisnull
#define PQgetlength pqlib.PQgetlength
#define PQgetvalue pqlib.PQgetvalue
#define PQisBusy pqlib.PQisBusy
#define PQnfields pqlib.PQnfields
#define PQnotifies pqlib.PQnotifies
#define PQntuples pqlib.PQntuples
#define PQpipelineSync pqlib.PQpipelineSync
#define PQresultErrorField pqlib.PQresultErrorField
#define PQresultStatus pqlib.PQresultStatus
#define PQsendFlushRequest pqlib.PQsendFlushRequest
#define PQsendPrepare pqlib.PQsendPrepare
#define PQsendQuery pqlib.PQsendQuery
#define PQsendQueryParams pqlib.PQsendQueryParams
#define PQsendQueryPrepared pqlib.PQsendQueryPrepared
#define PQsetNoticeProcessor pqlib.PQsetNoticeProcessor
#define PQsetnonblocking pqlib.PQsetnonblocking
#define PQsocket pqlib.PQsocket
#define PQstatus pqlib.PQstatus
#define PQtransactionStatus pqlib.PQtransactionStatus
#endif

#endif
