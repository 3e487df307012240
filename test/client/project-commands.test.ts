/**
 * `expo-worker project …`, `rerun` and the GitHub side of `status`, against a real controller
 * listening on loopback (real HTTP, real SQLite): a secret's value goes in on stdin or from the
 * environment and never shows in any output, and bad input is a usage error naming it.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { statusMain } from '../../src/client/commands.ts';
import { projectMain, rerunMain } from '../../src/client/project-commands.ts';
import type { BuildSource } from '../../src/protocol/schemas.ts';
import { ADMIN_KEY, type TestController } from '../controller/support.ts';
import { captured, useListeningController, type Captured } from './in-process.ts';

const farm = useListeningController();
let c: TestController;
let url: string;
let home: string;
beforeEach(() => {
  ({ c, url, home } = farm);
});

const io = (stdin?: string, env: NodeJS.ProcessEnv = {}): Captured =>
  captured({ env: { EXPO_WORKER_URL: url, EXPO_WORKER_KEY: ADMIN_KEY, ...env }, home, ...(stdin === undefined ? {} : { stdin }) });

const SHA = '0123456789abcdef0123456789abcdef01234567';
const source = (projectId: string, over: Partial<BuildSource> = {}): BuildSource => ({
  projectId,
  repo: 'Octo/App',
  name: 'ios',
  event: 'push',
  ref: 'refs/heads/main',
  sha: SHA,
  prNumber: null,
  deliveryId: null,
  rerunOf: null,
  cloneUrl: 'https://github.com/Octo/App.git',
  checkout: { submodules: false, lfs: false },
  ...over,
});

describe('expo-worker project', () => {
  it('adds, lists and removes projects, by id or by repository in any case', async () => {
    const add = io();
    expect(await projectMain(['add', 'Octo/App', '--pipeline', 'ci/expo.yml', '--no-supersede'], add), add.err()).toBe(0);
    const id = add.out().trim();
    expect(id).toMatch(/^[a-z2-7]{16}$/);
    expect(add.err()).toContain('registered Octo/App (pipeline ci/expo.yml, no supersession)');
    expect(await c.store.getProject(id)).toMatchObject({ repo: 'Octo/App', pipelinePath: 'ci/expo.yml', supersede: false });
    const second = io();
    expect(await projectMain(['add', 'alpha/beta', '--json'], second)).toBe(0);
    expect(JSON.parse(second.out())).toMatchObject({ repo: 'alpha/beta', pipelinePath: '.expo-worker.yml', supersede: true });

    const dup = io();
    expect(await projectMain(['add', 'octo/APP'], dup)).toBe(65);
    expect(dup.err()).toContain('PROJECT_EXISTS');

    const list = io();
    expect(await projectMain(['list'], list)).toBe(0);
    expect(list.out()).toMatch(/PROJECT\s+REPO\s+PIPELINE\s+SUPERSEDE\s+SECRETS/);
    expect(list.out()).toMatch(new RegExp(`${id}\\s+Octo/App\\s+ci/expo.yml\\s+no\\s+-`));

    const rm = io();
    expect(await projectMain(['remove', 'OCTO/app'], rm)).toBe(0);
    expect(rm.out()).toBe(`project Octo/App (${id}) removed\n`);
    const gone = io();
    expect(await projectMain(['remove', id], gone)).toBe(65);
    expect(gone.err()).toContain(`project '${id}' not found`);
    const unknownRepo = io();
    expect(await projectMain(['remove', 'octo/app'], unknownRepo)).toBe(64);
    expect(unknownRepo.err()).toContain('no project for octo/app');
  });

  it('sets a secret from stdin or the environment, never printing it, and removes it', async () => {
    const id = (await c.projects.create({ repo: 'octo/app' })).id;
    const value = 'v3ry-s3cret-from-stdin';
    const set = io(`${value}\n`);
    expect(await projectMain(['secret', 'set', 'octo/app', 'APPLE_API_KEY'], set), set.err()).toBe(0);
    expect(set.out()).toBe('secret APPLE_API_KEY of octo/app set\n');
    expect(await c.projects.secretValues(id, ['APPLE_API_KEY'])).toEqual({ values: { APPLE_API_KEY: value }, missing: [] });

    const fromEnv = io(undefined, { MY_TOKEN: 'token-from-the-env' });
    expect(await projectMain(['secret', 'set', id, 'EXPO_TOKEN', '--from-env', 'MY_TOKEN'], fromEnv), fromEnv.err()).toBe(0);
    expect((await c.projects.secretValues(id, ['EXPO_TOKEN'])).values).toEqual({ EXPO_TOKEN: 'token-from-the-env' });

    const list = io();
    await projectMain(['list', '--json'], list);
    expect(JSON.parse(list.out()).projects[0].secretNames).toEqual(['APPLE_API_KEY', 'EXPO_TOKEN']);
    for (const t of [set, fromEnv, list]) expect(t.out() + t.err()).not.toMatch(/v3ry-s3cret|token-from-the-env/);

    const rm = io();
    expect(await projectMain(['secret', 'rm', 'octo/app', 'EXPO_TOKEN'], rm)).toBe(0);
    expect(rm.out()).toBe('secret EXPO_TOKEN of octo/app deleted\n');
    const again = io();
    expect(await projectMain(['secret', 'rm', 'octo/app', 'EXPO_TOKEN'], again)).toBe(65);
    expect(again.err()).toContain('secret EXPO_TOKEN of project');
  });

  it.each([
    [['add', 'not-a-repo'], "'not-a-repo' is not a GitHub repository"],
    [['add', 'octo/app;rm'], 'is not a GitHub repository'],
    [['add', 'octo/app', '--pipeline', '../up.yml'], '--pipeline'],
    [['add'], 'missing OWNER/NAME'],
    [['frobnicate'], "unknown subcommand 'frobnicate'"],
    [[], 'missing subcommand'],
    [['secret', 'set', 'octo/app', 'lower_case'], "'lower_case' is not a secret name"],
    [['secret', 'set', 'octo/app', 'TOKEN', 'the-value-on-argv'], 'never from the command line'],
    [['secret', 'set', 'octo/app', 'TOKEN', '--from-env', 'UNSET_VAR'], 'no variable UNSET_VAR'],
    [['secret', 'get', 'octo/app', 'TOKEN'], "unknown subcommand 'secret get'"],
    [['remove', 'NOT_AN_ID'], 'neither a project id'],
  ])('refuses %j with a usage error (64) naming the problem', async (argv, said) => {
    await c.projects.create({ repo: 'octo/app' });
    const t = io('');
    expect(await projectMain(argv, t)).toBe(64);
    expect(t.err()).toContain(said);
    expect(t.err()).toContain('Usage: expo-worker project');
    expect(t.err()).not.toContain('the-value-on-argv');
  });

  it('refuses an empty value and a value too short to mask, showing neither', async () => {
    await c.projects.create({ repo: 'octo/app' });
    const empty = io('\n');
    expect(await projectMain(['secret', 'set', 'octo/app', 'TOKEN'], empty)).toBe(64);
    expect(empty.err()).toContain('no value on standard input');
    const short = io('xyz\n');
    expect(await projectMain(['secret', 'set', 'octo/app', 'TOKEN'], short)).toBe(65);
    expect(short.err()).toContain('at least 4 characters');
    expect(short.err()).not.toContain('xyz');
  });

  it('prints its help', async () => {
    const t = io();
    expect(await projectMain(['--help'], t)).toBe(0);
    expect(t.out()).toContain('project secret set <ID|OWNER/NAME> NAME [--from-env VAR]');
  });
});

describe('expo-worker rerun', () => {
  it('queues a new build of a finished one and prints its id; refuses one not over yet', async () => {
    const b = await c.submit({ labels: ['nobody'] });
    const early = io();
    expect(await rerunMain([b.id], early)).toBe(65);
    expect(early.err()).toContain('BUILD_NOT_RERUNNABLE');
    await c.service.cancel(b.id);
    const t = io();
    expect(await rerunMain([b.id], t), t.err()).toBe(0);
    const id = t.out().trim();
    expect(id).not.toBe(b.id);
    expect(await c.get(id)).toMatchObject({ status: 'queued', labels: ['nobody'] });
    expect(t.err()).toContain(`a rerun of ${b.id}`);
    const bad = io();
    expect(await rerunMain(['nope'], bad)).toBe(64);
    const help = io();
    expect(await rerunMain(['--help'], help)).toBe(0);
    expect(help.out()).toContain('Usage: expo-worker rerun <build-id>');
  });
});

describe('expo-worker status with GitHub builds', () => {
  it('shows repo@ref and the short commit, and filters by --repo, --ref (a branch name) and --sha', async () => {
    const p = (await c.projects.create({ repo: 'Octo/App' })).id;
    const main = await c.service.submit({ steps: [{ name: 's', run: 'true' }], labels: ['nobody'] }, source(p));
    const pr = await c.service.submit({ steps: [{ name: 's', run: 'true' }], labels: ['nobody'] }, source(p, { event: 'pull_request', ref: 'refs/pull/7/head', prNumber: 7, sha: 'f'.repeat(40) }));
    const api = await c.submit({ labels: ['nobody'] });
    const all = io();
    expect(await statusMain([], all)).toBe(0);
    expect(all.out()).toMatch(/REASON\s+SOURCE/);
    expect(all.out()).toMatch(new RegExp(`${main.id}\\s.*Octo/App@main 0123456`));
    expect(all.out()).toMatch(new RegExp(`${pr.id}\\s.*Octo/App#7 fffffff`));
    expect(all.out()).toMatch(new RegExp(`${api.id}\\s.*\\s-\\n`));
    const byRef = io();
    expect(await statusMain(['--repo', 'octo/app', '--ref', 'main'], byRef)).toBe(0);
    expect(byRef.out()).toContain(main.id);
    expect(byRef.out()).not.toContain(pr.id);
    expect(byRef.out()).not.toContain(api.id);
    const bySha = io();
    expect(await statusMain(['--sha', SHA.toUpperCase(), '--json'], bySha)).toBe(0);
    expect(JSON.parse(bySha.out()).builds.map((b: { id: string }) => b.id)).toEqual([main.id]);
    const none = io();
    expect(await statusMain(['--repo', 'someone/else'], none)).toBe(0);
    expect(none.out()).toContain('builds: none match');
    const bad = io();
    expect(await statusMain(['--sha', 'xyz'], bad)).toBe(64);
    expect(bad.err()).toContain("--sha: 'xyz' is not a commit id");
  });
});

describe('expo-worker project deliveries', () => {
  it('lists what became of each delivery, newest first, and refuses a bad --limit', async () => {
    const d = (id: string, receivedAt: number, over: Record<string, unknown>) => ({
      id,
      event: 'push',
      action: null,
      repository: 'octo/app',
      receivedAt,
      outcome: 'ignored' as const,
      reason: 'no project for octo/app',
      work: null,
      builds: [],
      ...over,
    });
    await c.store.recordDelivery(d('00000000-0000-4000-8000-000000000001', 1_000, {}));
    await c.store.recordDelivery(d('00000000-0000-4000-8000-000000000002', 2_000, { event: 'pull_request', action: 'opened', outcome: 'built', reason: 'ios from 0123456789ab', builds: ['abcdefghijklmnop'] }));
    const out = io();
    expect(await projectMain(['deliveries'], out)).toBe(0);
    const lines = out.out().trim().split('\n');
    expect(lines[0]).toMatch(/RECEIVED\s+EVENT\s+REPO\s+OUTCOME\s+BUILDS\s+REASON/);
    expect(lines[1]).toMatch(/pull_request\.opened\s+octo\/app\s+built\s+abcdefghijklmnop\s+ios from 0123456789ab/);
    expect(lines[2]).toMatch(/push\s+octo\/app\s+ignored\s+-\s+no project for octo\/app/);
    const one = io();
    expect(await projectMain(['deliveries', '--limit', '1', '--json'], one)).toBe(0);
    expect(JSON.parse(one.out()).deliveries.map((x: { id: string }) => x.id)).toEqual(['00000000-0000-4000-8000-000000000002']);
    const bad = io();
    expect(await projectMain(['deliveries', '--limit', '0'], bad)).toBe(64);
    expect(bad.err()).toContain("--limit: '0' is not a number from 1 to 1000");
  });
});
