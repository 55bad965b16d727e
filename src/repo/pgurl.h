#ifndef AUTH_PGURL_H             /* pgurl.h: a PostgreSQL URL's values */
#define AUTH_PGURL_H

/* `key` when libpq 15 would refuse `val` as the value of option `key` only
 * when it connects (a port that is no port, an sslmode it does not know,
 * an int it cannot read), else NULL: such a URL is the operator's to
 * mend (exit 2), not a start to retry. Options it does not check, and
 * those libpq refuses when it parses the URL, give NULL. */
const char *pgurl_option_refused(const char *key, const char *val);

#endif
