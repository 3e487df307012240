/**
 * The CLI as a person runs it, as real processes: `node src/cli.ts …` against a real controller
 * on loopback. Covers what a new user hit: a closed pipe (`status | head -1`), exit codes of
 * `--follow` that collided with a step's own exit code, and an old Node.js that died with
 * "No such built-in module node:sqlite".
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/client/exit-codes.ts';
import { MIN_NODE_VERSION, nodeTooOld } from '../../src/sys/node-version.ts';
import { ADMIN_KEY, type PollClaim } from '../controller/support.ts';
import { useCliHarness } from './harness.ts';

const h = useCliHarness('expo-cli-entry-');

interface Run {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
  exit: Promise<number | null>;
  /** Resolves with stdout's first line (submit prints the build id there). */
  firstLine: Promise<string>;
}

function cli(args: string[], options: { nodeArgs?: string[]; closeStdout?: boolean; closeStderr?: boolean } = {}): Run {
  const proc = h.spawnCli(args, options.nodeArgs);
  const exit = once(proc, 'exit').then(([code]) => code as number | null);
  let out = '';
  let err = '';
  // Closing our end of a pipe before the child writes: its next write gets EPIPE, as with `| head -1`.
  if (options.closeStdout) proc.stdout!.destroy();
  else proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  if (options.closeStderr) proc.stderr!.destroy();
  else proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const firstLine = new Promise<string>((resolve, reject) => {
    proc.stdout!.on('data', () => {
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    void exit.then(() => reject(new Error(`exited before printing a line: ${err}`)));
  });
  firstLine.catch(() => {});
  return { proc, out: () => out, err: () => err, exit, firstLine };
}

/** Plays the worker: claims the build (polling until the submission is in), marks it running. */
async function claimRunning(workerId: string, auth: { authorization: string }): Promise<PollClaim> {
  let claim: PollClaim | null = null;
  for (const deadline = Date.now() + 30_000; !claim && Date.now() < deadline; ) {
    claim = await h.c.poll(workerId, auth);
    if (!claim) await new Promise((r) => setTimeout(r, 20));
  }
  expect(claim).not.toBeNull();
  expect((await h.c.post(`/api/v1/builds/${claim!.build.id}/phase`, auth, { lease: claim!.lease, phase: 'running' })).statusCode).toBe(200);
  return claim!;
}

describe('a closed pipe', () => {
  it('`status | head -1`: a stdout closed by its reader ends the command quietly (exit 0), never an EPIPE stack trace', async () => {
    await h.c.submit();
    const r = cli(['status'], { closeStdout: true });
    expect(await r.exit, r.err()).toBe(0);
    expect(r.err()).toBe('');
  });

  it('a closed stderr drops what would go there and the command still ends with its own exit code', async () => {
    // Unreachable controller: the message goes to stderr (closed) and the exit code is still 69.
    const r = cli(['status', '--url', 'http://127.0.0.1:1'], { closeStderr: true });
    expect(await r.exit).toBe(EXIT.unreachable);
    const ok = cli(['submit', '--step', 'a=true'], { closeStderr: true });
    expect(await ok.exit).toBe(0);
    expect(ok.out()).toMatch(/^[a-z2-7]{16}\n$/);
  });
});

describe('--follow exit codes never collide with a step exit code', () => {
  it('a step that exits 3 is "build failed" (1), not the old "cancelled" (3); its own code is printed', async () => {
    const w = await h.c.enrol('mac-1');
    const r = cli(['submit', '--step', 'build=exit 3', '--follow']);
    const claim = await claimRunning('mac-1', w.auth);
    expect(await r.firstLine).toBe(claim.build.id);
    await h.c.post(`/api/v1/builds/${claim.build.id}/complete`, w.auth, { lease: claim.lease, status: 'failed', exitCode: 3, message: "step 'build' exited with 3" });
    expect(await r.exit, r.err()).toBe(EXIT.buildFailed);
    expect(r.err()).toContain(`build ${claim.build.id} failed: build_failed — step 'build' exited with 3 (step exit code 3)`);
  });

  it('a step that exits 77 or 64 is still "build failed" (1), not "key refused" or "usage"', async () => {
    const w = await h.c.enrol('mac-1');
    for (const code of [64, 77]) {
      const r = cli(['submit', '--step', `build=exit ${code}`, '--follow']);
      const claim = await claimRunning('mac-1', w.auth);
      await h.c.post(`/api/v1/builds/${claim.build.id}/complete`, w.auth, { lease: claim.lease, status: 'failed', exitCode: code });
      expect(await r.exit, r.err()).toBe(EXIT.buildFailed);
      expect(r.err()).toContain(`(step exit code ${code})`);
    }
  });

  it('cancelled is 2 and success 0', async () => {
    const w = await h.c.enrol('mac-1');
    const cancelled = cli(['submit', '--step', 'a=sleep 100', '--follow']);
    const id = await cancelled.firstLine;
    expect((await h.c.app.inject({ method: 'POST', url: `/api/v1/builds/${id}/cancel`, headers: { authorization: `Bearer ${ADMIN_KEY}` } })).statusCode).toBe(200);
    expect(await cancelled.exit, cancelled.err()).toBe(EXIT.cancelled);
    expect(cancelled.err()).toContain(`build ${id} was cancelled`);

    const ok = cli(['submit', '--step', 'a=true', '--follow']);
    const claim = await claimRunning('mac-1', w.auth);
    await h.c.post(`/api/v1/builds/${claim.build.id}/complete`, w.auth, { lease: claim.lease, status: 'succeeded' });
    expect(await ok.exit, ok.err()).toBe(EXIT.ok);
  });

  it('an infrastructure failure is 3 and a timeout 4, whatever exit code came with them', async () => {
    const w = await h.c.enrol('mac-1');
    for (const [reason, code] of [
      ['vm_crashed', EXIT.infraFailed],
      ['heartbeat_timeout', EXIT.infraFailed],
      ['timed_out', EXIT.timedOut],
    ] as const) {
      const r = cli(['submit', '--step', 'a=true', '--follow']);
      const claim = await claimRunning('mac-1', w.auth);
      await h.c.post(`/api/v1/builds/${claim.build.id}/complete`, w.auth, { lease: claim.lease, status: 'failed', failureReason: reason, exitCode: 1, message: reason });
      expect(await r.exit, `${reason}: ${r.err()}`).toBe(code);
    }
  });

  it('the CLI’s own errors stay out of 0–4: usage 64, unknown build 65, unreachable 69, refused key 77', async () => {
    expect(await cli(['submit', '--bogus']).exit).toBe(EXIT.usage);
    expect(await cli(['logs', 'aaaaaaaaaaaaaaaa', '--follow']).exit).toBe(EXIT.refused);
    expect(await cli(['logs', 'aaaaaaaaaaaaaaaa', '--follow', '--url', 'http://127.0.0.1:1']).exit).toBe(EXIT.unreachable);
    expect(await cli(['status', '--key', 'not-the-admin-key-000']).exit).toBe(EXIT.auth);
    const help = cli(['submit', '--help']);
    expect(await help.exit).toBe(0);
    expect(help.out()).toContain('2   --follow: the build was cancelled');
  });
});

describe('a build no worker could take', () => {
  it('submit warns on stderr when no enrolled worker has the labels, and status says why a queued build waits', async () => {
    await h.c.enrol('mac-1', ['xcode-15']);
    const r = cli(['submit', '--step', 'a=true', '--label', 'xcode-16']);
    expect(await r.exit, r.err()).toBe(0);
    const id = r.out().trim();
    expect(r.err()).toContain(`warning: build ${id} may wait forever: no enrolled worker has the label xcode-16`);
    const ok = cli(['submit', '--step', 'a=true', '--label', 'xcode-15']);
    expect(await ok.exit).toBe(0);
    expect(ok.err()).not.toContain('warning');
    const s = cli(['status']);
    expect(await s.exit, s.err()).toBe(0);
    expect(s.out()).toMatch(/mac-1\s+never_seen/);
    expect(s.out()).toMatch(new RegExp(`${id}\\s+queued.*no_worker_with_labels`));
    expect(s.out()).toContain(`${id} waits: no enrolled worker has the label xcode-16`);
    expect(s.out()).toContain('waits: no matching worker has connected yet (mac-1)');
  });
});

describe('an old Node.js', () => {
  it('versions older than 22.13 are refused, newer ones and 22.13 itself accepted', () => {
    expect(MIN_NODE_VERSION).toBe('22.13.0');
    for (const v of ['v20.11.1', '20.19.0', '22.12.0', '18.0.0', '9.99.99', 'garbage']) expect(nodeTooOld(v), v).toBe(true);
    for (const v of ['22.13.0', 'v22.18.0', '23.0.0', '24.22.3', '100.0.0']) expect(nodeTooOld(v), v).toBe(false);
  });

  it('the entry says to run ./script/bootstrap (exit 78) instead of dying with "No such built-in module node:sqlite"', async () => {
    // The real entry in a real process whose process.versions says Node 20, set before the entry runs.
    const fake20 = `data:text/javascript,Object.defineProperty(process,"versions",{value:{...process.versions,node:"20.11.1"}})`;
    for (const command of ['controller', 'status', '--help']) {
      const r = cli([command], { nodeArgs: ['--import', fake20] });
      expect(await r.exit, r.err()).toBe(EXIT.nodeTooOld);
      expect(r.err()).toContain('Node.js 22.13.0 or newer is needed; this is 20.11.1');
      expect(r.err()).toContain('./script/bootstrap');
      expect(r.err()).not.toContain('node:sqlite');
      expect(r.err()).not.toMatch(/\n\s+at /);
      expect(r.out()).toBe('');
    }
  });
});
