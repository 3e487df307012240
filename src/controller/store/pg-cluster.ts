/**
 * The Cluster port on PostgreSQL: events by LISTEN/NOTIFY, the lead by a session advisory lock.
 *
 * Events. `publish` delivers to this controller's subscribers at once and sends
 * `pg_notify(channel, {o: originId, e: event})` on the pool, fire and forget (a failure is logged
 * at most once per interval and counted, never thrown: a missed event costs latency, not
 * correctness). Identical events published within one tick go out as one statement, in which
 * PostgreSQL also drops duplicates. One dedicated connection LISTENs; what arrives from the others
 * (its own origin is skipped: it was delivered at publish) is checked for shape, coalesced per
 * tick, and delivered. States of that connection: connecting → listening → dropped (an error or
 * its end) → reconnecting with backoff → listening; after every reconnect a synthetic `queued` is
 * delivered locally, since anything may have been missed meanwhile (streams and heartbeat waits
 * recheck on their own timers). A connection black-holed by the network (a failover that sent
 * no reset) looks connected and silently delivers nothing, for the ~11 min of the OS's keepalive
 * probes: so every `listenCheckMs` a bounded `SELECT 1` runs on it, and no answer drops it.
 *
 * Lead. Another dedicated connection. States: idle (no connection) → connected, not leading
 * (`pg_try_advisory_lock(KEY)` every `leaderCheckMs`) → leading (`SELECT 1` every
 * `leaderCheckMs`, with a client-side timeout) → on any error, a timeout or the connection's end:
 * lead lost at once (`onLeadChange(false)`), connection dropped, idle again → reconnect on the
 * next check. The lock is the connection's: PostgreSQL frees it when that connection closes (a
 * dead process, a terminated backend), so a survivor takes over within about `leaderCheckMs`.
 * Only the lock holder leads. The one window with two believers is a connection the server has
 * already dropped but whose client has not noticed: it lasts at most one check plus its timeout,
 * after which the old leader stops its jobs (which are all safe to overlap briefly: every change
 * they make is a conditional store write). The leader's timeout is `leadBoundMs`, at least 5 s:
 * after an event-loop stall the timer fires before the reply already in the socket is read, and
 * one long GC must not cost the lead.
 *
 * Clocks. Liveness compares times written by every controller's clock with the leader's, so the
 * clocks must agree (NTP). At start and every `skewCheckMs` this controller measures its clock
 * against the database's (`clockSkewMs`, this clock minus the database's, half the round trip
 * allowed for); past 2 s it warns, and past `maxSkewMs` it does not try for the lead, giving it
 * up when it held it, until the clocks agree again.
 *
 * Both connections name themselves in `pg_stat_activity.application_name`: `expo-worker events
 * <id>` and `expo-worker lead <id>` (`id` is this controller's cluster id).
 *
 * A transaction-pooling proxy (PgBouncer in transaction mode) breaks both LISTEN and session
 * locks: `--db` must reach PostgreSQL directly or through a session-mode pool.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Cluster, ClusterEvent } from '../cluster.ts';
import type { PgDb } from './pg-db.ts';
import { ClockSkew, SKEW_WARN_MS } from './clock-skew.ts';

export interface PgClusterOptions {
  /** The controller's pool (NOTIFY goes through it) and its maker of dedicated connections. */
  db: Pick<PgDb, 'query' | 'client'>;
  /** The database URL (the dedicated connections'). Never logged. */
  url: string;
  logger: Logger;
  /** How often a follower tries for the lead and a leader checks its connection, ms. Default 1 000. */
  leaderCheckMs?: number;
  /** The NOTIFY channel. Default `expo_worker`. */
  channel?: string;
  /** The advisory lock's key. Default a constant of this project's (`LEADER_LOCK_KEY`). */
  lockKey?: number;
  /** How often the event connection's liveness is checked (a bounded `SELECT 1`), ms. Default 5 000. */
  listenCheckMs?: number;
  /** How often this controller's clock is compared with the database's, ms. Default 60 000. */
  skewCheckMs?: number;
  /** The largest |clock skew| at which this controller may lead, ms. Default 2 000 (the app passes max(2 s, T/20)). */
  maxSkewMs?: number;
  /** This controller's clock, ms since the epoch. Default Date.now (a test skews it). */
  now?: () => number;
}

/** The advisory lock of the lead: an arbitrary constant of ours ("expo" in ASCII). */
export const LEADER_LOCK_KEY = 0x6578706f;
/** The events' channel by default. */
export const CLUSTER_CHANNEL = 'expo_worker';
/** At most one "cannot notify" line per this interval, ms. */
const PUBLISH_ERROR_LOG_MS = 30_000;
const RECONNECT_FIRST_MS = 250;
const RECONNECT_MAX_MS = 10_000;
/** How long the event connection's liveness `SELECT 1` may take, ms. */
const LISTEN_CHECK_BOUND_MS = 5000;
/** Ids in events are ours (builds, workers): bounded, so a stray NOTIFY cannot flood a map. */
const ID_MAX = 200;

type State = 'new' | 'running' | 'stopped';

/**
 * Distinct per-build events kept for the other controllers while not yet started (a bound, not a
 * queue: each is a wake-up). `queued`, `report` and `worker` events are always kept: they are
 * what other controllers' waiting polls and heartbeats need, and de-duplicate to a few.
 */
const OUTGOING_BEFORE_START_MAX = 1000;

export class PgCluster implements Cluster {
  readonly id = randomBytes(8).toString('hex');
  /** Publishes whose NOTIFY failed since start (the others missed them). */
  failedPublishes = 0;
  private readonly o: Required<Omit<PgClusterOptions, 'db' | 'url' | 'logger'>> & Pick<PgClusterOptions, 'db' | 'url' | 'logger'>;
  private readonly subscribers = new Set<(e: ClusterEvent) => void>();
  private state: State = 'new';
  private onLead: (leading: boolean) => void = () => undefined;
  private lead = false;
  // Events
  private listener: pg.Client | null = null;
  private listenRetryMs = RECONNECT_FIRST_MS;
  /** Drops the current event connection (and reconnects); set with it. */
  private dropListener: (err?: unknown) => void = () => undefined;
  private listenCheckInFlight = false;
  private listenTimer: NodeJS.Timeout | null = null;
  private readonly outgoing = new Set<string>();
  private readonly incoming = new Set<string>();
  private publishErrorLoggedAt = Number.NEGATIVE_INFINITY;
  private publishErrorsUnlogged = 0;
  // Lead
  private locker: pg.Client | null = null;
  private leadTimer: NodeJS.Timeout | null = null;
  private listenCheckTimer: NodeJS.Timeout | null = null;
  // Clocks
  private readonly clock: ClockSkew;
  private skewTimer: NodeJS.Timeout | null = null;
  /** Set by `resign`: the next check does not try for the lead, leaving it to another controller. */
  private sitOut = false;

  constructor(options: PgClusterOptions) {
    this.o = { leaderCheckMs: 1000, channel: CLUSTER_CHANNEL, lockKey: LEADER_LOCK_KEY, listenCheckMs: 5000, skewCheckMs: 60_000, maxSkewMs: SKEW_WARN_MS, now: Date.now, ...options };
    this.clock = new ClockSkew({ db: this.o.db, logger: this.o.logger, now: this.o.now, maxSkewMs: this.o.maxSkewMs });
    if (!Number.isInteger(this.o.leaderCheckMs) || this.o.leaderCheckMs < 10) throw new Error(`PgCluster: leaderCheckMs must be an integer of at least 10 (got ${this.o.leaderCheckMs})`);
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(this.o.channel)) throw new Error(`PgCluster: channel must be a plain lower-case identifier (got ${this.o.channel})`);
  }

  get leading(): boolean {
    return this.lead;
  }

  resign(): void {
    if (!this.lead || this.state !== 'running') return;
    this.sitOut = true;
    this.dropLocker(new Error('its watchdog sweeps keep failing'));
  }

  /** This controller's clock minus the database's at the last measure, ms; null before the first (or when it failed). */
  get clockSkewMs(): number | null {
    return this.clock.skewMs;
  }

  /**
   * Delivers `e` here at once and to the other controllers with the next NOTIFY. Before `start`
   * (the app answers requests a moment before the cluster starts) events wait, up to
   * `OUTGOING_BEFORE_START_MAX` distinct per-build ones (the other kinds always), and go out when
   * it starts: a submit or cancel answered in that window still wakes the other controllers' waits.
   */
  publish(e: ClusterEvent): void {
    this.deliver(e);
    if (this.state === 'stopped') return;
    if (this.state === 'new' && e.kind === 'build' && this.outgoing.size >= OUTGOING_BEFORE_START_MAX) return;
    const first = this.outgoing.size === 0;
    this.outgoing.add(JSON.stringify({ o: this.id, e }));
    if (first && this.state === 'running') setImmediate(() => this.flushOutgoing());
  }

  subscribe(fn: (e: ClusterEvent) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  async start(onLeadChange: (leading: boolean) => void): Promise<void> {
    if (this.state !== 'new') throw new Error('PgCluster: start may be called once');
    this.onLead = onLeadChange;
    this.state = 'running';
    // What was published before the start (NOTIFY goes through the pool: no listener needed).
    if (this.outgoing.size > 0) setImmediate(() => this.flushOutgoing());
    try {
      await this.listen();
      await this.clock.measure();
    } catch (err) {
      this.state = 'stopped';
      throw err;
    }
    this.leadTimer = setTimeout(() => this.checkLead(), 0);
    this.skewTimer = setInterval(() => void this.clock.measure(), this.o.skewCheckMs);
    this.listenCheckTimer = setInterval(() => this.checkListener(), this.o.listenCheckMs);
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.listenTimer) clearTimeout(this.listenTimer);
    if (this.leadTimer) clearTimeout(this.leadTimer);
    if (this.skewTimer) clearInterval(this.skewTimer);
    if (this.listenCheckTimer) clearInterval(this.listenCheckTimer);
    this.listenTimer = this.leadTimer = this.skewTimer = this.listenCheckTimer = null;
    // A check in flight is not awaited (a connect may hang): after this it changes nothing.
    this.loseLead();
    // Ending the connection frees the lock at once: another controller takes over on its next check.
    const clients = [this.locker, this.listener];
    this.locker = this.listener = null;
    await Promise.all(clients.map((c) => c?.end().catch(() => undefined)));
  }

  // ---- events ----

  private deliver(e: ClusterEvent): void {
    for (const fn of [...this.subscribers]) {
      try {
        fn(e);
      } catch (err) {
        this.o.logger.error({ err, event: e.kind }, 'cluster event subscriber failed');
      }
    }
  }

  private flushOutgoing(): void {
    const payloads = [...this.outgoing];
    this.outgoing.clear();
    if (payloads.length === 0 || this.state !== 'running') return;
    // One statement, one transaction: PostgreSQL sends each distinct payload once.
    this.o.db.query('SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p', [this.o.channel, payloads]).then(
      () => undefined,
      (err: unknown) => {
        this.failedPublishes += payloads.length;
        if (Date.now() - this.publishErrorLoggedAt < PUBLISH_ERROR_LOG_MS) {
          this.publishErrorsUnlogged += payloads.length;
          return;
        }
        this.o.logger.warn({ err: errSummary(err), failedSinceLastLine: this.publishErrorsUnlogged }, 'cannot tell the other controllers of a change (they will see it on their own timers)');
        this.publishErrorLoggedAt = Date.now();
        this.publishErrorsUnlogged = 0;
      },
    );
  }

  private async listen(): Promise<void> {
    const c = this.o.db.client(this.o.url);
    let dropped = false;
    const drop = (err?: unknown) => {
      if (dropped) return;
      dropped = true;
      if (this.listener === c) this.listener = null;
      c.end().catch(() => undefined);
      if (this.state !== 'running') return;
      this.o.logger.warn({ err: errSummary(err), retryInMs: this.listenRetryMs }, 'lost the cluster event connection; reconnecting');
      this.scheduleListen();
    };
    c.on('error', drop);
    c.on('end', () => drop());
    this.dropListener = drop;
    c.on('notification', (m) => {
      if (m.channel === this.o.channel && m.payload !== undefined) this.receive(m.payload);
    });
    try {
      await c.connect();
      // Named with our id, so an operator (or a test) can tell the connections apart in pg_stat_activity.
      await c.query(`SELECT set_config('application_name', $1, false)`, [`expo-worker events ${this.id}`]);
      await c.query(`LISTEN ${this.o.channel}`);
    } catch (err) {
      dropped = true;
      c.end().catch(() => undefined);
      throw err;
    }
    if (this.state !== 'running') {
      dropped = true;
      await c.end().catch(() => undefined);
      return;
    }
    this.listener = c;
    this.listenRetryMs = RECONNECT_FIRST_MS;
  }

  /** A bounded `SELECT 1` on the event connection: no answer means it delivers nothing either, so it is dropped and made again. */
  private checkListener(): void {
    const c = this.listener;
    if (c === null || this.listenCheckInFlight || this.state !== 'running') return;
    this.listenCheckInFlight = true;
    const drop = this.dropListener;
    bounded(c.query('SELECT 1'), LISTEN_CHECK_BOUND_MS)
      .then(
        () => undefined,
        (err: unknown) => {
          if (this.listener === c) drop(err);
        },
      )
      .finally(() => {
        this.listenCheckInFlight = false;
      });
  }

  private scheduleListen(): void {
    const wait = this.listenRetryMs;
    this.listenRetryMs = Math.min(RECONNECT_MAX_MS, this.listenRetryMs * 2);
    this.listenTimer = setTimeout(() => {
      this.listenTimer = null;
      this.listen().then(
        () => {
          if (this.state !== 'running') return;
          this.o.logger.info('cluster event connection restored');
          // Whatever was published while we were away is lost: let the waiters look again.
          this.deliver({ kind: 'queued' });
        },
        (err: unknown) => {
          if (this.state !== 'running') return;
          this.o.logger.warn({ err: errSummary(err), retryInMs: this.listenRetryMs }, 'cannot reconnect the cluster event connection; retrying');
          this.scheduleListen();
        },
      );
    }, wait);
  }

  private receive(payload: string): void {
    const first = this.incoming.size === 0;
    this.incoming.add(payload);
    if (first) setImmediate(() => this.flushIncoming());
  }

  private flushIncoming(): void {
    const payloads = [...this.incoming];
    this.incoming.clear();
    if (this.state !== 'running') return;
    for (const p of payloads) {
      const e = parseEvent(p, this.id);
      if (e) this.deliver(e);
    }
  }

  // ---- lead ----

  private checkLead(): void {
    this.leadTimer = null;
    if (this.state !== 'running') return;
    void this.leadCheck().finally(() => {
      if (this.state === 'running') this.leadTimer = setTimeout(() => this.checkLead(), this.o.leaderCheckMs);
    });
  }

  private async leadCheck(): Promise<void> {
    if (this.sitOut) {
      this.sitOut = false;
      return;
    }
    try {
      if (!this.clock.agrees()) {
        // Not leading with a clock the others' heartbeats would be judged against wrongly.
        if (this.lead || this.locker) this.dropLocker(new Error(`clock skew ${this.clock.skewMs} ms`));
        return;
      }
      const c = this.locker ?? (await this.connectLocker());
      if (c === null) return;
      // A client-side bound: a connection the server dropped without a word must not keep us leading.
      const boundMs = leadBoundMs(this.o.leaderCheckMs);
      if (this.lead) {
        await bounded(c.query('SELECT 1'), boundMs);
        return;
      }
      const r = await bounded(c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [this.o.lockKey]), boundMs);
      if (r.rows[0]?.ok === true && this.state === 'running' && this.locker === c) {
        this.lead = true;
        this.o.logger.info('this controller leads now (watchdog and scheduled jobs run here)');
        this.tellLead(true);
      }
    } catch (err) {
      this.dropLocker(err);
    }
  }

  private async connectLocker(): Promise<pg.Client | null> {
    const c = this.o.db.client(this.o.url);
    c.on('error', (err) => this.dropLocker(err, c));
    c.on('end', () => this.dropLocker(new Error('connection ended'), c));
    try {
      await c.connect();
      await c.query(`SELECT set_config('application_name', $1, false)`, [`expo-worker lead ${this.id}`]);
    } catch (err) {
      c.removeAllListeners('end');
      c.end().catch(() => undefined);
      throw err;
    }
    if (this.state !== 'running') {
      await c.end().catch(() => undefined);
      return null;
    }
    this.locker = c;
    return c;
  }

  /** The lock connection failed or ended: the lock may be gone, so the lead is lost now. */
  private dropLocker(err: unknown, which?: pg.Client): void {
    const c = this.locker;
    if (which !== undefined && which !== c) return;
    this.locker = null;
    if (c) {
      c.removeAllListeners('end');
      c.end().catch(() => undefined);
    }
    if (this.lead) this.o.logger.warn({ err: errSummary(err) }, 'lost the lead (its database connection failed); trying again');
    else if (this.state === 'running') this.o.logger.debug({ err: errSummary(err) }, 'leader lock connection failed; trying again');
    this.loseLead();
  }

  private loseLead(): void {
    if (!this.lead) return;
    this.lead = false;
    this.tellLead(false);
  }

  /** A failing `onLeadChange` is the app's bug: logged, and it changes nothing about the lock. */
  private tellLead(leading: boolean): void {
    try {
      this.onLead(leading);
    } catch (err) {
      this.o.logger.error({ err, leading }, 'onLeadChange failed');
    }
  }
}

/** How long the leader's check may wait for its `SELECT 1`, ms: at least 5 s, so one event-loop stall (a GC, a big parse) does not cost the lead. */
export function leadBoundMs(leaderCheckMs: number): number {
  return Math.max(5000, 3 * leaderCheckMs);
}

/** `p`, or a rejection after `ms` (the caller then drops the connection, which ends the query). */
function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  p.catch(() => undefined);
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** An event from another controller, or null for our own or anything malformed. */
function parseEvent(payload: string, self: string): ClusterEvent | null {
  let v: unknown;
  try {
    v = JSON.parse(payload);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const { o, e } = v as { o?: unknown; e?: unknown };
  if (typeof o !== 'string' || o === self || typeof e !== 'object' || e === null) return null;
  const ev = e as Record<string, unknown>;
  const id = (x: unknown): x is string => typeof x === 'string' && x.length > 0 && x.length <= ID_MAX;
  switch (ev.kind) {
    case 'queued':
      return { kind: 'queued' };
    case 'report':
      return { kind: 'report' };
    case 'build':
      return id(ev.buildId) ? { kind: 'build', buildId: ev.buildId } : null;
    case 'worker':
      return id(ev.workerId) ? { kind: 'worker', workerId: ev.workerId } : null;
    default:
      return null;
  }
}

/** An error as a log line may show it: a driver error's message and code, never a URL. */
function errSummary(err: unknown): { message: string; code?: string } | undefined {
  if (err === undefined) return undefined;
  const e = err as { message?: unknown; code?: unknown };
  return { message: String(e.message ?? err), ...(typeof e.code === 'string' ? { code: e.code } : {}) };
}
