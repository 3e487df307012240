/**
 * The live log stream (`GET /api/v1/builds/:id/logs/stream`) against a real controller
 * listening on 127.0.0.1, read over real HTTP: byte-exact resume with `Last-Event-ID` across a
 * cut connection (with `\r`, `\r\n`, multi-byte UTF-8 split across stored chunks and ANSI
 * escapes), 64 KiB events that never cut a character, where a stream starts (tail at a line
 * start, an offset clamped), refusals before any stream byte, `end` after a final build, wake-ups
 * from the notifier, no listener left behind, the bound on open streams, and a shutdown that
 * does not wait on open streams. No place held forever: each caller's share of the bound, a
 * stream's maximum life (the CLI's follow reconnects and loses no byte), a reader that stops
 * reading cut at the write deadline, and a stream ended once its caller's token is revoked or
 * user removed. Also the `limit` of `GET …/logs`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import type { LogStreamsOptions } from '../../src/controller/routes/log-stream.ts';
import { SESSION_COOKIE } from '../../src/controller/access-service.ts';
import { AdminApi } from '../../src/client/admin-api.ts';
import { follow } from '../../src/client/follow.ts';
import { logBytesOf, openSse, type SseStream } from '../support/sse-client.ts';
import { ADMIN_KEY, bearer, startTestController, type PollClaim, type TestController } from './support.ts';

let c: TestController | undefined;
let base = '';
const open: SseStream[] = [];

afterEach(async () => {
  for (const s of open.splice(0)) s.destroy();
  await c?.close();
  c = undefined;
});

type Tuning = Pick<LogStreamsOptions, 'maxStreams' | 'pingMs' | 'recheckMs' | 'maxPerCaller' | 'maxLifeMs' | 'writeDeadlineMs'>;

async function start(logStreams: Tuning = {}, maxLogBytes?: number): Promise<TestController> {
  c = await startTestController({ realClock: true, logStreams, maxLogBytes });
  base = await c.app.listen({ port: 0, host: '127.0.0.1' });
  return c;
}

/** A running build held by worker mac-1, and a way to append to its log as that worker does. */
async function runningBuild(t: TestController) {
  const w = await t.enrol('mac-1');
  const b = await t.submit();
  const claim = (await t.poll('mac-1', w.auth)) as PollClaim;
  expect((await t.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'running' })).statusCode).toBe(200);
  let offset = 0;
  return {
    id: b.id,
    worker: w,
    claim,
    append: async (data: string) => {
      const res = await t.post(`/api/v1/builds/${b.id}/logs`, w.auth, { lease: claim.lease, offset, data });
      expect(res.statusCode).toBe(200);
      offset = res.json().logBytes as number;
    },
    /** Bytes stored straight into the shared database, as another controller would: no wake-up here. */
    appendBytes: async (data: Buffer) => {
      expect(await t.store.appendLog(b.id, offset, data, 1 << 30)).toMatchObject({ kind: 'appended' });
      offset += data.length;
    },
    complete: async (status: 'succeeded' | 'failed' = 'succeeded') =>
      expect((await t.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: claim.lease, status })).statusCode).toBe(200),
  };
}

const streamUrl = (id: string, query: Record<string, string | number> = {}) => `${base}${pathOf(ROUTES.streamLog, { id }, query)}`;
const admin = bearer(ADMIN_KEY);
async function sse(id: string, query: Record<string, string | number> = {}, headers: Record<string, string> = admin): Promise<SseStream> {
  const s = await openSse(streamUrl(id, query), headers);
  open.push(s);
  return s;
}
const dataOf = (e: { data: string }) => JSON.parse(e.data) as Record<string, unknown>;

/** Waits until `done()` holds (a server-side count catching up with a client's move); generous for a busy machine. */
async function until(done: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 30_000; !done() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
}

/** A viewer API token made with the admin key: its id and the headers that send it. */
async function viewerToken(t: TestController, name: string): Promise<{ id: string; auth: Record<string, string> }> {
  const res = await t.post(pathOf(ROUTES.createToken, {}), admin, { name, role: 'viewer' });
  expect(res.statusCode).toBe(201);
  const body = res.json() as { token: { id: string }; secret: string };
  return { id: body.token.id, auth: bearer(body.secret) };
}

/** A viewer user signed in to the dashboard: the cookie its browser sends. */
async function viewerSession(t: TestController, name: string): Promise<Record<string, string>> {
  const password = 'a long enough password for tests';
  if (!(await t.store.getUser(name))) expect((await t.post(pathOf(ROUTES.createUser, {}), admin, { name, role: 'viewer', password })).statusCode).toBe(201);
  const s = await t.access.signIn(name, password, '10.0.0.1');
  return { cookie: `${SESSION_COOKIE}=${s.cookieValue}` };
}

describe('the live log stream', () => {
  it('resumes with Last-Event-ID after a cut connection, every byte once, and ends after the build', async () => {
    const t = await start({ recheckMs: 200 });
    const b = await runningBuild(t);
    // Several 64 KiB events' worth before the first connection, so the cut lands mid-log.
    const line = 'é ünïcødé \u001b[32mgreen\u001b[0m 🚀 progress\r50%\rdone\r\n';
    for (let i = 0; i < 8; i++) await b.append(`${i}: ${line.repeat(1200)}`);
    const first = await sse(b.id);
    expect(first.status).toBe(200);
    expect(first.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(first.headers['cache-control']).toBe('no-cache, no-transform');
    expect(first.headers['x-accel-buffering']).toBe('no');
    const got = await first.waitFor((e) => e.event === 'log');
    expect(first.retryMs).toBe(3000);
    expect(first.events[0]).toMatchObject({ event: 'start' });
    expect(dataOf(first.events[0]!)).toEqual({ from: 0, size: (await t.get(b.id)).logBytes });
    expect(dataOf(first.events[1]!)).toMatchObject({ status: 'running', workerId: 'mac-1', attempt: 1, maxAttempts: 1, progress: null, cancelRequested: false });
    first.destroy();
    await first.ended;
    const logEvents = first.events.filter((e) => e.event === 'log');
    const lastId = logEvents.at(-1)!.id!;
    expect(Number(lastId)).toBe(logBytesOf(first.events).length);
    expect(got.id).toBe(logEvents[0]!.id);

    // The emoji's bytes split across two stored chunks (another controller's writes: no wake-up, the recheck finds them).
    const rocket = Buffer.from('🚀');
    await b.appendBytes(Buffer.concat([Buffer.from('\r\nsplit '), rocket.subarray(0, 2)]));
    const second = await sse(b.id, { offset: 0 }, { ...admin, 'last-event-id': lastId });
    expect(dataOf(await second.waitFor((e) => e.event === 'start'))).toMatchObject({ from: Number(lastId) });
    await b.appendBytes(Buffer.concat([rocket.subarray(2), Buffer.from(' landed\n')]));
    await b.append('\u001b[1mlast line\u001b[0m\n');
    await b.complete();
    const end = await second.waitFor((e) => e.event === 'end');
    await second.ended;
    const stored = await t.store.readLog(b.id, 0);
    expect(dataOf(end)).toEqual({ status: 'succeeded', logBytes: stored.length });
    expect(Buffer.concat([logBytesOf(first.events), logBytesOf(second.events)]).equals(stored)).toBe(true);
    // Each event: at most 64 KiB, whole characters, and its id the offset just after it.
    let at = Number(lastId);
    for (const e of second.events.filter((x) => x.event === 'log')) {
      const bytes = Buffer.from(JSON.parse(e.data) as string, 'utf8');
      expect(bytes.length).toBeLessThanOrEqual(64 * 1024);
      at += bytes.length;
      expect(Number(e.id)).toBe(at);
    }
    expect(second.events.filter((e) => e.event === 'status').map((e) => dataOf(e).status)).toEqual(['running', 'succeeded']);
  });

  it('wakes on the notifier for appends, progress and a cancel request, without waiting for the recheck', async () => {
    const t = await start({ recheckMs: 600_000, pingMs: 600_000 });
    const b = await runningBuild(t);
    const s = await sse(b.id);
    await s.waitFor((e) => e.event === 'status');
    await b.append('hello\n');
    expect(JSON.parse((await s.waitFor((e) => e.event === 'log')).data)).toBe('hello\n');
    expect((await t.post(`/api/v1/builds/${b.id}/heartbeat`, b.worker.auth, { progress: 40 })).statusCode).toBe(200);
    await s.waitFor((e) => e.event === 'status' && dataOf(e).progress === 40);
    expect((await t.post(`/api/v1/builds/${b.id}/cancel`, admin)).statusCode).toBe(200);
    await s.waitFor((e) => e.event === 'status' && dataOf(e).cancelRequested === true);
    // A step's start is a change the build page follows.
    expect((await t.post(`/api/v1/builds/${b.id}/phase`, b.worker.auth, { lease: b.claim.lease, phase: 'running', step: 0 })).statusCode).toBe(200);
    const started = await s.waitFor((e) => e.event === 'status' && (dataOf(e).stepTimes as { startedAt: string | null }[])[0]?.startedAt !== null);
    expect(dataOf(started).stepTimes).toEqual([{ startedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), durationS: null }]);
    await b.complete('failed');
    expect(dataOf(await s.waitFor((e) => e.event === 'end'))).toEqual({ status: (await t.get(b.id)).status, logBytes: 6 });
    await s.ended;
  });

  it('starts a tail at a line start, clamps an offset past the end, and steps past a split character', async () => {
    const t = await start();
    const b = await runningBuild(t);
    await b.append('first line\nsecond line\nthird\n');
    await b.complete();
    const tail = await sse(b.id, { tail: 10 });
    // The last 10 bytes start inside "second line\n": the stream starts after its newline.
    expect(dataOf(await tail.waitFor((e) => e.event === 'start'))).toEqual({ from: 23, size: 29 });
    await tail.ended;
    expect(logBytesOf(tail.events).toString()).toBe('third\n');
    const whole = await sse(b.id, { tail: 100 });
    await whole.ended;
    expect(logBytesOf(whole.events).toString()).toBe('first line\nsecond line\nthird\n');
    const past = await sse(b.id, { offset: 999 });
    await past.ended;
    expect(dataOf(past.events.find((e) => e.event === 'start')!)).toEqual({ from: 29, size: 29 });
    expect(past.events.map((e) => e.event)).toEqual(['start', 'status', 'end']);
    // A Last-Event-ID that is not a byte offset is not one of ours: the query decides.
    const odd = await sse(b.id, { offset: 11 }, { ...admin, 'last-event-id': 'abc' });
    await odd.ended;
    expect(logBytesOf(odd.events).toString()).toBe('second line\nthird\n');

    const u = await t.submit();
    const w2 = await t.enrol('mac-2');
    const claim = (await t.poll('mac-2', w2.auth)) as PollClaim;
    await t.post(`/api/v1/builds/${u.id}/logs`, w2.auth, { lease: claim.lease, offset: 0, data: 'é€x' });
    await t.post(`/api/v1/builds/${u.id}/complete`, w2.auth, { lease: claim.lease, status: 'succeeded' });
    const inside = await sse(u.id, { offset: 1 });
    await inside.ended;
    expect(dataOf(inside.events[0]!)).toEqual({ from: 2, size: 6 });
    expect(logBytesOf(inside.events).toString()).toBe('€x');
  });

  it('answers JSON errors before any stream byte: unknown build 404, no key 401, a worker key 403', async () => {
    const t = await start();
    const b = await runningBuild(t);
    const unknown = await sse('aaaaaaaaaaaaaaaa');
    await unknown.ended;
    expect([unknown.status, JSON.parse(unknown.body()).code]).toEqual([404, 'API_NOT_FOUND']);
    const none = await sse(b.id, {}, {});
    await none.ended;
    expect([none.status, JSON.parse(none.body()).code]).toEqual([401, 'AUTH_MISSING']);
    const worker = await sse(b.id, {}, b.worker.auth);
    await worker.ended;
    expect([worker.status, JSON.parse(worker.body()).code]).toEqual([403, 'AUTH_FORBIDDEN']);
    const bad = await sse(b.id, { tail: 'x' });
    await bad.ended;
    expect([bad.status, JSON.parse(bad.body()).code]).toEqual([400, 'API_BAD_REQUEST']);
    expect(t.logStreams.size).toBe(0);
  });

  it('pings an idle stream, and leaves no listener or stream behind when the client goes', async () => {
    const t = await start({ pingMs: 50 });
    const b = await runningBuild(t);
    const s = await sse(b.id);
    await s.waitFor((e) => e.event === 'status');
    expect(t.logNotifier.listenerCount(b.id)).toBe(1);
    // Pings come while nothing else does (50 ms here; on a busy machine, later).
    for (const deadline = Date.now() + 30_000; s.comments.length < 2 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    expect(s.comments.map((x) => x.trim())).toEqual(['ping', 'ping']);
    s.destroy();
    for (const deadline = Date.now() + 30_000; t.logStreams.size > 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    expect(t.logStreams.size).toBe(0);
    expect(t.logNotifier.listenerCount()).toBe(0);
  });

  it('refuses a stream past the bound with 503 LOG_STREAMS_BUSY, and takes one again once a stream ends', async () => {
    const t = await start({ maxStreams: 1 });
    const b = await runningBuild(t);
    const one = await sse(b.id);
    await one.waitFor((e) => e.event === 'status');
    const two = await sse(b.id);
    await two.ended;
    expect([two.status, JSON.parse(two.body()).code]).toEqual([503, 'LOG_STREAMS_BUSY']);
    one.destroy();
    for (const deadline = Date.now() + 30_000; t.logStreams.size > 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    const three = await sse(b.id);
    expect(three.status).toBe(200);
  });

  it("caps each person's streams (a user's sessions and tokens together; the admin key with its tokens) below the bound, and frees a place as one ends", async () => {
    const t = await start({ maxPerCaller: 2, maxStreams: 20 });
    const b = await runningBuild(t);
    const olga = [await viewerSession(t, 'olga'), await viewerSession(t, 'olga')];
    // A token of olga's own: more tokens give her no more streams.
    const olgaPrincipal = await t.access.resolve(undefined, olga[0]!.cookie!.split('=')[1]);
    const olgaToken = bearer((await t.access.createToken(olgaPrincipal, { name: 'olga-ci', role: 'viewer' })).secret);
    // A token made with the admin key counts with the admin key.
    const adminMade = await viewerToken(t, 'admin-made');
    const opened = [await sse(b.id, {}, olga[0]), await sse(b.id, {}, olga[1]), await sse(b.id, {}, admin), await sse(b.id, {}, adminMade.auth)];
    for (const s of opened) await s.waitFor((e) => e.event === 'status');
    for (const headers of [olga[0]!, olgaToken, admin, adminMade.auth]) {
      const refused = await sse(b.id, {}, headers);
      expect(refused.status).toBe(503);
      await refused.ended;
      expect(JSON.parse(refused.body())).toMatchObject({ code: 'LOG_STREAMS_BUSY', message: expect.stringMatching(/this caller already has 2 log streams open/) as unknown });
    }
    // Another person keeps their own share.
    const vic = await viewerSession(t, 'vic');
    for (const headers of [vic, vic]) expect((await sse(b.id, {}, headers)).status).toBe(200);
    expect((await sse(b.id, {}, vic)).status).toBe(503);
    expect(t.logStreams.size).toBe(6);
    opened[0]!.destroy();
    await until(() => t.logStreams.size < 6);
    const again = await sse(b.id, {}, olgaToken);
    expect(again.status).toBe(200);
    await again.waitFor((e) => e.event === 'status');
  });

  it('ends a stream at its maximum life without `end`; the CLI follow reconnects and prints every byte once', async () => {
    const t = await start({ maxLifeMs: 300, recheckMs: 100 });
    const b = await runningBuild(t);
    await b.append('before the follow: é 🚀\r\n');
    let stdout = '';
    let stderr = '';
    const decoder = new TextDecoder();
    const io = {
      stdout: (x: string | Uint8Array) => (stdout += typeof x === 'string' ? x : decoder.decode(x)),
      stderr: (x: string) => (stderr += x),
      followReconnectMs: 20,
    };
    const following = follow(new AdminApi({ url: base, key: ADMIN_KEY }), b.id, io);
    const lost = () => stderr.split('the controller ended the stream before the build ended').length - 1;
    // Append a line at a time, each once it was printed, until the stream's life ran out twice.
    for (let i = 0, deadline = Date.now() + 30_000; lost() < 2 && Date.now() < deadline; i++) {
      const line = `line ${i} ünïcødé \u001b[32mgreen\u001b[0m\r\n`;
      await b.append(line);
      await until(() => stdout.endsWith(line));
      expect(stdout.endsWith(line)).toBe(true);
    }
    expect(lost()).toBeGreaterThanOrEqual(2);
    await b.append('last\n');
    await b.complete();
    expect((await following).status).toBe('succeeded');
    expect(stdout).toBe((await t.store.readLog(b.id, 0)).toString('utf8'));
    await until(() => t.logStreams.size === 0);
    expect(t.logStreams.size).toBe(0);
  });

  it('cuts a client that stops reading once a write has waited past the deadline, and frees its place', async () => {
    const t = await start({ maxStreams: 1, writeDeadlineMs: 300, recheckMs: 100 }, 64 * 1024 * 1024);
    const b = await runningBuild(t);
    // More than the socket buffers on the way hold, so a write waits for the reader.
    for (let i = 0; i < 12; i++) await b.append(`${String(i).padStart(2, '0')} ${'x'.repeat(1024 * 1024 - 4)}\n`);
    await b.complete();
    const stuck = await sse(b.id);
    await stuck.waitFor((e) => e.event === 'log');
    stuck.pause();
    await until(() => t.logStreams.size === 0);
    expect(t.logStreams.size).toBe(0);
    expect(t.logNotifier.listenerCount()).toBe(0);
    // Its place is free: a reader that reads gets the whole log.
    const next = await sse(b.id);
    expect(next.status).toBe(200);
    await next.waitFor((e) => e.event === 'end');
    expect(logBytesOf(next.events).equals(await t.store.readLog(b.id, 0))).toBe(true);
  });

  it("ends a stream without `end` within a recheck once its token is revoked or its user removed; other callers' streams go on", async () => {
    const t = await start({ recheckMs: 100, pingMs: 600_000 });
    const b = await runningBuild(t);
    const vic = await viewerToken(t, 'vic-ci');
    const olga = await viewerSession(t, 'olga');
    const byToken = await sse(b.id, {}, vic.auth);
    const bySession = await sse(b.id, {}, olga);
    const byAdmin = await sse(b.id);
    for (const s of [byToken, bySession, byAdmin]) await s.waitFor((e) => e.event === 'status');

    const revoked = await t.app.inject({ method: 'DELETE', url: pathOf(ROUTES.revokeToken, { id: vic.id }), headers: admin });
    expect(revoked.statusCode).toBe(204);
    await until(() => t.logStreams.size < 3);
    expect(t.logStreams.size).toBe(2);
    await byToken.ended;
    expect(byToken.events.some((e) => e.event === 'end')).toBe(false);
    const refused = await sse(b.id, {}, vic.auth);
    await refused.ended;
    expect([refused.status, JSON.parse(refused.body()).code]).toEqual([401, 'AUTH_INVALID']);

    const removed = await t.app.inject({ method: 'DELETE', url: pathOf(ROUTES.deleteUser, { name: 'olga' }), headers: admin });
    expect(removed.statusCode).toBe(204);
    await bySession.ended;
    expect(bySession.events.some((e) => e.event === 'end')).toBe(false);
    await until(() => t.logStreams.size < 2);
    expect(t.logStreams.size).toBe(1);

    // The admin key's stream still follows the build to its end.
    await b.append('still here\n');
    await b.complete();
    await byAdmin.waitFor((e) => e.event === 'end');
    expect(logBytesOf(byAdmin.events).toString()).toBe('still here\n');
  });

  it('ends a stream whose build is pruned while a slow reader is still behind, with the status last seen', async () => {
    const t = await start({ recheckMs: 100 }, 64 * 1024 * 1024);
    const b = await runningBuild(t);
    // More than the socket buffers on the way hold, so the server is still sending when the build goes.
    for (let i = 0; i < 12; i++) await b.append(`${String(i).padStart(2, '0')} ${'x'.repeat(1024 * 1024 - 4)}\n`);
    await b.complete();
    const stored = await t.store.readLog(b.id, 0);
    const s = await sse(b.id);
    await s.waitFor((e) => e.event === 'log');
    s.pause();
    expect(await t.store.deleteBuilds([b.id])).toEqual([b.id]);
    s.resume();
    const end = dataOf(await s.waitFor((e) => e.event === 'end'));
    await s.ended;
    const got = logBytesOf(s.events);
    expect(end).toEqual({ status: 'succeeded', logBytes: got.length });
    expect(got.length).toBeLessThan(stored.length);
    expect(got.equals(stored.subarray(0, got.length))).toBe(true);
  });

  it('ends open streams when the controller shuts down, without waiting for their clients', async () => {
    const t = await start({ pingMs: 600_000, recheckMs: 600_000 });
    const b = await runningBuild(t);
    const s = await sse(b.id);
    await s.waitFor((e) => e.event === 'status');
    await t.close();
    c = undefined;
    await s.ended;
    expect(s.events.some((e) => e.event === 'end')).toBe(false);
  });
});

describe('GET …/logs?limit', () => {
  it('reads at most limit bytes from offset, stepping back to a whole character (never to nothing)', async () => {
    const t = await start();
    const b = await runningBuild(t);
    await b.append('ab€cd');
    const read = async (query: Record<string, number>) => {
      const res = await t.app.inject({ method: 'GET', url: pathOf(ROUTES.readLog, { id: b.id }, query), headers: admin });
      expect(res.statusCode).toBe(200);
      return { body: res.rawPayload.toString('utf8'), size: res.headers['x-log-size'], offset: res.headers['x-log-offset'] };
    };
    expect(await read({ offset: 0, limit: 2 })).toEqual({ body: 'ab', size: '7', offset: '0' });
    expect(await read({ offset: 0, limit: 4 })).toEqual({ body: 'ab', size: '7', offset: '0' });
    expect(await read({ offset: 0, limit: 5 })).toEqual({ body: 'ab€', size: '7', offset: '0' });
    expect(await read({ offset: 2, limit: 1 })).toEqual({ body: '€', size: '7', offset: '2' });
    expect(await read({ offset: 5, limit: 100 })).toEqual({ body: 'cd', size: '7', offset: '5' });
    expect(await read({ offset: 9, limit: 100 })).toEqual({ body: '', size: '7', offset: '9' });
  });
});
