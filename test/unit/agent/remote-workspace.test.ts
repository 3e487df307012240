/**
 * RemoteWorkspace over a scripted SSH session (no sshd): the exact commands it sends, their
 * quoting and timeouts, what it does with exit codes and errors, and what it uploads.
 */
import { describe, expect, it } from 'vitest';
import { RemoteWorkspace } from '../../../src/agent/remote-workspace.ts';
import { FakeSshSession } from '../../support/fake-ssh-session.ts';

const DIR = '.expo-worker/builds/b1-2';
const ABS = `"$HOME"/${DIR}`;

function workspace(session: FakeSshSession, o: { env?: Record<string, string>; steps?: { name: string; run: string }[]; commandTimeoutMs?: number } = {}) {
  return new RemoteWorkspace(
    session,
    { id: 'b1', attempt: 2, env: o.env ?? {}, steps: o.steps ?? [{ name: 'one', run: 'echo one' }] },
    o.commandTimeoutMs === undefined ? {} : { commandTimeoutMs: o.commandTimeoutMs },
  );
}

describe('RemoteWorkspace', () => {
  it('lives in ~/.expo-worker/builds/<id>-<attempt>', () => {
    expect(workspace(new FakeSshSession()).dir).toBe(DIR);
  });

  it('opens the workspace and runs the probe in one command, with the housekeeping timeout', async () => {
    const s = new FakeSshSession().expect(`mkdir -p ${ABS}/work && chmod 700 ${ABS} && echo probe`, { stdout: 'v1\n' });
    expect(await workspace(s).open('echo probe')).toBe('v1\n');
    expect(s.commands[0]!.options).toEqual({ timeoutMs: 15_000 });
    s.assertDone();
  });

  it('uses the configured command timeout', async () => {
    const s = new FakeSshSession().expect(`printf '%s\\n' 42 > ${ABS}/progress`);
    await workspace(s, { commandTimeoutMs: 500 }).writeProgress(41.6);
    expect(s.commands[0]!.options).toEqual({ timeoutMs: 500 });
  });

  it('throws on a housekeeping command that exits non-zero, with its exit code and output tail', async () => {
    const s = new FakeSshSession().expect(() => true, { exitCode: 1, stderr: 'mkdir: Permission denied\n' });
    await expect(workspace(s).open('true')).rejects.toThrow(/exited 1: mkdir: Permission denied$/);
  });

  it('names the signal when a housekeeping command died of one', async () => {
    const s = new FakeSshSession().expect(() => true, { exitCode: null, signal: 'KILL' });
    await expect(workspace(s).writeProgress(5)).rejects.toThrow(/exited KILL/);
  });

  it('passes on an SSH error', async () => {
    const s = new FakeSshSession().expect(() => true, { throws: new Error('SSH_CLOSED: gone') });
    await expect(workspace(s).open('true')).rejects.toThrow('SSH_CLOSED: gone');
  });

  it('writes the env, step scripts and runner in one upload, then runs setup and the launch in one command', async () => {
    const s = new FakeSshSession().allowUploads(1).expect(`/bin/bash ${ABS}/setup.sh && rm -f ${ABS}/setup.sh && echo launched`, { stdout: '77\n' });
    const ws = workspace(s, { env: { PLAIN: 'a', SPACED: 'x y', QUOTE: "it's", DOLLAR: '$HOME' }, steps: [{ name: 'a', run: 'echo a' }, { name: 'b', run: 'exit 3' }] });
    const out = await ws.setup({ files: [{ path: `${DIR}/extra`, contents: 'X', mode: 0o640 }], launch: 'echo launched' });
    expect(out).toBe('77\n');
    expect(s.uploads).toHaveLength(1);
    const { data, remotePath, mode } = s.uploads[0]!;
    expect(remotePath).toBe(`${DIR}/setup.sh`);
    expect(mode).toBe(0o600);
    const tag = /<<'(EXPO_EOF_[0-9a-f]{16})'/.exec(data)![1]!;
    const file = (path: string, contents: string, m: string) => `cat >"$HOME"/${DIR}/${path} <<'${tag}'\n${contents}\n${tag}\nchmod ${m} "$HOME"/${DIR}/${path}`;
    expect(data.startsWith('set -e\numask 077\n')).toBe(true);
    expect(data).toContain(file('env', "PLAIN=a\nSPACED='x y'\nQUOTE='it'\\''s'\nDOLLAR='$HOME'", '600'));
    expect(data).toContain(file('step-0.sh', 'set -e\necho a', '600'));
    expect(data).toContain(file('step-1.sh', 'set -e\nexit 3', '600'));
    expect(data).toContain(file('progress', '0', '600'));
    expect(data).toContain(file('extra', 'X', '640'));
    expect(data).toMatch(new RegExp(`cat >"\\$HOME"/${DIR}/run-step.sh <<'${tag}'\\n#!/bin/bash\\n[^]*\\n${tag}\\nchmod 700 "\\$HOME"/${DIR}/run-step.sh`));
    s.assertDone();
  });

  it('picks a here-document tag that no file contains', async () => {
    const s = new FakeSshSession().allowUploads(1).expect(() => true);
    await workspace(s, { steps: [{ name: 'a', run: 'echo EXPO_EOF_' }] }).setup({ files: [], launch: 'true' });
    const tag = /<<'(EXPO_EOF_[0-9a-f]{16})'/.exec(s.uploads[0]!.data)![1]!;
    expect(s.uploads[0]!.data.split(tag).length - 1).toBe(2 * 4); // env, run-step.sh, progress, step-0.sh: each opened and closed by the tag
  });

  it('runs a step through run-step.sh with its starting progress, streaming both outputs', async () => {
    const s = new FakeSshSession().expect(`/bin/bash ${ABS}/run-step.sh ${ABS} 1 50`, { stdout: 'out', stderr: 'err', exitCode: 2 });
    const chunks: string[] = [];
    const ac = new AbortController();
    expect(await workspace(s).runStep(1, 49.6, { onOutput: (c) => chunks.push(c.toString()), signal: ac.signal })).toBe(2);
    expect(chunks).toEqual(['out', 'err']);
    const o = s.commands[0]!.options!;
    expect(o).toMatchObject({ maxCaptureBytes: 0, exitGraceMs: 2000, signal: ac.signal });
    expect(o.timeoutMs).toBeUndefined();
  });

  it('answers null when a step ended without an exit status', async () => {
    const s = new FakeSshSession().expect(() => true, { exitCode: null, signal: 'KILL' });
    expect(await workspace(s).runStep(0, 0, { onOutput: () => undefined })).toBeNull();
  });

  it('finds artifacts: one command, patterns quoted for printf and expanded unquoted, NUL-separated records', async () => {
    const patterns = ['ios/build/*.ipa', 'out/report.xml'];
    const expected =
      `cd ${ABS}/work && { printf 'P%s\\0' 'ios/build/*.ipa'; for f in ios/build/*.ipa; do [ -f "$f" ] && printf 'F%s\\0' "$f"; done; ` +
      `printf 'P%s\\0' out/report.xml; for f in out/report.xml; do [ -f "$f" ] && printf 'F%s\\0' "$f"; done; }; true`;
    const s = new FakeSshSession().expect(expected, { stdout: 'Pios/build/*.ipa\0Fios/build/A.ipa\0Fios/build/odd\nname.ipa\0Pout/report.xml\0' });
    const found = await workspace(s).findArtifacts(patterns);
    expect([...found]).toEqual([
      ['ios/build/*.ipa', ['ios/build/A.ipa', 'ios/build/odd\nname.ipa']],
      ['out/report.xml', []],
    ]);
  });

  it('opens an artifact under work/', async () => {
    const s = new FakeSshSession().serve(`${DIR}/work/out/a.txt`, 'abc');
    const { sizeBytes } = await workspace(s).openArtifact('out/a.txt');
    expect(sizeBytes).toBe(3);
  });

  it.each([
    ['answers', { stdout: 'alive\n' }, true],
    ['exits non-zero', { exitCode: 1, stdout: 'alive' }, false],
    ['prints something else', { stdout: 'what' }, false],
    ['fails', { throws: new Error('SSH_EXEC_TIMEOUT') }, false],
  ] as const)('alive: false unless echo alive answers (%s)', async (_what, answer, alive) => {
    const s = new FakeSshSession().expect('echo alive', answer);
    expect(await workspace(s).alive(1234)).toBe(alive);
    expect(s.commands[0]!.options).toEqual({ timeoutMs: 1234 });
  });

  it('stops a step: TERM to its process group, the grace in 100 ms ticks, then KILL', async () => {
    const expected =
      `p=$(cat ${ABS}/step.pid 2>/dev/null); [ -n "$p" ] || exit 0; kill -TERM -- -"$p" 2>/dev/null || exit 0; ` +
      `i=0; while kill -0 -- -"$p" 2>/dev/null && [ $i -lt 25 ]; do sleep 0.1; i=$((i+1)); done; ` +
      `kill -KILL -- -"$p" 2>/dev/null; exit 0`;
    const s = new FakeSshSession().expect(expected);
    await workspace(s).stopStep(2450);
    expect(s.commands[0]!.options).toEqual({ timeoutMs: 2450 + 15_000 });
  });

  it('without a monitor: starting one fails, stopping is a no-op', async () => {
    const ws = workspace(new FakeSshSession());
    await expect(ws.startMonitor(() => undefined)).rejects.toThrow(/no monitor/);
    await ws.stopMonitor();
  });

  describe('checkout', () => {
    const SPEC = { url: 'https://github.com/acme/app.git', sha: 'a'.repeat(40), ref: 'refs/heads/main', submodules: 'recursive' as const, lfs: false };

    it('uploads the script (0700) and the credential (0600), then runs the script with the URL, origin, commit and options — no credential on the command line', async () => {
      const cmd = `/bin/bash ${ABS}/checkout.sh ${ABS} https://github.com/acme/app.git https://github.com ${'a'.repeat(40)} refs/heads/main recursive false`;
      const s = new FakeSshSession().allowUploads(2).expect(cmd, { stdout: 'checked out\n', exitCode: 0 });
      const out: string[] = [];
      expect(await workspace(s).checkout(SPEC, 'QkFTSUMtQ1JFRA==', { onOutput: (c) => out.push(c.toString()) })).toBe(0);
      expect(s.uploads.map((u) => [u.remotePath, u.mode])).toEqual([
        [`${DIR}/checkout.sh`, 0o700],
        [`${DIR}/checkout-credential`, 0o600],
      ]);
      expect(s.uploads[1]!.data).toBe('QkFTSUMtQ1JFRA==\n');
      expect(s.commands.map((c) => c.command).join('\n')).not.toContain('QkFTSUMtQ1JFRA==');
      s.assertDone();
    });

    it('uploads no credential file for an anonymous clone', async () => {
      const s = new FakeSshSession().allowUploads(1).expect((c) => c.includes('checkout.sh'), { exitCode: 1 });
      expect(await workspace(s).checkout(SPEC, null, { onOutput: () => undefined })).toBe(1);
      expect(s.uploads.map((u) => u.remotePath)).toEqual([`${DIR}/checkout.sh`]);
    });

    it('the script reads and deletes the credential before any git, never traces, and scopes the header to the origin', async () => {
      const s = new FakeSshSession().allowUploads(2).expect(() => true, { exitCode: 0 });
      await workspace(s).checkout(SPEC, 'x', { onOutput: () => undefined });
      const script = s.uploads[0]!.data;
      expect(script).not.toMatch(/set -x|set -o xtrace/);
      const rm = script.indexOf('rm -f "$dir/checkout-credential"');
      expect(rm).toBeGreaterThan(0);
      expect(script.indexOf('git ')).toBeGreaterThan(rm);
      expect(script).toContain('GIT_CONFIG_KEY_0="http.$origin/.extraheader"');
      expect(script).toContain('GIT_TERMINAL_PROMPT=0');
    });
  });
});
