/**
 * The people's commands against a real controller listening on loopback (real HTTP, real
 * SQLite): status, submit (flags, file, --follow with progress and the build's exit code),
 * logs, cancel, where the URL and key come from, and the errors a person sees for a wrong URL,
 * a wrong key or an unknown build.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { artifactsMain, cancelMain, logsMain, statusMain, submitMain } from '../../src/client/commands.ts';
import { CLI } from '../support/controller-process.ts';
import { freePort } from '../support/sshd.ts';
import { ADMIN_KEY, type TestController } from '../controller/support.ts';
import { captured, useListeningController, type Captured } from './in-process.ts';

const farm = useListeningController();
let c: TestController;
let url: string;
let home: string;
beforeEach(() => {
  ({ c, url, home } = farm);
});

const io = (env: NodeJS.ProcessEnv = { EXPO_WORKER_URL: url, EXPO_WORKER_KEY: ADMIN_KEY }): Captured => captured({ env, home, followReconnectMs: 50 });

describe('expo-worker status', () => {
  it('shows workers and recent builds as a table, and as JSON', async () => {
    const w = await c.enrol('mac-mini-1', ['xcode-16']);
    await c.poll('mac-mini-1', w.auth, { slotsTotal: 2 });
    const b = await c.submit();
    const t = io();
    expect(await statusMain([], t)).toBe(0);
    expect(t.out()).toContain('controller: ok, 1 queued');
    expect(t.out()).toMatch(/WORKER\s+STATUS\s+SLOTS/);
    // Any of duration()'s forms: a busy machine may take a minute to get from the poll to here.
    expect(t.out()).toMatch(/mac-mini-1\s+idle\s+2\s+0\s+(\d+s|\d+m\d\ds|\d+h\d\dm) ago\s+xcode-16/);
    expect(t.out()).toMatch(new RegExp(`${b.id}\\s+queued\\s+-\\s+-\\s+0/1`));
    const j = io();
    expect(await statusMain(['--json', '--limit', '5'], j)).toBe(0);
    const parsed = JSON.parse(j.out());
    expect(parsed.workers[0]).toMatchObject({ id: 'mac-mini-1', status: 'idle' });
    expect(parsed.builds[0]).toMatchObject({ id: b.id, status: 'queued' });
    expect(parsed.health.queueStats.queued).toBe(1);
  });

  it('names the URL when nothing listens there, and says the key was refused on a 401', async () => {
    const port = await freePort();
    const wrongUrl = io({ EXPO_WORKER_URL: `http://127.0.0.1:${port}`, EXPO_WORKER_KEY: ADMIN_KEY });
    expect(await statusMain([], wrongUrl)).toBe(69);
    expect(wrongUrl.err()).toBe(`expo-worker status: cannot reach the controller at http://127.0.0.1:${port}: connection refused — is the controller running there, and is the URL right?\n`);
    const wrongKey = io({ EXPO_WORKER_URL: url, EXPO_WORKER_KEY: 'not-the-admin-key-000' });
    expect(await statusMain([], wrongKey)).toBe(77);
    expect(wrongKey.err()).toMatch(new RegExp(`^expo-worker status: the controller at ${url.replace(/[.]/g, '\\.')} refused the key \\(401 AUTH_INVALID: [^)]*\\): check --key, EXPO_WORKER_KEY or ~/\\.expo-worker/client\\.json\\n$`));
    expect(wrongKey.err()).not.toContain('not-the-admin-key');
    const workerKey = io({ EXPO_WORKER_URL: url, EXPO_WORKER_KEY: (await c.enrol('mac-2')).apiKey });
    expect(await statusMain([], workerKey)).toBe(77);
    expect(workerKey.err()).toContain('the key may not do this (403 AUTH_FORBIDDEN');
  });

  it('takes the URL and key from flags over the environment over ~/.expo-worker/client.json, and names what is missing', async () => {
    mkdirSync(join(home, '.expo-worker'));
    writeFileSync(join(home, '.expo-worker', 'client.json'), JSON.stringify({ url, key: ADMIN_KEY }));
    const fromFile = io({});
    expect(await statusMain([], fromFile), fromFile.err()).toBe(0);
    const envWins = io({ EXPO_WORKER_KEY: 'wrong-key-from-env-0000' });
    expect(await statusMain([], envWins)).toBe(77);
    const flagWins = io({ EXPO_WORKER_KEY: 'wrong-key-from-env-0000' });
    expect(await statusMain(['--key', ADMIN_KEY], flagWins), flagWins.err()).toBe(0);
    rmSync(join(home, '.expo-worker'), { recursive: true });
    const none = io({});
    expect(await statusMain([], none)).toBe(64);
    expect(none.err()).toContain('no controller URL: give --url, set EXPO_WORKER_URL, or put "url" in');
    expect(none.err()).toContain('no admin key: give --key');
    const bad = io({});
    expect(await statusMain(['--url', 'ftp://x', '--key', 'k'], bad)).toBe(64);
    expect(bad.err()).toContain('--url: must be an http(s) URL (got ftp:)');
  });
});

describe('expo-worker submit', () => {
  it('queues steps from flags with env, labels, timeout and attempts, and prints the id', async () => {
    const t = io();
    const code = await submitMain(['--step', 'install=npm ci', '--step', 'build=echo a=b', '--env', 'A=1', '--env', 'B=x=y', '--label', 'xcode-16', '--timeout', '600', '--max-attempts', '2'], t);
    expect(code, t.err()).toBe(0);
    const id = t.out().trim();
    expect(t.err()).toContain(`expo-worker logs ${id} --follow`);
    expect(await c.get(id)).toMatchObject({
      status: 'queued',
      steps: [{ name: 'install', run: 'npm ci' }, { name: 'build', run: 'echo a=b' }],
      envNames: ['A', 'B'],
      labels: ['xcode-16'],
      timeoutS: 600,
      maxAttempts: 2,
    });
  });

  it('reads a build file, lets flags override it, and refuses bad usage naming the flag', async () => {
    const file = join(home, 'build.json');
    writeFileSync(file, JSON.stringify({ steps: [{ name: 'a', run: 'true' }], timeoutS: 100, labels: ['x'] }));
    const t = io();
    expect(await submitMain(['--file', file, '--timeout', '200', '--json'], t), t.err()).toBe(0);
    expect(JSON.parse(t.out())).toMatchObject({ steps: [{ name: 'a', run: 'true' }], timeoutS: 200, labels: ['x'] });
    for (const [args, message] of [
      [['--file', file, '--step', 'b=true'], 'give the steps with --step or in --file, not both'],
      [['--step', 'no-equals'], '--step: expected NAME=VALUE'],
      [['--step', 'a=b', '--max-attempts', '9'], '--max-attempts: must be an integer from 1 to 5 (got 9)'],
      [['--step', 'a=b', '--timeout', 'soon'], '--timeout: must be an integer'],
      [['--file', join(home, 'missing.json')], '--file: cannot read'],
      [['--step', 'a=b', '--bogus'], "Unknown option '--bogus'"],
    ] as const) {
      const u = io();
      expect(await submitMain([...args], u), String(args)).toBe(64);
      expect(u.err()).toContain(message);
    }
    const invalid = io();
    expect(await submitMain(['--step', 'a=b', '--env', '1BAD=x'], invalid)).toBe(65);
    expect(invalid.err()).toContain('400 API_BAD_REQUEST');
  });

  it('--follow streams the log, shows progress, exits 1 for a failed build and prints the failing step’s exit code', async () => {
    const w = await c.enrol('mac-1');
    const t = io();
    const following = submitMain(['--step', 'build=make', '--follow'], t);
    // Play the worker: claim, run, log, progress, fail with exit code 7.
    let claim = null;
    for (const deadline = Date.now() + 30_000; !claim && Date.now() < deadline; ) {
      claim = await c.poll('mac-1', w.auth);
      if (!claim) await new Promise((r) => setTimeout(r, 20));
    }
    expect(claim).not.toBeNull();
    const id = claim!.build.id;
    const post = async (path: string, body: unknown) => expect((await c.post(path, w.auth, body)).statusCode).toBe(200);
    await post(`/api/v1/builds/${id}/phase`, { lease: claim!.lease, phase: 'running' });
    await post(`/api/v1/builds/${id}/logs`, { lease: claim!.lease, offset: 0, data: 'compiling…\n' });
    await post(`/api/v1/builds/${id}/heartbeat`, { progress: 40 });
    // Until the follower has shown the progress (the stream's status event; a busy machine, later).
    for (const deadline = Date.now() + 30_000; !t.err().includes('running 40%') && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    await post(`/api/v1/builds/${id}/logs`, { lease: claim!.lease, offset: Buffer.byteLength('compiling…\n'), data: 'error: boom\n' });
    await post(`/api/v1/builds/${id}/complete`, { lease: claim!.lease, status: 'failed', exitCode: 7, message: "step 'build' exited with 7" });
    expect(await following).toBe(1);
    expect(t.out()).toBe(`${id}\ncompiling…\nerror: boom\n`);
    expect(t.err()).toContain(`[expo-worker] build ${id}: running 40% on mac-1`);
    expect(t.err()).toContain(`[expo-worker] build ${id} failed: build_failed — step 'build' exited with 7 (step exit code 7)`);
  });
});

describe('expo-worker logs and cancel', () => {
  it('prints a log, follows a finished build to its exit code, cancels a queued build, and names an unknown build', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit();
    const claim = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/logs`, w.auth, { lease: claim.lease, offset: 0, data: 'hello\n' });
    await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: claim.lease, status: 'succeeded' });
    const l = io();
    expect(await logsMain([b.id], l)).toBe(0);
    expect(l.out()).toBe('hello\n');
    const f = io();
    expect(await logsMain([b.id, '--follow'], f)).toBe(0);
    expect(f.out()).toBe('hello\n');

    const q = await c.submit();
    const x = io();
    expect(await cancelMain([q.id], x)).toBe(0);
    expect(x.out()).toBe(`build ${q.id} cancelled\n`);
    const fc = io();
    expect(await logsMain([q.id, '--follow'], fc)).toBe(2);

    const unknown = io();
    expect(await logsMain(['aaaaaaaaaaaaaaaa'], unknown)).toBe(65);
    expect(unknown.err()).toBe(`expo-worker logs: build 'aaaaaaaaaaaaaaaa' not found at ${url}\n`);
    const unknownCancel = io();
    expect(await cancelMain(['aaaaaaaaaaaaaaaa'], unknownCancel)).toBe(65);
    expect(unknownCancel.err()).toContain("build 'aaaaaaaaaaaaaaaa' not found");
    const notAnId = io();
    expect(await cancelMain(['nope'], notAnId)).toBe(64);
    expect(notAnId.err()).toContain("'nope' is not a build id");
  });

  it('run as `expo-worker` processes: registered in the CLI, exit codes and messages', async () => {
    const run = async (args: string[], env: NodeJS.ProcessEnv) => {
      const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, HOME: home, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const [code] = await once(p, 'exit');
      return { code: code as number, out, err };
    };
    const ok = await run(['submit', '--step', 'hi=echo hi'], { EXPO_WORKER_URL: url, EXPO_WORKER_KEY: ADMIN_KEY });
    expect(ok.code, ok.err).toBe(0);
    const id = ok.out.trim();
    const status = await run(['status', '--json'], { EXPO_WORKER_URL: url, EXPO_WORKER_KEY: ADMIN_KEY });
    expect(status.code, status.err).toBe(0);
    expect(JSON.parse(status.out).builds[0].id).toBe(id);
    const cancel = await run(['cancel', id, '--url', url, '--key', ADMIN_KEY], {});
    expect(cancel.out).toBe(`build ${id} cancelled\n`);
    const wrongKey = await run(['logs', id], { EXPO_WORKER_URL: url, EXPO_WORKER_KEY: 'wrong-key-000000000' });
    expect(wrongKey.code).toBe(77);
    expect(wrongKey.err).toContain(`refused the key (401 AUTH_INVALID`);
  });
});

describe('expo-worker artifacts', () => {
  it('submits artifact patterns, lists what was collected and downloads it intact', async () => {
    const t = io();
    expect(await submitMain(['--step', 'build=make', '--artifact', 'out/*.ipa', '--artifact', 'report.txt'], t)).toBe(0);
    const id = t.out().trim();
    expect((await c.get(id)).artifacts).toEqual(['out/*.ipa', 'report.txt']);
    const w = await c.enrol('mac-1');
    const claim = (await c.poll('mac-1', w.auth))!;
    const bytes = Buffer.from('not really an ipa\n'.repeat(1000));
    const put = await c.app.inject({
      method: 'PUT',
      url: `/api/v1/builds/${id}/artifacts/App.ipa`,
      headers: { ...w.auth, 'x-expo-lease': claim.lease, 'content-type': 'application/octet-stream' },
      payload: bytes,
    });
    expect(put.statusCode).toBe(201);
    const list = io();
    expect(await artifactsMain([id], list)).toBe(0);
    expect(list.out()).toMatch(new RegExp(`^App\\.ipa\\t${bytes.length} bytes\\tsha256 [0-9a-f]{64}\\n$`));
    const dir = join(home, 'downloads');
    const dl = io();
    expect(await artifactsMain([id, '--download', dir], dl)).toBe(0);
    expect(readFileSync(join(dir, 'App.ipa')).equals(bytes)).toBe(true);
    expect(dl.err()).toContain(`saved ${join(dir, 'App.ipa')}`);
  });

  it('submit --required-artifact declares {path, required: true} beside the plain patterns', async () => {
    const t = io();
    expect(await submitMain(['--step', 'build=make', '--artifact', 'out/*.ipa', '--required-artifact', 'ios/build/App.ipa'], t)).toBe(0);
    expect((await c.get(t.out().trim())).artifacts).toEqual(['out/*.ipa', { path: 'ios/build/App.ipa', required: true }]);
  });

  it('artifacts and status show the declared artifacts a build did not store, with the reason', async () => {
    const b = await c.submit({ artifacts: ['missing/*.zip'] });
    const w = await c.enrol('mac-1');
    const claim = (await c.poll('mac-1', w.auth))!;
    const problem = { pattern: 'missing/*.zip', reason: 'no_match', required: false, message: 'no file matches this pattern in the work directory' };
    expect((await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: claim.lease, status: 'succeeded', artifactProblems: [problem] })).statusCode).toBe(200);
    const t = io();
    expect(await artifactsMain([b.id], t)).toBe(0);
    expect(t.out()).toBe('NOT STORED missing/*.zip\tno_match\tno file matches this pattern in the work directory\n');
    const j = io();
    expect(await artifactsMain([b.id, '--json'], j)).toBe(0);
    expect(JSON.parse(j.out())).toEqual({ artifacts: [], problems: [problem] });
    const st = io();
    expect(await statusMain([], st)).toBe(0);
    expect(st.out()).toContain(`\nartifacts not stored:\n  ${b.id}  NOT STORED missing/*.zip\tno_match\t`);
  });

  it('says so when a build has none, and refuses a bad id', async () => {
    const b = await c.submit();
    const t = io();
    expect(await artifactsMain([b.id], t)).toBe(0);
    expect(t.out()).toBe(`build ${b.id} has no artifacts\n`);
    expect(await artifactsMain(['nope'], io())).toBe(64);
  });
});
