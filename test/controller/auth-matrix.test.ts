/**
 * The authorization matrix: every route of the API against every kind of caller. Worker A holds
 * build X; worker B holds build Y. Each route is called as it would be for worker A / build X.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { pathOf, ROUTES, type RouteSpec } from '../../src/protocol/routes.ts';
import { bearer, startTestController, type TestController } from './support.ts';

type Caller = 'none' | 'unknown' | 'admin' | 'workerA' | 'workerB' | 'tokenX' | 'tokenY';
const CALLERS: Caller[] = ['none', 'unknown', 'admin', 'workerA', 'workerB', 'tokenX', 'tokenY'];
const EVERYONE = CALLERS;

/** What else the matrix's controller holds: a finished build Z (rerunnable) and a project P with a secret TOKEN. */
interface Fixtures {
  z: string;
  project: string;
}

interface Call {
  /** The path's parameters, given build X's id (and the other fixtures). */
  params: (x: string, f: Fixtures) => Record<string, string>;
  body?: (lease: string) => unknown;
  headers?: (lease: string) => Record<string, string>;
  /** Who gets a 2xx; anyone else gets 401 (no or unknown key) or 403. */
  allowed: Caller[];
  /** For a route that takes no key: what every caller not allowed gets instead, whatever key it sends. */
  refusal?: { status: number; code: string };
}

/** The webhook secret of the matrix's controller; the matrix's deliveries carry no signature. */
const GITHUB_SECRET = 'matrix-github-secret-0123456789';

/**
 * Every route of the table (keyed by its name: a route added to the table without a row here
 * does not compile), called as it would be for worker A / build X.
 */
const MATRIX: Record<keyof typeof ROUTES, Call> = {
  health: { params: () => ({}), allowed: EVERYONE },
  metrics: { params: () => ({}), allowed: EVERYONE },
  createWorker: { params: () => ({}), body: () => ({ id: 'mac-new' }), allowed: ['admin'] },
  listWorkers: { params: () => ({}), allowed: ['admin'] },
  submitBuild: { params: () => ({}), body: () => ({ steps: [{ name: 's', run: 'true' }] }), allowed: ['admin'] },
  listBuilds: { params: () => ({}), allowed: ['admin'] },
  getBuild: { params: (id) => ({ id }), allowed: ['admin'] },
  cancelBuild: { params: (id) => ({ id }), allowed: ['admin'] },
  readLog: { params: (id) => ({ id }), allowed: ['admin'] },
  listArtifacts: { params: (id) => ({ id }), allowed: ['admin'] },
  // No such artifact: the caller allowed to ask is told 404, the others 401/403 before that.
  downloadArtifact: { params: (id) => ({ id, '*': 'App.ipa' }), allowed: [] },
  prune: { params: () => ({}), body: () => ({ dryRun: true }), allowed: ['admin'] },
  getWorker: { params: () => ({ id: 'mac-a' }), allowed: ['admin', 'workerA'] },
  poll: { params: () => ({ id: 'mac-a' }), body: () => ({ slotsFree: 1, runningBuilds: [], waitS: 0 }), allowed: ['workerA'] },
  workerHeartbeat: { params: () => ({ id: 'mac-a' }), body: () => ({ runningBuilds: [] }), allowed: ['workerA'] },
  buildHeartbeat: { params: (id) => ({ id }), body: () => ({ progress: 5 }), allowed: ['workerA', 'tokenX'] },
  phase: { params: (id) => ({ id }), body: (lease) => ({ lease, phase: 'preparing' }), allowed: ['workerA'] },
  appendLog: { params: (id) => ({ id }), body: (lease) => ({ lease, offset: 0, data: 'x' }), allowed: ['workerA'] },
  complete: { params: (id) => ({ id }), body: (lease) => ({ lease, status: 'succeeded' }), allowed: ['workerA'] },
  // Build X was submitted, not started by GitHub: its holder is let through to a 404 (see NOT_FOUND).
  checkoutToken: { params: (id) => ({ id }), body: (lease) => ({ lease }), allowed: [] },
  uploadArtifact: {
    params: (id) => ({ id, '*': 'App.ipa' }),
    headers: (lease) => ({ 'x-expo-lease': lease, 'content-type': 'application/octet-stream' }),
    body: () => Buffer.from('ipa'),
    allowed: ['workerA'],
  },
  // Only the signature counts: no Bearer key of any kind, admin included, stands in for it.
  githubWebhook: {
    params: () => ({}),
    headers: () => ({ 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': '72d3162e-cc78-11e3-81ab-4c9367dc0958' }),
    body: () => ({ ref: 'refs/heads/main', repository: { full_name: 'octo/app' } }),
    allowed: [],
    refusal: { status: 401, code: 'WEBHOOK_SIGNATURE' },
  },
  listDeliveries: { params: () => ({}), allowed: ['admin'] },
  rerunBuild: { params: (_x, f) => ({ id: f.z }), allowed: ['admin'] },
  createProject: { params: () => ({}), body: () => ({ repo: 'octo/new-app' }), allowed: ['admin'] },
  listProjects: { params: () => ({}), allowed: ['admin'] },
  getProject: { params: (_x, f) => ({ id: f.project }), allowed: ['admin'] },
  deleteProject: { params: (_x, f) => ({ id: f.project }), allowed: ['admin'] },
  putProjectSecret: { params: (_x, f) => ({ id: f.project, name: 'OTHER_TOKEN' }), body: () => ({ value: 'matrix-secret-value' }), allowed: ['admin'] },
  deleteProjectSecret: { params: (_x, f) => ({ id: f.project, name: 'TOKEN' }), allowed: ['admin'] },
};
/** What the allowed-and-refused calls answer: admin asking for an artifact that is not there, worker A asking for a clone token of a build that did not come from GitHub. */
const NOT_FOUND: Partial<Record<keyof typeof ROUTES, Caller>> = { downloadArtifact: 'admin', checkoutToken: 'workerA' };

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

async function setup() {
  c = await startTestController({ githubSecret: GITHUB_SECRET });
  const a = await c.enrol('mac-a');
  const b = await c.enrol('mac-b');
  const x = await c.submit();
  const claimX = (await c.poll('mac-a', a.auth))!;
  await c.submit();
  const claimY = (await c.poll('mac-b', b.auth))!;
  const z = await c.submit({ labels: ['nobody-has-this'] });
  await c.post(pathOf(ROUTES.cancelBuild, { id: z.id }), c.admin);
  const project = (await c.post(pathOf(ROUTES.createProject, {}), c.admin, { repo: 'octo/app' })).json().id as string;
  const secret = await c.app.inject({ method: 'PUT', url: pathOf(ROUTES.putProjectSecret, { id: project, name: 'TOKEN' }), headers: c.admin, payload: { value: 'matrix-token' } });
  if (secret.statusCode !== 200) throw new Error(`matrix setup: secret ${secret.statusCode} ${secret.body}`);
  const headers: Record<Caller, Record<string, string>> = {
    none: {},
    unknown: bearer('ewk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'),
    admin: c.admin,
    workerA: a.auth,
    workerB: b.auth,
    tokenX: bearer(claimX.buildToken),
    tokenY: bearer(claimY.buildToken),
  };
  return { c, x: x.id, lease: claimX.lease, headers, fixtures: { z: z.id, project } };
}

describe.each(Object.entries(MATRIX) as [keyof typeof ROUTES, Call][])('%s', (name, call) => {
  const spec: RouteSpec = ROUTES[name];
  it.each(CALLERS)(`${spec.method} ${spec.path} as %s`, async (caller) => {
    const { c, x, lease, headers, fixtures } = await setup();
    const body = call.body?.(lease);
    const res = await c.app.inject({
      method: spec.method,
      url: pathOf(spec as never, call.params(x, fixtures) as never),
      headers: { ...headers[caller], ...call.headers?.(lease) },
      ...(body === undefined ? {} : { payload: body as object }),
    });
    const expected = call.allowed.includes(caller) ? 'ok' : NOT_FOUND[name] === caller ? 404 : caller === 'none' || caller === 'unknown' ? 401 : 403;
    if (expected !== 'ok' && call.refusal !== undefined) {
      expect({ status: res.statusCode, code: res.json().code }, res.body).toEqual(call.refusal);
      expect(await c.store.listDeliveries(10)).toEqual([]);
    } else if (expected === 'ok') {
      expect(res.statusCode, res.body).toBeGreaterThanOrEqual(200);
      expect(res.statusCode, res.body).toBeLessThan(300);
    } else if (expected === 404) {
      expect(res.statusCode, res.body).toBe(404);
    } else {
      expect(res.statusCode, res.body).toBe(expected);
      expect(res.json().code).toBe(expected === 401 ? (caller === 'none' ? 'AUTH_MISSING' : 'AUTH_INVALID') : 'AUTH_FORBIDDEN');
      // Refused calls change nothing: build X is still assigned to A with no log and no artifact.
      expect(await c.get(x)).toMatchObject({ status: 'assigned', workerId: 'mac-a', logBytes: 0, cancelRequested: false });
      const artifacts = await c.app.inject({ method: 'GET', url: pathOf(ROUTES.listArtifacts, { id: x }), headers: c.admin });
      expect(artifacts.json()).toMatchObject({ artifacts: [] });
      expect(await c.store.listDeliveries(10)).toEqual([]);
    }
  });
});

it('compares the admin key in constant time and refuses a near miss', async () => {
  const { c } = await setup();
  const res = await c.app.inject({ method: 'GET', url: '/api/v1/builds', headers: bearer('test-admin-key-012345678X') });
  expect(res.statusCode).toBe(401);
});
