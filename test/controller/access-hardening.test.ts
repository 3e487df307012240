/**
 * Access after the issue-13 hostile review (/work/briefs/review13.md), on a real controller (real
 * SQLite, app.inject): a sign-in flood gets no more guesses than the limit and no more hashing at
 * once than the gate; a trusted proxy's X-Forwarded-* reach the limit, the audit and the Origin
 * check; HSTS only for an https public URL; tokens cannot manage users, see only themselves below
 * admin, and die with the admin key that made them; a user's role can change; expired sessions
 * are purged; a failed sign-in cannot forge the audit's actor; a second revoke is not audited.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { AccessService, NOT_A_USER_NAME, SESSION_COOKIE } from '../../src/controller/access-service.ts';
import type { Principal } from '../../src/controller/auth.ts';
import { ADMIN_KEY, bearer, startTestController, type TestController } from './support.ts';

const ADMIN: Principal = { kind: 'admin' };
const PASSWORD = 'correct horse battery';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

async function start(opts: Parameters<typeof startTestController>[0] = {}): Promise<TestController> {
  c = await startTestController(opts);
  return c;
}

const signInForm = (t: TestController, name: string, password: string, headers: Record<string, string> = {}) =>
  t.app.inject({ method: 'POST', url: '/login', headers: { ...FORM, ...headers }, payload: new URLSearchParams({ name, password }).toString() });

const failedSignIns = async (t: TestController) => (await t.access.listAudit({ action: 'session.signin_failed', limit: 500 })).entries;

describe('a sign-in flood', () => {
  it('20 parallel wrong passwords for one name: 5 reach the hash, the rest are 429 with Retry-After', async () => {
    const t = await start();
    await t.access.createUser(ADMIN, { name: 'olga', role: 'viewer', password: PASSWORD });
    // Each from its own address, so only the per-name limit is in play.
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => t.app.inject({ method: 'POST', url: '/login', remoteAddress: `10.7.0.${i + 1}`, headers: FORM, payload: `name=olga&password=wrongwrongwrong${i}` })),
    );
    const statuses = answers.map((a) => a.statusCode);
    expect(statuses.filter((s) => s === 401)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(15);
    for (const a of answers.filter((x) => x.statusCode === 429)) expect(Number(a.headers['retry-after'])).toBeGreaterThan(0);
    // Each password that was checked is one audit row: five, not twenty.
    expect(await failedSignIns(t)).toHaveLength(5);
    // The name is closed for its window, the right password included.
    expect((await signInForm(t, 'olga', PASSWORD, {})).statusCode).toBe(429);
  });

  it('past the hashing gate a sign-in is refused at once (429), and that refusal costs the name nothing', async () => {
    const t = await start();
    await t.access.createUser(ADMIN, { name: 'olga', role: 'viewer', password: PASSWORD });
    // The same store, one check at a time and no queue: the second of two at once is refused.
    const access = new AccessService({ store: t.store, now: () => t.clock.now, adminKey: ADMIN_KEY, passwordCostLog2: 12, hashing: { concurrency: 1, queue: 0 } });
    const [first, second] = await Promise.allSettled([access.signIn('mallory', 'not a password', '10.0.0.1'), access.signIn('olga', PASSWORD, '10.0.0.2')]);
    expect(first).toMatchObject({ status: 'rejected', reason: { code: 'AUTH_INVALID' } });
    expect(second).toMatchObject({ status: 'rejected', reason: { code: 'AUTH_RATE_LIMITED', details: { retryAfterS: 1 } } });
    // Olga's refused try was taken back: five more tries of hers are still open.
    for (let i = 0; i < 4; i++) await expect(access.signIn('olga', `wrong ${i}`, '10.0.0.2')).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    expect((await access.signIn('olga', PASSWORD, '10.0.0.2')).user.name).toBe('olga');
  });

  it('a failed sign-in is audited as anonymous, with the name only when it could be a user name', async () => {
    const t = await start();
    await expect(t.access.signIn('admin key', 'x'.repeat(12), '10.0.0.1')).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    await expect(t.access.signIn('user alice', 'x'.repeat(12), '10.0.0.1')).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    await expect(t.access.signIn('alice', 'x'.repeat(12), '10.0.0.1')).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    const rows = (await failedSignIns(t)).reverse().map((e) => [e.actor, e.target, e.detail]);
    expect(rows).toEqual([
      ['anonymous', NOT_A_USER_NAME, `name ${NOT_A_USER_NAME} from 10.0.0.1`],
      ['anonymous', NOT_A_USER_NAME, `name ${NOT_A_USER_NAME} from 10.0.0.1`],
      ['anonymous', 'alice', 'name alice from 10.0.0.1'],
    ]);
  });
});

describe('behind a TLS proxy', () => {
  const proxied = { 'x-forwarded-for': '203.0.113.5', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'farm.example', origin: 'https://farm.example' };

  it('with --trust-proxy the client address, https and the host come from X-Forwarded-*: the sign-in works and is audited from the client', async () => {
    const t = await start({ trustProxy: ['127.0.0.1'] });
    await t.access.createUser(ADMIN, { name: 'vic', role: 'viewer', password: PASSWORD });
    const res = await signInForm(t, 'vic', PASSWORD, proxied);
    expect(res.statusCode, res.body).toBe(303);
    expect(String(res.headers['set-cookie'])).toContain(`${SESSION_COOKIE}=`);
    // The browser came over https (as the trusted proxy says): the cookie is Secure without a --public-url.
    expect(String(res.headers['set-cookie'])).toMatch(/;\s*Secure/i);
    const [entry] = (await t.access.listAudit({ action: 'session.signin' })).entries;
    expect(entry!.detail).toBe('from 203.0.113.5');
    // Another peer's X-Forwarded-For is not believed.
    await signInForm(t, 'vic', 'wrong password!!', { ...proxied });
    const spoofed = await t.app.inject({ method: 'POST', url: '/login', remoteAddress: '198.51.100.9', headers: { ...FORM, 'x-forwarded-for': '203.0.113.77' }, payload: 'name=vic&password=wrongwrongwrong' });
    expect(spoofed.statusCode).toBe(401);
    expect((await failedSignIns(t)).map((e) => e.detail)).toEqual(['name vic from 198.51.100.9', 'name vic from 203.0.113.5']);
  });

  it('without it the same request is refused as cross-site (the Origin is https, the request plain http)', async () => {
    const t = await start();
    await t.access.createUser(ADMIN, { name: 'vic', role: 'viewer', password: PASSWORD });
    expect((await signInForm(t, 'vic', PASSWORD, proxied)).statusCode).toBe(403);
  });

  it('sends HSTS without includeSubDomains only when the public URL is https', async () => {
    const t = await start({ publicUrl: 'https://farm.example' });
    expect((await t.app.inject({ method: 'GET', url: '/health' })).headers['strict-transport-security']).toBe('max-age=31536000');
    await t.close();
    c = undefined;
    const plain = await start({ publicUrl: 'http://farm.lan' });
    expect((await plain.app.inject({ method: 'GET', url: '/health' })).headers['strict-transport-security']).toBeUndefined();
  });
});

describe('API tokens', () => {
  it('of any role cannot manage users: only a person signed in or the admin key can', async () => {
    const t = await start();
    const ci = await t.access.createToken(ADMIN, { name: 'ci', role: 'admin' });
    const key = bearer(ci.secret);
    await t.access.createUser(ADMIN, { name: 'alice', role: 'admin', password: PASSWORD });
    const calls = [
      { method: 'POST', url: pathOf(ROUTES.createUser, {}), payload: { name: 'thief', role: 'admin', password: PASSWORD } },
      { method: 'PUT', url: pathOf(ROUTES.setUserPassword, { name: 'alice' }), payload: { password: 'a new password!' } },
      { method: 'PUT', url: pathOf(ROUTES.setUserRole, { name: 'alice' }), payload: { role: 'viewer' } },
      { method: 'DELETE', url: pathOf(ROUTES.revokeUserSessions, { name: 'alice' }) },
      { method: 'DELETE', url: pathOf(ROUTES.deleteUser, { name: 'alice' }) },
    ] as const;
    for (const call of calls) {
      const res = await t.app.inject({ ...call, headers: key });
      expect({ status: res.statusCode, body: res.json() as unknown }).toEqual({ status: 403, body: { code: 'AUTH_FORBIDDEN', message: 'managing users needs a person signed in or the admin key, not an API token' } });
    }
    expect((await t.store.listUsers()).map((u) => [u.name, u.role])).toEqual([['alice', 'admin']]);
    expect((await t.access.signIn('alice', PASSWORD, '10.0.0.1')).user.name).toBe('alice');
    // A signed-in admin may.
    const s = await t.access.signIn('alice', PASSWORD, '10.0.0.1');
    const res = await t.app.inject({ method: 'POST', url: pathOf(ROUTES.createUser, {}), headers: { cookie: `${SESSION_COOKIE}=${s.cookieValue}`, 'x-csrf-token': s.csrfToken }, payload: { name: 'bob', role: 'viewer' } });
    expect(res.statusCode).toBe(201);
  });

  it('below admin list and revoke only themselves; an admin-role token any', async () => {
    const t = await start();
    await t.access.createUser(ADMIN, { name: 'alice', role: 'admin', password: PASSWORD });
    const alice = await t.access.resolve(undefined, (await t.access.signIn('alice', PASSWORD, '10.0.0.1')).cookieValue);
    const ci = await t.access.createToken(alice, { name: 'ci viewer', role: 'viewer' });
    const release = await t.access.createToken(alice, { name: 'release', role: 'admin' });
    const list = (key: string) => t.app.inject({ method: 'GET', url: pathOf(ROUTES.listTokens, {}), headers: bearer(key) });
    expect(((await list(ci.secret)).json() as { tokens: { id: string }[] }).tokens.map((x) => x.id)).toEqual([ci.token.id]);
    const revoke = (key: string, id: string) => t.app.inject({ method: 'DELETE', url: pathOf(ROUTES.revokeToken, { id }), headers: bearer(key) });
    expect((await revoke(ci.secret, release.token.id)).statusCode).toBe(404);
    expect((await t.store.getApiToken(release.token.id))!.revokedAt).toBeNull();
    expect(((await list(release.secret)).json() as { tokens: unknown[] }).tokens).toHaveLength(2);
    expect((await revoke(release.secret, ci.token.id)).statusCode).toBe(204);
    // Revoking it again answers the same and writes no second audit row.
    expect((await revoke(release.secret, ci.token.id)).statusCode).toBe(204);
    expect((await t.access.listAudit({ action: 'token.revoke' })).entries).toHaveLength(1);
    expect((await revoke(release.secret, release.token.id)).statusCode).toBe(204);
  });

  it('made with the admin key stop working once the controller runs with another key', async () => {
    const t = await start();
    const made = await t.access.createToken(ADMIN, { name: 'deploy', role: 'admin', expiresInDays: 3650 });
    expect((await t.store.getApiToken(made.token.id))!.adminEpoch).toMatch(/^[0-9a-f]{64}$/);
    expect(await t.access.resolve(`Bearer ${made.secret}`, undefined)).toMatchObject({ kind: 'token', role: 'admin' });
    // The same database under a rotated key (a restart with a new --api-key).
    const rotated = new AccessService({ store: t.store, now: () => t.clock.now, adminKey: 'a-brand-new-admin-key-0123' });
    await expect(rotated.resolve(`Bearer ${made.secret}`, undefined)).rejects.toMatchObject({
      code: 'AUTH_INVALID',
      message: "the API token 'deploy' was made with an admin key that has since changed",
    });
    // A user's token does not depend on the key.
    await t.access.createUser(ADMIN, { name: 'alice', role: 'operator', password: PASSWORD });
    const alice = await t.access.resolve(undefined, (await t.access.signIn('alice', PASSWORD, '10.0.0.1')).cookieValue);
    const hers = await t.access.createToken(alice, { name: 'laptop', role: 'operator' });
    expect((await t.store.getApiToken(hers.token.id))!.adminEpoch).toBeNull();
    expect(await rotated.resolve(`Bearer ${hers.secret}`, undefined)).toMatchObject({ kind: 'token', role: 'operator' });
  });
});

describe("a user's role", () => {
  it('is set by an admin (audited); a downgrade ends their sessions and caps their tokens at once, an upgrade keeps them', async () => {
    const t = await start();
    await t.access.createUser(ADMIN, { name: 'alice', role: 'operator', password: PASSWORD });
    const s = await t.access.signIn('alice', PASSWORD, '10.0.0.1');
    const alice = await t.access.resolve(undefined, s.cookieValue);
    const token = await t.access.createToken(alice, { name: 'ops', role: 'operator' });
    const put = (role: string, name = 'alice') => t.app.inject({ method: 'PUT', url: pathOf(ROUTES.setUserRole, { name }), headers: t.admin, payload: { role } });

    const down = await put('viewer');
    expect(down.statusCode).toBe(200);
    expect(down.json()).toEqual({ name: 'alice', role: 'viewer', createdAt: expect.any(String) as string, lastSignInAt: expect.any(String) as string });
    await expect(t.access.resolve(undefined, s.cookieValue)).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    expect(await t.access.resolve(`Bearer ${token.secret}`, undefined)).toMatchObject({ kind: 'token', role: 'viewer' });

    const s2 = await t.access.signIn('alice', PASSWORD, '10.0.0.1');
    expect((await put('admin')).statusCode).toBe(200);
    expect(await t.access.resolve(undefined, s2.cookieValue)).toMatchObject({ kind: 'session', user: { role: 'admin' } });
    expect(await t.access.resolve(`Bearer ${token.secret}`, undefined)).toMatchObject({ role: 'operator' });

    expect((await put('viewer', 'nobody')).json()).toMatchObject({ code: 'API_NOT_FOUND' });
    expect((await put('root')).statusCode).toBe(400);
    const rows = (await t.access.listAudit({ action: 'user.role' })).entries.reverse().map((e) => [e.actor, e.target, e.detail]);
    expect(rows).toEqual([
      ['admin key', 'alice', 'operator → viewer, 1 session ended'],
      ['admin key', 'alice', 'viewer → admin'],
    ]);
  });
});

describe('expired sessions', () => {
  it('are purged by the retention job; live ones stay', async () => {
    const t = await start({ sessionTtlMs: 60_000 });
    await t.access.createUser(ADMIN, { name: 'alice', role: 'viewer', password: PASSWORD });
    const old = await t.access.signIn('alice', PASSWORD, '10.0.0.1');
    t.clock.now += 30_000;
    const fresh = await t.access.signIn('alice', PASSWORD, '10.0.0.1');
    t.clock.now += 30_000;
    await t.retention.runScheduled();
    // Looked up as of before either expired: only the fresh one is still stored.
    expect(await t.store.getSession(old.session.idHash, 0)).toBeNull();
    expect((await t.store.getSession(fresh.session.idHash, 0))?.session.idHash).toBe(fresh.session.idHash);
  });
});
