/**
 * Builds that remember where they came from (app.inject on a real SQLite store): the source in
 * the build's view and the worker's checkout, the `repo`/`ref`/`sha` filters, reruns (of API
 * builds and GitHub builds, with the project's current secrets) and supersession.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import type { BuildSource } from '../../src/protocol/schemas.ts';
import { startTestController, type TestController } from './support.ts';

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

const SHA_A = 'a'.repeat(40);
const SHA_B = 'b'.repeat(40);
const STEPS = [{ name: 'build', run: 'echo hi' }];

const sourceOf = (projectId: string, over: Partial<BuildSource> = {}): BuildSource => ({
  projectId,
  repo: 'Octo/App',
  name: 'ios',
  event: 'push',
  ref: 'refs/heads/main',
  sha: SHA_A,
  prNumber: null,
  deliveryId: '72d3162e-cc78-11e3-81ab-4c9367dc0958',
  rerunOf: null,
  cloneUrl: 'https://github.com/Octo/App.git',
  checkout: { submodules: 'recursive', lfs: true },
  ...over,
});

const admin = async (method: 'GET' | 'POST' | 'PUT', url: string, payload?: unknown) => {
  const res = await c!.app.inject({ method, url, headers: c!.admin, ...(payload === undefined ? {} : { payload: payload as object }) });
  return { status: res.statusCode, body: res.body, json: () => res.json() as Record<string, unknown> };
};
const project = async (repo = 'Octo/App') => (await admin('POST', pathOf(ROUTES.createProject, {}), { repo })).json().id as string;
const list = async (query: Record<string, string>) =>
  ((await admin('GET', pathOf(ROUTES.listBuilds, {}, query))).json().builds as { id: string }[]).map((b) => b.id);
const rerun = (id: string) => admin('POST', pathOf(ROUTES.rerunBuild, { id }));
const cancel = (id: string) => admin('POST', pathOf(ROUTES.cancelBuild, { id }));

describe('builds with a source', () => {
  it('shows the source, hands the worker its checkout, and an API build has neither', async () => {
    c = await startTestController();
    const p = await project();
    const gh = await c.service.submit({ steps: STEPS, labels: ['mac'] }, sourceOf(p));
    const api = await c.submit();
    expect((await c.get(gh.id)).source).toEqual(sourceOf(p));
    expect((await c.get(api.id)).source).toBeNull();
    const w = await c.enrol('mac-1', ['mac']);
    const claim = (await c.poll('mac-1', w.auth)) as unknown as { build: Record<string, unknown> };
    expect(claim.build.id).toBe(gh.id);
    expect(claim.build.checkout).toEqual({ url: 'https://github.com/Octo/App.git', sha: SHA_A, ref: 'refs/heads/main', submodules: 'recursive', lfs: true });
    const apiClaim = (await c.poll('mac-1', w.auth, { slotsFree: 1, runningBuilds: [gh.id] })) as unknown as { build: Record<string, unknown> };
    expect(apiClaim.build.id).toBe(api.id);
    expect(apiClaim.build).not.toHaveProperty('checkout');
  });

  it('filters builds by repo in any case, exact ref and sha, with status and limit', async () => {
    c = await startTestController();
    const p = await project();
    const a = await c.service.submit({ steps: STEPS }, sourceOf(p));
    const b = await c.service.submit({ steps: STEPS }, sourceOf(p, { sha: SHA_B }));
    const pr = await c.service.submit({ steps: STEPS }, sourceOf(p, { event: 'pull_request', ref: 'refs/pull/7/head', prNumber: 7 }));
    const api = await c.submit();
    expect(await list({ repo: 'octo/APP' })).toEqual([pr.id, b.id, a.id]);
    expect(await list({ repo: 'octo/app', ref: 'refs/heads/main' })).toEqual([b.id, a.id]);
    expect(await list({ sha: SHA_B })).toEqual([b.id]);
    expect(await list({ repo: 'octo/app', limit: '1' })).toEqual([pr.id]);
    await cancel(a.id);
    expect(await list({ repo: 'octo/app', status: 'cancelled' })).toEqual([a.id]);
    expect(await list({})).toEqual([api.id, pr.id, b.id, a.id]);
    expect(await list({ repo: 'someone/else' })).toEqual([]);
  });

  it.each([
    ['a repo without a slash', { repo: 'octo' }],
    ['a repo with a shell metacharacter', { repo: 'octo/app$(id)' }],
    ['a short ref', { ref: 'main' }],
    ['a ref with a space', { ref: 'refs/heads/a b' }],
    ['a ref with a colon', { ref: 'refs/heads/a:b' }],
    ['an upper-case sha', { sha: SHA_A.toUpperCase() }],
    ['a short sha', { sha: 'abc123' }],
  ])('refuses a build listing filtered by %s (400)', async (_what, query) => {
    c = await startTestController();
    const res = await admin('GET', pathOf(ROUTES.listBuilds, {}, query));
    expect(res.status, res.body).toBe(400);
    expect(res.json()).toMatchObject({ code: 'API_BAD_REQUEST' });
  });
});

describe('reruns', () => {
  it('reruns a finished API build as a new queued build of the same work', async () => {
    c = await startTestController();
    const body = { steps: STEPS, env: { A: '1' }, labels: ['nobody'], artifacts: ['out/*.ipa'], timeoutS: 120, maxAttempts: 2 };
    const first = await c.submit(body);
    await cancel(first.id);
    const res = await rerun(first.id);
    expect(res.status, res.body).toBe(201);
    const again = res.json();
    expect(again.id).not.toBe(first.id);
    expect(again).toMatchObject({ status: 'queued', steps: STEPS, envNames: ['A'], labels: ['nobody'], artifacts: ['out/*.ipa'], timeoutS: 120, maxAttempts: 2, attempt: 0, source: null });
    // A body, if any, is `{}`.
    expect((await admin('POST', pathOf(ROUTES.rerunBuild, { id: first.id }), {})).status).toBe(201);
    expect((await admin('POST', pathOf(ROUTES.rerunBuild, { id: first.id }), { steps: STEPS })).status).toBe(400);
  });

  it('refuses to rerun a build not over yet, one with erased secret env, an unknown one', async () => {
    c = await startTestController();
    const queued = await c.submit({ labels: ['nobody'] });
    const notYet = await rerun(queued.id);
    expect(notYet.status).toBe(409);
    expect(notYet.json()).toMatchObject({ code: 'BUILD_NOT_RERUNNABLE', message: expect.stringMatching(/it is queued; only a finished build/) });
    const secret = await c.submit({ labels: ['nobody'], secretEnv: { TOKEN: 'token-value' } });
    await cancel(secret.id);
    const erased = await rerun(secret.id);
    expect(erased.status).toBe(409);
    expect(erased.json()).toMatchObject({ code: 'BUILD_NOT_RERUNNABLE', message: expect.stringMatching(/secret env values \(TOKEN\) were erased/) });
    expect(erased.body).not.toContain('token-value');
    expect((await rerun('aaaaaaaaaaaaaaaa')).json()).toMatchObject({ code: 'API_NOT_FOUND' });
    expect((await rerun('NOT-AN-ID')).status).toBe(400);
  });

  it("reruns a GitHub build with its source (rerunOf) and the project's current secret values; 409 once a secret or the project is gone", async () => {
    c = await startTestController();
    const p = await project();
    await admin('PUT', pathOf(ROUTES.putProjectSecret, { id: p, name: 'APPLE_KEY' }), { value: 'first-value' });
    const first = await c.service.submit({ steps: STEPS, labels: ['mac'], secretEnv: { APPLE_KEY: 'first-value' } }, sourceOf(p));
    await cancel(first.id);
    await admin('PUT', pathOf(ROUTES.putProjectSecret, { id: p, name: 'APPLE_KEY' }), { value: 'second-value' });
    const res = await rerun(first.id);
    expect(res.status, res.body).toBe(201);
    const again = res.json();
    expect(again).toMatchObject({ status: 'queued', secretEnvNames: ['APPLE_KEY'], source: { ...sourceOf(p), rerunOf: first.id } });
    expect(res.body).not.toContain('second-value');
    const w = await c.enrol('mac-1', ['mac']);
    const claim = (await c.poll('mac-1', w.auth)) as unknown as { build: { id: string; secretEnv: Record<string, string> } };
    expect(claim.build).toMatchObject({ id: again.id, secretEnv: { APPLE_KEY: 'second-value' } });

    await admin('POST', pathOf(ROUTES.cancelBuild, { id: again.id as string }));
    const del = await c.app.inject({ method: 'DELETE', url: pathOf(ROUTES.deleteProjectSecret, { id: p, name: 'APPLE_KEY' }), headers: c.admin });
    expect(del.statusCode).toBe(204);
    const noSecret = await rerun(first.id);
    expect(noSecret.status).toBe(409);
    expect(noSecret.json().message).toMatch(/Octo\/App has no secret APPLE_KEY any more/);

    const plain = await c.service.submit({ steps: STEPS, labels: ['nobody'] }, sourceOf(p));
    await cancel(plain.id);
    await c.app.inject({ method: 'DELETE', url: pathOf(ROUTES.deleteProject, { id: p }), headers: c.admin });
    const gone = await rerun(plain.id);
    expect(gone.status).toBe(409);
    expect(gone.json()).toMatchObject({ code: 'BUILD_NOT_RERUNNABLE', message: expect.stringMatching(/project Octo\/App was deleted/) });
  });
});

describe('supersession', () => {
  it("cancels the ref's unfinished builds of the commit a push replaced with `superseded by <sha>`, and nothing else", async () => {
    c = await startTestController();
    const p = await project();
    const other = await project('alpha/beta');
    const w = await c.enrol('mac-1', ['mac']);
    const running = await c.service.submit({ steps: STEPS, labels: ['mac'] }, sourceOf(p));
    const claim = (await c.poll('mac-1', w.auth))!;
    expect(claim.build.id).toBe(running.id);
    const queued = await c.service.submit({ steps: STEPS, labels: ['nobody'] }, sourceOf(p));
    const sameSha = await c.service.submit({ steps: STEPS, labels: ['nobody'] }, sourceOf(p, { sha: SHA_B }));
    const otherRef = await c.service.submit({ steps: STEPS, labels: ['nobody'] }, sourceOf(p, { ref: 'refs/heads/dev' }));
    const otherProject = await c.service.submit({ steps: STEPS, labels: ['nobody'] }, sourceOf(other, { repo: 'alpha/beta' }));
    // A third commit's build: not the one the push replaced (a late, older push must not cancel it).
    const third = await c.service.submit({ steps: STEPS, labels: ['nobody'] }, sourceOf(p, { sha: 'c'.repeat(40) }));
    const api = await c.submit({ labels: ['nobody'] });

    expect(await c.service.supersede(p, 'refs/heads/main', SHA_A, SHA_B)).toEqual([running.id, queued.id]);
    expect(await c.get(queued.id)).toMatchObject({ status: 'cancelled', message: `superseded by ${SHA_B}` });
    expect(await c.get(running.id)).toMatchObject({ status: 'assigned', cancelRequested: true, message: `superseded by ${SHA_B}` });
    for (const id of [sameSha.id, otherRef.id, otherProject.id, third.id, api.id]) expect(await c.get(id)).toMatchObject({ status: 'queued', cancelRequested: false });

    // The worker carries the cancel out: the build ends cancelled, the supersession first in its message.
    const done = await c.post(pathOf(ROUTES.complete, { id: running.id }), w.auth, { lease: claim.lease, status: 'cancelled', message: 'cancel requested' });
    expect(done.statusCode).toBe(200);
    expect(await c.get(running.id)).toMatchObject({ status: 'cancelled', message: `superseded by ${SHA_B}; cancel requested` });
    expect(await c.service.supersede(p, 'refs/heads/main', SHA_A, SHA_B)).toEqual([]);
    expect(await c.service.supersede(p, 'refs/heads/main', SHA_B, SHA_B)).toEqual([]);
  });
});
