/**
 * The build heartbeat's hot path: the build token is resolved once and then remembered
 * (build-token-cache.ts), the answer is a machine's (no browser security headers), and every
 * refusal is still decided on the store's current rows.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { bearer, startTestController, type TestController } from './support.ts';

let c: TestController;
afterEach(async () => {
  await c?.close();
});

async function runningBuild(t: TestController) {
  const w = await t.enrol('mac-1');
  const b = await t.submit();
  const claim = (await t.poll('mac-1', w.auth))!;
  expect((await t.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'running' })).statusCode).toBe(200);
  return { w, b, claim };
}

const heartbeat = (t: TestController, id: string, token: string, body: Record<string, unknown> = {}) =>
  t.app.inject({ method: 'POST', url: `/api/v1/builds/${id}/heartbeat`, headers: bearer(token), payload: body });

describe('a build heartbeat', () => {
  it('answers exactly its pulse, without the browser security headers, and says when a cancel is asked', async () => {
    c = await startTestController();
    const { b, claim } = await runningBuild(c);
    const first = await heartbeat(c, b.id, claim.buildToken, { progress: 30 });
    expect(first.statusCode).toBe(200);
    expect(first.body).toBe('{"status":"running","cancelRequested":false}');
    expect(first.headers['content-security-policy']).toBeUndefined();
    expect(first.headers['x-frame-options']).toBeUndefined();
    expect((await c.get(b.id)).progress).toBe(30);

    expect((await c.post(`/api/v1/builds/${b.id}/cancel`, c.admin)).statusCode).toBe(200);
    const second = await heartbeat(c, b.id, claim.buildToken, { progress: 31 });
    expect(second.json()).toEqual({ status: 'running', cancelRequested: true });
    expect((await c.get(b.id)).progress).toBe(31);
    // Other routes keep them.
    expect((await c.app.inject({ method: 'GET', url: `/api/v1/builds/${b.id}`, headers: c.admin })).headers['x-frame-options']).toBe('SAMEORIGIN');
  });

  it('reads its token from the store once for many beats, and again after a refusal (the refused token is dropped)', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 10_000 });
    const t0 = c.clock.now;
    const { b, claim } = await runningBuild(c);
    const read = c.store.getAttemptByTokenHash.bind(c.store);
    let reads = 0;
    c.store.getAttemptByTokenHash = (hash) => {
      reads++;
      return read(hash);
    };
    for (let i = 0; i < 3; i++) expect((await heartbeat(c, b.id, claim.buildToken)).statusCode).toBe(200);
    expect(reads).toBe(1);
    expect(await c.watchdog.sweep(t0 + 10_001)).toMatchObject({ builds: 1 });
    // Refused from the cached attempt: one read to decide the refusal; the token is then dropped.
    expect((await heartbeat(c, b.id, claim.buildToken)).statusCode).toBe(409);
    expect(reads).toBe(2);
    // Not cached any more: read to authenticate, and again to decide the refusal.
    expect((await heartbeat(c, b.id, claim.buildToken)).statusCode).toBe(409);
    expect(reads).toBe(4);
  });

  it('from a remembered token cannot revive an attempt the watchdog ended: 409, and the build stays failed', async () => {
    c = await startTestController({ heartbeatTimeoutMs: 10_000 });
    const t0 = c.clock.now;
    const { b, claim } = await runningBuild(c);
    expect((await heartbeat(c, b.id, claim.buildToken)).statusCode).toBe(200); // the token is now remembered
    expect(await c.watchdog.sweep(t0 + 10_001)).toMatchObject({ builds: 1 });
    c.clock.now = t0 + 10_002;
    const late = await heartbeat(c, b.id, claim.buildToken, { progress: 90 });
    expect(late.statusCode).toBe(409);
    expect(late.json().code).toBe('BUILD_OVER');
    expect(await c.get(b.id)).toMatchObject({ status: 'failed', failureReason: 'heartbeat_timeout', progress: null });
  });

  it('from a remembered token whose attempt was requeued and claimed again: 409, and the new attempt is untouched', async () => {
    c = await startTestController();
    const w = await c.enrol('mac-1');
    const b = await c.submit({ maxAttempts: 2 });
    const first = (await c.poll('mac-1', w.auth))!;
    expect((await heartbeat(c, b.id, first.buildToken)).statusCode).toBe(200);
    const failed = await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: first.lease, status: 'failed', failureReason: 'vm_crashed' });
    expect(failed.json()).toMatchObject({ status: 'queued' });
    const second = (await c.poll('mac-1', w.auth))!;
    expect(second.build.attempt).toBe(2);
    const stale = await heartbeat(c, b.id, first.buildToken, { progress: 50 });
    expect(stale.statusCode).toBe(409);
    expect((await c.get(b.id)).progress).toBeNull();
    expect((await heartbeat(c, b.id, second.buildToken, { progress: 5 })).json()).toEqual({ status: 'assigned', cancelRequested: false });
  });

  it('from a remembered token whose build was pruned: 401, as for any unknown key', async () => {
    c = await startTestController();
    const { w, b, claim } = await runningBuild(c);
    expect((await heartbeat(c, b.id, claim.buildToken)).statusCode).toBe(200);
    expect((await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: claim.lease, status: 'succeeded', exitCode: 0 })).statusCode).toBe(200);
    c.clock.now += 2 * 86_400_000;
    const pruned = await c.post('/api/v1/admin/prune', c.admin, { olderThanDays: 1 });
    expect(pruned.json()).toMatchObject({ builds: 1 });
    const late = await heartbeat(c, b.id, claim.buildToken);
    expect(late.statusCode).toBe(401);
    expect(late.json().code).toBe('AUTH_INVALID');
  });

  it('with a remembered token still refuses another build and another worker name', async () => {
    c = await startTestController();
    const { b, claim } = await runningBuild(c);
    const other = await c.submit();
    expect((await heartbeat(c, b.id, claim.buildToken)).statusCode).toBe(200);
    expect((await heartbeat(c, other.id, claim.buildToken)).statusCode).toBe(403);
    expect((await heartbeat(c, b.id, claim.buildToken, { workerId: 'mac-2' })).statusCode).toBe(403);
  });

  it("from the worker's key works as before, and refuses a build it does not hold", async () => {
    c = await startTestController();
    const { w, b } = await runningBuild(c);
    expect((await heartbeat(c, b.id, w.apiKey, { progress: 12 })).json()).toEqual({ status: 'running', cancelRequested: false });
    expect((await c.get(b.id)).progress).toBe(12);
    const w2 = await c.enrol('mac-2');
    expect((await heartbeat(c, b.id, w2.apiKey)).statusCode).toBe(403);
  });
});
