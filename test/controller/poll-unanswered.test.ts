/**
 * A claim whose poll nobody will read goes back to the queue at once, not after the claim grace
 * (with a second claim then counted, and the build waiting out the grace): the client left while
 * the claim was made.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startTestController, type TestController } from './support.ts';

let t: TestController | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

describe('a claim for a poll whose client left', () => {
  it('puts the build back at once, and the next poll claims it as its first attempt', async () => {
    // A grace far longer than the test: only the release can put the build back in time.
    t = await startTestController({ claimGraceMs: 3_600_000 });
    const w = await t.enrol('w1');
    const { id } = await t.submit();
    const worker = (await t.store.getWorker('w1'))!;
    const gone = new AbortController();
    gone.abort();
    // The client is gone by the time the claim lands (here: before it is made).
    const result = await t.service.poll(worker, { slotsFree: 1, slotsTotal: 1, runningBuilds: [], waitS: 0 }, gone.signal);
    expect(result).toBeNull();
    expect(await t.get(id)).toMatchObject({ status: 'queued', attempt: 0, workerId: null });
    const claim = await t.poll('w1', w.auth);
    expect(claim?.build).toMatchObject({ id, attempt: 1 });
    const metrics = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/^expo_worker_queue_wait_seconds_count 1$/m);
  });
});
