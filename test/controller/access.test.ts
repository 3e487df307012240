/**
 * Team access on a real controller (real SQLite, app.inject): users and their passwords, sign-in
 * and its rate limit, sessions and their CSRF tokens, API tokens and their states, the audit
 * log, and draining, resuming and removing workers from the controller.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { cookieMustBeSecure, SESSION_COOKIE, sessionCookie } from '../../src/controller/access-service.ts';
import { hashSecret, newSecret, type Principal } from '../../src/controller/auth.ts';
import { createLogger } from '../../src/sys/logger.ts';
import { bearer, startTestController, type TestController } from './support.ts';

const ADMIN: Principal = { kind: 'admin' };
const PASSWORD = 'correct horse battery';
const HOUR_MS = 3_600_000;

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

async function start(opts: Parameters<typeof startTestController>[0] = {}): Promise<TestController> {
  c = await startTestController(opts);
  return c;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, unknown>;
}

async function call(t: TestController, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, headers: Record<string, string>, body?: unknown): Promise<Answer> {
  const res = await t.app.inject({ method, url, headers, ...(body === undefined ? {} : { payload: body as object }) });
  return { status: res.statusCode, body: res.body === '' ? {} : (res.json() as Record<string, unknown>), headers: res.headers };
}

/** A user signed in: the headers their browser would send (cookie and, for changes, the CSRF token). */
async function signedIn(t: TestController, name: string, role: 'viewer' | 'operator' | 'admin', password = PASSWORD) {
  if (!(await t.store.getUser(name))) await t.access.createUser(ADMIN, { name, role, password });
  const s = await t.access.signIn(name, password, '10.0.0.1');
  const cookie = `${SESSION_COOKIE}=${s.cookieValue}`;
  return { ...s, read: { cookie }, write: { cookie, 'x-csrf-token': s.csrfToken } };
}

const me = (t: TestController, headers: Record<string, string>) => call(t, 'GET', pathOf(ROUTES.me, {}), headers);

describe('users and passwords', () => {
  it('stores only scrypt hashes: no password in the database file, a made-up one answered once', async () => {
    const t = await start();
    const given = await call(t, 'POST', pathOf(ROUTES.createUser, {}), t.admin, { name: 'alice', role: 'operator', password: PASSWORD });
    expect(given.status).toBe(201);
    expect(given.body).toEqual({ user: { name: 'alice', role: 'operator', createdAt: expect.any(String) as string, lastSignInAt: null } });
    const made = await call(t, 'POST', pathOf(ROUTES.createUser, {}), t.admin, { name: 'bob', role: 'viewer' });
    const oneTime = made.body.password as string;
    expect(oneTime).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect((await t.store.getUser('alice'))!.passwordHash).toMatch(/^scrypt\$12\$8\$1\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}$/);

    // Shown once: the list does not have it, and the user signs in with it.
    const list = await call(t, 'GET', pathOf(ROUTES.listUsers, {}), t.admin);
    expect(list.body.users).toEqual([expect.objectContaining({ name: 'alice' }), expect.objectContaining({ name: 'bob', role: 'viewer' })]);
    expect(JSON.stringify(list.body)).not.toContain(oneTime);
    expect((await t.access.signIn('bob', oneTime, '10.0.0.1')).user.name).toBe('bob');
    expect(await call(t, 'POST', pathOf(ROUTES.createUser, {}), t.admin, { name: 'bob', role: 'viewer' })).toMatchObject({ status: 409, body: { code: 'USER_EXISTS' } });
    // Too short a password is refused before anything is stored.
    expect((await call(t, 'POST', pathOf(ROUTES.createUser, {}), t.admin, { name: 'carol', role: 'viewer', password: 'short' })).status).toBe(400);

    await t.stop();
    const files = readdirSync(t.dir).filter((f) => f.startsWith('controller.db'));
    const bytes = Buffer.concat(files.map((f) => readFileSync(join(t.dir, f))));
    expect(bytes.includes(PASSWORD)).toBe(false);
    expect(bytes.includes(oneTime)).toBe(false);
    expect(bytes.includes('scrypt$12$8$1$')).toBe(true);
    c = await startTestController({ dir: t.dir });
  });

  it('a reset password ends every session of the user and answers a made-up one once; revoking sessions ends them too', async () => {
    const t = await start();
    const alice = await signedIn(t, 'alice', 'viewer');
    const bob = await signedIn(t, 'bob', 'viewer');
    expect((await me(t, alice.read)).status).toBe(200);
    const reset = await call(t, 'PUT', pathOf(ROUTES.setUserPassword, { name: 'alice' }), t.admin);
    expect(reset.status).toBe(200);
    expect(reset.body.password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect(await me(t, alice.read)).toMatchObject({ status: 401, body: { code: 'AUTH_INVALID' } });
    expect((await me(t, bob.read)).status).toBe(200);
    await expect(t.access.signIn('alice', PASSWORD, '10.0.0.2')).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    expect((await t.access.signIn('alice', reset.body.password as string, '10.0.0.2')).user.name).toBe('alice');
    // A chosen one is not echoed.
    const chosen = await call(t, 'PUT', pathOf(ROUTES.setUserPassword, { name: 'alice' }), t.admin, { password: 'another long password' });
    expect(chosen.body).not.toHaveProperty('password');

    const bob2 = await signedIn(t, 'bob', 'viewer');
    expect(await call(t, 'DELETE', pathOf(ROUTES.revokeUserSessions, { name: 'bob' }), t.admin)).toMatchObject({ status: 200, body: { revoked: 2 } });
    expect((await me(t, bob.read)).status).toBe(401);
    expect((await me(t, bob2.read)).status).toBe(401);
    expect((await call(t, 'PUT', pathOf(ROUTES.setUserPassword, { name: 'nobody' }), t.admin)).status).toBe(404);
  });

  it('removing a user ends their sessions and their tokens', async () => {
    const t = await start();
    const alice = await signedIn(t, 'alice', 'operator');
    const token = await call(t, 'POST', pathOf(ROUTES.createToken, {}), alice.write, { name: 'laptop', role: 'operator' });
    const key = bearer(token.body.secret as string);
    expect((await me(t, key)).status).toBe(200);
    expect((await call(t, 'DELETE', pathOf(ROUTES.deleteUser, { name: 'alice' }), t.admin)).status).toBe(204);
    expect(await me(t, alice.read)).toMatchObject({ status: 401, body: { code: 'AUTH_INVALID' } });
    expect(await me(t, key)).toMatchObject({ status: 401, body: { code: 'AUTH_INVALID' } });
    expect((await call(t, 'DELETE', pathOf(ROUTES.deleteUser, { name: 'alice' }), t.admin)).status).toBe(404);
  });
});

describe('sign-in', () => {
  it('refuses a wrong password and an unknown name alike, and stamps a good sign-in', async () => {
    const t = await start();
    await t.access.createUser(ADMIN, { name: 'alice', role: 'viewer', password: PASSWORD });
    const wrong = await t.access.signIn('alice', 'not the password', '10.0.0.1').catch((e: unknown) => e);
    const unknown = await t.access.signIn('mallory', PASSWORD, '10.0.0.1').catch((e: unknown) => e);
    expect(wrong).toMatchObject({ code: 'AUTH_INVALID', message: 'wrong name or password' });
    expect(unknown).toMatchObject({ code: 'AUTH_INVALID', message: 'wrong name or password' });
    const s = await t.access.signIn('alice', PASSWORD, '10.0.0.1');
    expect(s.session.expiresAt - s.session.createdAt).toBe(12 * HOUR_MS);
    expect(s.cookieValue).toMatch(/^ews_[A-Za-z0-9_-]{43}$/);
    expect(s.csrfToken).not.toContain(s.cookieValue);
    expect((await t.store.getUser('alice'))!.lastSignInAt).toBe(t.clock.now);
  });

  it('rate-limits 5 failures per name and 20 per address, before any password is checked, for 15 minutes', async () => {
    const t = await start();
    await t.access.createUser(ADMIN, { name: 'alice', role: 'viewer', password: PASSWORD });
    for (let i = 0; i < 5; i++) await expect(t.access.signIn('alice', `wrong ${i}`, `10.0.1.${i}`)).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    // The right password from a fresh address is refused all the same: the limit is checked first.
    const limited = await t.access.signIn('alice', PASSWORD, '10.0.2.1').catch((e: unknown) => e);
    expect(limited).toMatchObject({ code: 'AUTH_RATE_LIMITED', details: { retryAfterS: 900 } });
    // The refused try was not checked, so it is not counted or audited as a wrong password.
    expect((await t.access.listAudit({ action: 'session.signin_failed' })).entries).toHaveLength(5);
    t.clock.now += 15 * 60_000 - 1000;
    expect(await t.access.signIn('alice', PASSWORD, '10.0.2.1').catch((e: unknown) => e)).toMatchObject({ details: { retryAfterS: 1 } });
    t.clock.now += 1000;
    expect((await t.access.signIn('alice', PASSWORD, '10.0.2.1')).user.name).toBe('alice');

    // Per address: 20 failures on any names close it for every name, alice's right password included.
    for (let i = 0; i < 20; i++) await expect(t.access.signIn(`guess${i}`, 'x'.repeat(12), '10.9.9.9')).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    await expect(t.access.signIn('alice', PASSWORD, '10.9.9.9')).rejects.toMatchObject({ code: 'AUTH_RATE_LIMITED' });
    expect((await t.access.signIn('alice', PASSWORD, '10.9.9.8')).user.name).toBe('alice');
  });

  it('a good sign-in clears its name\'s count', async () => {
    const t = await start();
    await t.access.createUser(ADMIN, { name: 'alice', role: 'viewer', password: PASSWORD });
    for (let i = 0; i < 4; i++) await expect(t.access.signIn('alice', 'wrong password', '10.0.0.1')).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    await t.access.signIn('alice', PASSWORD, '10.0.0.1');
    for (let i = 0; i < 4; i++) await expect(t.access.signIn('alice', 'wrong password', '10.0.0.1')).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    expect((await t.access.signIn('alice', PASSWORD, '10.0.0.1')).user.name).toBe('alice');
  });
});

describe('sessions', () => {
  it('act with the user\'s role until they expire, and ask a CSRF token of every change', async () => {
    const t = await start({ sessionTtlMs: HOUR_MS });
    const op = await signedIn(t, 'otto', 'operator');
    expect(await me(t, op.read)).toMatchObject({ status: 200, body: { kind: 'user', name: 'otto', role: 'operator' } });
    // Reads need no CSRF token; a change without it, or with another session's, is refused and does nothing.
    const submit = pathOf(ROUTES.submitBuild, {});
    const steps = { steps: [{ name: 'b', run: 'true' }] };
    expect(await call(t, 'POST', submit, op.read, steps)).toMatchObject({ status: 403, body: { code: 'AUTH_CSRF' } });
    const other = await signedIn(t, 'vera', 'viewer');
    expect(await call(t, 'POST', submit, { ...op.read, 'x-csrf-token': other.csrfToken }, steps)).toMatchObject({ status: 403, body: { code: 'AUTH_CSRF' } });
    expect(await t.store.countQueuedBuilds()).toBe(0);
    expect((await call(t, 'POST', submit, op.write, steps)).status).toBe(201);
    // A viewer's session, CSRF token and all, cannot submit.
    expect(await call(t, 'POST', submit, other.write, steps)).toMatchObject({ status: 403, body: { code: 'AUTH_FORBIDDEN' } });
    // A Bearer key beside the cookie is what counts (no CSRF token asked of it).
    expect(await me(t, { ...other.read, ...t.admin })).toMatchObject({ body: { kind: 'admin-key' } });

    t.clock.now += HOUR_MS - 1;
    expect((await me(t, op.read)).status).toBe(200);
    t.clock.now += 1;
    expect(await me(t, op.read)).toMatchObject({ status: 401, body: { code: 'AUTH_INVALID', message: expect.stringContaining('/login') as string } });
    expect(await me(t, { cookie: `${SESSION_COOKIE}=ews_not-a-session` })).toMatchObject({ status: 401, body: { code: 'AUTH_INVALID' } });
    expect(await me(t, {})).toMatchObject({ status: 401, body: { code: 'AUTH_MISSING', message: expect.stringContaining('sign in at /login') as string } });
  });

  it('sign-out ends the session; the cookie is HttpOnly, SameSite=Lax, Path=/ and Secure behind TLS', async () => {
    const t = await start();
    const s = await signedIn(t, 'alice', 'viewer');
    await t.access.signOut(await t.access.resolve(undefined, s.cookieValue));
    expect((await me(t, s.read)).status).toBe(401);
    expect(sessionCookie('ews_x', { secure: true, maxAgeS: 43_200 })).toEqual({
      name: SESSION_COOKIE,
      value: 'ews_x',
      options: { httpOnly: true, sameSite: 'lax', path: '/', secure: true, maxAge: 43_200 },
    });
    expect(sessionCookie('ews_x', { secure: false, maxAgeS: 0 }).options.secure).toBe(false);
    expect([cookieMustBeSecure('https://ci.example.com', 'http'), cookieMustBeSecure(null, 'https'), cookieMustBeSecure('http://10.0.0.5:3000', 'http'), cookieMustBeSecure(undefined, 'http')]).toEqual([true, true, false, false]);
  });
});

describe('API tokens', () => {
  it('are shown once, act with their role, and stop at expiry or revocation with a message saying which', async () => {
    const t = await start();
    const alice = await signedIn(t, 'alice', 'operator');
    const made = await call(t, 'POST', pathOf(ROUTES.createToken, {}), alice.write, { name: 'ci release', role: 'operator', expiresInDays: 1 });
    expect(made.status).toBe(201);
    const secret = made.body.secret as string;
    expect(secret).toMatch(/^ewt_[A-Za-z0-9_-]{43}$/);
    const view = made.body.token as { id: string; owner: string; state: string; expiresAt: string };
    expect(view).toMatchObject({ id: expect.stringMatching(/^tok_[a-z2-7]{16}$/) as string, owner: 'alice', state: 'active', lastUsedAt: null });
    expect(Date.parse(view.expiresAt)).toBe(t.clock.now + 24 * HOUR_MS);
    const key = bearer(secret);
    expect(await me(t, key)).toMatchObject({ status: 200, body: { kind: 'token', name: 'ci release', role: 'operator' } });
    // A token's POST needs no CSRF token.
    expect((await call(t, 'POST', pathOf(ROUTES.submitBuild, {}), key, { steps: [{ name: 'b', run: 'true' }] })).status).toBe(201);
    const listed = await call(t, 'GET', pathOf(ROUTES.listTokens, {}), alice.read);
    expect(JSON.stringify(listed.body)).not.toContain(secret);

    t.clock.now += 24 * HOUR_MS;
    expect(await me(t, key)).toMatchObject({ status: 401, body: { code: 'AUTH_INVALID', message: expect.stringContaining('expired') as string } });
    // Her session is over too (12 h): she signs in again.
    const again = await signedIn(t, 'alice', 'operator');
    expect(((await call(t, 'GET', pathOf(ROUTES.listTokens, {}), again.read)).body.tokens as { state: string }[])[0]!.state).toBe('expired');

    const other = await call(t, 'POST', pathOf(ROUTES.createToken, {}), again.write, { name: 'other', role: 'viewer' });
    const otherKey = bearer(other.body.secret as string);
    expect((await me(t, otherKey)).status).toBe(200);
    const id = (other.body.token as { id: string }).id;
    expect((await call(t, 'DELETE', pathOf(ROUTES.revokeToken, { id }), again.write)).status).toBe(204);
    expect(await me(t, otherKey)).toMatchObject({ status: 401, body: { code: 'AUTH_INVALID', message: expect.stringContaining('revoked') as string } });
    expect(((await call(t, 'GET', pathOf(ROUTES.listTokens, {}), again.read)).body.tokens as { id: string; state: string }[]).find((x) => x.id === id)?.state).toBe('revoked');
  });

  it('stamps last use at most once a minute', async () => {
    const t = await start();
    const made = await t.access.createToken(ADMIN, { name: 'script', role: 'viewer' });
    const key = bearer(made.secret);
    const lastUsed = async () => (await t.store.getApiToken(made.token.id))!.lastUsedAt;
    const first = t.clock.now;
    await me(t, key);
    expect(await lastUsed()).toBe(first);
    t.clock.now += 59_999;
    await me(t, key);
    expect(await lastUsed()).toBe(first);
    t.clock.now += 1;
    await me(t, key);
    expect(await lastUsed()).toBe(first + 60_000);
  });

  it('cannot be given a role above its creator\'s, cannot mint tokens, and act with no more than their owner\'s role', async () => {
    const t = await start();
    const vera = await signedIn(t, 'vera', 'viewer');
    expect(await call(t, 'POST', pathOf(ROUTES.createToken, {}), vera.write, { name: 'x', role: 'operator' })).toMatchObject({ status: 403, body: { code: 'AUTH_ROLE_TOO_HIGH' } });
    expect(await t.store.listApiTokens()).toEqual([]);
    const admins = await call(t, 'POST', pathOf(ROUTES.createToken, {}), t.admin, { name: 'ci', role: 'admin' });
    expect(admins.body.token).toMatchObject({ role: 'admin', owner: null });
    // An admin token cannot make another token, not even a lesser one.
    expect(await call(t, 'POST', pathOf(ROUTES.createToken, {}), bearer(admins.body.secret as string), { name: 'y', role: 'viewer' })).toMatchObject({
      status: 403,
      body: { code: 'AUTH_FORBIDDEN' },
    });
    expect(await t.store.listApiTokens()).toHaveLength(1);

    // A token acts with no more than its owner's role now: an operator token of a user who is a
    // viewer (made by hand: no call makes one, as a later change of the owner's role would).
    const secret = newSecret('ewt_', 32);
    const now = t.clock.now;
    await t.store.createApiToken({ id: 'tok_capped2345672345', name: 'old ops', role: 'operator', owner: 'vera', secretHash: hashSecret(secret), createdAt: now, expiresAt: now + HOUR_MS, lastUsedAt: null, revokedAt: null, adminEpoch: null });
    expect(await me(t, bearer(secret))).toMatchObject({ body: { kind: 'token', role: 'viewer' } });
    expect(await call(t, 'POST', pathOf(ROUTES.submitBuild, {}), bearer(secret), { steps: [{ name: 'b', run: 'true' }] })).toMatchObject({ status: 403, body: { code: 'AUTH_FORBIDDEN' } });
  });

  it('an admin lists and revokes every token; anyone else only their own (another\'s is not found)', async () => {
    const t = await start();
    const vera = await signedIn(t, 'vera', 'viewer');
    const otto = await signedIn(t, 'otto', 'operator');
    const veras = await t.access.createToken(await t.access.resolve(undefined, vera.cookieValue), { name: 'vera cli', role: 'viewer' });
    const ottos = await t.access.createToken(await t.access.resolve(undefined, otto.cookieValue), { name: 'otto cli', role: 'operator' });
    const ci = await t.access.createToken(ADMIN, { name: 'ci', role: 'viewer' });
    const names = async (headers: Record<string, string>) => ((await call(t, 'GET', pathOf(ROUTES.listTokens, {}), headers)).body.tokens as { name: string }[]).map((x) => x.name).sort();
    expect(await names(t.admin)).toEqual(['ci', 'otto cli', 'vera cli']);
    expect(await names(vera.read)).toEqual(['vera cli']);
    expect(await names(bearer(ottos.secret))).toEqual(['otto cli']);
    // A token made with the admin key has no owner to share a list with: it sees itself.
    expect(await names(bearer(ci.secret))).toEqual(['ci']);

    expect(await call(t, 'DELETE', pathOf(ROUTES.revokeToken, { id: ottos.token.id }), vera.write)).toMatchObject({ status: 404, body: { code: 'API_NOT_FOUND' } });
    expect(await call(t, 'DELETE', pathOf(ROUTES.revokeToken, { id: veras.token.id }), bearer(ottos.secret))).toMatchObject({ status: 404 });
    expect((await me(t, bearer(veras.secret))).status).toBe(200);
    expect((await call(t, 'DELETE', pathOf(ROUTES.revokeToken, { id: ottos.token.id }), bearer(ottos.secret))).status).toBe(204);
    expect((await call(t, 'DELETE', pathOf(ROUTES.revokeToken, { id: veras.token.id }), t.admin)).status).toBe(204);
    expect((await me(t, bearer(veras.secret))).status).toBe(401);
    expect((await call(t, 'DELETE', pathOf(ROUTES.revokeToken, { id: 'tok_aaaaaaaaaaaaaaaa' }), t.admin)).status).toBe(404);
  });
});

describe('the audit log', () => {
  it('records who did each action, newest first, in pages, with no secret in it or in the log', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const t = await start({ logger: createLogger('expo-worker-controller', 'trace', sink) });
    const post = (url: string, headers: Record<string, string>, body?: unknown) => call(t, 'POST', url, headers, body);
    const user = await post(pathOf(ROUTES.createUser, {}), t.admin, { name: 'otto', role: 'operator' });
    const password = user.body.password as string;
    const s = await t.access.signIn('otto', password, '10.1.2.3');
    const otto = { cookie: `${SESSION_COOKIE}=${s.cookieValue}`, 'x-csrf-token': s.csrfToken };
    await expect(t.access.signIn('otto', 'not his password', '10.1.2.4')).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    const token = await post(pathOf(ROUTES.createToken, {}), otto, { name: 'otto cli', role: 'operator' });
    const key = bearer(token.body.secret as string);
    const tokenId = (token.body.token as { id: string }).id;
    const worker = await t.enrol('mac-1', ['macos']);
    const build = (await post(pathOf(ROUTES.submitBuild, {}), key, { steps: [{ name: 'b', run: 'true' }] })).body.id as string;
    await post(pathOf(ROUTES.cancelBuild, { id: build }), otto);
    const rerun = (await post(pathOf(ROUTES.rerunBuild, { id: build }), key)).body.id as string;
    await post(pathOf(ROUTES.drainWorker, { id: 'mac-1' }), key);
    await post(pathOf(ROUTES.resumeWorker, { id: 'mac-1' }), otto);
    await post(pathOf(ROUTES.cancelBuild, { id: rerun }), t.admin);
    expect((await call(t, 'DELETE', pathOf(ROUTES.deleteWorker, { id: 'mac-1' }), t.admin)).status).toBe(204);
    const project = (await post(pathOf(ROUTES.createProject, {}), t.admin, { repo: 'octo/app' })).body.id as string;
    await call(t, 'PUT', pathOf(ROUTES.putProjectSecret, { id: project, name: 'TOKEN' }), t.admin, { value: 'project-secret-value' });
    await call(t, 'DELETE', pathOf(ROUTES.deleteProjectSecret, { id: project, name: 'TOKEN' }), t.admin);
    await call(t, 'DELETE', pathOf(ROUTES.deleteProject, { id: project }), t.admin);
    await post(pathOf(ROUTES.prune, {}), t.admin, { olderThanDays: 1, dryRun: true });
    await post(pathOf(ROUTES.prune, {}), t.admin, { olderThanDays: 1 });
    await call(t, 'DELETE', pathOf(ROUTES.revokeToken, { id: tokenId }), otto);
    await t.access.signOut(await t.access.resolve(undefined, s.cookieValue));
    await call(t, 'PUT', pathOf(ROUTES.setUserPassword, { name: 'otto' }), t.admin, {});
    await call(t, 'DELETE', pathOf(ROUTES.revokeUserSessions, { name: 'otto' }), t.admin);
    await call(t, 'DELETE', pathOf(ROUTES.deleteUser, { name: 'otto' }), t.admin);

    const all = await call(t, 'GET', pathOf(ROUTES.listAudit, {}, { limit: '100' }), t.admin);
    const entries = (all.body.entries as { actor: string; action: string; target: string; detail: string | null }[]).reverse();
    const rows = entries.map((e) => [e.actor, e.action, e.target]);
    expect(rows).toEqual([
      ['admin key', 'user.add', 'otto'],
      ['user otto', 'session.signin', 'otto'],
      ['anonymous', 'session.signin_failed', 'otto'],
      ['user otto', 'token.create', tokenId],
      ['admin key', 'worker.create', 'mac-1'],
      ['token otto cli (otto)', 'build.submit', build],
      ['user otto', 'build.cancel', build],
      ['token otto cli (otto)', 'build.rerun', build],
      ['token otto cli (otto)', 'worker.drain', 'mac-1'],
      ['user otto', 'worker.resume', 'mac-1'],
      ['admin key', 'build.cancel', rerun],
      ['admin key', 'worker.remove', 'mac-1'],
      ['admin key', 'project.add', 'octo/app'],
      ['admin key', 'secret.set', `${project}/TOKEN`],
      ['admin key', 'secret.remove', `${project}/TOKEN`],
      ['admin key', 'project.remove', project],
      ['admin key', 'retention.prune', 'older than 1 days'],
      ['user otto', 'token.revoke', tokenId],
      ['user otto', 'session.signout', 'otto'],
      ['admin key', 'user.password', 'otto'],
      ['admin key', 'user.sessions_revoked', 'otto'],
      ['admin key', 'user.remove', 'otto'],
    ]);
    expect(entries[2]!.detail).toBe('name otto from 10.1.2.4');
    expect(all.body.nextBefore).toBeNull();

    // Pages: newest first, `nextBefore` onwards; filtered by action.
    const page1 = await call(t, 'GET', pathOf(ROUTES.listAudit, {}, { limit: '5' }), t.admin);
    expect((page1.body.entries as { action: string }[]).map((e) => e.action)).toEqual(['user.remove', 'user.sessions_revoked', 'user.password', 'session.signout', 'token.revoke']);
    const page2 = await call(t, 'GET', pathOf(ROUTES.listAudit, {}, { limit: '5', before: String(page1.body.nextBefore) }), t.admin);
    expect((page2.body.entries as { action: string }[])[0]!.action).toBe('retention.prune');
    const cancels = await call(t, 'GET', pathOf(ROUTES.listAudit, {}, { action: 'build.cancel' }), t.admin);
    expect((cancels.body.entries as { target: string }[]).map((e) => e.target)).toEqual([rerun, build]);

    const everything = JSON.stringify(all.body) + lines.join('');
    for (const secret of [password, token.body.secret as string, s.cookieValue, s.csrfToken, worker.apiKey, 'project-secret-value']) expect(everything).not.toContain(secret);
  });
});

describe('drain, resume and remove a worker', () => {
  it('a drained worker is handed nothing, its running build goes on, and a resume hands it the queue again', async () => {
    const t = await start();
    const w = await t.enrol('mac-1');
    const running = await t.submit();
    const claim = (await t.poll('mac-1', w.auth))!;
    expect(claim.build.id).toBe(running.id);
    const drained = await call(t, 'POST', pathOf(ROUTES.drainWorker, { id: 'mac-1' }), t.admin);
    expect(drained).toMatchObject({ status: 200, body: { id: 'mac-1', drainRequested: true, status: 'draining' } });
    const queued = await t.submit();
    expect(await t.poll('mac-1', w.auth, { runningBuilds: [running.id] })).toBeNull();
    expect(await t.get(queued.id)).toMatchObject({ status: 'queued', waiting: { reason: 'matching_draining' } });
    // The running build goes on to its end.
    const complete = await call(t, 'POST', pathOf(ROUTES.complete, { id: running.id }), w.auth, { lease: claim.lease, status: 'succeeded', exitCode: 0 });
    expect(complete).toMatchObject({ status: 200, body: { status: 'succeeded' } });
    expect(await t.poll('mac-1', w.auth)).toBeNull();

    // A poll waiting when the resume comes is handed the queued build at once.
    const waiting = t.poll('mac-1', w.auth, { waitS: 20 });
    const resumed = await call(t, 'POST', pathOf(ROUTES.resumeWorker, { id: 'mac-1' }), t.admin);
    expect(resumed).toMatchObject({ status: 200, body: { drainRequested: false } });
    expect((await waiting)?.build.id).toBe(queued.id);
    expect((await call(t, 'POST', pathOf(ROUTES.drainWorker, { id: 'nobody' }), t.admin)).status).toBe(404);
  });

  it('a drain during a long poll keeps what is queued later from that worker', async () => {
    const t = await start();
    const w = await t.enrol('mac-1');
    const waiting = t.poll('mac-1', w.auth, { waitS: 1 });
    // The poll is inside its wait once the worker counts as waiting.
    await expect.poll(() => t.service.dispatcher.waiting).toBe(1);
    await call(t, 'POST', pathOf(ROUTES.drainWorker, { id: 'mac-1' }), t.admin);
    const queued = await t.submit();
    expect(await waiting).toBeNull();
    expect(await t.get(queued.id)).toMatchObject({ status: 'queued' });
  });

  it('removal waits for the worker\'s builds to end; then its key stops working and its builds keep its name', async () => {
    const t = await start();
    const w = await t.enrol('mac-1');
    const b = await t.submit();
    const claim = (await t.poll('mac-1', w.auth))!;
    const del = pathOf(ROUTES.deleteWorker, { id: 'mac-1' });
    expect(await call(t, 'DELETE', del, t.admin)).toMatchObject({ status: 409, body: { code: 'WORKER_BUSY' } });
    expect((await call(t, 'GET', pathOf(ROUTES.getWorker, { id: 'mac-1' }), w.auth)).status).toBe(200);
    await call(t, 'POST', pathOf(ROUTES.complete, { id: b.id }), w.auth, { lease: claim.lease, status: 'succeeded', exitCode: 0 });
    expect((await call(t, 'DELETE', del, t.admin)).status).toBe(204);
    expect(await call(t, 'GET', pathOf(ROUTES.getWorker, { id: 'mac-1' }), w.auth)).toMatchObject({ status: 401, body: { code: 'AUTH_INVALID' } });
    expect((await call(t, 'GET', pathOf(ROUTES.getWorker, { id: 'mac-1' }), t.admin)).status).toBe(404);
    expect(await t.get(b.id)).toMatchObject({ status: 'succeeded', workerId: 'mac-1' });
    expect((await call(t, 'DELETE', del, t.admin)).status).toBe(404);
    // The id is free again.
    expect((await t.enrol('mac-1')).apiKey).not.toBe(w.apiKey);
  });
});
