/**
 * Projects and their secrets over the API (app.inject on a real SQLite store): registration, one
 * project per repository in any case, write-only secrets that never appear in an answer or a log
 * line, and refusals of bad input with a clear `{code, message}`.
 */
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { createLogger } from '../../src/sys/logger.ts';
import { startTestController, type TestController } from './support.ts';

/** Every line the controller logged, as written. */
const capturedLog = () => {
  const text: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      text.push(chunk.toString());
      done();
    },
  });
  return { text, logger: createLogger('test', 'debug', sink) };
};

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

const call = async (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown) => {
  const res = await c!.app.inject({ method, url, headers: c!.admin, ...(payload === undefined ? {} : { payload: payload as object }) });
  return { status: res.statusCode, body: res.body, json: () => res.json() as Record<string, unknown> };
};
const create = (body: unknown) => call('POST', pathOf(ROUTES.createProject, {}), body);
const putSecret = (id: string, name: string, value: unknown) => call('PUT', `/api/v1/projects/${id}/secrets/${name}`, { value });

describe('projects', () => {
  it('registers a project with defaults, shows it, lists it by repo, and deletes it (404 after)', async () => {
    c = await startTestController();
    const res = await create({ repo: 'Octo/App' });
    expect(res.status, res.body).toBe(201);
    const p = res.json();
    expect(p).toMatchObject({ repo: 'Octo/App', pipelinePath: '.expo-worker.yml', supersede: true, secretNames: [] });
    expect(p.id).toMatch(/^[a-z2-7]{16}$/);
    const other = (await create({ repo: 'alpha/beta', pipelinePath: 'ci/expo.yml', supersede: false })).json();
    expect(other).toMatchObject({ pipelinePath: 'ci/expo.yml', supersede: false });
    expect((await call('GET', pathOf(ROUTES.getProject, { id: p.id as string }))).json()).toEqual(p);
    expect(((await call('GET', pathOf(ROUTES.listProjects, {}))).json().projects as { repo: string }[]).map((x) => x.repo)).toEqual(['alpha/beta', 'Octo/App']);
    const del = await call('DELETE', pathOf(ROUTES.deleteProject, { id: p.id as string }));
    expect(del.status).toBe(204);
    expect(del.body).toBe('');
    expect((await call('GET', pathOf(ROUTES.getProject, { id: p.id as string }))).json()).toMatchObject({ code: 'API_NOT_FOUND' });
    expect((await call('DELETE', pathOf(ROUTES.deleteProject, { id: p.id as string }))).status).toBe(404);
  });

  it('refuses a second project for the same repository in another case with 409 PROJECT_EXISTS', async () => {
    c = await startTestController();
    expect((await create({ repo: 'octo/app' })).status).toBe(201);
    const again = await create({ repo: 'OCTO/App' });
    expect(again.status).toBe(409);
    expect(again.json()).toMatchObject({ code: 'PROJECT_EXISTS', message: expect.stringContaining('octo/app') });
    expect(((await call('GET', pathOf(ROUTES.listProjects, {}))).json().projects as unknown[]).length).toBe(1);
  });

  it.each([
    ['no slash', { repo: 'octoapp' }],
    ['two slashes', { repo: 'octo/app/x' }],
    ['a leading hyphen', { repo: '-octo/app' }],
    ['a double hyphen in the owner', { repo: 'oc--to/app' }],
    ['a dot-dot name', { repo: 'octo/..' }],
    ['a shell metacharacter', { repo: 'octo/app;rm' }],
    ['an owner over 39 characters', { repo: `${'a'.repeat(40)}/app` }],
    ['an absolute pipeline path', { repo: 'octo/app', pipelinePath: '/etc/passwd' }],
    ['a pipeline path going up', { repo: 'octo/app', pipelinePath: '../x.yml' }],
    ['an unknown field', { repo: 'octo/app', branch: 'main' }],
    ['a supersede that is not a boolean', { repo: 'octo/app', supersede: 'yes' }],
  ])('refuses a project with %s (400, nothing stored)', async (_what, body) => {
    c = await startTestController();
    const res = await create(body);
    expect(res.status, res.body).toBe(400);
    expect(res.json()).toMatchObject({ code: 'API_BAD_REQUEST', message: expect.any(String) });
    expect(await c.store.listProjects()).toEqual([]);
  });

  it('refuses unknown and malformed project ids', async () => {
    c = await startTestController();
    expect((await call('GET', pathOf(ROUTES.getProject, { id: 'aaaaaaaaaaaaaaaa' }))).status).toBe(404);
    expect((await call('GET', '/api/v1/projects/not-an-id')).json()).toMatchObject({ code: 'API_BAD_REQUEST' });
    expect((await call('DELETE', '/api/v1/projects/NOPE')).status).toBe(400);
    expect((await putSecret('aaaaaaaaaaaaaaaa', 'TOKEN', 'value-1234')).json()).toMatchObject({ code: 'API_NOT_FOUND' });
  });
});

describe('project secrets', () => {
  it('stores a value sealed, answers its name only, and never logs or shows the value', async () => {
    const { text, logger } = capturedLog();
    c = await startTestController({ logger });
    const p = (await create({ repo: 'octo/app' })).json();
    const id = p.id as string;
    const value = 'sup3r-s3cret-v4lue-for-the-test';
    const res = await putSecret(id, 'APPLE_API_KEY', value);
    expect(res.status, res.body).toBe(200);
    expect(res.json()).toEqual({ name: 'APPLE_API_KEY', updatedAt: new Date(c.clock.now).toISOString() });
    // Replaced: still one name.
    c.clock.now += 1000;
    expect((await putSecret(id, 'APPLE_API_KEY', `${value}-2`)).json()).toMatchObject({ updatedAt: new Date(c.clock.now).toISOString() });
    await putSecret(id, 'ANOTHER', 'another-value');
    const shown = await call('GET', pathOf(ROUTES.getProject, { id }));
    expect(shown.json().secretNames).toEqual(['ANOTHER', 'APPLE_API_KEY']);
    const listed = await call('GET', pathOf(ROUTES.listProjects, {}));
    // Sealed in the store, under this project and name.
    const stored = await c.store.getProjectSecrets(id);
    expect(stored.map((s) => s.name)).toEqual(['ANOTHER', 'APPLE_API_KEY']);
    for (const s of stored) expect(s.sealed.toString('latin1')).not.toContain(value);
    expect(await c.projects.secretValues(id, ['APPLE_API_KEY', 'MISSING'])).toEqual({ values: { APPLE_API_KEY: `${value}-2` }, missing: ['MISSING'] });
    // A refused value (too short) is not echoed either.
    const short = await putSecret(id, 'SHORT', 'abc');
    expect(short.status).toBe(400);
    expect(short.json()).toMatchObject({ code: 'API_BAD_REQUEST', message: expect.stringContaining('at least 4 characters') });
    expect(short.body).not.toContain('"abc"');
    for (const body of [res.body, shown.body, listed.body]) expect(body).not.toContain(value);
    const log = text.join('');
    expect(log).toContain('project secret set');
    expect(log).not.toContain(value);
  });

  it('deletes a secret (204), then 404; refuses bad names and bad values', async () => {
    c = await startTestController();
    const id = (await create({ repo: 'octo/app' })).json().id as string;
    await putSecret(id, 'TOKEN', 'token-value');
    expect((await call('DELETE', pathOf(ROUTES.deleteProjectSecret, { id, name: 'TOKEN' }))).status).toBe(204);
    const again = await call('DELETE', pathOf(ROUTES.deleteProjectSecret, { id, name: 'TOKEN' }));
    expect(again.status).toBe(404);
    expect(again.json().message).toMatch(/no secret TOKEN/);
    expect((await call('DELETE', pathOf(ROUTES.deleteProjectSecret, { id: 'aaaaaaaaaaaaaaaa', name: 'TOKEN' }))).json().message).toMatch(/no project/);
    for (const name of ['lower', '1STARTS_WITH_DIGIT', 'HAS-HYPHEN', 'A.B']) {
      expect((await putSecret(id, name, 'a-good-value')).json(), name).toMatchObject({ code: 'API_BAD_REQUEST' });
    }
    expect((await putSecret(id, 'TOKEN', '')).status).toBe(400);
    expect((await putSecret(id, 'TOKEN', 42)).status).toBe(400);
    expect((await call('PUT', `/api/v1/projects/${id}/secrets/TOKEN`, { value: 'good-value', extra: 1 })).status).toBe(400);
    expect((await putSecret(id, 'TOKEN', 'x'.repeat(32 * 1024 + 1))).status).toBe(400);
    expect((await c.store.getProject(id))!.secretNames).toEqual([]);
  });

  it('deleting a project takes its secrets and keeps its builds', async () => {
    c = await startTestController();
    const id = (await create({ repo: 'octo/app' })).json().id as string;
    await putSecret(id, 'TOKEN', 'token-value');
    const b = await c.service.submit({ steps: [{ name: 's', run: 'true' }] }, {
      projectId: id,
      repo: 'octo/app',
      name: 'ios',
      event: 'push',
      ref: 'refs/heads/main',
      sha: 'a'.repeat(40),
      prNumber: null,
      deliveryId: null,
      rerunOf: null,
      cloneUrl: 'https://github.com/octo/app.git',
      checkout: { submodules: false, lfs: false },
    });
    expect((await call('DELETE', pathOf(ROUTES.deleteProject, { id }))).status).toBe(204);
    expect(await c.store.getProjectSecrets(id)).toEqual([]);
    expect((await c.get(b.id)).source).toMatchObject({ projectId: id, repo: 'octo/app' });
  });
});
