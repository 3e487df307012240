import { describe, expect, it } from 'vitest';
import { SystemClock } from '../../../src/sys/clock.ts';

// The real clock's timers, as the agent's runner uses them: what a cancel and an abort promise.
// No assertion on how long anything took; only on order and on what was (not) called.
describe('SystemClock', () => {
  const clock = new SystemClock();

  it('sleep rejects with the signal reason as soon as it aborts, long before its time', async () => {
    const ac = new AbortController();
    const slept = clock.sleep(3_600_000, ac.signal);
    ac.abort(new Error('stop now'));
    await expect(slept).rejects.toThrow('stop now');
  });

  it('sleep on an already aborted signal rejects at once and sets no timer', async () => {
    const ac = new AbortController();
    ac.abort(new Error('already'));
    await expect(clock.sleep(3_600_000, ac.signal)).rejects.toThrow('already');
  });

  it('a cancelled after() never calls its function, even past its time', async () => {
    let called = false;
    const cancel = clock.after(0, () => (called = true));
    cancel();
    cancel(); // a second cancel does nothing
    await clock.sleep(5); // timers fire in order: the cancelled one's turn has come and gone
    expect(called).toBe(false);
  });

  it('every() calls its function repeatedly until cancelled, then never again', async () => {
    let calls = 0;
    let cancel: () => void = () => {};
    const third = new Promise<void>((resolve) => {
      cancel = clock.every(1, () => {
        calls++;
        if (calls === 3) {
          cancel();
          resolve();
        }
      });
    });
    await third;
    await clock.sleep(10);
    expect(calls).toBe(3);
  });
});
