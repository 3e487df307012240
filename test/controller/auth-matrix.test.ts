/**
 * The authorization matrix: every route of the table — the API's and the dashboard's — against every kind of caller — no key, an
 * unknown key, the admin key, two workers' keys, two build tokens, API tokens of each role, an
 * expired, a revoked, a capped (its owner now below its role) and an orphaned (its owner removed)
 * token, a viewer's and an admin's session with their CSRF tokens and an operator's without it. Worker A holds
 * build X; worker B holds build Y. Each route is called as it would be for worker A / build X.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pathOf, ROUTES, type RouteName, type RouteSpec } from '../../src/protocol/routes.ts';
import { SESSION_COOKIE } from '../../src/controller/access-service.ts';
import { hashSecret, newSecret, type Principal } from '../../src/controller/auth.ts';
import { bearer, startTestController, type TestController } from './support.ts';

type Caller =
  | 'none'
  | 'unknown'
  | 'admin'
  | 'workerA'
  | 'workerB'
  | 'tokenX'
  | 'tokenY'
  | 'viewerToken'
  | 'operatorToken'
  | 'adminToken'
  | 'expiredToken'
  | 'revokedToken'
  | 'cappedToken'
  | 'ownerRemovedToken'
  | 'viewerSession'
  | 'operatorSessionNoCsrf'
  | 'adminSession';
const CALLERS: Caller[] = [
  'none',
  'unknown',
  'admin',
  'workerA',
  'workerB',
  'tokenX',
  'tokenY',
  'viewerToken',
  'operatorToken',
  'adminToken',
  'expiredToken',
  'revokedToken',
  'cappedToken',
  'ownerRemovedToken',
  'viewerSession',
  'operatorSessionNoCsrf',
  'adminSession',
];
const EVERYONE = CALLERS;
/** Callers of role admin: the admin key, an admin's API token and an admin's session (with its CSRF token). */
const ADMINS: Caller[] = ['admin', 'adminToken', 'adminSession'];
/** Who may manage users: a person signed in as admin or the admin key, never an API token. */
const USER_MANAGERS: Caller[] = ['admin', 'adminSession'];
/** Callers of role operator or above. The session without its CSRF token is refused AUTH_CSRF on anything but a GET. */
const OPERATORS: Caller[] = [...ADMINS, 'operatorToken', 'operatorSessionNoCsrf'];
/** Callers of role viewer or above; the capped token is an operator token whose owner is a viewer. */
const VIEWERS: Caller[] = [...OPERATORS, 'viewerToken', 'cappedToken', 'viewerSession'];
/** Credentials that are refused as credentials: 401 AUTH_INVALID. */
const INVALID: Caller[] = ['unknown', 'expiredToken', 'revokedToken', 'ownerRemovedToken'];

/** What else the matrix's controller holds: a finished build Z (rerunnable), a project P with a secret TOKEN, an idle worker C, a user `temp`, and a spare token of the viewer's. */
interface Fixtures {
  z: string;
  project: string;
  spareToken: string;
}

interface Call {
  /** The path's parameters, given build X's id (and the other fixtures). */
  params: (x: string, f: Fixtures) => Record<string, string>;
  body?: (lease: string) => unknown;
  headers?: (lease: string) => Record<string, string>;
  query?: Record<string, string>;
  /** Who gets a 2xx; anyone else gets 401 (no or unknown key) or 403. */
  allowed: Caller[];
  /** For a route that takes no key: what every caller not allowed gets instead, whatever key it sends. */
  refusal?: { status: number; code: string };
  /** What an allowed call must have done (checked after it answered). */
  effect?: (c: TestController, f: Fixtures, x: string) => Promise<void>;
  /** A dashboard form: the body is sent `application/x-www-form-urlencoded`, its `_csrf` field (when it has one) filled from the caller's session, empty for other callers. */
  form?: true;
}

/** The webhook secret of the matrix's controller; the matrix's deliveries carry no signature. */
const GITHUB_SECRET = 'matrix-github-secret-0123456789';

/** What the calls that change something must have done, when allowed. */
const EFFECT = {
  cancelRequested: async (c: TestController, _f: Fixtures, x: string) => expect(await c.get(x)).toMatchObject({ cancelRequested: true }),
  drained: async (c: TestController) => expect((await c.store.getWorker('mac-c'))?.drainRequested).toBe(true),
  removed: async (c: TestController) => expect(await c.store.getWorker('mac-c')).toBeNull(),
  spareRevoked: async (c: TestController, f: Fixtures) => expect((await c.store.getApiToken(f.spareToken))?.revokedAt).not.toBeNull(),
  tokenMade: (name: string) => async (c: TestController) => expect((await c.store.listApiTokens()).map((t) => t.name)).toContain(name),
  // Builds X, Y and Z were there; the rerun is a fourth.
  rerun: async (c: TestController) => expect(await c.store.listBuilds({ limit: 10 })).toHaveLength(4),
};

/**
 * Every route of the table (keyed by its name: a route added to the table without a row here
 * does not compile), called as it would be for worker A / build X. A dashboard page refuses as
 * its API twin does, but in HTML: a caller with no or a refused credential is sent to sign in
 * (303 to /login), one of too low a role (or without its CSRF token) gets a 403 page.
 */
const MATRIX: Record<RouteName, Call> = {
  health: { params: () => ({}), allowed: EVERYONE },
  metrics: { params: () => ({}), allowed: EVERYONE },
  createWorker: { params: () => ({}), body: () => ({ id: 'mac-new' }), allowed: ADMINS },
  listWorkers: { params: () => ({}), allowed: VIEWERS },
  submitBuild: { params: () => ({}), body: () => ({ steps: [{ name: 's', run: 'true' }] }), allowed: OPERATORS },
  listBuilds: { params: () => ({}), allowed: VIEWERS },
  getBuild: { params: (id) => ({ id }), allowed: VIEWERS },
  cancelBuild: { params: (id) => ({ id }), effect: EFFECT.cancelRequested, allowed: OPERATORS },
  readLog: { params: (id) => ({ id }), allowed: VIEWERS },
  listArtifacts: { params: (id) => ({ id }), allowed: VIEWERS },
  // No such artifact: the callers allowed to ask are told 404, the others 401/403 before that.
  downloadArtifact: { params: (id) => ({ id, '*': 'App.ipa' }), allowed: [] },
  prune: { params: () => ({}), body: () => ({ dryRun: true }), allowed: ADMINS },
  getWorker: { params: () => ({ id: 'mac-a' }), allowed: [...VIEWERS, 'workerA'] },
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
  listDeliveries: { params: () => ({}), allowed: VIEWERS },
  rerunBuild: { params: (_x, f) => ({ id: f.z }), effect: EFFECT.rerun, allowed: OPERATORS },
  createProject: { params: () => ({}), body: () => ({ repo: 'octo/new-app' }), allowed: ADMINS },
  listProjects: { params: () => ({}), allowed: VIEWERS },
  getProject: { params: (_x, f) => ({ id: f.project }), allowed: VIEWERS },
  deleteProject: { params: (_x, f) => ({ id: f.project }), allowed: ADMINS },
  putProjectSecret: { params: (_x, f) => ({ id: f.project, name: 'OTHER_TOKEN' }), body: () => ({ value: 'matrix-secret-value' }), allowed: ADMINS },
  deleteProjectSecret: { params: (_x, f) => ({ id: f.project, name: 'TOKEN' }), allowed: ADMINS },
  // Build Z is over: its stream sends what there is and ends.
  streamLog: { params: (_x, f) => ({ id: f.z }), allowed: VIEWERS },
  me: { params: () => ({}), allowed: VIEWERS },
  // Managing users takes a person or the admin key: an admin's API token is refused (403).
  createUser: { params: () => ({}), body: () => ({ name: 'newbie', role: 'viewer' }), allowed: USER_MANAGERS },
  listUsers: { params: () => ({}), allowed: ADMINS },
  deleteUser: { params: () => ({ name: 'temp' }), allowed: USER_MANAGERS },
  setUserPassword: { params: () => ({ name: 'temp' }), body: () => ({}), allowed: USER_MANAGERS },
  setUserRole: { params: () => ({ name: 'temp' }), body: () => ({ role: 'operator' }), allowed: USER_MANAGERS },
  revokeUserSessions: { params: () => ({ name: 'temp' }), allowed: USER_MANAGERS },
  // A token is made by a person (a session) or the admin key, never by another token.
  createToken: { params: () => ({}), body: () => ({ name: 'new one', role: 'viewer' }), effect: EFFECT.tokenMade('new one'), allowed: ['admin', 'viewerSession', 'operatorSessionNoCsrf', 'adminSession'] },
  listTokens: { params: () => ({}), allowed: VIEWERS },
  // The viewer's spare token: an admin and the viewer's session may revoke it; the viewer's other token and other viewers are told 404 (see NOT_FOUND).
  revokeToken: { params: (_x, f) => ({ id: f.spareToken }), effect: EFFECT.spareRevoked, allowed: [...ADMINS, 'viewerSession'] },
  listAudit: { params: () => ({}), allowed: ADMINS },
  drainWorker: { params: () => ({ id: 'mac-c' }), body: () => ({}), effect: EFFECT.drained, allowed: OPERATORS },
  resumeWorker: { params: () => ({ id: 'mac-c' }), body: () => ({}), allowed: OPERATORS },
  deleteWorker: { params: () => ({ id: 'mac-c' }), effect: EFFECT.removed, allowed: ADMINS },
  // ---- the dashboard ----
  uiAsset: { params: () => ({ file: 'app.css' }), allowed: EVERYONE },
  uiSignInPage: { params: () => ({}), allowed: EVERYONE },
  // Signing in needs no credential, and whatever one is sent counts for nothing: everyone who knows vera's password is vera.
  uiSignIn: { params: () => ({}), body: () => ({ name: 'vera', password: PASSWORD }), form: true, allowed: EVERYONE },
  uiSignOut: { params: () => ({}), body: () => ({ _csrf: '' }), form: true, allowed: VIEWERS },
  uiOverview: { params: () => ({}), allowed: VIEWERS },
  uiBuilds: { params: () => ({}), allowed: VIEWERS },
  uiBuild: { params: (id) => ({ id }), allowed: VIEWERS },
  uiBuildLog: { params: (id) => ({ id }), query: { before: '0' }, allowed: VIEWERS },
  uiCancelBuild: { params: (id) => ({ id }), body: () => ({ _csrf: '' }), form: true, effect: EFFECT.cancelRequested, allowed: OPERATORS },
  uiRerunBuild: { params: (_x, f) => ({ id: f.z }), body: () => ({ _csrf: '' }), form: true, effect: EFFECT.rerun, allowed: OPERATORS },
  uiWorkers: { params: () => ({}), allowed: VIEWERS },
  uiDrainWorker: { params: () => ({ id: 'mac-c' }), body: () => ({ _csrf: '' }), form: true, effect: EFFECT.drained, allowed: OPERATORS },
  uiResumeWorker: { params: () => ({ id: 'mac-c' }), body: () => ({ _csrf: '' }), form: true, allowed: OPERATORS },
  uiRemoveWorker: { params: () => ({ id: 'mac-c' }), body: () => ({ _csrf: '' }), form: true, effect: EFFECT.removed, allowed: ADMINS },
  uiQueue: { params: () => ({}), allowed: VIEWERS },
  uiProjects: { params: () => ({}), allowed: VIEWERS },
  uiTokens: { params: () => ({}), allowed: VIEWERS },
  uiCreateToken: { params: () => ({}), body: () => ({ _csrf: '', name: 'from the page', role: 'viewer' }), form: true, effect: EFFECT.tokenMade('from the page'), allowed: ['admin', 'viewerSession', 'operatorSessionNoCsrf', 'adminSession'] },
  uiRevokeToken: { params: (_x, f) => ({ id: f.spareToken }), body: () => ({ _csrf: '' }), form: true, effect: EFFECT.spareRevoked, allowed: [...ADMINS, 'viewerSession'] },
  uiAudit: { params: () => ({}), allowed: ADMINS },
};/**
 * What the allowed-and-refused calls answer 404: anyone who may read asking for an artifact that
 * is not there, worker A asking for a clone token of a build that did not come from GitHub, a
 * caller of role below admin revoking a token not theirs.
 */
const NOT_FOUND: Partial<Record<keyof typeof MATRIX, Caller[]>> = {
  downloadArtifact: VIEWERS,
  checkoutToken: ['workerA'],
  revokeToken: ['viewerToken', 'operatorToken', 'cappedToken', 'operatorSessionNoCsrf'],
  uiRevokeToken: ['viewerToken', 'operatorToken', 'cappedToken', 'operatorSessionNoCsrf'],
};

/** The passwords of the matrix's users (the scrypt cost is lowered in tests). */
const PASSWORD = 'matrix-password-0123';

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

/**
 * The matrix's farm, made once: its data directory (the controller stopped) and the credentials
 * to it. Each test starts a controller on a copy of it, so no call sees another's effects, and
 * the ~800 calls do not each pay for the users' password hashes and the builds' setup.
 */
let prepared: Awaited<ReturnType<typeof prepare>> | undefined;
beforeAll(async () => {
  prepared = await prepare();
});
afterAll(() => {
  if (prepared) rmSync(prepared.dir, { recursive: true, force: true });
});

/** A controller on a fresh copy of the prepared farm (its `close` deletes the copy). */
async function startOnCopy(): Promise<TestController> {
  const dir = mkdtempSync(join(tmpdir(), 'expo-matrix-'));
  cpSync(prepared!.dir, dir, { recursive: true });
  return startTestController({ githubSecret: GITHUB_SECRET, dir });
}

async function setup() {
  const p = prepared!;
  c = await startOnCopy();
  return { c, x: p.x, lease: p.lease, headers: p.headers, fixtures: p.fixtures };
}

async function prepare() {
  const c = await startTestController({ githubSecret: GITHUB_SECRET });
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
  await c.enrol('mac-c');
  const access = c.access;
  const admin: Principal = { kind: 'admin' };
  for (const [name, role] of [['vera', 'viewer'], ['otto', 'operator'], ['ada', 'admin'], ['dan', 'viewer'], ['rita', 'operator'], ['temp', 'viewer']] as const) {
    await access.createUser(admin, { name, role, password: PASSWORD });
  }
  const signIn = async (name: string) => {
    const s = await access.signIn(name, PASSWORD, '127.0.0.1');
    return { cookie: `${SESSION_COOKIE}=${s.cookieValue}`, csrf: s.csrfToken, principal: await access.resolve(undefined, s.cookieValue) };
  };
  const vera = await signIn('vera');
  const ada = await signIn('ada');
  const otto = await signIn('otto');
  const rita = await signIn('rita');
  const viewerToken = await access.createToken(vera.principal, { name: 'vera cli', role: 'viewer' });
  const spare = await access.createToken(vera.principal, { name: 'vera spare', role: 'viewer' });
  const operatorToken = await access.createToken(otto.principal, { name: 'otto cli', role: 'operator' });
  const adminToken = await access.createToken(admin, { name: 'ci', role: 'admin' });
  const revoked = await access.createToken(admin, { name: 'old', role: 'admin' });
  await access.revokeToken(admin, revoked.token.id);
  const ownerRemoved = await access.createToken(rita.principal, { name: 'rita cli', role: 'operator' });
  await access.deleteUser(admin, 'rita');
  // Made by hand: an operator token of a user who is a viewer now (no call makes one: the role cap refuses it).
  const capped = newSecret('ewt_', 32);
  const expired = newSecret('ewt_', 32);
  const byHand = (id: string, secret: string, owner: string | null, role: 'operator' | 'admin', expiresAt: number) =>
    c.store.createApiToken({ id, name: id, role, owner, secretHash: hashSecret(secret), createdAt: c.clock.now, expiresAt, lastUsedAt: null, revokedAt: null, adminEpoch: null });
  await byHand('tok_capped2345672345', capped, 'dan', 'operator', c.clock.now + 86_400_000);
  await byHand('tok_expired234567234', expired, null, 'admin', c.clock.now - 1);
  const headers: Record<Caller, Record<string, string>> = {
    none: {},
    unknown: bearer('ewk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'),
    admin: c.admin,
    workerA: a.auth,
    workerB: b.auth,
    tokenX: bearer(claimX.buildToken),
    tokenY: bearer(claimY.buildToken),
    viewerToken: bearer(viewerToken.secret),
    operatorToken: bearer(operatorToken.secret),
    adminToken: bearer(adminToken.secret),
    expiredToken: bearer(expired),
    revokedToken: bearer(revoked.secret),
    cappedToken: bearer(capped),
    ownerRemovedToken: bearer(ownerRemoved.secret),
    viewerSession: { cookie: vera.cookie, 'x-csrf-token': vera.csrf },
    operatorSessionNoCsrf: { cookie: otto.cookie },
    adminSession: { cookie: ada.cookie, 'x-csrf-token': ada.csrf },
  };
  await c.stop();
  return { dir: c.dir, x: x.id, lease: claimX.lease, headers, fixtures: { z: z.id, project, spareToken: spare.token.id } };
}

/** What `caller` gets from the route: a 2xx, a 404 past its checks, or a refusal with its code. */
function expectation(name: keyof typeof MATRIX, spec: RouteSpec, call: Call, caller: Caller): 'ok' | 404 | { status: number; code: string } {
  const allowed = call.allowed.includes(caller) || (NOT_FOUND[name]?.includes(caller) ?? false);
  // A public route (the sign-in form) takes no session, so asks no CSRF token of it.
  if (allowed && caller === 'operatorSessionNoCsrf' && spec.method !== 'GET' && spec.auth !== 'public') return { status: 403, code: 'AUTH_CSRF' };
  if (call.allowed.includes(caller)) return 'ok';
  if (NOT_FOUND[name]?.includes(caller)) return 404;
  if (call.refusal !== undefined) return call.refusal;
  if (caller === 'none') return { status: 401, code: 'AUTH_MISSING' };
  if (INVALID.includes(caller)) return { status: 401, code: 'AUTH_INVALID' };
  return { status: 403, code: 'AUTH_FORBIDDEN' };
}

describe.each(Object.entries(MATRIX) as [keyof typeof MATRIX, Call][])('%s', (name, call) => {
  const spec: RouteSpec = ROUTES[name];
  // The callers a route refuses share one controller: each refusal is checked to change nothing,
  // so the next one meets the farm as prepared (and one that changed something fails right there).
  let refusing: TestController | undefined;
  afterAll(async () => {
    await refusing?.close();
    refusing = undefined;
  });
  it.each(CALLERS)(`${spec.method} ${spec.path} as %s`, async (caller) => {
    const expected = expectation(name, spec, call, caller);
    const { x, lease, headers, fixtures } = prepared!;
    const c = typeof expected === 'object' ? (refusing ??= await startOnCopy()) : (await setup()).c;
    const body = call.body?.(lease);
    const csrf = headers[caller]['x-csrf-token'];
    const fields = body as Record<string, string>;
    const payload = body === undefined ? undefined : call.form ? new URLSearchParams({ ...fields, ...('_csrf' in fields && csrf !== undefined ? { _csrf: csrf } : {}) }).toString() : (body as object);
    const res = await c.app.inject({
      method: spec.method,
      url: pathOf(spec as never, call.params(x, fixtures) as never, call.query),
      headers: { ...headers[caller], ...call.headers?.(lease), ...(call.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      ...(payload === undefined ? {} : { payload }),
    });
    const page = spec.page === true;
    if (expected === 'ok') {
      expect(res.statusCode, res.body).toBeGreaterThanOrEqual(200);
      // A dashboard form answers by sending the browser on (303) — never to the sign-in page,
      // which is how a page refuses a caller (see below); a dashboard page answers 200.
      expect(res.statusCode, res.body).toBeLessThan(page ? 400 : 300);
      // (Signing out is the one form whose way on is the sign-in page.)
      if (page && spec.auth !== 'public' && name !== 'uiSignOut') expect(String(res.headers.location ?? ''), res.body).not.toMatch(/^\/login/);
      if (page && spec.method === 'GET') expect(res.statusCode, res.body).toBe(200);
      await call.effect?.(c, fixtures, x);
    } else if (expected === 404) {
      expect(res.statusCode, res.body).toBe(404);
    } else {
      if (!page) expect({ status: res.statusCode, code: (res.json() as { code: string }).code }, res.body).toEqual(expected);
      else if (expected.status === 401) expect({ status: res.statusCode, location: res.headers.location }, res.body).toEqual({ status: 303, location: expect.stringMatching(/^\/login\?next=/) });
      else expect({ status: res.statusCode, type: res.headers['content-type'], code: res.body.includes(expected.code) }, res.body).toEqual({ status: expected.status, type: expect.stringContaining('text/html'), code: true });
      // Refused calls change nothing: build X is still assigned to A with no log and no artifact,
      // no delivery was recorded, the workers, users and tokens are as they were.
      expect(await c.get(x)).toMatchObject({ status: 'assigned', workerId: 'mac-a', logBytes: 0, cancelRequested: false });
      const artifacts = await c.app.inject({ method: 'GET', url: pathOf(ROUTES.listArtifacts, { id: x }), headers: c.admin });
      expect(artifacts.json()).toMatchObject({ artifacts: [] });
      expect(await c.store.listDeliveries(10)).toEqual([]);
      expect((await c.store.listWorkers()).map((w) => [w.id, w.drainRequested])).toEqual([['mac-a', false], ['mac-b', false], ['mac-c', false]]);
      expect((await c.store.listUsers()).map((u) => u.name)).toEqual(['ada', 'dan', 'otto', 'temp', 'vera']);
      expect((await c.store.listApiTokens()).filter((t) => t.revokedAt === null).map((t) => t.name).sort()).toEqual(['ci', 'otto cli', 'tok_capped2345672345', 'tok_expired234567234', 'vera cli', 'vera spare']);
    }
  });
});

it('compares the admin key in constant time and refuses a near miss', async () => {
  const { c } = await setup();
  const res = await c.app.inject({ method: 'GET', url: '/api/v1/builds', headers: bearer('test-admin-key-012345678X') });
  expect(res.statusCode).toBe(401);
});
