/**
 * The watchdog: with a controlled clock (each sweep at an exact time), and once in real time
 * with a timeout of about a second.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { agentIntervals, deathCutoff, livenessReport, sweepIntervalMs } from '../../src/monitor/watchdog-policy.ts';
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

describe('agent intervals follow the controller', () => {
  const defaults = { workerHeartbeatS: 15, preparingKeepaliveS: 15, heartbeatIntervalS: 30, pollWaitS: 25 };
  const at = (timeoutS: number) => ({ heartbeatTimeoutMs: timeoutS * 1000, pollWaitMaxMs: Math.min(25_000, (timeoutS * 1000) / 2), prepareTimeoutMs: 600_000 });

  it('keeps the configured values against the default 120 s timeout, and caps them at a quarter (a long poll at half) of a shrunk one', () => {
    expect(agentIntervals(defaults, at(120))).toEqual({ workerHeartbeatMs: 15_000, preparingKeepaliveMs: 15_000, monitorIntervalS: 30, monitorRequestTimeoutS: 10, pollWaitS: 25 });
    expect(agentIntervals(defaults, at(6))).toEqual({ workerHeartbeatMs: 1500, preparingKeepaliveMs: 1500, monitorIntervalS: 1, monitorRequestTimeoutS: 3, pollWaitS: 3 });
    // Before the controller has said anything, the config stands.
    expect(agentIntervals(defaults, null)).toEqual({ workerHeartbeatMs: 15_000, preparingKeepaliveMs: 15_000, monitorIntervalS: 30, monitorRequestTimeoutS: 10, pollWaitS: 25 });
  });

  it('tells doctor what it will use, and warns when the config or the timeout would starve the controller', () => {
    const ok = livenessReport(defaults, at(120));
    expect(ok.warnings).toEqual([]);
    expect(ok.lines.join('\n')).toContain('controller heartbeat timeout 120 s');
    const shrunk = livenessReport(defaults, at(6));
    expect(shrunk.lines.join('\n')).toMatch(/worker heartbeat every 1\.5 s \(configured 15 s; capped/);
    expect(shrunk.warnings.join('\n')).toMatch(/workerHeartbeatS \(15 s\) is not shorter than the controller's heartbeat timeout \(6 s\)/);
    expect(livenessReport({ ...defaults, workerHeartbeatS: 1, preparingKeepaliveS: 1, heartbeatIntervalS: 1 }, at(2)).warnings.join('\n')).toMatch(/too short for vm-monitor\.sh/);
  });
});

describe('with a controlled clock', () => {
  it('fails a silent build with heartbeat_timeout exactly after the timeout, and frees its worker', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 120_000 });
    const t0 = c.clock.now;
    const { w, b, claim } = await runningBuild(c);
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
    const { w, b, claim } = await runningBuild(c);
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

describe('signs of life that land in the middle of a pass', () => {
  // The pass lets requests in between its read and its writes; here the request is made to land
  // exactly there, by running it inside the read (the store the watchdog uses, patched).
  it('a build heartbeat that lands after the stale builds were read keeps its build', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 10_000 });
    const ctl = c;
    const t0 = ctl.clock.now;
    const { w, b, claim } = await runningBuild(ctl);
    ctl.clock.now = t0 + 9_000;
    await ctl.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });
    const read = ctl.store.findStaleBuilds.bind(ctl.store);
    let beat = 0;
    ctl.store.findStaleBuilds = async (cutoff) => {
      const list = await read(cutoff);
      ctl.clock.now = t0 + 10_001;
      beat = (await ctl.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(claim.buildToken), {})).statusCode;
      return list;
    };
    expect(await ctl.watchdog.sweep(t0 + 10_001)).toEqual({ builds: 0, workers: 0 });
    expect(beat).toBe(200);
    expect(await ctl.get(b.id)).toMatchObject({ status: 'running' });
    // Once its beats stop again it is failed as before.
    ctl.store.findStaleBuilds = read;
    expect(await ctl.watchdog.sweep(t0 + 20_002)).toEqual({ builds: 1, workers: 1 });
  });

  it('a worker contact that lands after the silent workers were read keeps the worker and its builds', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 10_000 });
    const ctl = c;
    const t0 = ctl.clock.now;
    const { w, b, claim } = await runningBuild(ctl);
    ctl.clock.now = t0 + 9_000;
    await ctl.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(claim.buildToken), {});
    const read = ctl.store.findSilentWorkers.bind(ctl.store);
    let contact = 0;
    ctl.store.findSilentWorkers = async (cutoff) => {
      const list = await read(cutoff);
      ctl.clock.now = t0 + 10_001;
      contact = (await ctl.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] })).statusCode;
      return list;
    };
    expect(await ctl.watchdog.sweep(t0 + 10_001)).toEqual({ builds: 0, workers: 0 });
    expect(contact).toBe(200);
    expect(await ctl.get(b.id)).toMatchObject({ status: 'running' });
    expect(await ctl.store.getWorker('mac-1')).toMatchObject({ offline: false, lastSeenAt: t0 + 10_001 });
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
    // 2 s against beats every 300 ms: a busy machine may delay a beat, not by more than a second.
    const heartbeatTimeoutMs = 2000;
    c = await startTestController({ heartbeatTimeoutMs, realClock: true });
    c.watchdog.start();
    const { w, b, claim } = await runningBuild(c);
    // Alive for a while: heartbeats every 300 ms keep it running past the timeout.
    for (let i = 0; i < 8; i++) {
      await new Promise((r) => setTimeout(r, 300));
      expect((await c.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(claim.buildToken), {})).statusCode).toBe(200);
      await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });
    }
    // Silent now (the worker itself stays alive): a generous wait that ends when the build fails.
    for (const deadline = Date.now() + 30_000; (await c.get(b.id)).status !== 'failed' && Date.now() < deadline; ) {
      await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });
      await new Promise((r) => setTimeout(r, 20));
    }
    const failed = await c.get(b.id);
    expect(failed).toMatchObject({ status: 'failed', failureReason: 'heartbeat_timeout' });
    // On the controller's own clock, not our observation of it: never early, and at most a sweep
    // (≤ 1 s) late — plus a few seconds for timers a busy machine runs late.
    const lateMs = Date.parse(failed.finishedAt as string) - Date.parse(failed.lastHeartbeatAt as string) - heartbeatTimeoutMs;
    expect(lateMs).toBeGreaterThanOrEqual(0);
    expect(lateMs).toBeLessThanOrEqual(1000 + 3000);
  });
});

describe('on the deadline', () => {
  it('does not fail a build whose deadline a heartbeat moved, and fails it once the beats stop', async () => {
    // Beats every 400 ms against 3 s: the timer armed at each earliest deadline finds it moved.
    const heartbeatTimeoutMs = 3000;
    c = await startTestController({ heartbeatTimeoutMs, realClock: true });
    c.watchdog.start();
    const { w, b, claim } = await runningBuild(c);
    for (const until = Date.now() + 2.5 * heartbeatTimeoutMs; Date.now() < until; ) {
      await new Promise((r) => setTimeout(r, 400));
      expect((await c.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(claim.buildToken), {})).statusCode).toBe(200);
      await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });
    }
    expect(await c.get(b.id)).toMatchObject({ status: 'running', failureReason: null });
    for (const deadline = Date.now() + 30_000; (await c.get(b.id)).status !== 'failed' && Date.now() < deadline; ) {
      await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await c.get(b.id)).toMatchObject({ status: 'failed', failureReason: 'heartbeat_timeout' });
  });

  it('catches a backstop that appeared after its timer was armed', async () => {
    // The controller's clock is ours; its timers are real. The watchdog starts with nothing
    // active (its timer armed for at most half a timeout), then a build starts its steps and its
    // clock runs past timeoutS + the grace while every heartbeat keeps coming.
    c = await startTestController({ heartbeatTimeoutMs: 2_000, prepareTimeoutMs: 60_000 });
    c.clock.now += 10_000; // past the restart grace
    c.watchdog.start();
    const t0 = c.clock.now;
    const w = await c.enrol('mac-1');
    const b = await c.submit({ timeoutS: 1 });
    const claim = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'running' });
    // 1 s (timeoutS) + 60 s (grace), and a ms.
    c.clock.now = t0 + 61_001;
    for (const deadline = Date.now() + 30_000; (await c.get(b.id)).status === 'running' && Date.now() < deadline; ) {
      await c.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(claim.buildToken), {});
      await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await c.get(b.id)).toMatchObject({ status: 'failed', failureReason: 'timed_out' });
  });

  it('makes a pass at once when it starts: what went silent while nobody watched is failed', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 2_000 });
    const { b } = await runningBuild(c);
    c.clock.now += 60_000;
    c.watchdog.start();
    for (const deadline = Date.now() + 30_000; (await c.get(b.id)).status === 'running' && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
    expect(await c.get(b.id)).toMatchObject({ status: 'failed', failureReason: 'heartbeat_timeout' });
  });
});

describe('backstops for an agent that is alive but stuck', () => {
  it('fails a build running past its timeoutS by more than the grace (a minute at least) with timed_out, counting from its running start', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 10_000, prepareTimeoutMs: 60_000 });
    const t0 = c.clock.now;
    const w = await c.enrol('mac-1');
    const b = await c.submit({ timeoutS: 30 });
    const claim = (await c.poll('mac-1', w.auth))!;
    c.clock.now = t0 + 50_000; // a slow boot: 50 s preparing does not eat the build's 30 s
    await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'running' });
    // The agent and the monitor stay alive throughout; only the clock of the steps runs out.
    const beat = async (t: number) => {
      c!.clock.now = t0 + t;
      await c!.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(claim.buildToken), {});
      await c!.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });
      return c!.watchdog.sweep(t0 + t);
    };
    // 50 s (boot) + 30 s (timeoutS) + 60 s (grace: the agent's own stop and report come first).
    for (let t = 55_000; t <= 140_000; t += 5_000) expect(await beat(t)).toEqual({ builds: 0, workers: 0 });
    expect(await beat(140_001)).toEqual({ builds: 1, workers: 0 });
    expect(await c.get(b.id)).toMatchObject({ status: 'failed', failureReason: 'timed_out', message: expect.stringContaining('timeout of 30 s') });
    expect((await c.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(claim.buildToken), {})).statusCode).toBe(409);
  });

  it('fails a build still preparing past the prepare timeout with prepare_timeout, and retries it when it has attempts left', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 10_000, prepareTimeoutMs: 60_000 });
    const t0 = c.clock.now;
    const w = await c.enrol('mac-1');
    const b = await c.submit({ maxAttempts: 2 });
    const claim = (await c.poll('mac-1', w.auth))!;
    // 60 s (prepare timeout) + 60 s (grace).
    for (let t = 5_000; t <= 120_000; t += 5_000) {
      c.clock.now = t0 + t;
      await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'preparing' });
      await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id] });
      expect(await c.watchdog.sweep(t0 + t)).toEqual({ builds: 0, workers: 0 });
    }
    c.clock.now = t0 + 120_001;
    expect(await c.watchdog.sweep(t0 + 120_001)).toEqual({ builds: 1, workers: 0 });
    expect(await c.get(b.id)).toMatchObject({ status: 'queued', failureReason: 'prepare_timeout', attempt: 1 });
  });
});

describe('a worker inside a wait', () => {
  it('is alive while its long poll is open, however old its last contact', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 10_000 });
    const t0 = c.clock.now;
    const w = await c.enrol('mac-2');
    // The longest poll the controller holds at this timeout (5 s): the sweep below lands inside it.
    const poll = c.post('/api/v1/workers/mac-2/poll', w.auth, { slotsFree: 1, runningBuilds: [], waitS: 5 });
    await until(() => c!.service.waits.isWaiting('mac-2'));
    c.clock.now = t0 + 60_000;
    expect((await c.watchdog.sweep(t0 + 60_000)).workers).toBe(0);
    expect((await poll).statusCode).toBe(204);
    expect((await c.watchdog.sweep(t0 + 60_000)).workers).toBe(1);
  });

  it('states its clocks on every answer to a worker, and holds a long poll at most half the heartbeat timeout', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 2_000, prepareTimeoutMs: 45_000, realClock: true });
    const w = await c.enrol('mac-1');
    const started = Date.now();
    const res = await c.app.inject({ method: 'POST', url: '/api/v1/workers/mac-1/poll', headers: w.auth, payload: { slotsFree: 1, runningBuilds: [], waitS: 25 } });
    expect(res.statusCode).toBe(204);
    // Asked for 25 s, held for 1 s: the cap, not the request, decided (generous upper bound for a busy machine).
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(res.headers).toMatchObject({ 'x-expo-heartbeat-timeout-ms': '2000', 'x-expo-poll-wait-max-ms': '1000', 'x-expo-prepare-timeout-ms': '45000' });
    const self = await c.app.inject({ method: 'GET', url: '/api/v1/workers/mac-1', headers: w.auth });
    expect(self.headers['x-expo-heartbeat-timeout-ms']).toBe('2000');
  });

  it('answers a waiting worker heartbeat at once when a cancel is asked for one of its builds', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 120_000, realClock: true });
    const { w, b } = await runningBuild(c);
    // Waits up to 25 s (a quarter of 120 s caps it at 30 s) for news.
    const hb = c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id], waitS: 25 });
    await until(() => c!.service.waits.isWaiting('mac-1'));
    let answered = false;
    void hb.then(() => (answered = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(answered).toBe(false);
    await c.post(`/api/v1/builds/${b.id}/cancel`, c.admin, {});
    expect((await hb).json()).toEqual({ status: 'ok', abort: [], cancel: [b.id] });
    expect(c.service.waits.isWaiting('mac-1')).toBe(false);
  });

  it('answers a waiting worker heartbeat with an abort when the controller ends one of its builds', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 10_000 });
    const t0 = c.clock.now;
    const { w, b } = await runningBuild(c);
    c.clock.now = t0 + 10_001;
    const hb = c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [b.id], waitS: 2 });
    await until(() => c!.service.waits.isWaiting('mac-1'));
    expect(await c.watchdog.sweep(t0 + 10_001)).toEqual({ builds: 1, workers: 0 });
    expect((await hb).json()).toEqual({ status: 'ok', abort: [b.id], cancel: [] });
  });
});

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
}

/** Worker mac-1 enrolled, one build submitted, claimed by it and reported running. */
async function runningBuild(ctl: TestController) {
  const w = await ctl.enrol('mac-1');
  const b = await ctl.submit();
  const claim = (await ctl.poll('mac-1', w.auth))!;
  await ctl.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'running' });
  return { w, b, claim };
}
