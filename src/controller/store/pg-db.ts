/**
 * The PostgreSQL connection shared by the store (`pg-store.ts`, `pg-access.ts`) and the cluster
 * (`pg-cluster.ts`): one `pg` pool per controller, bigint columns read as numbers (every bigint
 * here is a time in ms, a byte count or a sequence, all far below 2^53), and `tx` for the port's
 * one-transaction operations. Serialization failures and deadlocks (40001, 40P01) are retried a
 * few times: the port promises that each call is atomic, not that it never meets a concurrent one.
 */
import pg from 'pg';

export interface PgDbOptions {
  /** `postgres://user:password@host:port/database?…` (libpq's URL form, read by `pg`). */
  url: string;
  /** Connections in the pool. Default 10. */
  max?: number;
  /** Name shown in pg_stat_activity. Default `expo-worker`. */
  applicationName?: string;
}

/** A connection inside `tx`, or the pool: both answer `query`. */
export type PgQueryable = Pick<pg.PoolClient, 'query'>;

const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

const RETRY_CODES = new Set(['40001', '40P01']);

export class PgDb {
  readonly pool: pg.Pool;
  private closed = false;

  constructor(o: PgDbOptions) {
    this.pool = new pg.Pool({ connectionString: o.url, max: o.max ?? 10, application_name: o.applicationName ?? 'expo-worker', types });
    // An idle connection the server dropped (a restart, a failover) is taken out of the pool;
    // without a listener its error would crash the process.
    this.pool.on('error', () => undefined);
  }

  /** A new client outside the pool (LISTEN, the leadership lock), with the same settings. */
  client(url: string): pg.Client {
    return new pg.Client({ connectionString: url, types, application_name: 'expo-worker' });
  }

  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
    return this.pool.query<R>(sql, params);
  }

  /** Runs `fn` in one transaction (READ COMMITTED unless `fn` says otherwise), retried on a serialization failure or deadlock. */
  async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const c = await this.pool.connect();
      let broken = false;
      try {
        await c.query('BEGIN');
        const result = await fn(c);
        await c.query('COMMIT');
        return result;
      } catch (err) {
        try {
          await c.query('ROLLBACK');
        } catch {
          broken = true;
        }
        if (attempt < 5 && RETRY_CODES.has((err as { code?: string }).code ?? '')) continue;
        throw err;
      } finally {
        c.release(broken);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}
