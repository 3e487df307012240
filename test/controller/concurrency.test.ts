/**
 * Dispatch under concurrency, over real HTTP: many workers long-polling while builds are
 * submitted one after another — every build is claimed exactly once, and an idle long-poll
 * returns as soon as a build is queued rather than at the end of its wait.
 */
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { midway } from '../support/busy.ts';
import { startTestController, type TestController } from './support.ts';

let c: TestController | undefined;
let dispatcher: Agent | undefined;
afterEach(async () => {
  await dispatcher?.close();
  await c?.close();
  c = undefined;
});

async function listen() {
  c = await startTestController({ realClock: true });
  const address = await c.app.listen({ host: '127.0.0.1', port: 0 });
  dispatcher = new Agent({ connections: 200 });
  const post = async (path: string, key: string, body: unknown) => {
    const res = await request(`${address}${path}`, {
      method: 'POST',
      dispatcher,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? (JSON.parse(text) as Record<string, any>) : null };
  };
  return { c, post };
}

describe('long-poll dispatch', () => {
  it('claims every build exactly once with 30 workers polling while 60 builds are submitted', async () => {
    const { c, post } = await listen();
    const workers = await Promise.all(Array.from({ length: 30 }, (_, i) => c.enrol(`mac-${i}`)));
    const claimed: { buildId: string; worker: string }[] = [];
    let submitting = true;
    const loops = workers.map(async (w) => {
      while (submitting || (await c.store.countQueuedBuilds()) > 0) {
        const res = await post(`/api/v1/workers/${w.id}/poll`, w.apiKey, { slotsFree: 1, runningBuilds: [], waitS: 0.5 });
        if (res.status === 200) claimed.push({ buildId: res.body!.build.id, worker: w.id });
        else expect(res.status).toBe(204);
      }
    });
    const submitted: string[] = [];
    for (let i = 0; i < 60; i++) {
      submitted.push((await c.submit()).id);
      if (i % 7 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    submitting = false;
    await Promise.all(loops);
    expect(claimed).toHaveLength(60);
    expect(new Set(claimed.map((x) => x.buildId))).toEqual(new Set(submitted));
    for (const { buildId, worker } of claimed) expect((await c.get(buildId)).workerId).toBe(worker);
  });

  it('answers an idle long-poll the moment a matching build is queued', async () => {
    const { c, post } = await listen();
    const w = await c.enrol('mac-1', ['xcode']);
    const waitS = 20;
    const polling = post('/api/v1/workers/mac-1/poll', w.apiKey, { slotsFree: 1, runningBuilds: [], waitS });
    await new Promise((r) => setTimeout(r, 200));
    await c.submit({ labels: ['android'] }); // not for this worker: the poll keeps waiting
    await new Promise((r) => setTimeout(r, 200));
    const wanted = await c.submit({ labels: ['xcode'] });
    const res = await polling;
    expect(res.status).toBe(200);
    expect(res.body!.build.id).toBe(wanted.id);
    // Far less than the 20 s wait, on the controller's own clock: the poll was answered by the
    // submission, not by its timer.
    const b = await c.get(wanted.id);
    expect(Date.parse(b.assignedAt as string) - Date.parse(b.createdAt as string)).toBeLessThan(midway(0, waitS * 1000));
  });

  it('returns 204 when the wait runs out, and at once when the worker has no free slot', async () => {
    const { c, post } = await listen();
    const w = await c.enrol('mac-1');
    expect((await post('/api/v1/workers/mac-1/poll', w.apiKey, { slotsFree: 1, runningBuilds: [], waitS: 0.2 })).status).toBe(204);
    await c.submit();
    expect((await post('/api/v1/workers/mac-1/poll', w.apiKey, { slotsFree: 0, runningBuilds: [], waitS: 20 })).status).toBe(204);
    expect(await c.store.countQueuedBuilds()).toBe(1);
  });

  it('puts a build back when the polling client went away before it could be handed over', async () => {
    const { c } = await listen();
    const w = await c.enrol('mac-1');
    const ac = new AbortController();
    const address = c.app.server.address() as { port: number };
    const gone = request(`http://127.0.0.1:${address.port}/api/v1/workers/mac-1/poll`, {
      method: 'POST',
      signal: ac.signal,
      headers: { authorization: `Bearer ${w.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ slotsFree: 1, runningBuilds: [], waitS: 20 }),
    }).catch((e: Error) => e);
    await until(() => c.service.dispatcher.waiting === 1);
    ac.abort();
    await gone;
    await until(() => c.service.dispatcher.waiting === 0);
    const b = await c.submit();
    expect((await c.get(b.id)).status).toBe('queued');
  });
});

/** Waits for `cond`, generously for a busy machine; returns as soon as it holds. */
async function until(cond: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 30_000; !cond() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
}
