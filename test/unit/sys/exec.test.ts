import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeExec } from '../../../src/sys/exec.ts';
import { shellQuote } from '../../../src/sys/ssh.ts';
import { BUSY_SLACK_MS } from '../../support/busy.ts';

const dir = mkdtempSync(join(tmpdir(), 'exec-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const exec = new NodeExec();

/** Alive and not a zombie (an orphan's zombie may wait a while for init to reap it). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('NodeExec', () => {
  it('runs argv without a shell, with env and stdin', async () => {
    const r = await exec.run(['sh', '-c', 'printf "%s|%s" "$1" "$FOO"; cat', 'sh', 'a b; $(x)'], { env: { FOO: 'bar' }, input: '!in' });
    expect(r.stdout).toBe('a b; $(x)|bar!in');
  });

  it('fails with EXEC_FAILED carrying exit code and tails', async () => {
    await expect(exec.run(['sh', '-c', 'echo out; echo oops >&2; exit 3'])).rejects.toMatchObject({
      code: 'EXEC_FAILED',
      details: { exitCode: 3, signal: null, stderrTail: 'oops\n', stdoutTail: 'out\n' },
    });
  });

  it('fails with EXEC_SPAWN for a missing program', async () => {
    await expect(exec.run(['/nonexistent/prog'])).rejects.toMatchObject({ code: 'EXEC_SPAWN', details: { errno: 'ENOENT' } });
  });

  it('kills the whole process group on timeout, SIGKILL after the grace', async () => {
    const pidFile = join(dir, 'grandchild');
    // Long enough for a busy machine to start both shells, so the grandchild has written its pid.
    const timeoutMs = 1000;
    const killGraceMs = 200;
    const started = Date.now();
    // The grandchild ignores SIGTERM; only the group SIGKILL ends it.
    const err = await exec
      .run(['sh', '-c', `sh -c 'trap "" TERM; echo $$ > ${pidFile}; while :; do sleep 0.05; done' & wait`], { timeoutMs, killGraceMs })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EXEC_TIMEOUT', details: { timeoutMs } });
    // Done after the timeout and the grace, not whenever the grandchild (which never ends) would.
    expect(Date.now() - started).toBeLessThan(timeoutMs + killGraceMs + BUSY_SLACK_MS);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    // Killed with its group; a generous wait for it to be gone, which ends as soon as it is.
    for (const deadline = Date.now() + 10_000; alive(pid) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
    expect(alive(pid)).toBe(false);
  });

  it('kills on abort and rejects with the reason', async () => {
    const ac = new AbortController();
    const p = exec.run(['sleep', '10'], { signal: ac.signal, killGraceMs: 100 });
    setTimeout(() => ac.abort(new Error('stop it')), 50);
    await expect(p).rejects.toThrow('stop it');
  });

  it('starts a long-lived child logging to a file and reports its exit', async () => {
    const log = join(dir, 'child.log');
    const child = await exec.start(['sh', '-c', 'echo hello; echo err >&2; exit 5'], { logPath: log });
    expect(await child.exited).toEqual({ code: 5, signal: null });
    expect(readFileSync(log, 'utf8')).toBe('hello\nerr\n');
    const sleeper = await exec.start(['sleep', '10'], { logPath: log });
    expect(sleeper.exitStatus()).toBeNull();
    sleeper.kill('SIGTERM');
    expect(await sleeper.exited).toEqual({ code: null, signal: 'SIGTERM' });
  });
});

describe('shellQuote', () => {
  it('quotes words for a POSIX shell', () => {
    expect(shellQuote(['echo', 'a b', "it's", '/usr/local/bin/x'])).toBe(`echo 'a b' 'it'\\''s' /usr/local/bin/x`);
  });
});
