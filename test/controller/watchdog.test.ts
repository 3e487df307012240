/**
 * The watchdog: with a controlled clock (each sweep at an exact time), and once in real time
 * with a timeout of about a second.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { deathCutoff, sweepIntervalMs } from '../../src/monitor/watchdog-policy.ts';
import { bearer, startTestController, type TestController } from './support.ts';

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

describe('policy', () => {
  it('grants one timeout of grace after start, then cuts off at now - timeout', () => {
    const p = { heartbeatTimeoutMs: 120_000, controllerStartedAt: 1_000_000 };
    expect(deathCutoff(p, 1_000_000 + 119_999)).toBeNull();
    expect(deathCutoff(p, 1_000_000 + 120_000)).toBe(1_000_000);
    expect(deathCutoff(p, 2_000_000)).toBe(1_880_000);
  });

  it('sweeps at most every second and at least four times per timeout', () => {
    expect(sweepIntervalMs(120_000)).toBe(1000);
    expect(sweepIntervalMs(1000)).toBe(250);
    expect(sweepIntervalMs(1)).toBe(10);
  });
});

describe('with a controlled clock', () => {
  it('fails a silent build with heartbeat_timeout exactly after the timeout, and frees its worker', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 120_000 });
    const t0 = c.clock.now;
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    const claim = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'running' });
    c.clock.now = t0 + 60_000;
    await c.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(claim.buildToken), { progress: 10 });
    await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });

    expect(await c.watchdog.sweep(t0 + 180_000)).toEqual({ builds: 0, workers: 0 });
    c.clock.now = t0 + 180_001;
    await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });
    expect(await c.watchdog.sweep(t0 + 180_001)).toEqual({ builds: 1, workers: 0 });
    expect(await c.get(b.id)).toMatchObject({ status: 'failed', failureReason: 'heartbeat_timeout', message: 'no heartbeat for 120s' });
    const workers = await c.app.inject({ method: 'GET', url: '/api/v1/workers', headers: c.admin });
    expect(workers.json().workers[0]).toMatchObject({ id: 'mac-1', status: 'idle', runningBuilds: [] });
    // The monitor is told the build is over; the agent's late completion is refused.
    expect((await c.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(claim.buildToken), {})).statusCode).toBe(409);
    expect((await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: claim.lease, status: 'succeeded' })).statusCode).toBe(409);
  });

  it('counts phase updates as signs of life while preparing', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 10_000 });
    const t0 = c.clock.now;
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    const claim = (await c.poll('mac-1', w.auth))!;
    for (let t = 5_000; t <= 30_000; t += 5_000) {
      c.clock.now = t0 + t;
      await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'preparing' });
      await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });
      await c.watchdog.sweep(t0 + t + 1);
    }
    expect((await c.get(b.id)).status).toBe('preparing');
  });

  it('marks a silent worker offline and fails what it held with worker_lost; contact brings it back', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 10_000 });
    const t0 = c.clock.now;
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    const claim = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'running' });
    // The build keeps heartbeating from the VM, but the agent itself went silent.
    c.clock.now = t0 + 9_000;
    await c.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(claim.buildToken), {});
    expect(await c.watchdog.sweep(t0 + 10_001)).toEqual({ builds: 1, workers: 1 });
    expect(await c.get(b.id)).toMatchObject({ status: 'failed', failureReason: 'worker_lost' });
    let list = await c.app.inject({ method: 'GET', url: '/api/v1/workers', headers: c.admin });
    expect(list.json().workers[0].status).toBe('offline');
    c.clock.now = t0 + 20_000;
    await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [] });
    list = await c.app.inject({ method: 'GET', url: '/api/v1/workers', headers: c.admin });
    expect(list.json().workers[0].status).toBe('idle');
  });

  it('retries a timed-out build on a fresh claim when maxAttempts allows', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 10_000 });
    const t0 = c.clock.now;
    const a = await c.enrol('mac-a');
    const bWorker = await c.enrol('mac-b');
    const b = await c.submit({ maxAttempts: 2 });
    const first = (await c.poll('mac-a', a.auth))!;
    await c.post(`/api/v1/builds/${b.id}/phase`, a.auth, { lease: first.lease, phase: 'preparing' });
    c.clock.now = t0 + 10_001;
    await c.post('/api/v1/workers/mac-a/heartbeat', a.auth, { runningBuilds: [b.id] });
    await c.watchdog.sweep(t0 + 10_001);
    expect(await c.get(b.id)).toMatchObject({ status: 'queued', failureReason: 'heartbeat_timeout' });
    expect((await c.poll('mac-b', bWorker.auth))?.build).toMatchObject({ id: b.id, attempt: 2 });
  });

  it('ends a cancel-requested build as cancelled rather than retrying it', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 10_000 });
    const t0 = c.clock.now;
    const w = await c.enrol('mac-1');
    const b = await c.submit({ maxAttempts: 3 });
    const claim = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'preparing' });
    await c.post(`/api/v1/builds/${b.id}/cancel`, c.admin);
    c.clock.now = t0 + 10_001;
    await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });
    await c.watchdog.sweep(t0 + 10_001);
    expect(await c.get(b.id)).toMatchObject({ status: 'cancelled', failureReason: 'heartbeat_timeout' });
  });
});

describe('builds their worker never acknowledged', () => {
  it('are taken back into the queue without spending an attempt, or end cancelled when a cancel is pending', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 10_000 });
    const t0 = c.clock.now;
    const w = await c.enrol('mac-1');
    const plain = await c.submit();
    await c.poll('mac-1', w.auth);
    const cancelled = await c.submit();
    await c.poll('mac-1', w.auth);
    await c.post(`/api/v1/builds/${cancelled.id}/cancel`, c.admin);
    c.clock.now = t0 + 10_001;
    await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [plain.id, cancelled.id] });
    await c.watchdog.sweep(t0 + 10_001);
    expect(await c.get(plain.id)).toMatchObject({ status: 'queued', attempt: 0, failureReason: null });
    expect(await c.get(cancelled.id)).toMatchObject({ status: 'cancelled' });
    expect((await c.poll('mac-1', w.auth))?.build).toMatchObject({ id: plain.id, attempt: 1 });
  });
});

describe('in real time', () => {
  it('fails a silent build within the timeout plus one second', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 1000, realClock: true });
    c.watchdog.start();
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    const claim = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'running' });
    // Alive for a while: heartbeats every 300 ms keep it running past the timeout.
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 300));
      expect((await c.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(claim.buildToken), {})).statusCode).toBe(200);
      await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });
    }
    const silentFrom = Date.now();
    let failedAt = 0;
    while (Date.now() - silentFrom < 5000) {
      await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });
      if ((await c.get(b.id)).status === 'failed') {
        failedAt = Date.now();
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await c.get(b.id)).toMatchObject({ status: 'failed', failureReason: 'heartbeat_timeout' });
    const lateMs = failedAt - silentFrom - 1000;
    expect(lateMs).toBeGreaterThanOrEqual(-50);
    expect(lateMs).toBeLessThanOrEqual(1000);
  });
});
