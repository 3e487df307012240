import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestController, type TestController } from './support.ts';

let c: TestController;
beforeEach(async () => {
  c = await startTestController();
});
afterEach(async () => {
  await c.close();
});

const THREE = [
  { name: 'install', run: 'true' },
  { name: 'test', run: 'true' },
  { name: 'archive', run: 'true' },
];

/** Advances the controller's clock by `ms` and sends a phase update. */
async function phaseAt(id: string, auth: Record<string, string>, ms: number, body: Record<string, unknown>) {
  c.clock.now += ms;
  return c.post(`/api/v1/builds/${id}/phase`, auth, body);
}

describe('step times from phase updates', () => {
  it('records each step start of the attempt and shows starts and durations on the build', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit({ steps: THREE });
    expect((await c.get(b.id)).stepTimes).toEqual([null, null, null].map(() => ({ startedAt: null, durationS: null })));
    const { lease } = (await c.poll('mac-1', w.auth))!;
    const t0 = c.clock.now;
    // The first running call carries step 0; it moves the build to running and starts the step.
    expect((await phaseAt(b.id, w.auth, 1000, { lease, phase: 'running', step: 0 })).statusCode).toBe(200);
    const running = await c.get(b.id);
    expect(running.status).toBe('running');
    expect(running.stepTimes).toEqual([
      { startedAt: new Date(t0 + 1000).toISOString(), durationS: null },
      { startedAt: null, durationS: null },
      { startedAt: null, durationS: null },
    ]);
    expect((await phaseAt(b.id, w.auth, 12_340, { lease, phase: 'running', step: 1 })).statusCode).toBe(200);
    // A retried report of a step keeps its first start.
    expect((await phaseAt(b.id, w.auth, 500, { lease, phase: 'running', step: 1 })).statusCode).toBe(200);
    expect((await phaseAt(b.id, w.auth, 2000, { lease, phase: 'running', step: 2 })).statusCode).toBe(200);
    c.clock.now += 3000;
    expect((await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease, status: 'succeeded', exitCode: 0 })).statusCode).toBe(200);
    expect((await c.get(b.id)).stepTimes).toEqual([
      { startedAt: new Date(t0 + 1000).toISOString(), durationS: 12.3 },
      { startedAt: new Date(t0 + 13_340).toISOString(), durationS: 2.5 },
      { startedAt: new Date(t0 + 15_840).toISOString(), durationS: 3 },
    ]);
  });

  it('refuses a step out of range or with another phase (400), and a step under a stale lease (409), writing nothing', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit({ steps: THREE, maxAttempts: 2 });
    const first = (await c.poll('mac-1', w.auth))!;
    const out = await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: first.lease, phase: 'running', step: 3 });
    expect(out.statusCode).toBe(400);
    expect(out.json()).toMatchObject({ code: 'API_BAD_REQUEST', message: expect.stringContaining('step 3 is out of range') });
    const preparing = await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: first.lease, phase: 'preparing', step: 0 });
    expect(preparing.statusCode).toBe(400);
    expect(preparing.json().code).toBe('API_BAD_REQUEST');
    const negative = await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: first.lease, phase: 'running', step: -1 });
    expect(negative.statusCode).toBe(400);
    // Nothing moved: the build is still assigned, no step started.
    const still = await c.get(b.id);
    expect(still.status).toBe('assigned');
    expect(still.stepTimes).toEqual(THREE.map(() => ({ startedAt: null, durationS: null })));

    // An old agent's phase call (no step) works as before.
    expect((await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: first.lease, phase: 'running' })).statusCode).toBe(200);
    expect((await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: first.lease, phase: 'running', step: 0 })).statusCode).toBe(200);
    // The attempt fails on the infrastructure and the build is claimed again: the old lease is stale,
    // and the new attempt's steps start empty.
    const failed = await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: first.lease, status: 'failed', failureReason: 'vm_crashed' });
    expect(failed.json()).toMatchObject({ status: 'queued' });
    const second = (await c.poll('mac-1', w.auth))!;
    expect((await c.get(b.id)).stepTimes).toEqual(THREE.map(() => ({ startedAt: null, durationS: null })));
    const stale = await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: first.lease, phase: 'running', step: 1 });
    expect(stale.statusCode).toBe(409);
    expect(stale.json().code).toBe('LEASE_STALE');
    expect((await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: second.lease, phase: 'running', step: 1 })).statusCode).toBe(200);
    expect(((await c.get(b.id)).stepTimes as { startedAt: string | null }[]).map((t) => t.startedAt !== null)).toEqual([false, true, false]);
  });

  it('refuses a step of a build that is over (409)', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit({ steps: THREE });
    const { lease } = (await c.poll('mac-1', w.auth))!;
    expect((await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease, phase: 'running', step: 0 })).statusCode).toBe(200);
    expect((await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease, status: 'failed', exitCode: 1 })).statusCode).toBe(200);
    const late = await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease, phase: 'running', step: 1 });
    expect(late.statusCode).toBe(409);
    expect((await c.get(b.id)).stepTimes).toEqual([
      { startedAt: expect.any(String), durationS: 0 },
      { startedAt: null, durationS: null },
      { startedAt: null, durationS: null },
    ]);
  });
});
