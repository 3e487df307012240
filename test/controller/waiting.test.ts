/**
 * A new worker before its agent first polls, and a queued build that waits: the API says
 * `never_seen` for the one and why for the other, instead of `idle` and silence.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestController, type TestController } from './support.ts';

let c: TestController;
beforeEach(async () => {
  c = await startTestController();
});
afterEach(async () => {
  await c.close();
});

const workers = async () => (await c.app.inject({ method: 'GET', url: '/api/v1/workers', headers: c.admin })).json().workers as { id: string; status: string }[];
const metrics = async () => (await c.app.inject({ method: 'GET', url: '/metrics' })).body;

describe('a worker that never connected', () => {
  it('a new worker is never_seen, not idle, until its agent polls (API and metrics)', async () => {
    const w = await c.enrol('mac-1');
    expect(await workers()).toMatchObject([{ id: 'mac-1', status: 'never_seen', lastSeenAt: null }]);
    expect(await metrics()).toMatch(/expo_worker_workers\{status="never_seen"\} 1/);
    expect(await metrics()).toMatch(/expo_worker_workers\{status="idle"\} 0/);
    await c.poll('mac-1', w.auth);
    expect(await workers()).toMatchObject([{ id: 'mac-1', status: 'idle' }]);
    expect(await metrics()).toMatch(/expo_worker_workers\{status="never_seen"\} 0/);
  });
});

describe('why a queued build waits', () => {
  const waiting = async (id: string) => (await c.get(id)).waiting as { reason: string; message: string } | undefined;

  it('a build whose labels no worker has says so (GET, POST and the list), naming the labels', async () => {
    const none = await c.submit();
    expect(await waiting(none.id)).toEqual({ reason: 'no_worker_with_labels', message: expect.stringContaining('no worker is enrolled') });
    await c.enrol('mac-1', ['xcode-15']);
    const res = await c.post('/api/v1/builds', c.admin, { steps: [{ name: 'a', run: 'true' }], labels: ['xcode-16', 'arm64'] });
    expect(res.statusCode).toBe(201);
    const b = res.json() as { id: string; waiting: { reason: string; message: string } };
    expect(b.waiting.reason).toBe('no_worker_with_labels');
    expect(b.waiting.message).toContain('no enrolled worker has the labels xcode-16, arm64');
    const list = (await c.app.inject({ method: 'GET', url: '/api/v1/builds', headers: c.admin })).json().builds as { id: string; waiting?: { reason: string } }[];
    expect(list.find((x) => x.id === b.id)?.waiting?.reason).toBe('no_worker_with_labels');
  });

  it('matching workers never seen, offline, draining, busy, or about to poll: each named', async () => {
    const w = await c.enrol('mac-1', ['xcode-16']);
    const b = await c.submit({ labels: ['xcode-16'] });
    expect(await waiting(b.id)).toMatchObject({ reason: 'matching_never_seen', message: expect.stringContaining('mac-1') });

    // Polling with no free slot: seen, up, but holding nothing it could give up.
    const first = await c.submit({ labels: ['xcode-16'] });
    const claim = await c.poll('mac-1', w.auth, { slotsTotal: 1 });
    expect(claim?.build.id).toBe(b.id);
    expect(await waiting(first.id)).toMatchObject({ reason: 'all_matching_busy', message: expect.stringContaining('busy (mac-1)') });

    await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: claim!.lease, status: 'succeeded' });
    expect(await waiting(first.id)).toMatchObject({ reason: 'next_poll' });

    await c.poll('mac-1', w.auth, { slotsFree: 0, draining: true });
    expect(await waiting(first.id)).toMatchObject({ reason: 'matching_draining' });

    await c.store.markWorkerOffline('mac-1');
    expect(await waiting(first.id)).toMatchObject({ reason: 'matching_offline', message: expect.stringContaining('offline (mac-1)') });
  });

  it('only queued builds carry waiting', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    await c.poll('mac-1', w.auth);
    expect(await c.get(b.id)).toMatchObject({ status: 'assigned' });
    expect(await waiting(b.id)).toBeUndefined();
  });
});
