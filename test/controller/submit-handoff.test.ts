/**
 * A submission handed straight to a waiting poll (`Dispatcher.reserve` + `createAndClaim`) when a
 * store write around the hand-off fails: the waiting polls still hear of a build that may be
 * queued, and a build that exists is never answered with an error (the client would submit it
 * again, and it would run twice).
 */
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestController, type TestController } from './support.ts';

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

const STEPS = { steps: [{ name: 'build', run: 'echo hello' }] };

describe('the submit hand-off to a waiting poll', () => {
  it('when the claimed write fails after its build was written queued, the waiting poll is still woken and takes it', async () => {
    c = await startTestController();
    const ctl = c;
    const w = await ctl.enrol('mac-1');
    const poll = ctl.post('/api/v1/workers/mac-1/poll', w.auth, { slotsFree: 1, runningBuilds: [], waitS: 20 });
    await until(() => ctl.service.dispatcher.waiting === 1);
    // The outcome nobody knows: the build committed (queued here), the answer lost.
    ctl.store.createAndClaim = async (b) => {
      await ctl.store.createBuild(b);
      throw new Error('connection lost after the commit');
    };
    const submitted = await ctl.post('/api/v1/builds', ctl.admin, STEPS);
    expect(submitted.statusCode).toBe(500);
    const answer = await poll;
    expect(answer.statusCode).toBe(200);
    const id = (answer.json() as { build: { id: string } }).build.id;
    expect(await ctl.get(id)).toMatchObject({ status: 'assigned', workerId: 'mac-1' });
  });

  it('when the poll left meanwhile and giving its claim back fails, the submitter still gets its build', async () => {
    c = await startTestController();
    const ctl = c;
    const w = await ctl.enrol('mac-1');
    const address = await ctl.app.listen({ host: '127.0.0.1', port: 0 });
    const ac = new AbortController();
    const gone = request(`${address}/api/v1/workers/mac-1/poll`, {
      method: 'POST',
      signal: ac.signal,
      headers: { ...w.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ slotsFree: 1, runningBuilds: [], waitS: 20 }),
    }).catch((e: Error) => e);
    await until(() => ctl.service.dispatcher.waiting === 1);
    const createAndClaim = ctl.store.createAndClaim.bind(ctl.store);
    ctl.store.createAndClaim = async (b, req) => {
      const made = await createAndClaim(b, req);
      // The polling client goes away while the write is in flight.
      ac.abort();
      await until(() => ctl.service.dispatcher.waiting === 0);
      return made;
    };
    ctl.store.unassign = () => Promise.reject(new Error('database is locked'));
    const submitted = await ctl.post('/api/v1/builds', ctl.admin, STEPS);
    expect(submitted.statusCode).toBe(201);
    expect(await gone).toBeInstanceOf(Error);
    const id = (submitted.json() as { id: string }).id;
    // Left assigned under a lease nobody holds: the claim grace takes it back (not this test's subject).
    expect(await ctl.get(id)).toMatchObject({ status: 'assigned' });
  });
});

/** Waits for `cond`, generously for a busy machine; returns as soon as it holds. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 3000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
}
