import { describe, expect, it } from 'vitest';
import { Dispatcher } from '../../../src/controller/dispatcher.ts';
import type { Claim, ClaimRequest } from '../../../src/controller/store/store.ts';

const claim = { build: { id: 'b1' }, attempt: { attempt: 1 } } as unknown as Claim;

describe('Dispatcher', () => {
  it('wakes a waiter whose first claim was still running when a build was queued', async () => {
    // The first claim is a round trip (PostgreSQL): it sees no build, and while it runs a build
    // is queued and notify() fires — before the waiter is registered.
    let queued = false;
    let releaseFirst!: () => void;
    const firstDone = new Promise<void>((r) => (releaseFirst = r));
    let calls = 0;
    const d = new Dispatcher(async () => queued);
    const ac = new AbortController();
    const result = d.wait({
      tryClaim: async () => {
        calls++;
        if (calls === 1) {
          await firstDone;
          return null;
        }
        return queued ? claim : null;
      },
      release: async () => undefined,
      // Far longer than the test's own timeout: only a wake-up can answer in time.
      waitMs: 600_000,
      signal: ac.signal,
    });
    queued = true;
    d.notify();
    releaseFirst();
    try {
      expect(await result).toBe(claim);
    } finally {
      ac.abort();
      await d.closeAll();
    }
  }, 10_000);

  it('does not drain again when nothing was queued during the first claim', async () => {
    let claims = 0;
    const d = new Dispatcher(async () => true);
    const ac = new AbortController();
    const result = d.wait({ tryClaim: async () => (claims++, null), release: async () => undefined, waitMs: 600_000, signal: ac.signal });
    await new Promise((r) => setTimeout(r, 50));
    expect(claims).toBe(1);
    ac.abort();
    expect(await result).toBeNull();
    await d.closeAll();
  });

  it('a drain claims for the first waiter at once, and walks on only while the count says builds are queued', async () => {
    let queued = 0;
    const claims: string[] = [];
    const d = new Dispatcher(async () => queued > 0);
    const acs = ['a', 'b', 'c'].map(() => new AbortController());
    const results = ['a', 'b', 'c'].map((id, i) =>
      d.wait({ tryClaim: async () => (claims.push(id), queued > 0 ? (queued--, claim) : null), release: async () => undefined, waitMs: 600_000, signal: acs[i]!.signal }),
    );
    await new Promise((r) => setTimeout(r, 0));
    claims.length = 0;
    d.notify(); // nothing queued: one claim tried, then the count ends the walk
    await new Promise((r) => setTimeout(r, 0));
    expect(claims).toEqual(['a']);
    queued = 1;
    d.notify();
    expect(await results[0]).toBe(claim);
    await new Promise((r) => setTimeout(r, 0));
    expect(claims).toEqual(['a', 'a']);
    for (const ac of acs) ac.abort();
    await d.closeAll();
  });

  describe('reserve (a submission claimed for a waiter in its own write)', () => {
    const requestOf = (workerId: string): ClaimRequest => ({ workerId, workerLabels: [], now: 1, lease: `l-${workerId}`, buildTokenHash: `t-${workerId}`, attemptBanner: () => '' });
    /** A waiter of worker `id` with `labels`; its claims and releases are recorded. */
    const waiter = (d: Dispatcher, id: string, labels: string[], log: { claims: string[]; released: Claim[] }, ac = new AbortController()) => ({
      ac,
      result: d.wait({
        tryClaim: async () => (log.claims.push(id), null),
        release: async (c) => void log.released.push(c),
        waitMs: 600_000,
        signal: ac.signal,
        takes: { labels, request: () => requestOf(id) },
      }),
    });
    const settle = () => new Promise((r) => setTimeout(r, 0));

    it('holds the oldest waiter whose worker has every label, and hands it the claim', async () => {
      const log = { claims: [] as string[], released: [] as Claim[] };
      const d = new Dispatcher(async () => false);
      const linux = waiter(d, 'linux', ['linux'], log);
      const mac1 = waiter(d, 'mac1', ['mac', 'arm'], log);
      const mac2 = waiter(d, 'mac2', ['mac', 'arm'], log);
      await settle();
      const r = d.reserve(['mac'])!;
      expect(r.request.workerId).toBe('mac1');
      // Held: a second submission gets the next waiter that may take it, and none is left after.
      const r2 = d.reserve(['mac'])!;
      expect(r2.request.workerId).toBe('mac2');
      expect(d.reserve(['mac'])).toBeNull();
      await r.hand(claim);
      expect(await mac1.result).toBe(claim);
      // The store refused mac2's reservation (drained, removed, or an older build for it queued,
      // which a drain hands it): no more reservations for it in this wait.
      await r2.hand(null);
      expect(d.reserve(['arm'])).toBeNull();
      expect(d.waiting).toBe(2);
      // Its next poll is a new wait, reservable again.
      mac2.ac.abort();
      const again = waiter(d, 'mac2', ['mac', 'arm'], log);
      await settle();
      expect(d.reserve(['arm'])?.request.workerId).toBe('mac2');
      again.ac.abort();
      for (const w of [linux, mac2]) w.ac.abort();
      await d.closeAll();
      expect(log.released).toEqual([]);
    });

    it('a drain passes over a held waiter, and a reservation that claimed nothing lets the next notify serve it', async () => {
      const log = { claims: [] as string[], released: [] as Claim[] };
      const d = new Dispatcher(async () => true);
      const w = waiter(d, 'w1', [], log);
      await settle();
      expect(log.claims).toEqual(['w1']); // its first claim, before it waits
      const r = d.reserve([])!;
      d.notify();
      await settle();
      expect(log.claims).toEqual(['w1']);
      await r.hand(null);
      d.notify();
      await settle();
      expect(log.claims).toEqual(['w1', 'w1']);
      w.ac.abort();
      expect(await w.result).toBeNull();
      await d.closeAll();
    });

    it('releases a claim whose waiter left while it was made', async () => {
      const log = { claims: [] as string[], released: [] as Claim[] };
      const d = new Dispatcher(async () => false);
      const w = waiter(d, 'w1', [], log);
      await settle();
      const r = d.reserve([])!;
      w.ac.abort();
      expect(await w.result).toBeNull();
      await r.hand(claim);
      expect(log.released).toEqual([claim]);
      await d.closeAll();
      expect(d.reserve([])).toBeNull();
    });
  });
  describe('a claim near the end of a wait, or for a client that left', () => {
    it('answers a waiter whose wait ran out while a drain claimed for it with that claim, releasing nothing', async () => {
      // Under load a claim can outlast the rest of the wait: answering "nothing" then would hand
      // the build just claimed back to the queue, to be claimed a second time.
      let finishClaim: (c: Claim | null) => void = () => undefined;
      let calls = 0;
      const released: Claim[] = [];
      const d = new Dispatcher(async () => true);
      const result = d.wait({
        tryClaim: () => (++calls === 1 ? Promise.resolve(null) : new Promise<Claim | null>((r) => (finishClaim = r))),
        release: async (c) => void released.push(c),
        waitMs: 20,
      });
      await new Promise((r) => setTimeout(r, 0));
      d.notify();
      while (calls < 2) await new Promise((r) => setTimeout(r, 1));
      await new Promise((r) => setTimeout(r, 60)); // well past the wait
      finishClaim(claim);
      expect(await result).toBe(claim);
      expect(released).toEqual([]);
      await d.closeAll();
    });

    it('answers null once the claim in flight at the end of its wait found nothing', async () => {
      let finishClaim: (c: Claim | null) => void = () => undefined;
      let calls = 0;
      const d = new Dispatcher(async () => true);
      const result = d.wait({
        tryClaim: () => (++calls === 1 ? Promise.resolve(null) : new Promise<Claim | null>((r) => (finishClaim = r))),
        release: async () => undefined,
        waitMs: 20,
      });
      await new Promise((r) => setTimeout(r, 0));
      d.notify();
      while (calls < 2) await new Promise((r) => setTimeout(r, 1));
      await new Promise((r) => setTimeout(r, 60));
      finishClaim(null);
      expect(await result).toBeNull();
      await d.closeAll();
    });

    it('hands a reservation made as the wait ran out its claim, and frees the waiter when there was none', async () => {
      const released: Claim[] = [];
      const d = new Dispatcher(async () => false);
      const request = (): ClaimRequest => ({ workerId: 'w', workerLabels: [], now: 1, lease: 'l', buildTokenHash: 't', attemptBanner: () => '' });
      const wait = (ms: number) => d.wait({ tryClaim: async () => null, release: async (c) => void released.push(c), waitMs: ms, takes: { labels: [], request } });
      const first = wait(20);
      await new Promise((r) => setTimeout(r, 0));
      const r1 = d.reserve([])!;
      await new Promise((r) => setTimeout(r, 60));
      await r1.hand(claim);
      expect(await first).toBe(claim);
      const second = wait(20);
      await new Promise((r) => setTimeout(r, 0));
      const r2 = d.reserve([])!;
      await new Promise((r) => setTimeout(r, 60));
      await r2.hand(null);
      expect(await second).toBeNull();
      expect(released).toEqual([]);
      await d.closeAll();
    });

    it('releases at once a first claim made for a client that left while it ran', async () => {
      const ac = new AbortController();
      const released: Claim[] = [];
      const d = new Dispatcher(async () => false);
      const result = d.wait({
        tryClaim: async () => (ac.abort(), claim),
        release: async (c) => void released.push(c),
        waitMs: 600_000,
        signal: ac.signal,
      });
      expect(await result).toBeNull();
      expect(released).toEqual([claim]);
      await d.closeAll();
    });
  });
});
