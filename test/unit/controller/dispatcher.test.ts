import { describe, expect, it } from 'vitest';
import { Dispatcher } from '../../../src/controller/dispatcher.ts';
import type { Claim } from '../../../src/controller/store/store.ts';

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
});
