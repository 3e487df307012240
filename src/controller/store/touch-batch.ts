/**
 * Group commit of build heartbeats (`Store.touchBuild`). A heartbeat is the controller's most
 * frequent write, and on SQLite its cost is the commit, not the row: each autocommit UPDATE takes
 * its own file locks and appends its own WAL frames. Touches that arrive in the same turn of the
 * event loop are therefore queued and written together on the next `setImmediate` — one
 * transaction (SQLite) or one statement (PostgreSQL) for the batch. `setImmediate` runs right
 * after the poll phase that delivered the requests, so at low load a lone heartbeat waits for no
 * timer: the batch is whatever arrived together, never a window that adds latency.
 *
 * Every caller still gets exactly the answer its own statement would have given (the fenced
 * write: the lease and an active status must match, else `null`), and only after the batch
 * committed: the heartbeat time is durable before the response, as before, so the watchdog and
 * the liveness rules see no difference. A failing batch rejects each of its callers with the
 * error, as a failing single statement did.
 */
import type { BuildPulse } from './store.ts';

/** One queued touch: the arguments of `touchBuild`. */
export interface TouchRow {
  id: string;
  lease: string;
  now: number;
  progress: number | null;
}

/**
 * Writes one batch and answers each row in order: the row's pulse, `null` where the fenced write
 * matched nothing, an `Error` for a row that failed on its own while the others committed, or a
 * promise of the row's answer for a row written on its own later (PostgreSQL: a row another
 * transaction holds must not hold up the batch). A thrown error (or a rejection) fails the whole
 * batch. A batch never holds one build twice.
 */
export type TouchWriter = (
  rows: readonly TouchRow[],
) => Promise<readonly (BuildPulse | null | Error | Promise<BuildPulse | null>)[]> | readonly (BuildPulse | null | Error | Promise<BuildPulse | null>)[];

interface Pending {
  row: TouchRow;
  resolve: (p: BuildPulse | null) => void;
  reject: (e: unknown) => void;
}

/** Queues `touchBuild` calls and writes those of one event-loop turn together. */
export class TouchBatch {
  private readonly write: TouchWriter;
  private queue: Pending[] = [];
  private scheduled = false;
  /** The flush in progress (never rejects): the next one waits for it. */
  private flushing: Promise<void> = Promise.resolve();
  /** Rows a batch left to be answered later (their own statements), until they settle. */
  private readonly answeredLater = new Set<Promise<unknown>>();

  constructor(write: TouchWriter) {
    this.write = write;
  }

  /** Touches one build; settles once the batch it joined has committed. */
  touch(id: string, lease: string, u: { now: number; progress?: number }): Promise<BuildPulse | null> {
    return new Promise((resolve, reject) => {
      this.queue.push({ row: { id, lease, now: u.now, progress: u.progress ?? null }, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  /**
   * Writes everything queued once the flush in progress is over (also what `close` calls so no
   * caller is left waiting). One flush at a time: with an asynchronous writer (PostgreSQL) a
   * flush of a later turn would otherwise overlap one still waiting for its statement, and two
   * beats of one build could commit out of order.
   */
  flush(): Promise<void> {
    this.scheduled = false;
    const next = this.flushing.then(() => this.flushQueued());
    this.flushing = next.catch(() => undefined);
    return next;
  }

  /** Writes everything queued, then waits for the rows answered later: what a close needs. */
  async settle(): Promise<void> {
    await this.flush();
    await Promise.allSettled([...this.answeredLater]);
  }

  private async flushQueued(): Promise<void> {
    const all = this.queue;
    this.queue = [];
    // Two beats of one build in one turn (a retry racing its original) go in successive batches,
    // in arrival order: one statement over a set cannot update one row twice (PostgreSQL's
    // UPDATE … FROM uses one source row per target row), and each caller is owed its own answer.
    for (let rest = all; rest.length > 0; ) {
      const seen = new Set<string>();
      const batch: Pending[] = [];
      const later: Pending[] = [];
      for (const p of rest) {
        if (seen.has(p.row.id)) later.push(p);
        else {
          seen.add(p.row.id);
          batch.push(p);
        }
      }
      await this.writeBatch(batch);
      rest = later;
    }
  }

  private async writeBatch(batch: Pending[]): Promise<void> {
    let results: Awaited<ReturnType<TouchWriter>>;
    try {
      results = await this.write(batch.map((p) => p.row));
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const r = results[i];
      if (r instanceof Error) p.reject(r);
      else if (r instanceof Promise) {
        const settled = r.then(p.resolve, p.reject).finally(() => this.answeredLater.delete(settled));
        this.answeredLater.add(settled);
      } else p.resolve(r ?? null);
    });
  }
}
