/**
 * Bad input on every route: malformed JSON, wrong types, unknown fields, oversized bodies and
 * bad ids each get a precise 4xx with a `{code, message}` body — never a 5xx — and store nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestController, type TestController } from './support.ts';

let c: TestController;
let x: string;
let lease: string;
let workerAuth: Record<string, string>;
let tokenAuth: Record<string, string>;

beforeAll(async () => {
  c = await startTestController();
  const w = await c.enrol('mac-a');
  workerAuth = w.auth;
  x = (await c.submit()).id;
  const claim = (await c.poll('mac-a', w.auth))!;
  lease = claim.lease;
  tokenAuth = { authorization: `Bearer ${claim.buildToken}` };
});
afterAll(async () => {
  await c.close();
});

type Who = 'admin' | 'worker' | 'token';
interface BodyRoute {
  url: () => string;
  who: Who;
  good: () => Record<string, unknown>;
  wrongTypes: () => Record<string, unknown>;
}

const BODY_ROUTES: Record<string, BodyRoute> = {
  'enrol worker': { url: () => '/api/v1/workers', who: 'admin', good: () => ({ id: 'mac-z' }), wrongTypes: () => ({ id: 42, labels: 'x' }) },
  'submit build': {
    url: () => '/api/v1/builds',
    who: 'admin',
    good: () => ({ steps: [{ name: 's', run: 'true' }] }),
    wrongTypes: () => ({ steps: [{ name: 's', run: 'true' }], timeoutS: '60', maxAttempts: 1.5 }),
  },
  poll: { url: () => '/api/v1/workers/mac-a/poll', who: 'worker', good: () => ({ slotsFree: 0, runningBuilds: [x] }), wrongTypes: () => ({ slotsFree: '1', runningBuilds: [x] }) },
  'worker heartbeat': { url: () => '/api/v1/workers/mac-a/heartbeat', who: 'worker', good: () => ({ runningBuilds: [x] }), wrongTypes: () => ({ runningBuilds: x }) },
  'build heartbeat': { url: () => `/api/v1/builds/${x}/heartbeat`, who: 'token', good: () => ({ progress: 1 }), wrongTypes: () => ({ progress: '50' }) },
  phase: { url: () => `/api/v1/builds/${x}/phase`, who: 'worker', good: () => ({ lease, phase: 'preparing' }), wrongTypes: () => ({ lease, phase: 'sleeping' }) },
  'append log': { url: () => `/api/v1/builds/${x}/logs`, who: 'worker', good: () => ({ lease, offset: 0, data: '' }), wrongTypes: () => ({ lease, offset: -1, data: 5 }) },
  'cancel build': { url: () => `/api/v1/builds/${x}/cancel`, who: 'admin', good: () => ({}), wrongTypes: () => ({ now: 'yes' }) },
  complete: { url: () => `/api/v1/builds/${x}/complete`, who: 'worker', good: () => ({ lease, status: 'succeeded' }), wrongTypes: () => ({ lease, status: 'done', exitCode: 'zero' }) },
};

const headersFor = (who: Who) => ({ admin: c.admin, worker: workerAuth, token: tokenAuth })[who];

async function snapshot() {
  const builds = await c.store.listBuilds({ limit: 1000 });
  return JSON.stringify({ builds, workers: await c.store.listWorkers(), log: (await c.store.readLog(x, 0)).toString() });
}

async function expect4xx(res: { statusCode: number; body: string }, status: number, code: string) {
  expect(res.statusCode, res.body).toBe(status);
  const body = JSON.parse(res.body) as { code: string; message: string };
  expect(body.code).toBe(code);
  expect(body.message.length).toBeGreaterThan(0);
}

describe.each(Object.entries(BODY_ROUTES))('%s', (_name, route) => {
  const send = (payload: string, contentType = 'application/json') =>
    c.app.inject({ method: 'POST', url: route.url(), headers: { ...headersFor(route.who), 'content-type': contentType }, payload });

  it('refuses malformed JSON', async () => {
    const before = await snapshot();
    await expect4xx(await send('{"steps": ['), 400, 'API_BAD_REQUEST');
    expect(await snapshot()).toBe(before);
  });

  it('refuses wrong types', async () => {
    const before = await snapshot();
    await expect4xx(await send(JSON.stringify(route.wrongTypes())), 400, 'API_BAD_REQUEST');
    expect(await snapshot()).toBe(before);
  });

  it('refuses unknown fields, naming them', async () => {
    const before = await snapshot();
    const res = await send(JSON.stringify({ ...route.good(), surprise: true }));
    await expect4xx(res, 400, 'API_BAD_REQUEST');
    expect(res.body).toContain('surprise');
    expect(await snapshot()).toBe(before);
  });

  it('refuses a body that is not JSON', async () => {
    const before = await snapshot();
    await expect4xx(await send('hello', 'text/plain'), 415, 'API_UNSUPPORTED_MEDIA_TYPE');
    await expect4xx(await send('a=1', 'application/x-www-form-urlencoded'), 415, 'API_UNSUPPORTED_MEDIA_TYPE');
    await expect4xx(await send('<a/>', 'application/xml'), 415, 'API_UNSUPPORTED_MEDIA_TYPE');
    await expect4xx(await send('{}', 'multipart/form-data; boundary=x'), 415, 'API_UNSUPPORTED_MEDIA_TYPE');
    expect(await snapshot()).toBe(before);
  });

  it('refuses an empty body sent as JSON, and JSON that tries to set a prototype', async () => {
    const before = await snapshot();
    await expect4xx(await send(''), 400, 'API_BAD_REQUEST');
    await expect4xx(await send('{"__proto__": {"x": 1}}'), 400, 'API_BAD_REQUEST');
    await expect4xx(await send('{"constructor": {"prototype": {"x": 1}}}'), 400, 'API_BAD_REQUEST');
    expect(await snapshot()).toBe(before);
  });

  it('refuses an oversized body with 413', async () => {
    const before = await snapshot();
    const huge = JSON.stringify({ ...route.good(), pad: 'x'.repeat(5 * 1024 * 1024) });
    await expect4xx(await send(huge), 413, 'API_BODY_TOO_LARGE');
    expect(await snapshot()).toBe(before);
  });

  it('refuses a JSON body that is not an object', async () => {
    const before = await snapshot();
    await expect4xx(await send('[1,2]'), 400, 'API_BAD_REQUEST');
    await expect4xx(await send('null'), 400, 'API_BAD_REQUEST');
    expect(await snapshot()).toBe(before);
  });
});

describe('bounds and ids', () => {
  it.each([
    ['no steps', { steps: [] }],
    ['a step with no command', { steps: [{ name: 's', run: '' }] }],
    ['too many steps', { steps: Array.from({ length: 101 }, () => ({ name: 's', run: 'true' })) }],
    ['a bad env name', { steps: [{ name: 's', run: 'true' }], env: { 'BAD-NAME': 'x' } }],
    ['a bad label', { steps: [{ name: 's', run: 'true' }], labels: ['has space'] }],
    ['a timeout of zero', { steps: [{ name: 's', run: 'true' }], timeoutS: 0 }],
    ['too many attempts', { steps: [{ name: 's', run: 'true' }], maxAttempts: 6 }],
  ])('refuses a build with %s', async (_what, body) => {
    const before = await snapshot();
    await expect4xx(await c.app.inject({ method: 'POST', url: '/api/v1/builds', headers: c.admin, payload: body }), 400, 'API_BAD_REQUEST');
    expect(await snapshot()).toBe(before);
  });

  it.each(['UPPERCASE0000000', 'short', '../../etc/passwd', 'aaaaaaaaaaaaaaaa1'])('refuses build id %s with 400', async (id) => {
    const res = await c.app.inject({ method: 'GET', url: `/api/v1/builds/${encodeURIComponent(id)}`, headers: c.admin });
    await expect4xx(res, 400, 'API_BAD_REQUEST');
  });

  it('answers 404 for a well-formed id that does not exist', async () => {
    await expect4xx(await c.app.inject({ method: 'GET', url: '/api/v1/builds/aaaaaaaaaaaaaaaa', headers: c.admin }), 404, 'API_NOT_FOUND');
    await expect4xx(await c.app.inject({ method: 'POST', url: '/api/v1/builds/aaaaaaaaaaaaaaaa/cancel', headers: c.admin }), 404, 'API_NOT_FOUND');
  });

  it.each(['-leading-dash', 'has space', 'x'.repeat(64), 'semi;colon'])('refuses worker id %s', async (id) => {
    const before = await snapshot();
    await expect4xx(await c.app.inject({ method: 'POST', url: '/api/v1/workers', headers: c.admin, payload: { id } }), 400, 'API_BAD_REQUEST');
    expect(await snapshot()).toBe(before);
  });

  it('refuses bad query values', async () => {
    await expect4xx(await c.app.inject({ method: 'GET', url: '/api/v1/builds?limit=0', headers: c.admin }), 400, 'API_BAD_REQUEST');
    await expect4xx(await c.app.inject({ method: 'GET', url: '/api/v1/builds?status=sleeping', headers: c.admin }), 400, 'API_BAD_REQUEST');
    await expect4xx(await c.app.inject({ method: 'GET', url: `/api/v1/builds/${x}/logs?offset=-1`, headers: c.admin }), 400, 'API_BAD_REQUEST');
  });

  it('answers unknown routes with a 404 in the error shape', async () => {
    await expect4xx(await c.app.inject({ method: 'GET', url: '/api/v2/nothing', headers: c.admin }), 404, 'API_NOT_FOUND');
  });

  it('cancel refuses unknown body fields (it used to ignore them), and still takes no body at all', async () => {
    const id = (await c.submit()).id;
    const res = await c.app.inject({ method: 'POST', url: `/api/v1/builds/${id}/cancel`, headers: c.admin, payload: { force: true } });
    await expect4xx(res, 400, 'API_BAD_REQUEST');
    expect(res.body).toContain('force');
    expect((await c.get(id)).status).toBe('queued');
    const bare = await c.app.inject({ method: 'POST', url: `/api/v1/builds/${id}/cancel`, headers: c.admin });
    expect(bare.statusCode, bare.body).toBe(200);
    expect((await c.get(id)).status).toBe('cancelled');
  });

  it.each([
    ["a step's command", (big: string) => ({ steps: [{ name: 's', run: big }] }), 64 * 1024],
    ["a step's name", (big: string) => ({ steps: [{ name: big, run: 'true' }] }), 200],
    ['an env value', (big: string) => ({ steps: [{ name: 's', run: 'true' }], env: { V: big } }), 32 * 1024],
  ])('size limits count bytes, not characters: %s within the limit in characters but over it in bytes is refused', async (_what, body, limitBytes) => {
    const before = await snapshot();
    const big = 'é'.repeat(limitBytes / 2 + 1); // over in bytes, half the limit in characters
    const res = await c.app.inject({ method: 'POST', url: '/api/v1/builds', headers: c.admin, payload: body(big) });
    await expect4xx(res, 400, 'API_BAD_REQUEST');
    expect(res.body).toContain(`at most ${limitBytes} bytes`);
    expect(await snapshot()).toBe(before);
    const fits = 'é'.repeat(limitBytes / 2);
    expect((await c.app.inject({ method: 'POST', url: '/api/v1/builds', headers: c.admin, payload: body(fits) })).statusCode).toBe(201);
  });

  it('a completion message is limited in bytes, not characters', async () => {
    const res = await c.app.inject({ method: 'POST', url: `/api/v1/builds/${x}/complete`, headers: workerAuth, payload: { lease, status: 'failed', message: '€'.repeat(1366) } });
    await expect4xx(res, 400, 'API_BAD_REQUEST');
    expect(res.body).toContain('at most 4096 bytes');
    expect((await c.get(x)).status).toBe('assigned');
  });

  it('refuses failureReason on a success', async () => {
    const res = await c.app.inject({ method: 'POST', url: `/api/v1/builds/${x}/complete`, headers: workerAuth, payload: { lease, status: 'succeeded', failureReason: 'vm_crashed' } });
    await expect4xx(res, 400, 'API_BAD_REQUEST');
    expect((await c.get(x)).status).toBe('assigned');
  });
});
