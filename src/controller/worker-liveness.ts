/**
 * A worker's liveness as the controller sees it: its polls (contact, then a long wait for a
 * build it can take) and its heartbeats (contact, then what it should abort or cancel, with a
 * wait for news), and the reconcile both begin with — what the worker says it runs against
 * what the store says it holds. A worker inside either wait counts as alive (`WorkerWaits`).
 */
import type { Liveness } from '../protocol/liveness.ts';
import type { PollBody, WorkerHeartbeatBody } from '../protocol/schemas.ts';
import { heartbeatWaitMaxMs } from '../monitor/watchdog-policy.ts';
import type { AttemptEndings, BuildEvent } from './attempt-endings.ts';
import { hashSecret, newBuildToken, newLease } from './auth.ts';
import type { Dispatcher } from './dispatcher.ts';
import type { SecretBox } from './secret-box.ts';
import type { BuildRecord, Claim, ClaimRequest, Store, WorkerRecord } from './store/store.ts';
import type { WorkerWaits } from './worker-waits.ts';
import type { ClusterEvent } from './cluster.ts';

export interface WorkerLivenessOptions {
  store: Pick<Store, 'touchWorker' | 'activeBuildsOfWorker' | 'claimBuild' | 'unassign'>;
  /** The time source, in ms since the epoch. */
  now: () => number;
  /** A worker silent this long is offline, ms; bounds the heartbeat's wait. */
  heartbeatTimeoutMs: number;
  /** How long an `assigned` build may go unlisted by its worker before it counts as never received, in ms. */
  claimGraceMs: number;
  /** Opens a claimed build's secret env for its worker. */
  secrets: Pick<SecretBox, 'open'>;
  dispatcher: Dispatcher;
  waits: WorkerWaits;
  /** The clocks this controller states to its workers. */
  liveness: Liveness;
  endings: AttemptEndings;
  /** Where a build put back in the queue is told (the cluster: waiting polls may be on another controller). */
  publish: (event: ClusterEvent) => void;
  onBuildEvent?: (event: BuildEvent) => void;
}

export interface PollResult {
  claim: Claim;
  /** The plain lease for the worker (the store holds its digest). */
  lease: string;
  buildToken: string;
  /** The build's secret env values, opened for the worker; null when it has none. */
  secretEnv: Record<string, string> | null;
  /**
   * Hands the claim back to the queue (unless its worker started it meanwhile): for an answer
   * that could not be written whole, so the build does not wait out the claim grace.
   */
  unanswered: () => Promise<void>;
}

export class WorkerLiveness {
  private readonly o: WorkerLivenessOptions;

  constructor(options: WorkerLivenessOptions) {
    this.o = options;
  }

  async poll(worker: WorkerRecord, body: PollBody, signal?: AbortSignal): Promise<PollResult | null> {
    const now = this.o.now();
    await this.o.store.touchWorker(worker.id, { now, slotsTotal: body.slotsTotal, draining: body.draining });
    await this.reconcile(worker.id, body.runningBuilds);
    if (body.slotsFree === 0 || body.draining) return null;
    let buildToken = '';
    let lease = '';
    // Never longer than half the heartbeat timeout (the agent derives the same), and a worker
    // inside the wait counts as alive.
    const waitMs = Math.min(Math.round((body.waitS ?? 25) * 1000), this.o.liveness.pollWaitMaxMs);
    // A fresh lease and build token for each claim tried (the dispatcher runs one at a time per
    // waiter, so the pair kept here is the one of the claim that lands).
    const request = (): ClaimRequest => {
      buildToken = newBuildToken();
      lease = newLease();
      return {
        workerId: worker.id,
        workerLabels: worker.labels,
        now: this.o.now(),
        lease: hashSecret(lease),
        buildTokenHash: hashSecret(buildToken),
        attemptBanner: (n, max) => `\n===== attempt ${n} of ${max} on worker ${worker.id} =====\n`,
      };
    };
    const claim = await this.o.waits.hold(worker.id, () => this.o.dispatcher.wait({
      waitMs,
      signal,
      // Drained by an operator (now, not only when the poll began: the claim reads it in its own
      // transaction): it takes nothing, and its poll runs its wait out like an empty one;
      // `resume` wakes the waiters.
      tryClaim: () => this.o.store.claimBuild(request()),
      // A submission may create its build already claimed by this worker (`Dispatcher.reserve`);
      // not while it is drained (each such reservation would be a wasted write).
      takes: worker.drainRequested ? undefined : { labels: worker.labels, request },
      release: (c) => this.release(c),
    }));
    if (!claim) return null;
    // The client left as the claim landed: nobody reads this answer.
    if (signal?.aborted) {
      await this.release(claim);
      return null;
    }
    this.o.onBuildEvent?.({ kind: 'claimed', build: claim.build, workerId: worker.id });
    const sealed = claim.build.secretEnvSealed;
    let secretEnv: Record<string, string> | null = null;
    try {
      if (sealed) secretEnv = this.o.secrets.open(claim.build.id, sealed);
    } catch (err) {
      // Another key sealed it (secret-env.key was replaced): no worker could ever run it as
      // submitted, and handing it back to the queue would only claim it again. It ends here.
      // Not `giveUp`: the worker never had it, so there is no one to tell.
      await this.o.endings.settle(claim.build, { by: 'controller', status: 'failed', reason: 'build_failed' }, null, unopenable(err));
      return null;
    }
    return { claim, lease, buildToken, secretEnv, unanswered: () => this.release(claim) };
  }

  /** Puts a claim nobody received back in the queue (a no-op once its worker reported a phase). */
  private async release(c: Claim): Promise<void> {
    if (await this.o.store.unassign(c.build.id, c.attempt.lease)) this.o.publish({ kind: 'queued' });
  }

  /**
   * Worker liveness. Answers the builds the worker lists that it should abort (over, or not
   * its own) and those it holds whose cancel was asked for — how the agent learns of a cancel
   * without sending build heartbeats of its own, which would hide a frozen VM.
   *
   * With `waitS`, and nothing to tell yet, the answer waits (at most a quarter of the heartbeat
   * timeout) until a cancel is asked for or a build of this worker is ended here — the channel
   * that gets a cancel to a running step within moments rather than at the next heartbeat.
   */
  async workerHeartbeat(worker: WorkerRecord, body: WorkerHeartbeatBody, signal?: AbortSignal): Promise<{ abort: string[]; cancel: string[] }> {
    // Listening before looking: a wake between the look and the wait is not lost.
    const waitMs = Math.min(Math.round((body.waitS ?? 0) * 1000), heartbeatWaitMaxMs(this.o.heartbeatTimeoutMs));
    const stop = new AbortController();
    const waited = this.o.waits.wait(worker.id, waitMs, signal ? AbortSignal.any([signal, stop.signal]) : stop.signal);
    let now: { abort: string[]; cancel: string[] };
    try {
      await this.o.store.touchWorker(worker.id, { now: this.o.now(), slotsTotal: body.slotsTotal, draining: body.draining });
      const { abort, kept } = await this.reconcile(worker.id, body.runningBuilds);
      now = { abort, cancel: kept.filter((b) => b.cancelRequested).map((b) => b.id) };
    } catch (err) {
      stop.abort();
      throw err;
    }
    if (now.abort.length > 0 || now.cancel.length > 0) {
      stop.abort();
      return now;
    }
    await waited;
    if (signal?.aborted) return { abort: [], cancel: [] };
    // What changed meanwhile, among the builds it listed; no reconcile: its list may be stale now.
    const held = new Map((await this.o.store.activeBuildsOfWorker(worker.id)).map((b) => [b.id, b]));
    return {
      abort: body.runningBuilds.filter((id) => !held.has(id)),
      cancel: body.runningBuilds.filter((id) => held.get(id)?.cancelRequested === true),
    };
  }

  /**
   * Compares what the worker says it runs with what the store says it holds. A build it holds
   * but no longer lists is lost (`worker_lost`) — unless it was claimed within the grace: a
   * heartbeat sent before the poll answer arrived (a retried one, say) cannot list it yet. Once
   * the grace is over, an unlisted build still `assigned` was never received and goes back to
   * the queue without costing an attempt. Returns the listed builds it does not hold (to
   * abort) and the builds it still holds.
   */
  private async reconcile(workerId: string, listed: readonly string[]): Promise<{ abort: string[]; kept: BuildRecord[] }> {
    const now = this.o.now();
    const held = await this.o.store.activeBuildsOfWorker(workerId);
    const kept: BuildRecord[] = [];
    for (const b of held) {
      if (listed.includes(b.id) || b.lease === null || now - (b.assignedAt ?? now) < this.o.claimGraceMs) {
        kept.push(b);
        continue;
      }
      // Still `assigned`, it was never received: the settlement takes it back without cost.
      await this.o.endings.giveUp(b, 'worker_lost', `worker ${workerId} no longer runs this build`);
    }
    const heldIds = new Set(held.map((b) => b.id));
    return { abort: listed.filter((id) => !heldIds.has(id)), kept };
  }
}

/** Why a build whose secret env this controller cannot open was ended. */
export const unopenable = (err: unknown): string => `${(err as Error).message}; submit the build again`;
