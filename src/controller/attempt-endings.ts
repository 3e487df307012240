/**
 * Where every attempt ends: the `settlement` decision applied to the store, and what follows
 * from it — the dispatcher woken when a build is queued again, the build event told (metrics,
 * log line), and, when the controller ended an attempt its worker had started, that worker's
 * waiting heartbeat woken so it hears of it at once.
 *
 * Each end is one compare-and-set on the attempt's lease (`finishAttempt`, `unassign`): of two
 * callers ending the same attempt (a completion racing the watchdog) exactly one lands; the
 * other gets `build: null` and tells no one.
 */
import type { FailureReason } from '../protocol/domain.ts';
import type { Dispatcher } from './dispatcher.ts';
import { settlement, type AttemptEnding, type Settlement } from './settlement.ts';
import type { BuildRecord, Store } from './store/store.ts';
import type { WorkerWaits } from './worker-waits.ts';

/**
 * What happened to a build: `submitted`; `claimed` by a worker; `started` (moved to `running`,
 * once per attempt); `requeued` (an attempt ended with attempts left); `finished` (final).
 */
export type BuildEvent =
  | { kind: 'submitted'; build: BuildRecord }
  | { kind: 'claimed'; build: BuildRecord; workerId: string }
  | { kind: 'started'; build: BuildRecord }
  | { kind: 'requeued'; build: BuildRecord; reason: FailureReason }
  | { kind: 'finished'; build: BuildRecord };

/** What ending an attempt did: the decision, and the build as it now is (null when nothing changed). */
export interface Settled {
  settlement: Settlement;
  build: BuildRecord | null;
}

export interface AttemptEndingsOptions {
  store: Pick<Store, 'unassign' | 'finishAttempt' | 'getBuild'>;
  /** The time source, in ms since the epoch. */
  now: () => number;
  /** Told when a build is queued again. */
  dispatcher: Pick<Dispatcher, 'notify'>;
  /** Woken when the controller ends an attempt its worker had started. */
  waits: Pick<WorkerWaits, 'wake'>;
  /** Told of every build that ends or goes back to the queue. */
  onBuildEvent?: (event: BuildEvent) => void;
}

/** What a build ending `cancel-unstarted` says. */
const CANCELLED_UNSTARTED = 'cancelled before its worker started it';

export class AttemptEndings {
  private readonly o: AttemptEndingsOptions;

  constructor(options: AttemptEndingsOptions) {
    this.o = options;
  }

  /**
   * Ends the build's current attempt as `settlement` decides (taken back, requeued, cancelled or
   * final). `build` in the answer is null when there was nothing to end or the lease had moved
   * on meanwhile (someone else ended it first), or — with `staleBefore` — a heartbeat newer than
   * that landed meanwhile (the watchdog's fence, see `AttemptEnd.staleBefore`).
   */
  async settle(build: BuildRecord, ending: AttemptEnding, exitCode: number | null, message: string | null, staleBefore?: number): Promise<Settled> {
    const decided = settlement(build, ending);
    const lease = build.lease;
    if (decided.kind === 'none' || lease === null) return { settlement: decided, build: null };
    if (decided.kind === 'take-back') {
      if (!(await this.o.store.unassign(build.id, lease, staleBefore))) return { settlement: decided, build: null };
      this.o.dispatcher.notify();
      return { settlement: decided, build: await this.o.store.getBuild(build.id) };
    }
    const end =
      decided.kind === 'cancel-unstarted'
        ? { status: 'cancelled' as const, failureReason: null, message: CANCELLED_UNSTARTED, requeue: false }
        : decided.kind === 'requeue'
          ? { status: 'failed' as const, failureReason: decided.reason, message, requeue: true }
          : { status: decided.status, failureReason: decided.reason, message, requeue: false };
    const ended = await this.o.store.finishAttempt({ buildId: build.id, lease, now: this.o.now(), exitCode, ...end, staleBefore });
    if (!ended) return { settlement: decided, build: null };
    if (decided.kind === 'requeue') {
      this.o.onBuildEvent?.({ kind: 'requeued', build: ended, reason: decided.reason });
      this.o.dispatcher.notify();
    } else {
      this.o.onBuildEvent?.({ kind: 'finished', build: ended });
    }
    return { settlement: decided, build: ended };
  }

  /**
   * The controller gives up on the build's current attempt (watchdog, reconcile, a rule of its
   * own): it is taken back, requeued or failed as `settlement` decides. When an attempt its
   * worker had started ends here, the worker hears of it at once. `staleBefore`: only while the
   * build's last heartbeat is still older than that (the watchdog's `heartbeat_timeout`).
   */
  async giveUp(build: BuildRecord, reason: FailureReason, message: string, staleBefore?: number): Promise<Settled> {
    const settled = await this.settle(build, { by: 'controller', status: 'failed', reason }, null, message, staleBefore);
    const started = settled.settlement.kind === 'requeue' || settled.settlement.kind === 'end';
    if (started && settled.build && build.workerId !== null) this.o.waits.wake(build.workerId);
    return settled;
  }
}
