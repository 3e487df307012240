import { accessSync, chmodSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { networkArgs, TART_FALLBACK_PATHS, TartCli } from '../../../src/vm/tart-cli.ts';
import { FakeExec } from '../../support/fake-exec.ts';

const dir = mkdtempSync(join(tmpdir(), 'tart-cli-'));
const TART = join(dir, 'tart');
writeFileSync(TART, '#!/bin/sh\n');
chmodSync(TART, 0o755);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function driver(exec: FakeExec, extra: Partial<ConstructorParameters<typeof TartCli>[0]> = {}): TartCli {
  return new TartCli({ exec, tartPath: TART, tartHome: '/th', callTimeoutMs: 1000, graceMs: 500, ...extra });
}

describe('TartCli argv', () => {
  it('builds every command as argv with TART_HOME and a timeout', async () => {
    const exec = new FakeExec()
      .expect([TART, '--version'], { stdout: '2.32.1\n' })
      .expect([TART, 'list', '--format', 'json'], { stdout: '[\n\n]\n' })
      .expect([TART, 'clone', 'base', 'vm-1'])
      .expect([TART, 'set', 'vm-1', '--random-mac'])
      .expect([TART, 'ip', 'vm-1', '--wait', '7', '--resolver', 'arp'], { stdout: '127.64.0.5\n' })
      .expect([TART, 'stop', 'vm-1', '--timeout', '3'])
      .expect([TART, 'delete', 'vm-1'])
      .expect([TART, 'get', 'vm-1', '--format', 'json'], { stdout: '{"State":"stopped","CPU":4}' });
    const t = driver(exec);
    expect(await t.version()).toBe('2.32.1');
    expect(await t.list()).toEqual([]);
    await t.clone('base', 'vm-1');
    await t.setRandomMac('vm-1');
    expect(await t.ip('vm-1', { waitS: 7, resolver: 'arp' })).toBe('127.64.0.5');
    await t.stop('vm-1', { timeoutS: 3 });
    await t.delete('vm-1');
    expect(await t.get('vm-1')).toEqual({ state: 'stopped', cpuCount: 4 });
    exec.assertDone();
    const byCmd = Object.fromEntries(exec.calls.map((c) => [c.argv[1], c.options as { env?: Record<string, string>; timeoutMs?: number }]));
    expect(byCmd.clone?.env).toEqual({ TART_HOME: '/th', CI: '1' });
    expect(byCmd.list?.env).toEqual({ TART_HOME: '/th' });
    expect(byCmd.list?.timeoutMs).toBe(1000);
    expect(byCmd.ip?.timeoutMs).toBe(7500);
    expect(byCmd.stop?.timeoutMs).toBe(3500);
  });

  it('starts tart run --no-graphics as a child and classifies its exit', async () => {
    const log = join(dir, 'run.log');
    writeFileSync(log, 'The number of VMs exceeds the system limit (other running VMs: a, b)\n');
    const exec = new FakeExec().expectStart([TART, 'run', 'vm-1', '--no-graphics'], Promise.resolve({ code: 1, signal: null }));
    const run = await driver(exec).run('vm-1', { logPath: log });
    const exit = await run.exited;
    expect(exit.code).toBe(1);
    expect(exit.error?.code).toBe('VM_LIMIT');
    expect(run.isRunning()).toBe(false);
  });

  it('runs an isolated clone with --net-softnet and its allow list as one argv word', async () => {
    const log = join(dir, 'run-softnet.log');
    const exec = new FakeExec().expectStart(
      [TART, 'run', 'vm-1', '--no-graphics', '--net-softnet', '--net-softnet-allow', '10.0.0.5/32,192.168.1.0/24'],
      Promise.resolve({ code: 0, signal: null }),
    );
    const run = await driver(exec).run('vm-1', { logPath: log, network: { isolation: 'softnet', allow: ['10.0.0.5/32', '192.168.1.0/24'] } });
    expect((await run.exited).code).toBe(0);
    expect(networkArgs({ isolation: 'softnet', allow: [] })).toEqual(['--net-softnet']);
    expect(networkArgs({ isolation: 'shared' })).toEqual([]);
  });

  it('shares host directories with one --dir=NAME:PATH[:ro] argv word each', async () => {
    const log = join(dir, 'run-dirs.log');
    const exec = new FakeExec().expectStart(
      [TART, 'run', 'vm-1', '--no-graphics', '--dir=pods:/caches/pods/.work/b1-1 x', '--dir=ref:/srv/ref:ro'],
      Promise.resolve({ code: 0, signal: null }),
    );
    const run = await driver(exec).run('vm-1', { logPath: log, dirs: [{ name: 'pods', path: '/caches/pods/.work/b1-1 x' }, { name: 'ref', path: '/srv/ref', readOnly: true }] });
    expect((await run.exited).code).toBe(0);
  });

  it('classifies failures with argv, exit code and stderr tail', async () => {
    const exec = new FakeExec()
      .expect([TART, 'delete', 'vm-1'], { exitCode: 1, stderr: 'VM "vm-1" is running\n' })
      .expect([TART, 'ip', 'vm-1', '--wait', '0'], { timeout: true });
    const t = driver(exec);
    await expect(t.delete('vm-1')).rejects.toMatchObject({
      code: 'VM_IS_RUNNING',
      details: { argv: [TART, 'delete', 'vm-1'], exitCode: 1, stderrTail: 'VM "vm-1" is running\n' },
    });
    await expect(t.ip('vm-1', { waitS: 0 })).rejects.toMatchObject({ code: 'VM_TIMEOUT' });
  });

  it('rejects ip output that is not an address', async () => {
    const exec = new FakeExec().expect([TART, 'ip', 'vm-1', '--wait', '1'], { stdout: 'garbage\n' });
    await expect(driver(exec).ip('vm-1', { waitS: 1 })).rejects.toMatchObject({ code: 'VM_NO_IP' });
  });
});

describe('finding tart', () => {
  it('uses PATH, then the Homebrew locations, else VM_TART_NOT_FOUND naming them', () => {
    expect(new TartCli({ exec: new FakeExec(), searchPath: `/nonexistent:${dir}` }).tartExecutable()).toBe(TART);
    // Not on PATH: the Homebrew locations are fixed, so which branch runs depends on this host —
    // the first one holding tart (a Mac with tart installed), else an error naming every place.
    const missing = new TartCli({ exec: new FakeExec(), searchPath: '/nonexistent' });
    const installed = TART_FALLBACK_PATHS.find((p) => {
      try {
        accessSync(p, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    if (installed !== undefined) {
      expect(missing.tartExecutable()).toBe(installed);
    } else {
      const searched = ['/nonexistent/tart', ...TART_FALLBACK_PATHS];
      expect(() => missing.tartExecutable()).toThrow(
        expect.objectContaining({ code: 'VM_TART_NOT_FOUND', message: expect.stringContaining(searched.join(', ')), details: { searched } }),
      );
    }
    expect(() => new TartCli({ exec: new FakeExec(), tartPath: '/no/tart' }).tartExecutable()).toThrow(expect.objectContaining({ code: 'VM_TART_NOT_FOUND' }));
  });
});
