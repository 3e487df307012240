/**
 * A push that builds, end to end on the real system: a real git server (git http-backend behind
 * GitHub's kind of token auth) holds the repository, GitHub's API is the OpenAPI-checked
 * stand-in, and the controller, agent and simulated VM are the real processes. The test pushes a
 * commit, sends the signed webhook, and the VM checks that commit out with the short-lived token,
 * runs the pipeline from the file in the repository, and GitHub hears `pending` then `success`
 * for the right commit and context, with a link to the build.
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sign } from '@octokit/webhooks-methods';
import { request } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { E2E_TEST_TIMEOUT_MS, FINAL, startFarm, WAIT, type Farm } from '../support/farm.ts';
import { startGitServer, type TestGitServer } from '../support/git-server.ts';
import { GithubStandin } from '../support/github-standin.ts';

vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

const SECRET = 'e2e-webhook-secret-0123456789';
const TOKEN = 'ghp_e2eCloneToken0123456789abcdefABCD';
const REPO = 'octo/app';
const PUBLIC = 'https://builds.example.com';

let farm: Farm | undefined;
let git: TestGitServer | undefined;
let gh: GithubStandin | undefined;
afterEach(async () => {
  await farm?.stop();
  await git?.stop();
  await gh?.stop();
  farm = git = gh = undefined;
});

const PIPELINE = `builds:
  ios:
    secrets: [APPLE_API_KEY]
    steps:
      - {name: show, run: 'echo "HEAD=$(git rev-parse HEAD)"; cat hello.txt; echo "key=$APPLE_API_KEY"'}
    artifacts: [hello.txt]
`;

async function deliver(f: Farm, event: string, payload: unknown, id: string): Promise<number> {
  const body = JSON.stringify(payload);
  const res = await request(`${f.controller.url}${pathOf(ROUTES.githubWebhook, {})}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-github-event': event, 'x-github-delivery': id, 'x-hub-signature-256': await sign(SECRET, body) },
    body,
  });
  await res.body.text();
  return res.statusCode;
}

async function until<T>(what: string, read: () => Promise<T> | T, done: (v: T) => boolean, timeoutMs: number = WAIT.buildMs): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let v = await read();
  while (!done(v)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v).slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, 200));
    v = await read();
  }
  return v;
}

describe('GitHub-driven builds on the real system', () => {
  it('a push builds its commit from the pipeline file in a VM that checked it out, and GitHub shows pending then success with a link; a branch name a shell would run is never run', async () => {
    git = await startGitServer({ token: TOKEN });
    const cloneUrl = git.createRepo('octo/app');
    const sha = git.commit('octo/app', { '.expo-worker.yml': PIPELINE, 'hello.txt': 'hello from the pushed commit\n' });
    // The branch moves on before the build runs: the VM must check out the pushed commit, not the tip.
    git.commit('octo/app', { 'hello.txt': 'a later commit\n' });
    gh = await GithubStandin.start({ token: TOKEN });
    gh.addFile(REPO, sha, '.expo-worker.yml', PIPELINE);
    farm = await startFarm({
      controllerArgs: ['--github-secret', SECRET, '--github-token', TOKEN, '--github-api-url', gh.url, '--github-web-url', git.origin, '--public-url', PUBLIC],
    });
    const project = await farm.api('POST', pathOf(ROUTES.createProject, {}), { repo: REPO });
    expect(project.status, project.text).toBe(201);
    const secret = await farm.api('PUT', pathOf(ROUTES.putProjectSecret, { id: project.body.id, name: 'APPLE_API_KEY' }), { value: 'apple-key-value-42' });
    expect(secret.status, secret.text).toBe(200);

    // A branch name git allows that a shell would run: it must only ever be compared and quoted.
    const pwned = join(tmpdir(), `expo-e2e-pwned-${process.pid}`);
    const ref = `refs/heads/fix;$(touch\${IFS}${pwned})`;
    const payload = {
      ref,
      before: '0'.repeat(40),
      after: sha,
      created: true,
      deleted: false,
      forced: false,
      repository: { full_name: REPO, clone_url: cloneUrl },
    };
    expect(await deliver(farm, 'push', payload, '11111111-2222-4333-8444-555555555555')).toBe(202);

    const [build] = await until('the build of the pushed commit', async () => (await farm!.api('GET', pathOf(ROUTES.listBuilds, {}, { sha }))).body.builds as Record<string, any>[], (b) => b.length > 0, WAIT.logMs);
    const done = await farm.waitBuild(build!.id, FINAL);
    const log = await farm.log(build!.id);
    expect(done, log).toMatchObject({ status: 'succeeded', source: { repo: REPO, sha, ref, name: 'ios', event: 'push' } });
    expect(log).toContain(`--- checkout ${sha} (${ref})`);
    expect(existsSync(pwned)).toBe(false);
    expect(log).toContain(`HEAD=${sha}`);
    expect(log).toContain('hello from the pushed commit');
    expect(log).toContain('key=***');
    expect(log).not.toContain('apple-key-value-42');
    expect(log).not.toContain(TOKEN);

    // The clone presented the token in the Basic header, never in a URL.
    const clones = git.requests.filter((r) => r.url.includes('octo/app.git'));
    expect(clones.length).toBeGreaterThan(0);
    expect(clones.every((r) => r.authorized && !r.url.includes(TOKEN))).toBe(true);

    const reported = await until('pending then success on GitHub', () => gh!.statuses.filter((s) => s.sha === sha).map((s) => s.body), (s) => s.some((x) => x.state === 'success'));
    expect(reported[0]).toMatchObject({ state: 'pending', context: 'expo-worker/ios' });
    expect(reported.at(-1)).toMatchObject({ state: 'success', context: 'expo-worker/ios', target_url: `${PUBLIC}/builds/${build!.id}` });
    expect(gh.mismatches).toEqual([]);
    expect(farm.agents[0]!.lines.join('\n')).not.toContain(TOKEN);
  });
});
