/**
 * Deliveries that become builds, on a real app and a real SQLite database, with GitHub's API
 * played by the stand-in (a real HTTP server whose every route and answer is checked against
 * GitHub's OpenAPI description): the pipeline file read at the pushed commit, builds made with
 * their source and the project's secrets, statuses reported, supersession, reruns, and every
 * way a delivery builds nothing — each with its reason on the record and, where GitHub should
 * hear of it, on the commit.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createGithubApi } from '../../src/github/client.ts';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { GithubStandin } from '../support/github-standin.ts';
import { example, sendSigned, until as waitFor } from '../support/github-deliveries.ts';
import { startTestController, type TestController } from './support.ts';

const SECRET = 'webhook-test-secret-0123456789';
const TOKEN = 'ghp_standin_token_0123456789abcdef';
const REPO = 'octo/app';
const WEB = 'https://github.example';
const CLONE = `${WEB}/${REPO}.git`;
const SHA_A = 'a'.repeat(40);
const SHA_B = 'b'.repeat(40);
/** Generous: the work after a 202 is a few local HTTP calls and a worker thread, on a busy machine. */
const WAIT_MS = 30_000;

const PIPELINE = `builds:
  ios:
    labels: [macos]
    secrets: [APPLE_API_KEY]
    steps:
      - {name: build, run: echo building}
  android:
    steps:
      - {name: build, run: echo android}
    on: {push: {branches: [main]}}
  release:
    steps:
      - {name: ship, run: echo ship}
    on: {tag: {}}
`;

let c: TestController | undefined;
let gh: GithubStandin | undefined;
afterEach(async () => {
  await c?.close();
  await gh?.stop();
  c = undefined;
  gh = undefined;
});

let deliveries = 0;
const nextDelivery = (): string => `00000000-0000-4000-8000-${String(++deliveries).padStart(12, '0')}`;

const ZERO = '0'.repeat(40);

function pushPayload(o: { ref?: string; sha?: string; before?: string; repo?: string; cloneUrl?: string } = {}): Record<string, unknown> {
  const p = example('push', (e) => e.ref === 'refs/heads/master' && e.deleted === false);
  p.ref = o.ref ?? 'refs/heads/main';
  p.after = o.sha ?? SHA_A;
  p.before = o.before ?? ZERO;
  const repo = p.repository as Record<string, unknown>;
  repo.full_name = o.repo ?? REPO;
  repo.clone_url = o.cloneUrl ?? CLONE;
  return p;
}

function prPayload(o: { sha?: string; number?: number; base?: string; action?: string } = {}): Record<string, unknown> {
  const p = example('pull_request', (e) => e.action === 'opened');
  p.action = o.action ?? 'opened';
  p.number = o.number ?? 7;
  const pr = p.pull_request as { head: { sha: string; repo: { full_name: string } }; base: { ref: string } };
  pr.head.sha = o.sha ?? SHA_A;
  pr.head.repo.full_name = REPO;
  pr.base.ref = o.base ?? 'main';
  const repo = p.repository as Record<string, unknown>;
  repo.full_name = REPO;
  repo.clone_url = CLONE;
  return p;
}

async function deliver(ctl: TestController, event: string, payload: Record<string, unknown>, id = nextDelivery()) {
  const res = await sendSigned(ctl.app, SECRET, event, payload, id);
  expect(res.statusCode, res.body).toBe(202);
  await ctl.webhooks.idle();
  return { id, answer: res.json() as Record<string, unknown> };
}

async function start(o: { tuning?: { deliveryRetryBaseMs?: number; deliveryMaxPendingMs?: number }; dir?: string } = {}): Promise<TestController> {
  gh ??= await GithubStandin.start({ token: TOKEN });
  c = await startTestController({
    realClock: true,
    githubSecret: SECRET,
    github: createGithubApi({ githubApiUrl: gh.url, githubToken: TOKEN, githubAppId: null, githubPrivateKey: null }, { retries: 0 }),
    githubWebUrl: WEB,
    publicUrl: 'https://builds.example.com',
    githubTuning: { reportSweepMs: 200, ...o.tuning },
    dir: o.dir,
  });
  return c;
}

async function addProject(ctl: TestController, body: Record<string, unknown> = { repo: REPO }): Promise<string> {
  const res = await ctl.post(pathOf(ROUTES.createProject, {}), ctl.admin, body);
  expect(res.statusCode, JSON.stringify(res.json())).toBe(201);
  return res.json().id as string;
}

async function setSecret(ctl: TestController, projectId: string, name: string, value: string): Promise<void> {
  const res = await ctl.app.inject({ method: 'PUT', url: pathOf(ROUTES.putProjectSecret, { id: projectId, name }), headers: ctl.admin, payload: { value } });
  expect(res.statusCode, res.body).toBe(200);
}

const delivery = async (ctl: TestController, id: string) => (await ctl.store.listDeliveries(1000)).find((d) => d.id === id)!;

async function builds(ctl: TestController, query: Record<string, string> = {}): Promise<Record<string, any>[]> {
  const res = await ctl.app.inject({ method: 'GET', url: pathOf(ROUTES.listBuilds, {}, query), headers: ctl.admin });
  expect(res.statusCode, res.body).toBe(200);
  return (res.json() as { builds: Record<string, any>[] }).builds;
}

/** Waits until `cond` holds (the reporter works after the answers), failing with what was seen. */
const until = <T>(what: string, read: () => T | Promise<T>, cond: (v: T) => boolean): Promise<T> => waitFor(what, read, cond, WAIT_MS);

const statusesOf = (sha: string, context?: string) => gh!.statuses.filter((s) => s.sha === sha && (context === undefined || s.body.context === context)).map((s) => s.body);

describe('a push to a registered repository', () => {
  it('builds what its pipeline file selects, with the source, the project secrets, and a pending status per build', async () => {
    const ctl = await start();
    const projectId = await addProject(ctl);
    await setSecret(ctl, projectId, 'APPLE_API_KEY', 'apple-secret-value');
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', PIPELINE);
    const { id } = await deliver(ctl, 'push', pushPayload());

    const d = await delivery(ctl, id);
    expect(d.outcome, d.reason).toBe('built');
    expect(d.builds).toHaveLength(2);
    const made = await builds(ctl, { sha: SHA_A });
    expect(made.map((b) => b.source.name).sort()).toEqual(['android', 'ios']);
    const ios = made.find((b) => b.source.name === 'ios')!;
    expect(ios.source).toEqual({
      projectId,
      repo: REPO,
      name: 'ios',
      event: 'push',
      ref: 'refs/heads/main',
      sha: SHA_A,
      prNumber: null,
      deliveryId: id,
      rerunOf: null,
      cloneUrl: CLONE,
      checkout: { submodules: false, lfs: false },
    });
    expect(ios.labels).toEqual(['macos']);
    expect(ios.secretEnvNames).toEqual(['APPLE_API_KEY']);
    // The worker gets the secret's value (and only the worker), and where to check out.
    const w = await ctl.enrol('mac-1', ['macos']);
    const claim = await ctl.poll('mac-1', w.auth);
    const assigned = claim!.build as unknown as Record<string, any>;
    const iosClaim = assigned.id === ios.id ? assigned : (await ctl.poll('mac-1', w.auth, { slotsFree: 1 }))!.build as unknown as Record<string, any>;
    expect(iosClaim.secretEnv).toEqual({ APPLE_API_KEY: 'apple-secret-value' });
    expect(iosClaim.checkout).toEqual({ url: CLONE, sha: SHA_A, ref: 'refs/heads/main', submodules: false, lfs: false });

    const pending = await until('two pending statuses', () => statusesOf(SHA_A), (s) => s.length >= 2);
    expect(pending.map((s) => s.context).sort()).toEqual(['expo-worker/android', 'expo-worker/ios']);
    expect(pending.every((s) => s.state === 'pending')).toBe(true);
    expect(pending.find((s) => s.context === 'expo-worker/ios')!.target_url).toBe(`https://builds.example.com/builds/${ios.id}`);
    expect(gh!.mismatches).toEqual([]);
  });

  it('builds a tag push with the builds whose on: names tags, and a pull request with the pull ref and number', async () => {
    const ctl = await start();
    const projectId = await addProject(ctl);
    await setSecret(ctl, projectId, 'APPLE_API_KEY', 'apple-secret-value');
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', PIPELINE);
    const tag = await deliver(ctl, 'push', pushPayload({ ref: 'refs/tags/v1.0.0' }));
    expect((await builds(ctl, { ref: 'refs/tags/v1.0.0' })).map((b) => b.source.name)).toEqual(['release']);
    expect((await delivery(ctl, tag.id)).outcome).toBe('built');

    gh!.addFile(REPO, SHA_B, '.expo-worker.yml', PIPELINE);
    await deliver(ctl, 'pull_request', prPayload({ sha: SHA_B, number: 42 }));
    const pr = await builds(ctl, { ref: 'refs/pull/42/head' });
    expect(pr.map((b) => [b.source.name, b.source.event, b.source.prNumber, b.source.sha])).toEqual([['ios', 'pull_request', 42, SHA_B]]);
  });

  it('makes no second build for a redelivery', async () => {
    const ctl = await start();
    const projectId = await addProject(ctl);
    await setSecret(ctl, projectId, 'APPLE_API_KEY', 'apple-secret-value');
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', PIPELINE);
    const first = await deliver(ctl, 'push', pushPayload());
    const again = await deliver(ctl, 'push', pushPayload(), first.id);
    expect(again.answer).toEqual({ accepted: true, delivery: first.id, duplicate: true });
    expect(await builds(ctl, { sha: SHA_A })).toHaveLength(2);
  });

  it('supersedes the same branch’s unfinished builds of the commit a push replaced, with the newer sha as the reason', async () => {
    const ctl = await start();
    await addProject(ctl);
    const pipeline = 'builds:\n  ios:\n    steps:\n      - {name: build, run: echo hi}\n';
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', pipeline);
    gh!.addFile(REPO, SHA_B, '.expo-worker.yml', pipeline);
    await deliver(ctl, 'push', pushPayload({ sha: SHA_A }));
    // Another branch's build is not touched.
    await deliver(ctl, 'push', pushPayload({ sha: SHA_A, ref: 'refs/heads/other' }));
    await deliver(ctl, 'push', pushPayload({ sha: SHA_B, before: SHA_A }));
    const [old] = await builds(ctl, { sha: SHA_A, ref: 'refs/heads/main' });
    expect(old).toMatchObject({ status: 'cancelled', message: expect.stringContaining(`superseded by ${SHA_B}`) });
    const [other] = await builds(ctl, { ref: 'refs/heads/other' });
    expect(other!.status).toBe('queued');
    const [fresh] = await builds(ctl, { sha: SHA_B });
    expect(fresh!.status).toBe('queued');
    const ended = await until('the superseded build reported', () => statusesOf(SHA_A).filter((s) => s.state !== 'pending'), (s) => s.length >= 1);
    expect(ended[0]).toMatchObject({ state: 'error', context: 'expo-worker/ios', description: expect.stringContaining('superseded') });
  });

  it('leaves older builds alone on a project that turned supersession off', async () => {
    const ctl = await start();
    await addProject(ctl, { repo: REPO, supersede: false });
    const pipeline = 'builds:\n  ios:\n    steps:\n      - {name: build, run: echo hi}\n';
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', pipeline);
    gh!.addFile(REPO, SHA_B, '.expo-worker.yml', pipeline);
    await deliver(ctl, 'push', pushPayload({ sha: SHA_A }));
    await deliver(ctl, 'push', pushPayload({ sha: SHA_B, before: SHA_A }));
    expect((await builds(ctl, { sha: SHA_A }))[0]!.status).toBe('queued');
  });

  it('an older push delivered late cancels nothing of the newer commit', async () => {
    const ctl = await start();
    await addProject(ctl);
    const pipeline = 'builds:\n  ios:\n    steps:\n      - {name: build, run: echo hi}\n';
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', pipeline);
    gh!.addFile(REPO, SHA_B, '.expo-worker.yml', pipeline);
    // GitHub does not promise order: the push of B (from A) arrives before the push of A.
    await deliver(ctl, 'push', pushPayload({ sha: SHA_B, before: SHA_A }));
    await deliver(ctl, 'push', pushPayload({ sha: SHA_A, before: 'c'.repeat(40) }));
    expect((await builds(ctl, { sha: SHA_B }))[0]!.status).toBe('queued');
    expect((await builds(ctl, { sha: SHA_A }))[0]!.status).toBe('queued');
  });
});

describe('a delivery that builds nothing says why', () => {
  it('no project: ignored, nothing asked of GitHub', async () => {
    const ctl = await start();
    const { id } = await deliver(ctl, 'push', pushPayload({ repo: 'someone/else' }));
    expect(await delivery(ctl, id)).toMatchObject({ outcome: 'ignored', reason: 'no project for someone/else', builds: [] });
    expect(gh!.requests).toEqual([]);
  });

  it('no pipeline file at the commit: ignored, and an error status on the commit says so', async () => {
    const ctl = await start();
    await addProject(ctl);
    const { id } = await deliver(ctl, 'push', pushPayload());
    expect(await delivery(ctl, id)).toMatchObject({ outcome: 'ignored', reason: `no .expo-worker.yml at ${SHA_A.slice(0, 12)}: nothing to build` });
    expect(statusesOf(SHA_A)).toEqual([expect.objectContaining({ state: 'error', context: 'expo-worker', description: expect.stringContaining('no .expo-worker.yml') })]);
  });

  it('reads the pipeline from the project’s own path', async () => {
    const ctl = await start();
    await addProject(ctl, { repo: REPO, pipelinePath: 'ci/expo.yml' });
    gh!.addFile(REPO, SHA_A, 'ci/expo.yml', 'builds:\n  ios:\n    steps:\n      - {name: b, run: echo}\n');
    const { id } = await deliver(ctl, 'push', pushPayload());
    expect((await delivery(ctl, id)).outcome).toBe('built');
  });

  it('malformed YAML, a file of 1,000 builds, a 10 MB file: failed, with the line of the problem on the record and the commit', async () => {
    const ctl = await start();
    await addProject(ctl);
    const cases: [string, string, RegExp][] = [
      ['c'.repeat(40), 'builds:\n  ios:\n    steps: [\n', /line \d+/],
      ['d'.repeat(40), `builds:\n${Array.from({ length: 1000 }, (_, i) => `  b${i}:\n    steps:\n      - {name: a, run: b}\n`).join('')}`, /1000 builds; at most 50 are allowed/],
      ['e'.repeat(40), `# ${'x'.repeat(10 * 1024 * 1024)}\n`, /larger than 256 KiB/],
    ];
    for (const [sha, text, why] of cases) {
      gh!.addFile(REPO, sha, '.expo-worker.yml', text);
      const { id } = await deliver(ctl, 'push', pushPayload({ sha }));
      const d = await delivery(ctl, id);
      expect(d.outcome, d.reason).toBe('failed');
      expect(d.reason).toMatch(why);
      expect(statusesOf(sha), sha).toEqual([expect.objectContaining({ state: 'error', context: 'expo-worker', description: expect.stringMatching(why) })]);
    }
    expect(await builds(ctl)).toEqual([]);
  });

  it('a secret the project does not have: that build fails on the commit, the others are made', async () => {
    const ctl = await start();
    await addProject(ctl);
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', PIPELINE);
    const { id } = await deliver(ctl, 'push', pushPayload());
    const d = await delivery(ctl, id);
    expect(d.outcome).toBe('built');
    expect(d.reason).toMatch(/ios: the project has no secret APPLE_API_KEY/);
    expect((await builds(ctl, { sha: SHA_A })).map((b) => b.source.name)).toEqual(['android']);
    expect(statusesOf(SHA_A, 'expo-worker/ios')).toEqual([expect.objectContaining({ state: 'error', description: expect.stringContaining('APPLE_API_KEY') })]);
  });

  it('a pull request from a fork, a closed pull request, a deleted branch: ignored with the reason', async () => {
    const ctl = await start();
    await addProject(ctl);
    const fork = prPayload();
    (fork.pull_request as { head: { repo: { full_name: string } } }).head.repo.full_name = 'mallory/app';
    expect((await delivery(ctl, (await deliver(ctl, 'pull_request', fork)).id)).reason).toMatch(/fork mallory\/app/);
    expect((await delivery(ctl, (await deliver(ctl, 'pull_request', prPayload({ action: 'closed' }))).id)).reason).toMatch(/'closed' builds nothing/);
    const deleted = pushPayload();
    deleted.deleted = true;
    expect((await delivery(ctl, (await deliver(ctl, 'push', deleted)).id)).reason).toMatch(/was deleted/);
    expect(await builds(ctl)).toEqual([]);
  });

  it('a clone URL that is not the repository’s own on the configured GitHub: failed (the checkout token would go there)', async () => {
    const ctl = await start();
    await addProject(ctl);
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', PIPELINE);
    const { id } = await deliver(ctl, 'push', pushPayload({ cloneUrl: 'https://evil.example/octo/app.git' }));
    expect(await delivery(ctl, id)).toMatchObject({ outcome: 'failed', reason: expect.stringContaining(`is not ${CLONE}`) });
    // Nor another repository on the right host: the build would get this project's secrets.
    const other = await deliver(ctl, 'push', pushPayload({ cloneUrl: `${WEB}/mallory/app.git` }));
    expect(await delivery(ctl, other.id)).toMatchObject({ outcome: 'failed', reason: expect.stringContaining(`is not ${CLONE}`) });
    expect(await builds(ctl)).toEqual([]);
  });
});

describe('when GitHub cannot be reached', () => {
  it('keeps the delivery pending and builds once GitHub answers again', async () => {
    const ctl = await start({ tuning: { deliveryRetryBaseMs: 100 } });
    await addProject(ctl);
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', 'builds:\n  ios:\n    steps:\n      - {name: b, run: echo}\n');
    gh!.failNext(3, 502);
    const { id } = await deliver(ctl, 'push', pushPayload());
    const d = await until('the delivery built', () => delivery(ctl, id), (x) => x.outcome !== 'pending');
    expect(d.outcome, d.reason).toBe('built');
    expect(await builds(ctl, { sha: SHA_A })).toHaveLength(1);
  });

  it('settles it failed after the longest wait', async () => {
    const ctl = await start({ tuning: { deliveryRetryBaseMs: 50, deliveryMaxPendingMs: 300 } });
    await addProject(ctl);
    gh!.failNext(1000, 503);
    const { id } = await deliver(ctl, 'push', pushPayload());
    const d = await until('the delivery settled', () => delivery(ctl, id), (x) => x.outcome !== 'pending');
    expect(d).toMatchObject({ outcome: 'failed', reason: expect.stringMatching(/GitHub could not be reached/) });
  });

  it('picks a pending delivery up after a restart', async () => {
    let ctl = await start({ tuning: { deliveryRetryBaseMs: 60_000 } });
    const dir = ctl.dir;
    await addProject(ctl);
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', 'builds:\n  ios:\n    steps:\n      - {name: b, run: echo}\n');
    gh!.failNext(1, 503);
    const { id } = await deliver(ctl, 'push', pushPayload());
    expect((await delivery(ctl, id)).outcome).toBe('pending');
    await ctl.stop();
    c = undefined;
    ctl = await start({ dir });
    const d = await until('the delivery built after the restart', () => delivery(ctl, id), (x) => x.outcome !== 'pending');
    expect(d.outcome, d.reason).toBe('built');
  });
});

describe('deliveries that cannot be worked on', () => {
  it('one that fails for good (a secret that cannot be opened) is settled failed and holds up no other; a redelivery of it from GitHub tries again', async () => {
    const ctl = await start();
    const projectId = await addProject(ctl);
    await setSecret(ctl, projectId, 'APPLE_API_KEY', 'apple-secret-value');
    await addProject(ctl, { repo: 'octo/other' });
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', PIPELINE);
    gh!.addFile('octo/other', SHA_B, '.expo-worker.yml', 'builds:\n  ios:\n    steps:\n      - {name: b, run: echo}\n');
    const open = ctl.projects.secretValues.bind(ctl.projects);
    let broken = true;
    ctl.projects.secretValues = async (id, names) => {
      if (broken && id === projectId) throw new Error('the project secrets cannot be opened with this key');
      return open(id, names);
    };
    const poisoned = await deliver(ctl, 'push', pushPayload());
    const next = await deliver(ctl, 'push', pushPayload({ repo: 'octo/other', sha: SHA_B, cloneUrl: `${WEB}/octo/other.git` }));
    expect(await delivery(ctl, poisoned.id)).toMatchObject({ outcome: 'failed', reason: expect.stringContaining('cannot be opened') });
    expect((await delivery(ctl, next.id)).outcome).toBe('built');
    broken = false;
    const again = await deliver(ctl, 'push', pushPayload(), poisoned.id);
    expect(again.answer).toEqual({ accepted: true, delivery: poisoned.id });
    expect((await delivery(ctl, poisoned.id)).outcome).toBe('built');
    // A redelivery of one that built is a duplicate, as before.
    expect((await deliver(ctl, 'push', pushPayload(), poisoned.id)).answer).toMatchObject({ duplicate: true });
  });

  it('a controller stopped between queueing a delivery’s builds and recording it queues none of them twice', async () => {
    const ctl = await start();
    const projectId = await addProject(ctl);
    await setSecret(ctl, projectId, 'APPLE_API_KEY', 'apple-secret-value');
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', PIPELINE);
    // Settling fails once, as a crash would leave it: the builds are made, the delivery still pending.
    const settle = ctl.store.settleDelivery.bind(ctl.store);
    let crash = true;
    ctl.store.settleDelivery = async (...args) => {
      if (crash) {
        crash = false;
        throw Object.assign(new Error('disk I/O error'), { code: 'ERR_SQLITE_ERROR', errcode: 10, errstr: 'disk I/O error' });
      }
      return settle(...args);
    };
    const dir = ctl.dir;
    const { id } = await deliver(ctl, 'push', pushPayload());
    expect(await builds(ctl, { sha: SHA_A })).toHaveLength(2);
    await ctl.stop();
    c = undefined;
    const again = await start({ dir });
    const d = await until('the delivery settled after the restart', () => delivery(again, id), (x) => x.outcome !== 'pending');
    expect(d.outcome, d.reason).toBe('built');
    expect(d.builds).toHaveLength(2);
    expect(await builds(again, { sha: SHA_A })).toHaveLength(2);
  });
});

describe('reruns', () => {
  it('check_run.rerequested makes a new build of the same commit; one that names no build of ours is ignored', async () => {
    const ctl = await start();
    await addProject(ctl);
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', 'builds:\n  ios:\n    steps:\n      - {name: b, run: echo}\n');
    await deliver(ctl, 'push', pushPayload());
    const [original] = await builds(ctl, { sha: SHA_A });
    // Only a final build is rerun.
    const cancel = await ctl.post(pathOf(ROUTES.cancelBuild, { id: original!.id }), ctl.admin, {});
    expect(cancel.statusCode).toBe(200);
    const run = example('check_run', (e) => e.action === 'rerequested');
    (run.check_run as Record<string, unknown>).external_id = original!.id;
    (run.check_run as Record<string, unknown>).head_sha = SHA_A;
    (run.repository as Record<string, unknown>).full_name = REPO;
    (run.repository as Record<string, unknown>).clone_url = CLONE;
    const { id } = await deliver(ctl, 'check_run', run);
    const d = await delivery(ctl, id);
    expect(d.outcome, d.reason).toBe('built');
    const again = await builds(ctl, { sha: SHA_A });
    expect(again).toHaveLength(2);
    expect(again.find((b) => b.id === d.builds[0])!.source).toMatchObject({ rerunOf: original!.id, sha: SHA_A, name: 'ios' });

    (run.check_run as Record<string, unknown>).external_id = 'zzzzzzzzzzzzzzzz';
    const other = await deliver(ctl, 'check_run', run);
    expect(await delivery(ctl, other.id)).toMatchObject({ outcome: 'ignored', reason: expect.stringContaining('zzzzzzzzzzzzzzzz') });
  });

  it('a check_run.rerequested for one repository never reruns another project’s build, nor an API build', async () => {
    const ctl = await start();
    await addProject(ctl);
    await addProject(ctl, { repo: 'octo/other' });
    gh!.addFile('octo/other', SHA_B, '.expo-worker.yml', 'builds:\n  ios:\n    steps:\n      - {name: b, run: echo}\n');
    await deliver(ctl, 'push', pushPayload({ repo: 'octo/other', sha: SHA_B, cloneUrl: `${WEB}/octo/other.git` }));
    const [victim] = await builds(ctl, { repo: 'octo/other' });
    await ctl.post(pathOf(ROUTES.cancelBuild, { id: victim!.id }), ctl.admin, {});
    const api = await ctl.submit();
    await ctl.post(pathOf(ROUTES.cancelBuild, { id: api.id }), ctl.admin, {});
    for (const [target, sha] of [[victim!.id, SHA_B], [api.id, SHA_A]] as const) {
      const run = example('check_run', (e) => e.action === 'rerequested');
      (run.check_run as Record<string, unknown>).external_id = target;
      (run.check_run as Record<string, unknown>).head_sha = sha;
      (run.repository as Record<string, unknown>).full_name = REPO;
      (run.repository as Record<string, unknown>).clone_url = CLONE;
      const { id } = await deliver(ctl, 'check_run', run);
      expect(await delivery(ctl, id)).toMatchObject({ outcome: 'ignored', reason: expect.stringContaining(`not a build of ${REPO}`) });
    }
    expect((await builds(ctl)).length).toBe(2);
  });
});

describe('replays', () => {
  it('a signed body sent again under a new delivery id builds nothing twice, and says why', async () => {
    const ctl = await start();
    await addProject(ctl);
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', 'builds:\n  ios:\n    steps:\n      - {name: b, run: echo}\n');
    await deliver(ctl, 'push', pushPayload());
    const replay = await deliver(ctl, 'push', pushPayload());
    expect(await delivery(ctl, replay.id)).toMatchObject({ outcome: 'ignored', reason: expect.stringMatching(/was built already .*rerun a build to build it again/) });
    expect(await builds(ctl, { sha: SHA_A })).toHaveLength(1);
  });

  it('a commit whose builds were cancelled (superseded) is built again when pushed again', async () => {
    const ctl = await start();
    await addProject(ctl);
    const pipeline = 'builds:\n  ios:\n    steps:\n      - {name: b, run: echo}\n';
    gh!.addFile(REPO, SHA_A, '.expo-worker.yml', pipeline);
    gh!.addFile(REPO, SHA_B, '.expo-worker.yml', pipeline);
    await deliver(ctl, 'push', pushPayload({ sha: SHA_A }));
    await deliver(ctl, 'push', pushPayload({ sha: SHA_B, before: SHA_A }));
    // A force-push back to A.
    const back = await deliver(ctl, 'push', pushPayload({ sha: SHA_A, before: SHA_B }));
    expect((await delivery(ctl, back.id)).outcome).toBe('built');
    expect((await builds(ctl, { sha: SHA_A })).map((b) => b.status).sort()).toEqual(['cancelled', 'queued']);
    expect((await builds(ctl, { sha: SHA_B }))[0]!.status).toBe('cancelled');
  });
});
