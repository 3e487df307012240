/**
 * The PostgreSQL connection shared by the store (`pg-store.ts`, `pg-access.ts`) and the cluster
 * (`pg-cluster.ts`): one `pg` pool per controller, bigint columns read as numbers (every bigint
 * here is a time in ms, a byte count or a sequence, all far below 2^53), and `tx` for the port's
 * one-transaction operations. Serialization failures and deadlocks (40001, 40P01) are retried a
 * few times: the port promises that each call is atomic, not that it never meets a concurrent one.
 *
 * Every connection made here (the pool's, and `client()`'s dedicated ones) is a `SafeClient`:
 * - its string parameters have U+0000 replaced by U+FFFD: PostgreSQL's `text` cannot hold a NUL
 *   (22021), and a step name or a cancel reason may carry one; refusing the write would lose a
 *   completion for good (the agent retries a 500 until its deadline). Buffers (bytea) are untouched.
 * - a failure that says the database cannot be reached (see `isUnavailable`) becomes
 *   `STORE_UNAVAILABLE` (503), so agents and vm-monitor.sh move to another controller.
 * - the server notices a dead client in seconds (`SESSION_SETTINGS`): a controller host that
 *   lost power or its network otherwise holds its row locks and the leadership lock until the
 *   kernel gives up on the socket (15 min to 2 h).
 * - the client side is bounded by the application, not by TCP: `SESSION_SETTINGS` configure only
 *   the server's socket, and `pg`'s keepalive sets only the idle delay (the probes then follow
 *   the OS defaults, ~11 min). So every query has a client-side `query_timeout`
 *   (`QUERY_TIMEOUT_MS`, 30 s): past it the query fails `STORE_UNAVAILABLE` and its connection
 *   is destroyed (a black-holed socket would otherwise hang every later query on it for the
 *   ~15 min of TCP retransmission). A statement that may rightly run longer passes its own
 *   `query_timeout` (`LONG_QUERY_TIMEOUT_MS`: migrate's lock wait and schema changes); retention's
 *   deletes (100 builds a batch) and `expo-worker migrate`'s copy (500 rows or 4 MiB an INSERT)
 *   are short statements and keep the bound. The
 *   dedicated connections have their own checks (pg-cluster.ts: a bounded `SELECT 1`).
 * - it remembers when it last found the database unreachable (`lastUnavailableAt`): the
 *   watchdog counts its grace from then, since no controller could watch during an outage.
 *
 * No `statement_timeout` is set for the session: a dead client's statements end with its session
 * anyway (keepalives, `tcp_user_timeout`). What must not hang on a live but stuck peer, a lock
 * wait, has `lock_timeout`.
 */
import pg from 'pg';
import { ExpoError } from '../../protocol/errors.ts';

export interface PgDbOptions {
  /** `postgres://user:password@host:port/database?…` (libpq's URL form, read by `pg`). Its own `options` are kept, after ours. */
  url: string;
  /** Connections in the pool. Default 10. */
  max?: number;
  /** Name shown in pg_stat_activity. Default `expo-worker`. */
  applicationName?: string;
  /** The pool's `query_timeout`, ms. Default `QUERY_TIMEOUT_MS` (tests shorten it). */
  queryTimeoutMs?: number;
}

/** A connection inside `tx`, or the pool: both answer `query`. */
export type PgQueryable = Pick<pg.PoolClient, 'query'>;

const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

const RETRY_CODES = new Set(['40001', '40P01']);

/**
 * Server-side settings of every session (sent as the startup `options`). A peer that vanished
 * without closing its socket is found by keepalive after ~11 s idle (5 + 3×2), or after 10 s of
 * unacknowledged data (`tcp_user_timeout`, ms); a session left idle inside a transaction is ended
 * after 30 s (ours never wait between statements that long); a lock wait gives up after 10 s
 * (ms), before the agent's 30 s request timeout, so the agent hears an error rather than nothing.
 * Together: a dead controller's row locks and advisory locks are released within ~30 s.
 */
export const SESSION_SETTINGS = {
  tcp_keepalives_idle: 5,
  tcp_keepalives_interval: 2,
  tcp_keepalives_count: 3,
  tcp_user_timeout: 10_000,
  idle_in_transaction_session_timeout: 30_000,
  lock_timeout: 10_000,
} as const;
const SESSION_OPTIONS = Object.entries(SESSION_SETTINGS)
  .map(([k, v]) => `-c ${k}=${v}`)
  .join(' ');
/** How long opening a connection may take, ms (the pool's wait for one and the client's connect). */
const CONNECT_TIMEOUT_MS = 10_000;
/** How long a query may wait for its answer, ms, unless it says otherwise: under the agent's 30 s request timeout plus a retry, and far above any of ours. */
export const QUERY_TIMEOUT_MS = 30_000;
/** The `query_timeout` of a statement that may rightly run long (migrate's lock wait and schema changes), ms. */
export const LONG_QUERY_TIMEOUT_MS = 24 * 3600_000;
/** A statement that may outlast `QUERY_TIMEOUT_MS` (`query_timeout` is pg's per-query option; not in @types/pg's QueryConfig). */
export const longQuery = (text: string, values?: unknown[]): pg.QueryConfig => ({ text, ...(values ? { values } : {}), query_timeout: LONG_QUERY_TIMEOUT_MS }) as pg.QueryConfig;
/** When the client's own TCP keepalive starts probing an idle connection, ms. */
const KEEPALIVE_DELAY_MS = 5_000;

/** The settings every connection gets, pool or dedicated. */
const connectionConfig = (url: string, applicationName: string): pg.ClientConfig => ({
  connectionString: url,
  types,
  application_name: applicationName,
  keepAlive: true,
  keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
  connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  query_timeout: QUERY_TIMEOUT_MS,
});

const clean = (v: unknown): unknown => (typeof v === 'string' ? v.replaceAll('\u0000', '\uFFFD') : Array.isArray(v) ? v.map(clean) : v);

/** The parameters with U+0000 in every string (and string in an array) replaced by U+FFFD; anything else (Buffers) as is. */
export const withoutNul = (values: readonly unknown[]): unknown[] => values.map(clean);

const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
const UNAVAILABLE_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'ENOTFOUND', 'EAI_AGAIN']);
// pg's and pg-pool's own wordings for a lost or never-made connection (they carry no code).
const UNAVAILABLE_MESSAGES = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable|Query read timeout)/;

/**
 * Whether `err` says the database cannot be reached, rather than that it refused this statement:
 * SQLSTATE class 08 (connection exception), 57P01–57P03 (the server shutting down, crashed or
 * starting), 53300 (too many connections), a socket error, or pg's "Connection terminated",
 * pool connect timeout and query read timeout (`query_timeout`).
 */
export function isUnavailable(err: unknown): boolean {
  if (err === null || typeof err !== 'object') return false;
  const { code, message, errors } = err as { code?: unknown; message?: unknown; errors?: unknown };
  if (typeof code === 'string' && (code.startsWith('08') || UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_ERRNOS.has(code))) return true;
  if (typeof message === 'string' && UNAVAILABLE_MESSAGES.test(message)) return true;
  // Connecting to a host name with several addresses fails with an AggregateError of each.
  return Array.isArray(errors) && errors.length > 0 && errors.every(isUnavailable);
}

// A password could only reach a message inside a URL (`//user:password@`); none of pg's does, but be sure.
const scrub = (text: string): string => text.replace(/\/\/[^/@\s]*@/g, '//***@');

/** `err` as `STORE_UNAVAILABLE` (the original as its `cause`) when it says the database cannot be reached; otherwise `err` itself. */
export function toStoreError(err: unknown): unknown {
  if (err instanceof ExpoError || !isUnavailable(err)) return err;
  const e = err as { message?: unknown; code?: unknown };
  const what = typeof e.message === 'string' && e.message !== '' ? e.message : String(e.code);
  return new ExpoError('STORE_UNAVAILABLE', `the database cannot be reached: ${scrub(what)}`, { cause: err });
}

type Callback = (err: unknown, ...rest: unknown[]) => void;
/** Told of every error that maps to STORE_UNAVAILABLE (PgDb records the time). */
type OnUnavailable = (raw: unknown) => void;

/** `toStoreError(err)`, telling `note` when it is STORE_UNAVAILABLE. */
function mapError(err: unknown, note: OnUnavailable | undefined): unknown {
  const mappedErr = toStoreError(err);
  if (note && mappedErr instanceof ExpoError && mappedErr.code === 'STORE_UNAVAILABLE') note(err);
  return mappedErr;
}

/**
 * Calls `call` with `args`, whose last function (if any) is a node-style callback: errors reach
 * that callback, or the returned promise, as `toStoreError` maps them.
 */
function mapped(call: (...a: unknown[]) => unknown, args: unknown[], note?: OnUnavailable): unknown {
  const i = args.findLastIndex((a) => typeof a === 'function');
  if (i >= 0) {
    const withCb = [...args];
    const cb = args[i] as Callback;
    withCb[i] = ((err, ...rest) => cb(err ? mapError(err, note) : err, ...rest)) satisfies Callback;
    return call(...withCb);
  }
  const out = call(...args);
  return out instanceof Promise ? out.catch((err: unknown) => Promise.reject(mapError(err, note))) : out;
}

/** `query`'s arguments with U+0000 gone from the values, in either form (`(text, values)` or `({text, values})`); a Submittable is left alone. */
function cleanArgs(args: unknown[]): unknown[] {
  const [config, values, ...rest] = args;
  const c = config as { values?: unknown; submit?: unknown } | null;
  const cleanConfig = c !== null && typeof c === 'object' && typeof c.submit !== 'function' && Array.isArray(c.values) ? { ...c, values: withoutNul(c.values) } : config;
  return [cleanConfig, Array.isArray(values) ? withoutNul(values) : values, ...rest].slice(0, Math.max(args.length, 1));
}

/**
 * The one client class behind every connection: our session settings merged before the user's
 * own `options` (`?options=` in the URL or PGOPTIONS, which `pg` puts in `connectionParameters`
 * and which would otherwise replace ours; a later `-c` wins, so the user's still do), and
 * `query`/`connect` with clean parameters and mapped errors.
 */
interface SafeClientConfig extends pg.ClientConfig {
  /** Told of every error that says the database cannot be reached (the pool passes its config, this included, to each client). */
  onUnavailable?: OnUnavailable;
}

class SafeClient extends pg.Client {
  constructor(config: SafeClientConfig) {
    super(config);
    const note = config.onUnavailable;
    // `pg` reads the startup options from here when it connects; not in @types/pg.
    const params = (this as unknown as { connectionParameters: { options?: string } }).connectionParameters;
    params.options = params.options ? `${SESSION_OPTIONS} ${params.options}` : SESSION_OPTIONS;
    const query = super.query.bind(this) as (...a: unknown[]) => unknown;
    const connect = super.connect.bind(this) as (...a: unknown[]) => unknown;
    // Instance properties shadow the prototype's: pg-pool calls them with a callback, we with none.
    Object.assign(this, {
      query: (...args: unknown[]) => mapped(query, cleanArgs(args), (raw) => this.unavailable(raw, note)),
      connect: (...args: unknown[]) => mapped(connect, args, note),
    });
  }

  /**
   * A query failed as unavailable. After a `query_timeout` the connection may be black-holed,
   * with the query still in flight on it: it is destroyed, so the pool drops it (on its
   * `error`/`end`) rather than queueing the next query behind one that never answers.
   */
  private unavailable(raw: unknown, note: OnUnavailable | undefined): void {
    note?.(raw);
    if ((raw as { message?: unknown }).message !== 'Query read timeout') return;
    (this as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream?.destroy?.();
  }
}

export class PgDb {
  readonly pool: pg.Pool;
  /**
   * When (`Date.now()`) a query or connection last failed because the database could not be
   * reached (STORE_UNAVAILABLE), or `-Infinity`. The watchdog's grace counts from here: while the
   * database is away no controller watches, and no heartbeat can be written.
   */
  lastUnavailableAt = Number.NEGATIVE_INFINITY;
  private closed = false;
  private readonly noteUnavailable: OnUnavailable = (): void => {
    this.lastUnavailableAt = Date.now();
  };

  constructor(o: PgDbOptions) {
    const config: SafeClientConfig = { ...connectionConfig(o.url, o.applicationName ?? 'expo-worker'), query_timeout: o.queryTimeoutMs ?? QUERY_TIMEOUT_MS, onUnavailable: this.noteUnavailable };
    const pool = new pg.Pool({ ...config, max: o.max ?? 10, Client: SafeClient as unknown as new () => pg.ClientBase });
    // The pool's own `query` and `connect` fail before any client's when no connection can be
    // made; their errors are mapped too (a client's, passing through, are already).
    const query = pool.query.bind(pool) as (...a: unknown[]) => unknown;
    const connect = pool.connect.bind(pool) as (...a: unknown[]) => unknown;
    Object.assign(pool, { query: (...args: unknown[]) => mapped(query, args, this.noteUnavailable), connect: (...args: unknown[]) => mapped(connect, args, this.noteUnavailable) });
    this.pool = pool;
    // An idle connection the server dropped (a restart, a failover) is taken out of the pool;
    // without a listener its error would crash the process.
    this.pool.on('error', () => undefined);
  }

  /** A new client outside the pool (LISTEN, the leadership lock), with the same settings, NUL replacement and error mapping. */
  client(url: string): pg.Client {
    return new SafeClient({ ...connectionConfig(url, 'expo-worker'), onUnavailable: this.noteUnavailable });
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
