/**
 * What one controller tells the others that share its database, and which of them leads.
 *
 * Events: the in-process wake-ups (a build queued → waiting long polls try to claim; a build
 * changed → its live log streams read again; something changed for a worker → its heartbeat wait
 * ends; a build with a GitHub source changed → the reporter looks) go to every controller, since
 * the waiter may be on another one. An event carries ids only: the store stays the one truth, and
 * a missed event costs latency, never correctness (every waiter also wakes on its own timer).
 *
 * Leadership: the watchdog and the scheduled jobs (retention, delivery retries, the GitHub
 * report sweep) run in exactly one controller at a time, the leader. When it dies another takes
 * over within a few seconds; `onLeadChange` tells this controller when it gains or loses the lead.
 *
 * `LocalCluster` is the one-controller case (SQLite): events stay in the process, and it always
 * leads. `PgCluster` (store/pg-cluster.ts) spans controllers on one PostgreSQL database with
 * LISTEN/NOTIFY and an advisory lock.
 */

export type ClusterEvent =
  /** A build may be claimable (queued, requeued, a worker resumed): waiting polls try again. */
  | { kind: 'queued' }
  /** A build's log grew or its state changed: its live log streams read the store again. */
  | { kind: 'build'; buildId: string }
  /** Something changed for a worker (a cancel, an ended build): its heartbeat wait ends now. */
  | { kind: 'worker'; workerId: string }
  /** A build with a GitHub source changed: the reporter (on the leader) looks soon. */
  | { kind: 'report' };

export interface Cluster {
  /** This controller's id among those sharing the database (random per process). */
  readonly id: string;
  /** Whether this controller leads now. */
  readonly leading: boolean;
  /** This controller's clock minus the shared database's, ms, when measured (PgCluster); absent with one controller. */
  readonly clockSkewMs?: number | null;
  /**
   * Delivers `e` to this controller's subscribers at once (synchronously) and to every other
   * controller's soon after. Never throws; a failure to reach the others is logged and counted.
   */
  publish(e: ClusterEvent): void;
  /** Calls `fn` for every event, this controller's own included, until the returned function is called. */
  subscribe(fn: (e: ClusterEvent) => void): () => void;
  /**
   * Starts taking part: connects, and tries for the lead (`onLeadChange(true)` when it is won,
   * `onLeadChange(false)` when it is lost). Resolves once events flow.
   */
  start(onLeadChange: (leading: boolean) => void): Promise<void>;
  /**
   * Gives up the lead for one check, so that another controller may take it (this one's
   * watchdog keeps failing); nothing when not leading. Absent with one controller.
   */
  resign?(): void;
  /** Gives up the lead (calling `onLeadChange(false)` first when it was held) and disconnects; safe to call twice. */
  stop(): Promise<void>;
}

/** One controller alone: events stay in the process, and it leads from `start` to `stop`. */
export class LocalCluster implements Cluster {
  readonly id = 'local';
  private readonly subscribers = new Set<(e: ClusterEvent) => void>();
  private lead: ((leading: boolean) => void) | null = null;
  leading = false;

  publish(e: ClusterEvent): void {
    for (const fn of [...this.subscribers]) fn(e);
  }

  subscribe(fn: (e: ClusterEvent) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  async start(onLeadChange: (leading: boolean) => void): Promise<void> {
    this.lead = onLeadChange;
    this.leading = true;
    onLeadChange(true);
  }

  async stop(): Promise<void> {
    if (this.leading) {
      this.leading = false;
      this.lead?.(false);
    }
    this.lead = null;
  }
}
