/**
 * `POST /api/v1/builds/:id/checkout-token`: the holder of a GitHub build gets the GitHub port's
 * clone token for the build's repository, and nobody else, and the token never reaches the log.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { CloneToken, GithubApi } from '../../src/github/api.ts';
import { ExpoError } from '../../src/protocol/errors.ts';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import type { BuildSource } from '../../src/protocol/schemas.ts';
import { startTestController, type TestController } from './support.ts';

const TOKEN = 'ghs_installationToken0123456789';
const SOURCE: BuildSource = {
  projectId: 'p1',
  repo: 'acme/app',
  name: 'ios',
  event: 'push',
  ref: 'refs/heads/main',
  sha: '0123456789abcdef0123456789abcdef01234567',
  prNumber: null,
  deliveryId: null,
  rerunOf: null,
  cloneUrl: 'https://github.com/acme/app.git',
  checkout: { submodules: false, lfs: false },
};

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

async function setup(cloneToken: (repo: string) => Promise<CloneToken>, withSource = true) {
  let logged = '';
  const logger = pino({ level: 'debug' }, new Writable({ write: (chunk, _enc, done) => ((logged += String(chunk)), done()) }));
  const asked: string[] = [];
  const github: GithubApi = {
    mode: 'token',
    getFile: () => Promise.reject(new Error('not asked in these tests')),
    createStatus: () => Promise.resolve(),
    createCheckRun: () => Promise.resolve(1),
    updateCheckRun: () => Promise.resolve(),
    cloneToken: (repo) => (asked.push(repo), cloneToken(repo)),
  };
  c = await startTestController({ logger, github });
  const worker = await c.enrol('mac-a');
  const build = withSource ? await c.service.submit({ steps: [{ name: 'build', run: 'echo hello' }] }, SOURCE) : await c.submit();
  const claim = (await c.poll('mac-a', worker.auth))!;
  const ask = (lease = claim.lease) => c!.app.inject({ method: 'POST', url: pathOf(ROUTES.checkoutToken, { id: build.id }), headers: worker.auth, payload: { lease } });
  return { ask, asked, logs: () => logged, buildId: build.id };
}

describe('POST /api/v1/builds/:id/checkout-token', () => {
  it("answers the GitHub port's token for the build's repository, and never logs it", async () => {
    const t = await setup(async () => ({ token: TOKEN, expiresAt: Date.parse('2026-12-03T11:00:00Z') }));
    const res = await t.ask();
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ token: TOKEN, expiresAt: '2026-12-03T11:00:00.000Z' });
    expect(t.asked).toEqual(['acme/app']);
    expect(t.logs()).toContain('clone token handed out');
    expect(t.logs()).not.toContain(TOKEN);
  });

  it('answers null without GitHub credentials (anonymous clone)', async () => {
    const t = await setup(async () => ({ token: null, expiresAt: null }));
    expect((await t.ask()).json()).toEqual({ token: null, expiresAt: null });
  });

  it('GitHub failing is 503 GITHUB_UNAVAILABLE (the agent retries)', async () => {
    const t = await setup(async () => {
      throw new ExpoError('GITHUB_UNREACHABLE', 'GitHub answered 502 for POST /app/installations/1/access_tokens');
    });
    const res = await t.ask();
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ code: 'GITHUB_UNAVAILABLE', message: expect.stringContaining('acme/app') });
  });

  it('GitHub refusing (the App not installed on the repository) is 422 GITHUB_REFUSED: final, the build fails with the reason', async () => {
    const t = await setup(async () => {
      throw new ExpoError('GITHUB_STATUS', 'GitHub answered 404 for GET /repos/acme/app/installation', { details: { status: 404 } });
    });
    const res = await t.ask();
    expect(res.statusCode).toBe(422);
    expect(res.json()).toMatchObject({ code: 'GITHUB_REFUSED', message: expect.stringContaining('404') });
  });

  it('a stale lease is 409 LEASE_STALE, before GitHub is asked', async () => {
    const t = await setup(async () => ({ token: TOKEN, expiresAt: null }));
    const res = await t.ask('ewl_notTheCurrentLease0123');
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ code: 'LEASE_STALE' });
    expect(t.asked).toEqual([]);
  });

  it('a build that did not come from GitHub is 404 API_NOT_FOUND', async () => {
    const t = await setup(async () => ({ token: TOKEN, expiresAt: null }), false);
    const res = await t.ask();
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ code: 'API_NOT_FOUND', message: `build ${t.buildId} has no repository to check out` });
    expect(t.asked).toEqual([]);
  });
});
