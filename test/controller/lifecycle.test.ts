import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bearer, startTestController, type TestController } from './support.ts';

let c: TestController;
beforeEach(async () => {
  c = await startTestController();
});
afterEach(async () => {
  await c.close();
});

describe('a build from submission to completion', () => {
  it('is claimed, reports phases, logs and heartbeats, and completes', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit({ env: { TOKEN: 's3cret' } });
    expect(b.status).toBe('queued');
    expect((await c.get(b.id)).envNames).toEqual(['TOKEN']);
    expect(JSON.stringify(await c.get(b.id))).not.toContain('s3cret');

    const claim = await c.poll('mac-1', w.auth);
    expect(claim?.build.id).toBe(b.id);
    expect(claim?.build.env).toEqual({ TOKEN: 's3cret' });
    expect(claim?.build.attempt).toBe(1);
    expect(await c.get(b.id)).toMatchObject({ status: 'assigned', workerId: 'mac-1' });
    const lease = claim!.lease;

    expect((await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease, phase: 'preparing' })).statusCode).toBe(200);
    expect((await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease, phase: 'running' })).statusCode).toBe(200);
    const running = await c.get(b.id);
    expect(running.status).toBe('running');
    expect(running.startedAt).not.toBeNull();

    const hb = await c.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(claim!.buildToken), { workerId: 'mac-1', progress: 40 });
    expect(hb.statusCode).toBe(200);
    expect(hb.json()).toEqual({ status: 'running', cancelRequested: false });
    expect((await c.get(b.id)).progress).toBe(40);

    expect((await c.post(`/api/v1/builds/${b.id}/logs`, w.auth, { lease, offset: 0, data: 'héllo\n' })).json()).toEqual({ logBytes: 7 });
    expect((await c.post(`/api/v1/builds/${b.id}/logs`, w.auth, { lease, offset: 7, data: 'world\n' })).json()).toEqual({ logBytes: 13 });

    const done = await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease, status: 'succeeded', exitCode: 0 });
    expect(done.statusCode).toBe(200);
    expect(done.json()).toMatchObject({ status: 'succeeded', exitCode: 0, failureReason: null });
    const log = await c.app.inject({ method: 'GET', url: `/api/v1/builds/${b.id}/logs`, headers: c.admin });
    expect(log.headers['content-type']).toContain('text/plain');
    expect(log.body).toBe('héllo\nworld\n');

    // The build token dies with the attempt.
    const late = await c.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(claim!.buildToken), {});
    expect(late.statusCode).toBe(409);
    expect(late.json().code).toBe('BUILD_OVER');
  });

  it('answers a repeated completion with 200 and refuses a different one', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    const { lease } = (await c.poll('mac-1', w.auth))!;
    const first = await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease, status: 'failed', exitCode: 3 });
    expect(first.json()).toMatchObject({ status: 'failed', failureReason: 'build_failed', exitCode: 3 });
    const again = await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease, status: 'failed', exitCode: 3 });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ status: 'failed', exitCode: 3 });
    const other = await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease, status: 'succeeded' });
    expect(other.statusCode).toBe(409);
    expect(other.json().code).toBe('LEASE_STALE');
  });

  it('hands the oldest matching build first and honours labels', async () => {
    const plain = await c.enrol('plain');
    const xcode = await c.enrol('xcode-host', ['xcode-16', 'arm64']);
    const needsXcode = await c.submit({ labels: ['xcode-16'] });
    const anyA = await c.submit();
    const anyB = await c.submit();
    expect((await c.poll('plain', plain.auth))?.build.id).toBe(anyA.id);
    expect((await c.poll('xcode-host', xcode.auth))?.build.id).toBe(needsXcode.id);
    expect((await c.poll('plain', plain.auth))?.build.id).toBe(anyB.id);
    expect(await c.poll('plain', plain.auth)).toBeNull();
  });

  it('cancels a queued build at once and asks a running one to stop', async () => {
    const w = await c.enrol('mac-1');
    const queued = await c.submit();
    const res = await c.post(`/api/v1/builds/${queued.id}/cancel`, c.admin);
    expect(res.json()).toMatchObject({ status: 'cancelled' });
    expect(await c.poll('mac-1', w.auth)).toBeNull();

    const running = await c.submit();
    const claim = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${running.id}/cancel`, c.admin);
    const hb = await c.post(`/api/v1/builds/${running.id}/heartbeat`, bearer(claim.buildToken), {});
    expect(hb.json()).toEqual({ status: 'assigned', cancelRequested: true });
    // The agent learns of it from its worker heartbeat, not from a build heartbeat of its own.
    const whb = await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [running.id] });
    expect(whb.json()).toEqual({ status: 'ok', abort: [], cancel: [running.id] });
    const done = await c.post(`/api/v1/builds/${running.id}/complete`, w.auth, { lease: claim.lease, status: 'cancelled' });
    expect(done.json()).toMatchObject({ status: 'cancelled' });
  });

  it('refuses to move a running build back to preparing', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    const { lease } = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease, phase: 'running' });
    const back = await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease, phase: 'preparing' });
    expect(back.statusCode).toBe(409);
    expect(back.json().code).toBe('BUILD_BAD_TRANSITION');
  });
});

describe('logs', () => {
  it('treats a repeated chunk as a no-op, appends only the new tail of an overlap, and refuses a gap with the expected offset', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    const { lease } = (await c.poll('mac-1', w.auth))!;
    const url = `/api/v1/builds/${b.id}/logs`;
    await c.post(url, w.auth, { lease, offset: 0, data: 'abc' });
    expect((await c.post(url, w.auth, { lease, offset: 0, data: 'abc' })).json()).toEqual({ logBytes: 3 });
    expect((await c.post(url, w.auth, { lease, offset: 1, data: 'bcdef' })).json()).toEqual({ logBytes: 6 });
    const gap = await c.post(url, w.auth, { lease, offset: 10, data: 'x' });
    expect(gap.statusCode).toBe(409);
    expect(gap.json()).toMatchObject({ code: 'LOG_OFFSET_GAP', expectedOffset: 6 });
    const log = await c.app.inject({ method: 'GET', url: `${url}?offset=2`, headers: c.admin });
    expect(log.body).toBe('cdef');
    expect(log.headers['x-log-size']).toBe('6');
  });

  it('two writers at the same log offset: the second gets 409 LOG_CONFLICT and is not spliced into the first', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    const { lease } = (await c.poll('mac-1', w.auth))!;
    const url = `/api/v1/builds/${b.id}/logs`;
    expect((await c.post(url, w.auth, { lease, offset: 0, data: 'writer one: ünïcode\n' })).statusCode).toBe(200);
    const second = await c.post(url, w.auth, { lease, offset: 0, data: 'writer two says something longer\n' });
    expect(second.statusCode).toBe(409);
    expect(second.json()).toMatchObject({ code: 'LOG_CONFLICT' });
    const midCharacter = await c.post(url, w.auth, { lease, offset: 14, data: 'x' });
    expect(midCharacter.json()).toMatchObject({ code: 'LOG_CONFLICT' });
    const log = await c.app.inject({ method: 'GET', url, headers: c.admin });
    expect(log.body).toBe('writer one: ünïcode\n');
    expect(log.headers['x-log-size']).toBe(String(Buffer.byteLength('writer one: ünïcode\n')));
  });

  it('a log chunk limit counts bytes, not characters', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    const { lease } = (await c.poll('mac-1', w.auth))!;
    // 600 Ki characters of 'é' are 1.2 MiB of UTF-8: over the 1 MiB chunk limit though under it in characters.
    const res = await c.post(`/api/v1/builds/${b.id}/logs`, w.auth, { lease, offset: 0, data: 'é'.repeat(600 * 1024) });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: 'API_BAD_REQUEST' });
    expect(String(res.json().message)).toContain('bytes');
    expect((await c.get(b.id)).logBytes).toBe(0);
  });

  it('caps a build log with a clear 413', async () => {
    await c.close();
    c = await startTestController({ maxLogBytes: 10 });
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    const { lease } = (await c.poll('mac-1', w.auth))!;
    const url = `/api/v1/builds/${b.id}/logs`;
    expect((await c.post(url, w.auth, { lease, offset: 0, data: '12345678' })).statusCode).toBe(200);
    const over = await c.post(url, w.auth, { lease, offset: 8, data: '9ab' });
    expect(over.statusCode).toBe(413);
    expect(over.json()).toMatchObject({ code: 'LOG_TOO_LARGE' });
    expect(String(over.json().message)).toContain('10 bytes');
  });
});

describe('retries', () => {
  it('retries an infrastructure failure on a fresh claim up to maxAttempts, with a new lease and token', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit({ maxAttempts: 2 });
    const first = (await c.poll('mac-1', w.auth))!;
    const r = await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: first.lease, status: 'failed', failureReason: 'vm_crashed' });
    expect(r.json()).toMatchObject({ status: 'queued', failureReason: 'vm_crashed', attempt: 1 });
    const second = (await c.poll('mac-1', w.auth))!;
    expect(second.build.attempt).toBe(2);
    expect(second.lease).not.toBe(first.lease);
    // The first attempt's lease and token are dead.
    const stale = await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: first.lease, phase: 'running' });
    expect(stale.statusCode).toBe(409);
    expect(stale.json().code).toBe('LEASE_STALE');
    expect((await c.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(first.buildToken), {})).statusCode).toBe(409);
    const last = await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: second.lease, status: 'failed', failureReason: 'vm_crashed' });
    expect(last.json()).toMatchObject({ status: 'failed', failureReason: 'vm_crashed', attempt: 2 });
  });

  it('never retries a build failure', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit({ maxAttempts: 3 });
    const { lease } = (await c.poll('mac-1', w.auth))!;
    const r = await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease, status: 'failed', exitCode: 1 });
    expect(r.json()).toMatchObject({ status: 'failed', failureReason: 'build_failed' });
    expect(await c.poll('mac-1', w.auth)).toBeNull();
  });

  it('marks attempts apart in the log', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit({ maxAttempts: 2 });
    const first = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/logs`, w.auth, { lease: first.lease, offset: 0, data: 'one\n' });
    await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: first.lease, status: 'failed', failureReason: 'vm_unhealthy' });
    const second = (await c.poll('mac-1', w.auth))!;
    expect(second.build.logOffset).toBeGreaterThan(4);
    await c.post(`/api/v1/builds/${b.id}/logs`, w.auth, { lease: second.lease, offset: second.build.logOffset, data: 'two\n' });
    const log = await c.app.inject({ method: 'GET', url: `/api/v1/builds/${b.id}/logs`, headers: c.admin });
    expect(log.body).toMatch(/^one\n\n===== attempt 2 of 2 on worker mac-1 =====\ntwo\n$/);
  });
});

describe('workers', () => {
  it('lists workers with derived status, refuses a duplicate id, and reports health', async () => {
    const w = await c.enrol('mac-1', ['xcode']);
    expect((await c.post('/api/v1/workers', c.admin, { id: 'mac-1' })).json().code).toBe('WORKER_EXISTS');
    await c.submit();
    await c.poll('mac-1', w.auth, { slotsTotal: 2, slotsFree: 2 });
    const list = await c.app.inject({ method: 'GET', url: '/api/v1/workers', headers: c.admin });
    const [view] = (list.json() as { workers: Record<string, unknown>[] }).workers;
    expect(view).toMatchObject({ id: 'mac-1', status: 'busy', labels: ['xcode'], slotsTotal: 2 });
    expect(JSON.stringify(list.json())).not.toContain(w.apiKey);
    const health = await c.app.inject({ method: 'GET', url: '/health' });
    expect(health.json()).toEqual({
      status: 'ok',
      running: true,
      activeJobs: 1,
      maxConcurrent: 2,
      queueStats: { queued: 0, assigned: 1, preparing: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 },
    });
  });

  it('shows a worker itself to its own key, without touching its builds', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    const { lease } = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease, phase: 'running' });
    const me = await c.app.inject({ method: 'GET', url: '/api/v1/workers/mac-1', headers: w.auth });
    expect(me.json()).toMatchObject({ id: 'mac-1', status: 'busy', runningBuilds: [b.id] });
    expect((await c.get(b.id)).status).toBe('running');
    const other = await c.enrol('mac-2');
    expect((await c.app.inject({ method: 'GET', url: '/api/v1/workers/mac-1', headers: other.auth })).statusCode).toBe(403);
    expect((await c.app.inject({ method: 'GET', url: '/api/v1/workers/nobody', headers: c.admin })).statusCode).toBe(404);
  });

  it('fails with worker_lost a running build its worker no longer lists, and tells the worker to abort builds it is not holding', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    const { lease } = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease, phase: 'running' });
    // Within the claim grace a heartbeat that does not list it yet may have been sent before the claim arrived.
    await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [] });
    expect((await c.get(b.id)).status).toBe('running');
    c.clock.now += 11_000;
    await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease, phase: 'running' });
    const hb = await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: ['aaaaaaaaaaaaaaaa'] });
    expect(hb.json()).toEqual({ status: 'ok', abort: ['aaaaaaaaaaaaaaaa'], cancel: [] });
    expect(await c.get(b.id)).toMatchObject({ status: 'failed', failureReason: 'worker_lost' });
  });

  it('puts back an assignment the worker never received, without spending an attempt', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    await c.poll('mac-1', w.auth);
    // Within the grace the response may still be on its way.
    await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [] });
    expect((await c.get(b.id)).status).toBe('assigned');
    c.clock.now += 11_000;
    await c.post('/api/v1/workers/mac-1/heartbeat', w.auth, { runningBuilds: [] });
    expect(await c.get(b.id)).toMatchObject({ status: 'queued', attempt: 0 });
    const again = (await c.poll('mac-1', w.auth))!;
    expect(again.build).toMatchObject({ id: b.id, attempt: 1 });
  });
});
