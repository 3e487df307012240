/**
 * Long-poll dispatch. A worker with a free slot waits here; the moment a build it may take is
 * queued (`notify()`), the oldest waiter whose labels match claims it — no polling interval
 * inside the controller. Waiters are served first come, first served.
 *
 * States of a waiter: pending → done, once, by whichever comes first: it claims a build
 * (resolved with the claim), its wait runs out or its client goes away (resolved with null), or
 * the controller stops (`closeAll`, null). A wait that runs out while a claim for the waiter is
 * in flight is answered by that claim. A claim that lands after its client already left is
 * handed back with `release`, so a build is never assigned to a request nobody will answer.
 *
 * States of the dispatcher: open → closed (`closeAll`: no new waits, every waiter answered).
 * While open, a drain (waiters trying to claim, oldest first) runs at most once at a time; a
 * `notify` during one asks for another pass after it, so no queued build is missed.
 *
 * A waiter's first claim runs before it is registered, and with PostgreSQL that claim is a round
 * trip: a build queued meanwhile notifies a drain that cannot yet see the waiter. So `wait`
 * notes the notify count before its first claim and, once registered, drains again if it moved.
 *
 * A submission need not go through the queue at all: `reserve` picks the oldest waiter that may
 * take the new build, so that the submitter writes the build already claimed by it (one store
 * write instead of a queued write, a wake-up and a claim), and hands it the claim. A waiter is
 * inside at most one claim at a time (`busy`: a drain's, or a reservation's), so its claim
 * request — fresh lease and build token — is never overwritten by another in flight; a drain
 * passes over a busy waiter, and a reservation that ends without a claim is followed by a
 * `notify` from the submitter (the build was queued after all), which drains again.
 */
import type { Claim, ClaimRequest } from './store/store.ts';

export interface WaitRequest {
  tryClaim: () => Promise<Claim | null>;
  /** Handed a claim nobody is waiting for any more, to put the build back in the queue. */
  release: (claim: Claim) => Promise<void>;
  waitMs: number;
  /** Aborted when the client disconnects. */
  signal?: AbortSignal;
  /**
   * What a submitter needs to claim a new build for this waiter itself (`reserve`): the worker's
   * labels, and a fresh claim request (a new lease and build token each time, as `tryClaim` makes).
   * Without it the waiter is only ever served by a drain.
   */
  takes?: { labels: readonly string[]; request: () => ClaimRequest };
}

/** A waiter held for one claim made by a submitter; `hand` must be called once, claim or not. */
export interface Reservation {
  /** The claim request to create the build with. */
  request: ClaimRequest;
  /** Gives the waiter its claim (or, when its wait ended meanwhile, releases it), or frees the waiter when there is none. */
  hand: (claim: Claim | null) => Promise<void>;
}

interface Waiter {
  req: WaitRequest;
  done: boolean;
  /** Inside a claim now (a drain's or a reservation's). */
  busy: boolean;
  /** Its wait ran out while it was inside a claim: that claim's result answers it. */
  expired: boolean;
  /**
   * A reservation for it was refused by the store (its worker drained or removed meanwhile, or an
   * older build it may take was queued, which a drain then hands it): no more reservations in
   * this wait, or every matching submit would pay a write for nothing while it is the oldest.
   */
  refused: boolean;
  finish: (claim: Claim | null) => void;
}

export class Dispatcher {
  private readonly waiters = new Set<Waiter>();
  private draining: Promise<void> | null = null;
  private again = false;
  private closed = false;
  /** How many times `notify` was called: a waiter compares it across its first claim. */
  private notifications = 0;

  private readonly hasQueued: () => Promise<boolean>;

  constructor(hasQueued: () => Promise<boolean>) {
    this.hasQueued = hasQueued;
  }

  get waiting(): number {
    return this.waiters.size;
  }

  async wait(req: WaitRequest): Promise<Claim | null> {
    if (this.closed) return null;
    const seen = this.notifications;
    const first = await req.tryClaim();
    // The client left while its first claim ran: nobody would read the answer, so the build goes
    // back now rather than after the claim grace (and then a second claim).
    if (first && req.signal?.aborted) {
      await req.release(first);
      return null;
    }
    if (first || req.waitMs <= 0 || this.closed) return first;
    if (req.signal?.aborted) return null;
    const waiting = new Promise<Claim | null>((resolve) => {
      // A claim in flight for this waiter when its time runs out answers it (the client waits
      // longer than the wait, with margin): ending it now would answer "nothing" and hand the
      // build just claimed for it back to the queue, to be claimed again.
      const timer = setTimeout(() => (waiter.busy ? (waiter.expired = true) : waiter.finish(null)), req.waitMs);
      const onAbort = () => waiter.finish(null);
      const waiter: Waiter = {
        req,
        done: false,
        busy: false,
        expired: false,
        refused: false,
        finish: (claim) => {
          if (waiter.done) return;
          waiter.done = true;
          clearTimeout(timer);
          req.signal?.removeEventListener('abort', onAbort);
          this.waiters.delete(waiter);
          resolve(claim);
        },
      };
      req.signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
    });
    // Something was queued while the first claim ran: this waiter was not there to be woken.
    if (this.notifications !== seen) this.notify();
    return waiting;
  }

  /**
   * The oldest waiter, not inside a claim, whose worker has every label in `labels`, held for one
   * claim that the caller makes (creating the build claimed by it); null when none waits here
   * (then the build is queued, and the caller notifies). The caller must `hand` it back.
   */
  reserve(labels: readonly string[]): Reservation | null {
    if (this.closed) return null;
    for (const waiter of this.waiters) {
      const takes = waiter.req.takes;
      if (waiter.done || waiter.busy || waiter.refused || takes === undefined || !labels.every((l) => takes.labels.includes(l))) continue;
      waiter.busy = true;
      let handed = false;
      return {
        request: takes.request(),
        hand: async (claim) => {
          if (handed) return;
          handed = true;
          waiter.busy = false;
          if (claim === null) {
            waiter.refused = true;
            if (waiter.expired) waiter.finish(null);
            return;
          }
          if (waiter.done) await waiter.req.release(claim);
          else waiter.finish(claim);
        },
      };
    }
    return null;
  }

  /** Something may have been queued: let the waiters try, oldest first. */
  notify(): void {
    this.notifications++;
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = this.drain().finally(() => {
      this.draining = null;
      if (this.again) {
        this.again = false;
        this.notify();
      }
    });
  }

  private async drain(): Promise<void> {
    // The first waiter claims at once: a claim that finds nothing costs what the count does, and
    // a notify usually means a build is there (on PostgreSQL a round trip saved before the claim).
    // The count stops the walk once the queue is empty, rather than a claim per waiter.
    let tried = false;
    for (const waiter of [...this.waiters]) {
      if (this.closed || (tried && !(await this.hasQueued()))) return;
      if (waiter.done || waiter.busy) continue;
      tried = true;
      waiter.busy = true;
      let claim: Claim | null = null;
      try {
        claim = await waiter.req.tryClaim();
      } finally {
        waiter.busy = false;
        if (!claim && waiter.expired) waiter.finish(null);
      }
      if (!claim) continue;
      if (waiter.done) await waiter.req.release(claim);
      else waiter.finish(claim);
    }
  }

  /** Answers every open long-poll with "nothing" (the controller is stopping). */
  async closeAll(): Promise<void> {
    this.closed = true;
    for (const w of [...this.waiters]) w.finish(null);
    await this.draining;
  }
}
