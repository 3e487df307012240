/**
 * The checkout of a GitHub build's commit, for real: RemoteWorkspace over a real sshd (the "VM" is
 * this machine) runs the checkout script, whose git clones from a real git smart-HTTP server that
 * asks for the clone token as GitHub does. What must hold: the commit asked for is checked out
 * (not the branch tip), submodules come along, the token reaches the server in the Basic header
 * only — never in a URL, a file left in the workspace, `.git`, or the output — and a wrong token
 * fails with a message that says so.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basicCredential, checkoutCommit, type CheckoutSpec } from '../../src/agent/checkout.ts';
import { RemoteWorkspace } from '../../src/agent/remote-workspace.ts';
import { Ssh2Client } from '../../src/sys/ssh2-client.ts';
import type { SshSession } from '../../src/sys/ssh.ts';
import { startGitServer, type TestGitServer } from '../support/git-server.ts';
import { startSshd, type TestSshd } from '../support/sshd.ts';

const TOKEN = `ghs_${randomBytes(12).toString('hex')}`;
let sshd: TestSshd;
let server: TestGitServer;
let session: SshSession;
/** Workspaces made under the sshd user's home, removed at the end. */
const dirs: string[] = [];
let first: string;
let second: string;
let appUrl: string;

beforeAll(async () => {
  sshd = await startSshd();
  server = await startGitServer({ token: TOKEN });
  server.createRepo('lib');
  server.commit('lib', { 'lib.txt': 'the library\n' });
  appUrl = server.createRepo('app');
  server.commit('app', { 'README.md': 'first\n' });
  first = server.addSubmodule('app', 'lib', 'vendor/lib');
  // The branch moves on: the build asked for the commit before.
  second = server.commit('app', { 'README.md': 'second\n' });
  session = await new Ssh2Client().connect({ host: sshd.host, port: sshd.port, username: sshd.user, privateKey: sshd.clientKey, readyTimeoutMs: 20_000 });
});

afterAll(async () => {
  await session?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  await server?.stop();
  await sshd?.stop();
});

async function workspace(): Promise<{ ws: RemoteWorkspace; local: string }> {
  const id = `ck${randomBytes(6).toString('hex')}`;
  // The step looks for the credential where a step could: its env, the workspace, git's config.
  const step = 'env; ls -la "$EXPO_BUILD_DIR"; cat "$EXPO_BUILD_DIR"/checkout-credential 2>&1 || true; git config --list --show-origin 2>&1 || true';
  const ws = new RemoteWorkspace(session, { id, attempt: 1, env: {}, steps: [{ name: 'snoop', run: step }] });
  await ws.open('true');
  const local = join(homedir(), ws.dir);
  dirs.push(local);
  return { ws, local };
}

/** Every file under `dir`, its contents as text. */
function allFiles(dir: string): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  for (const name of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const p = join(dir, name);
    if (statSync(p).isFile()) out.push({ path: p, text: readFileSync(p, 'latin1') });
  }
  return out;
}

const spec = (o: Partial<CheckoutSpec> = {}): CheckoutSpec => ({ url: appUrl, sha: first, ref: 'refs/heads/main', submodules: true, lfs: false, ...o });

async function run(s: CheckoutSpec, token: string | null) {
  const { ws, local } = await workspace();
  let output = '';
  const notes: string[] = [];
  const masked: string[] = [];
  const failure = await checkoutCommit({
    buildId: 'b1',
    lease: 'lease',
    spec: s,
    client: { checkoutToken: async () => ({ token, expiresAt: null }) },
    workspace: ws,
    signal: new AbortController().signal,
    note: (l) => notes.push(l),
    onOutput: (c) => (output += c.toString('utf8')),
    mask: (v) => masked.push(...v),
    onAttemptOver: (detail) => {
      throw new Error(`unexpected: attempt over (${detail})`);
    },
  });
  return { failure, output, notes, masked, local, ws };
}

describe('checkout of a commit in the VM (real sshd, real git server)', () => {
  it('checks out the commit asked for, not the branch tip, with its submodule; the token only ever in the Basic header', async () => {
    const before = server.requests.length;
    const r = await run(spec(), TOKEN);
    expect(r.failure).toBeNull();
    const work = join(r.local, 'work');
    const git = (args: string[]) => execFileSync('git', ['-C', work, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, GIT_CONFIG_GLOBAL: '/dev/null' } }).trim();
    expect(git(['rev-parse', 'HEAD'])).toBe(first);
    expect(first).not.toBe(second);
    expect(readFileSync(join(work, 'README.md'), 'utf8')).toBe('first\n');
    expect(readFileSync(join(work, 'vendor/lib/lib.txt'), 'utf8')).toBe('the library\n');
    expect(r.output).toContain(`$ git fetch --no-tags --progress --depth=1 origin ${first}`);
    expect(r.output).toContain(`checked out ${first}`);

    const requests = server.requests.slice(before);
    expect(requests.filter((q) => q.authorized).length).toBeGreaterThan(0);
    // Fetches of the app and of its submodule each presented it.
    expect(requests.some((q) => q.authorized && q.url.startsWith('/lib.git/'))).toBe(true);
    for (const q of requests) expect(q.url).not.toContain(TOKEN);

    const basic = basicCredential(TOKEN);
    expect(r.masked).toEqual([TOKEN, basic]);
    for (const secret of [TOKEN, basic]) {
      expect(r.output).not.toContain(secret);
      // Nothing left in the workspace — the credential file is gone, .git/config holds no header.
      for (const f of allFiles(r.local)) expect(f.text.includes(secret), f.path).toBe(false);
    }
    expect(readFileSync(join(work, '.git/config'), 'utf8')).not.toMatch(/extraheader/i);

    // A step that comes after cannot find it either.
    await r.ws.setup({ files: [], launch: 'true' });
    let stepOutput = '';
    expect(await r.ws.runStep(0, 0, { onOutput: (c) => (stepOutput += c.toString('utf8')) })).toBe(0);
    expect(stepOutput).toContain('EXPO_BUILD_DIR=');
    expect(stepOutput).not.toMatch(/extraheader|GIT_CONFIG_COUNT/i);
    for (const secret of [TOKEN, basic]) expect(stepOutput).not.toContain(secret);
  });

  it('a wrong token fails with the commit, the URL and what git said', async () => {
    const r = await run(spec({ submodules: false }), 'ghs_wrongtoken0000');
    expect(r.failure?.body).toMatchObject({ status: 'failed', failureReason: 'build_failed' });
    expect(r.failure?.body.message).toMatch(new RegExp(`^checkout of ${first.slice(0, 12)} from ${appUrl.replace(/\./g, '\\.')} failed: the server refused the clone token; .*could not read Username`));
    expect(r.failure?.body.message).not.toContain('ghs_wrongtoken0000');
    expect(r.output).not.toContain('ghs_wrongtoken0000');
  });

  it('falls back to fetching the ref when the server refuses a commit id, and still checks out the commit asked for', async () => {
    const strict = await startGitServer({ token: TOKEN, shaWants: false });
    try {
      const url = strict.createRepo('app');
      const old = strict.commit('app', { 'README.md': 'old\n' });
      strict.commit('app', { 'README.md': 'new\n' });
      const r = await run(spec({ url, sha: old, submodules: false }), TOKEN);
      expect(r.failure).toBeNull();
      expect(r.output).toContain('the server refused the commit id; fetching refs/heads/main instead');
      expect(readFileSync(join(r.local, 'work/README.md'), 'utf8')).toBe('old\n');
    } finally {
      await strict.stop();
    }
  });

  it('never sends the token to a submodule on another host (the header is scoped to the clone URL\'s origin)', async () => {
    const other = await startGitServer({ token: null });
    try {
      other.createRepo('ext');
      other.commit('ext', { 'ext.txt': 'elsewhere\n' });
      server.createRepo('multi');
      server.commit('multi', { 'README.md': 'multi\n' });
      const sha = server.addSubmodule('multi', 'ext', 'vendor/ext', other);
      const r = await run(spec({ url: `${server.origin}/multi.git`, sha }), TOKEN);
      expect(r.failure).toBeNull();
      expect(readFileSync(join(r.local, 'work/vendor/ext/ext.txt'), 'utf8')).toBe('elsewhere\n');
      expect(other.requests.length).toBeGreaterThan(0);
      expect(other.requests.filter((q) => q.authorization !== undefined)).toEqual([]);
    } finally {
      await other.stop();
    }
  });

  it('lfs: true without git lfs in the VM fails with a message that says so', async () => {
    const lfsInstalled = (() => {
      try {
        execFileSync('git', ['lfs', 'version'], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    })();
    const r = await run(spec({ submodules: false, lfs: true }), TOKEN);
    if (lfsInstalled) expect(r.failure).toBeNull();
    else expect(r.failure?.body.message).toMatch(/failed: .*git lfs is not installed in the VM/);
  });

  it('a commit the server does not have fails without looping', async () => {
    const r = await run(spec({ sha: 'f'.repeat(40), submodules: false }), TOKEN);
    expect(r.failure?.body).toMatchObject({ status: 'failed', failureReason: 'build_failed', message: expect.stringMatching(/^checkout of ffffffffffff from .* failed: /) });
    expect(r.output).toContain('fetching refs/heads/main instead');
  });
});
