import { describe, expect, it } from 'vitest';
import type { Runner } from '../../../src/agent/agent.ts';
import type { Outcome } from '../../../src/agent/build-runner.ts';
import { LazyRunner } from '../../../src/agent/lazy-runner.ts';

/** A runner that records the calls it gets, in order. */
function recordingRunner(calls: string[]): Runner {
  return {
    buildId: 'b1',
    run: async (): Promise<Outcome> => {
      calls.push('run');
      return { kind: 'abandoned', why: 'test' };
    },
    abort: (reason, detail) => (calls.push(`abort ${reason} ${detail ?? ''}`.trim()), true),
    cancel: () => (calls.push('cancel'), true),
  };
}

describe('LazyRunner', () => {
  it('loads the real runner only when run, then delegates to it', async () => {
    const calls: string[] = [];
    let loads = 0;
    const lazy = new LazyRunner('b1', async () => {
      loads++;
      return recordingRunner(calls);
    });
    expect(loads).toBe(0);
    expect(await lazy.run()).toEqual({ kind: 'abandoned', why: 'test' });
    expect(lazy.cancel()).toBe(true);
    expect(loads).toBe(1);
    expect(calls).toEqual(['run', 'cancel']);
  });

  it('passes an abort that came while loading to the real runner before it runs; a second one is refused', async () => {
    const calls: string[] = [];
    let release: (r: Runner) => void = () => undefined;
    const lazy = new LazyRunner('b1', () => new Promise<Runner>((r) => (release = r)));
    const running = lazy.run();
    expect(lazy.abort('shutdown', 'the agent is stopping')).toBe(true);
    expect(lazy.cancel()).toBe(false);
    release(recordingRunner(calls));
    await running;
    expect(calls).toEqual(['abort shutdown the agent is stopping', 'run']);
  });

  it('passes a cancel that came while loading', async () => {
    const calls: string[] = [];
    const lazy = new LazyRunner('b1', async () => recordingRunner(calls));
    expect(lazy.cancel()).toBe(true);
    await lazy.run();
    expect(calls).toEqual(['cancel', 'run']);
  });

  it('fails the run when the build code cannot be loaded', async () => {
    const lazy = new LazyRunner('b1', async () => {
      throw new Error('cannot load build-kit');
    });
    await expect(lazy.run()).rejects.toThrow('cannot load build-kit');
  });
  it('keeps the claim alive while the build code loads: a beat at once, then one per interval, none once it runs', async () => {
    // A slow import (a busy host) must not leave the claimed build silent past the controller's
    // heartbeat timeout: the watchdog would take it back from this worker.
    const calls: string[] = [];
    let beats = 0;
    let release: (r: Runner) => void = () => undefined;
    let made = 0;
    const loads = () => made;
    const lazy = new LazyRunner('b1', () => (made++, new Promise<Runner>((r) => (release = r))), { everyMs: 5, beat: async () => void beats++ });
    const running = lazy.run();
    expect(beats).toBe(1);
    expect(loads()).toBe(0); // the claim is acknowledged before the import begins
    while (beats < 3) await new Promise((r) => setTimeout(r, 5));
    release(recordingRunner(calls));
    await running;
    const after = beats;
    await new Promise((r) => setTimeout(r, 30));
    expect(beats).toBe(after);
    expect(calls).toEqual(['run']);
  });

  it('stops beating once an abort came while loading (a beat told it the attempt is over)', async () => {
    let beats = 0;
    let release: (r: Runner) => void = () => undefined;
    const lazy: LazyRunner = new LazyRunner('b1', () => new Promise<Runner>((r) => (release = r)), {
      everyMs: 5,
      beat: async () => {
        beats++;
        lazy.abort('attempt_over', 'LEASE_STALE');
      },
    });
    const running = lazy.run();
    await new Promise((r) => setTimeout(r, 40));
    expect(beats).toBe(1);
    const calls: string[] = [];
    release(recordingRunner(calls));
    await running;
    expect(calls).toEqual(['abort attempt_over LEASE_STALE', 'run']);
  });
});
