/**
 * The dashboard's forms on a real controller (app.inject, real SQLite): sign-in and its CSRF
 * check, the controls each role sees and the 403 the server answers anyway, CSRF on sessions'
 * forms, and actions recorded in the audit log.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SESSION_COOKIE } from '../../src/controller/access-service.ts';
import { startTestController, type TestController } from './support.ts';
import { runningBuild } from './ui-support.ts';

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const PASSWORD = 'correct horse battery staple';

/** A signed-in browser: its cookie and the CSRF token its pages carry. */
async function signIn(name: string, role: 'viewer' | 'operator' | 'admin') {
  await c!.access.createUser({ kind: 'admin' }, { name, role, password: PASSWORD });
  const res = await c!.app.inject({ method: 'POST', url: '/login?next=%2Fbuilds', headers: FORM, payload: new URLSearchParams({ name, password: PASSWORD }).toString() });
  expect(res.statusCode).toBe(303);
  expect(res.headers.location).toBe('/builds');
  const setCookie = String(res.headers['set-cookie']);
  expect(setCookie).toMatch(/HttpOnly/i);
  expect(setCookie).toMatch(/SameSite=(Lax|Strict)/i);
  // Plain http, no https public URL, no trusted proxy: a Secure cookie would never come back.
  expect(setCookie).not.toMatch(/;\s*Secure/i);
  const cookie = `${SESSION_COOKIE}=${new RegExp(`${SESSION_COOKIE}=([^;]+)`).exec(setCookie)![1]}`;
  const page = await c!.app.inject({ method: 'GET', url: '/builds', headers: { cookie } });
  expect(page.body).toContain(`<span id="whoami">${name} (${role})</span>`);
  const csrf = /name="_csrf" value="([^"]+)"/.exec(page.body)![1]!;
  const post = (url: string, fields: Record<string, string> = { _csrf: csrf }) =>
    c!.app.inject({ method: 'POST', url, headers: { ...FORM, cookie }, payload: new URLSearchParams(fields).toString() });
  const get = (url: string) => c!.app.inject({ method: 'GET', url, headers: { cookie } });
  return { cookie, csrf, post, get };
}

describe('dashboard forms', () => {
  it('refuses a sign-in posted from another site (login CSRF) before checking anything', async () => {
    c = await startTestController();
    const res = await c.app.inject({ method: 'POST', url: '/login', headers: { ...FORM, origin: 'https://evil.example' }, payload: 'name=alice&password=whatever-it-is' });
    expect(res.statusCode).toBe(403);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toContain('AUTH_FORBIDDEN');
    expect(res.headers['set-cookie']).toBeUndefined();
    // What a sandboxed or privacy-stripped cross-site form sends.
    const opaque = await c.app.inject({ method: 'POST', url: '/login', headers: { ...FORM, origin: 'null' }, payload: 'name=alice&password=whatever-it-is' });
    expect(opaque.statusCode).toBe(403);
  });

  it('takes a sign-in posted from its own page (Origin of this site)', async () => {
    c = await startTestController();
    const res = await c.app.inject({ method: 'POST', url: '/login', headers: { ...FORM, host: '127.0.0.1:3000', origin: 'http://127.0.0.1:3000' }, payload: 'name=nobody&password=whatever-it-is' });
    expect(res.statusCode).toBe(401);
    expect(res.body).toContain('id="signin-error"');
  });

  it('cancels and reruns through forms with the admin key, recorded in the audit log', async () => {
    c = await startTestController();
    const b = await c.submit({ labels: ['nobody'] });
    const form = { ...c.admin, ...FORM };
    const cancel = await c.app.inject({ method: 'POST', url: `/builds/${b.id}/cancel`, headers: form, payload: '_csrf=' });
    expect(cancel.statusCode).toBe(303);
    expect(cancel.headers.location).toBe(`/builds/${b.id}`);
    expect((await c.get(b.id)).status).toBe('cancelled');
    const rerun = await c.app.inject({ method: 'POST', url: `/builds/${b.id}/rerun`, headers: form, payload: '_csrf=' });
    expect(rerun.statusCode).toBe(303);
    const again = /^\/builds\/([a-z2-7]{16})$/.exec(String(rerun.headers.location))![1]!;
    expect((await c.get(again)).status).toBe('queued');
    const audit = await c.app.inject({ method: 'GET', url: '/audit', headers: c.admin });
    expect(audit.body).toMatch(new RegExp(`<td class="actor">admin key</td><td class="action">build.rerun</td><td class="target">${b.id}</td>`));
    expect(audit.body).toMatch(new RegExp(`<td class="action">build.cancel</td><td class="target">${b.id}</td>`));
  });

  it('shows a viewer no controls and refuses their forms with a 403 page; an operator acts only with the CSRF token', async () => {
    c = await startTestController();
    const { id: running } = await runningBuild(c, 'mac-1');
    const viewer = await signIn('vera', 'viewer');
    const seen = (await viewer.get(`/builds/${running}`)).body;
    expect(seen).not.toContain('<form id="cancel"');
    expect((await viewer.get('/workers')).body).not.toMatch(/<form class="(drain|resume|remove)"/);
    expect((await viewer.get('/')).body).not.toContain('href="/audit"');
    const refused = await viewer.post(`/builds/${running}/cancel`);
    expect(refused.statusCode).toBe(403);
    expect(refused.body).toContain('AUTH_FORBIDDEN');
    expect((await viewer.get('/audit')).statusCode).toBe(403);

    const operator = await signIn('otto', 'operator');
    expect((await operator.get(`/builds/${running}`)).body).toContain('<form id="cancel"');
    const workers = (await operator.get('/workers')).body;
    expect(workers).toContain('<form class="drain"');
    expect(workers).not.toContain('<form class="remove"');
    const noToken = await operator.post(`/builds/${running}/cancel`, { _csrf: 'wrong' });
    expect(noToken.statusCode).toBe(403);
    expect(noToken.body).toContain('AUTH_CSRF');
    expect((await c.get(running)).cancelRequested).toBe(false);
    expect((await operator.post(`/builds/${running}/cancel`)).statusCode).toBe(303);
    expect((await c.get(running)).cancelRequested).toBe(true);
  });

  it('re-renders the sign-in form on a wrong password, and rate-limits many', async () => {
    c = await startTestController();
    await c.access.createUser({ kind: 'admin' }, { name: 'alice', role: 'viewer', password: PASSWORD });
    let res;
    for (let i = 0; i < 50; i++) {
      res = await c.app.inject({ method: 'POST', url: '/login', headers: FORM, payload: 'name=alice&password=not-the-password' });
      if (res.statusCode !== 401) break;
      expect(res.body).toContain('<p id="signin-error" role="alert">Wrong name or password.</p>');
      expect(res.body).toContain('value="alice"');
      expect(res.body).not.toContain('not-the-password');
    }
    expect(res!.statusCode).toBe(429);
    expect(Number(res!.headers['retry-after'])).toBeGreaterThan(0);
    expect(res!.body).toMatch(/<p id="signin-error" role="alert">Too many sign-in attempts: wait \d+ seconds/);
  });

  it('creates a token and shows its secret once; signs out', async () => {
    c = await startTestController();
    const op = await signIn('otto', 'operator');
    const page = (await op.get('/tokens')).body;
    expect(page).toContain('<option value="operator">');
    expect(page).not.toContain('<option value="admin">');
    const made = await op.post('/tokens', { _csrf: op.csrf, name: 'ci release', role: 'viewer', expiresInDays: '7' });
    expect(made.statusCode).toBe(200);
    const secret = /<pre id="new-token-secret">(ewt_[A-Za-z0-9_-]+)<\/pre>/.exec(made.body)![1]!;
    const listed = (await op.get('/tokens')).body;
    expect(listed).not.toContain(secret);
    expect(listed).toContain('<td class="name">ci release</td>');
    expect(listed).toContain('<form class="revoke"');
    const out = await op.post('/logout');
    expect(out.statusCode).toBe(303);
    expect(out.headers.location).toBe('/login');
    const after = await op.get('/builds');
    expect(after.statusCode).toBe(303);
    expect(after.headers.location).toBe('/login?next=%2Fbuilds');
  });
});
