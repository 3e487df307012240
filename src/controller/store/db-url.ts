/**
 * `--db` values: a SQLite path or a PostgreSQL URL, and the URL as it may be shown. No driver is
 * loaded here (the configuration reads it at every start).
 */

/** The URL with its password replaced, for logs and messages. */
export function redactDbUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    for (const k of [...u.searchParams.keys()]) if (/pass|secret|key/i.test(k)) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return 'postgres://…';
  }
}

/** Whether `--db` names a PostgreSQL database rather than a SQLite file. */
export const isPostgresUrl = (db: string): boolean => /^postgres(ql)?:\/\//i.test(db);
