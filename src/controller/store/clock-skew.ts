/**
 * This controller's clock against the database's. Liveness compares times written by every
 * controller's clock (a heartbeat through one, judged by the leader's), so the clocks must agree:
 * `measure` (at start and every minute, by pg-cluster.ts) reads the database's clock and keeps
 * `skewMs` = ours at mid round trip − theirs, warning past `SKEW_WARN_MS`; `agrees` says whether
 * this controller may lead, logging once (at error) when it may not and once when it may again.
 */
import type { Logger } from 'pino';
import type { PgDb } from './pg-db.ts';

/** Past this |skew|, ms, a warning is logged at each measure. */
export const SKEW_WARN_MS = 2000;

export interface ClockSkewOptions {
  db: Pick<PgDb, 'query'>;
  logger: Logger;
  /** This controller's clock, ms since the epoch. */
  now: () => number;
  /** The largest |skew| at which this controller may lead, ms. */
  maxSkewMs: number;
}

export class ClockSkew {
  private readonly o: ClockSkewOptions;
  private skew: number | null = null;
  private refusalLogged = false;

  constructor(options: ClockSkewOptions) {
    this.o = options;
  }

  /** Ours minus the database's at the last successful measure, ms; null before one. */
  get skewMs(): number | null {
    return this.skew;
  }

  /** Measures once; never throws (an unreachable database keeps the last value: the lead goes anyway). */
  async measure(): Promise<void> {
    try {
      const before = this.o.now();
      const r = await this.o.db.query<{ t: number }>('SELECT (extract(epoch from clock_timestamp())*1000)::bigint AS t');
      const after = this.o.now();
      const db = r.rows[0]?.t;
      if (typeof db !== 'number') return;
      this.skew = Math.round((before + after) / 2 - db);
      if (Math.abs(this.skew) > SKEW_WARN_MS) {
        this.o.logger.warn({ clockSkewMs: this.skew }, `this controller's clock is ${this.skew} ms off the database's: run NTP on every controller`);
      }
    } catch (err) {
      this.o.logger.debug({ err: { message: String((err as { message?: unknown }).message ?? err) } }, 'cannot compare the clock with the database');
    }
  }

  /** Whether the last measure allows leading (an unmeasured clock does: the measure failed, and so will the lock). */
  agrees(): boolean {
    if (this.skew === null || Math.abs(this.skew) <= this.o.maxSkewMs) {
      if (this.refusalLogged && this.skew !== null) this.o.logger.info({ clockSkewMs: this.skew }, 'the clock agrees with the database again; trying for the lead');
      this.refusalLogged = false;
      return true;
    }
    if (!this.refusalLogged) {
      this.o.logger.error(
        { clockSkewMs: this.skew, maxSkewMs: this.o.maxSkewMs },
        `not leading: this controller's clock is ${this.skew} ms off the database's (more than ${this.o.maxSkewMs} ms); the watchdog would judge heartbeats by it — run NTP on every controller`,
      );
      this.refusalLogged = true;
    }
    return false;
  }
}
