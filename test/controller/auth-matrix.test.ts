/**
 * The authorization matrix: every route of the API against every kind of caller. Worker A holds
 * build X; worker B holds build Y. Each route is called as it would be for worker A / build X.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { bearer, startTestController, type TestController } from './support.ts';

type Caller = 'none' | 'unknown' | 'admin' | 'workerA' | 'workerB' | 'tokenX' | 'tokenY';
const CALLERS: Caller[] = ['none', 'unknown', 'admin', 'workerA', 'workerB', 'tokenX', 'tokenY'];

interface Route {
  name: string;
  method: 'GET' | 'POST';
  url: (x: string) => string;
  body?: (lease: string) => unknown;
  allowed: Caller[];
}

const ROUTES: Route[] = [
  { name: 'enrol worker', method: 'POST', url: () => '/api/v1/workers', body: () => ({ id: 'mac-new' }), allowed: ['admin'] },
  { name: 'list workers', method: 'GET', url: () => '/api/v1/workers', allowed: ['admin'] },
  { name: 'submit build', method: 'POST', url: () => '/api/v1/builds', body: () => ({ steps: [{ name: 's', run: 'true' }] }), allowed: ['admin'] },
  { name: 'list builds', method: 'GET', url: () => '/api/v1/builds', allowed: ['admin'] },
  { name: 'get build', method: 'GET', url: (x) => `/api/v1/builds/${x}`, allowed: ['admin'] },
  { name: 'cancel build', method: 'POST', url: (x) => `/api/v1/builds/${x}/cancel`, allowed: ['admin'] },
  { name: 'list artifacts', method: 'GET', url: (x) => `/api/v1/builds/${x}/artifacts`, allowed: ['admin'] },
  { name: 'read log', method: 'GET', url: (x) => `/api/v1/builds/${x}/logs`, allowed: ['admin'] },
  { name: 'get worker', method: 'GET', url: () => '/api/v1/workers/mac-a', allowed: ['admin', 'workerA'] },
  { name: 'poll', method: 'POST', url: () => '/api/v1/workers/mac-a/poll', body: () => ({ slotsFree: 1, runningBuilds: [], waitS: 0 }), allowed: ['workerA'] },
  { name: 'worker heartbeat', method: 'POST', url: () => '/api/v1/workers/mac-a/heartbeat', body: () => ({ runningBuilds: [] }), allowed: ['workerA'] },
  { name: 'build heartbeat', method: 'POST', url: (x) => `/api/v1/builds/${x}/heartbeat`, body: () => ({ progress: 5 }), allowed: ['workerA', 'tokenX'] },
  { name: 'phase', method: 'POST', url: (x) => `/api/v1/builds/${x}/phase`, body: (lease) => ({ lease, phase: 'preparing' }), allowed: ['workerA'] },
  { name: 'append log', method: 'POST', url: (x) => `/api/v1/builds/${x}/logs`, body: (lease) => ({ lease, offset: 0, data: 'x' }), allowed: ['workerA'] },
  { name: 'complete', method: 'POST', url: (x) => `/api/v1/builds/${x}/complete`, body: (lease) => ({ lease, status: 'succeeded' }), allowed: ['workerA'] },
];

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

async function setup() {
  c = await startTestController();
  const a = await c.enrol('mac-a');
  const b = await c.enrol('mac-b');
  const x = await c.submit();
  const claimX = (await c.poll('mac-a', a.auth))!;
  await c.submit();
  const claimY = (await c.poll('mac-b', b.auth))!;
  const headers: Record<Caller, Record<string, string>> = {
    none: {},
    unknown: bearer('ewk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'),
    admin: c.admin,
    workerA: a.auth,
    workerB: b.auth,
    tokenX: bearer(claimX.buildToken),
    tokenY: bearer(claimY.buildToken),
  };
  return { c, x: x.id, lease: claimX.lease, headers };
}

describe.each(ROUTES)('$method $name', (route) => {
  it.each(CALLERS)('as %s', async (caller) => {
    const { c, x, lease, headers } = await setup();
    const res = await c.app.inject({
      method: route.method,
      url: route.url(x),
      headers: headers[caller],
      ...(route.body ? { payload: route.body(lease) as object } : {}),
    });
    const expected = route.allowed.includes(caller) ? 'ok' : caller === 'none' || caller === 'unknown' ? 401 : 403;
    if (expected === 'ok') {
      expect(res.statusCode, res.body).toBeGreaterThanOrEqual(200);
      expect(res.statusCode, res.body).toBeLessThan(300);
    } else {
      expect(res.statusCode, res.body).toBe(expected);
      expect(res.json().code).toBe(expected === 401 ? (caller === 'none' ? 'AUTH_MISSING' : 'AUTH_INVALID') : 'AUTH_FORBIDDEN');
      // Refused calls change nothing: build X is still assigned to A with no log.
      expect(await c.get(x)).toMatchObject({ status: 'assigned', workerId: 'mac-a', logBytes: 0, cancelRequested: false });
    }
  });
});

it('compares the admin key in constant time and refuses a near miss', async () => {
  const { c } = await setup();
  const res = await c.app.inject({ method: 'GET', url: '/api/v1/builds', headers: bearer('test-admin-key-012345678X') });
  expect(res.statusCode).toBe(401);
});
