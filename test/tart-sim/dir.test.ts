/**
 * Contract of `tart run --dir [name:]path[:ro][,tag=T]` (specs/tart-cli.md §2 run): the share
 * shows in the simulated guest at `$HOME/My Shared Files/<name>` (macOS: `/Volumes/My Shared
 * Files/<name>`), writes from the guest land in the host directory, and a malformed value is a
 * usage error (exit 64) before the VM is taken.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTartSim, type TartSim } from '../support/tart-sim.ts';
import { bootVm, ssh, stateOf } from './test-helpers.ts';

let sim: TartSim;

beforeAll(async () => {
  sim = await createTartSim({ bootDelayS: 0.1 });
  await sim.createBaseVm('base');
});
afterAll(async () => {
  await sim?.cleanup();
});

describe('tart run --dir', () => {
  it('shows each named share under My Shared Files in the guest, writable through to the host', async () => {
    const a = join(sim.dir, 'share-a');
    const b = join(sim.dir, 'share-b');
    mkdirSync(a);
    mkdirSync(b);
    writeFileSync(join(a, 'from-host.txt'), 'hello guest\n');
    await sim.tart(['clone', 'base', 'shared']);
    const { ip } = await bootVm(sim, 'shared', [`--dir=pods:${a}`, '--dir', `npm:${b}:ro`]);
    const read = await ssh(sim, ip, 'cat "$HOME/My Shared Files/pods/from-host.txt"');
    expect(read).toMatchObject({ code: 0, stdout: 'hello guest\n' });
    const write = await ssh(sim, ip, 'echo from-guest > "$HOME/My Shared Files/pods/out.txt" && ls "$HOME/My Shared Files"');
    expect(write).toMatchObject({ code: 0, stdout: 'npm\npods\n' });
    expect(readFileSync(join(a, 'out.txt'), 'utf8')).toBe('from-guest\n');
    await sim.tart(['stop', 'shared']);
  });

  it.each([
    ['an option other than tag=', 'pods:/tmp,ro=1'],
    ['a fourth field', 'pods:/tmp:ro:x'],
    ['a third field other than ro', 'pods:/tmp:rw'],
    ['an empty name', ':/tmp'],
  ])('refuses %s as a usage error, before taking the VM', async (_what, value) => {
    await sim.tart(['clone', 'base', 'bad']);
    const r = await sim.tart(['run', 'bad', '--no-graphics', `--dir=${value}`]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/^Error: invalid --dir syntax: /);
    expect(r.stderr).toContain("See 'tart run --help'");
    expect(await stateOf(sim, 'bad')).toBe('stopped');
  });

  it('refuses two unnamed shares, and a directory that does not exist', async () => {
    await sim.tart(['clone', 'base', 'bad2']);
    const two = await sim.tart(['run', 'bad2', '--no-graphics', '--dir', sim.dir, '--dir', sim.dir]);
    expect(two).toMatchObject({ code: 64 });
    expect(two.stderr).toContain('each one of them should be named');
    const missing = await sim.tart(['run', 'bad2', '--no-graphics', `--dir=x:${join(sim.dir, 'nope')}`]);
    expect(missing).toMatchObject({ code: 1 });
    expect(missing.stderr).toMatch(/^Error: the directory to share does not exist/);
    expect(await stateOf(sim, 'bad2')).toBe('stopped');
  });
});
