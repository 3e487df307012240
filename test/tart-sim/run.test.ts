/**
 * Contract of `tart run` and what sees it (docs/tart.md §2 run/stop/delete, §4): real locking,
 * the second run, signal semantics, the 2-macOS-VM limit, and that every process of a VM dies
 * with its run process on every path.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTartSim, type TartSim } from '../support/tart-sim.ts';
import { bootVm, ssh, stateOf, waitUntil } from './test-helpers.ts';

let sim: TartSim;
beforeEach(async () => {
  // limitDelayS: long enough to observe the 3rd VM holding its lock before it fails — through
  // `tart list`, a Node start that alone takes ~2 s on a busy machine.
  sim = await createTartSim({ bootDelayS: 0.1, limitDelayS: 5 });
  await sim.createBaseVm('base');
});
afterEach(async () => {
  await sim.cleanup();
});

/** Processes of the VM (sshd and guest sessions), i.e. not tart commands or supervisors. */
const guestProcesses = (): string[] =>
  sim.listProcesses().map((p) => p.cmdline).filter((c) => !c.includes('main.ts'));

describe('tart run locking', () => {
  it('shows running, refuses a second run (2), a delete (1); stop-stopped is 2', async () => {
    await sim.tart(['clone', 'base', 'vm']);
    const { run } = await bootVm(sim, 'vm');
    expect(await stateOf(sim, 'vm')).toBe('running');
    expect(await sim.tart(['run', 'vm', '--no-graphics'])).toMatchObject({ code: 2, stderr: 'VM "vm" is already running!\n' });
    expect(await sim.tart(['delete', 'vm'])).toMatchObject({ code: 1, stderr: 'VM "vm" is running\n' });
    expect(await sim.tart(['stop', 'vm'])).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(await run.exited).toMatchObject({ code: 0, stdout: 'Stopping VM...\n' });
    expect(await stateOf(sim, 'vm')).toBe('stopped');
    expect(await sim.tart(['stop', 'vm'])).toMatchObject({ code: 2, stderr: 'VM "vm" is not running\n' });
    expect((await sim.tart(['delete', 'vm'])).code).toBe(0);
    expect(guestProcesses()).toEqual([]);
  });

  it('reports a missing VM with the Error: prefix and exit 1', async () => {
    expect(await sim.tart(['run', 'nope'])).toMatchObject({ code: 1, stderr: 'Error: the specified VM "nope" does not exist\n' });
    expect(await sim.tart(['stop', 'nope'])).toMatchObject({ code: 2, stderr: 'the specified VM "nope" does not exist\n' });
    expect((await sim.tart(['ip', 'nope'])).code).toBe(2);
  });

  it('fails a 3rd macOS VM after holding its lock, naming the others; Linux VMs do not count', async () => {
    for (const n of ['a', 'b', 'c']) await sim.tart(['clone', 'base', n]);
    await sim.createBaseVm('linux', { os: 'linux' });
    await bootVm(sim, 'a');
    await bootVm(sim, 'b');
    await bootVm(sim, 'linux');
    const third = sim.startRun('c');
    await waitUntil('c to hold its lock', async () => (await stateOf(sim, 'c')) === 'running');
    expect(await third.exited).toMatchObject({
      code: 1, stderr: 'The number of VMs exceeds the system limit (other running VMs: a, b)\n',
    });
    expect(await stateOf(sim, 'c')).toBe('stopped');
  });

  it('a stop sent the moment a starting VM reads running ends it cleanly (handlers before the lock)', async () => {
    // Regression: the run wrote its lock before it listened for SIGINT, so a `tart stop` in the
    // start checks (here: the 3rd macOS VM holding its lock) met Node's default action.
    for (const n of ['a', 'b', 'c']) await sim.tart(['clone', 'base', n]);
    await bootVm(sim, 'a');
    await bootVm(sim, 'b');
    const third = sim.startRun('c');
    await waitUntil('c to hold its lock', async () => (await stateOf(sim, 'c')) === 'running');
    expect(await sim.tart(['stop', 'c'])).toMatchObject({ code: 0, stderr: '' });
    expect(await third.exited).toMatchObject({ code: 0, signal: null, stdout: 'Stopping VM...\n', stderr: '' });
    expect(await stateOf(sim, 'c')).toBe('stopped');
  });
});

describe('tart run signals', () => {
  it.each(['SIGTERM', 'SIGKILL'] as const)('%s kills the run process and every guest process with it', async (signal) => {
    const { ip, run } = await bootVm(sim, 'base');
    expect((await ssh(sim, ip, 'nohup sleep 300 >/dev/null 2>&1 & echo started')).stdout).toBe('started\n');
    const session = ssh(sim, ip, 'sleep 300', 20_000);
    await waitUntil('guest sleeps', () => guestProcesses().filter((c) => c === 'sleep 300').length === 2);
    run.child.kill(signal);
    expect(await run.exited).toMatchObject({ code: null, signal });
    await waitUntil('guest processes to die', () => guestProcesses().length === 0, 30_000);
    expect((await session).code).not.toBe(0);
    expect(await stateOf(sim, 'base')).toBe('stopped');
  });

  it('stop SIGKILLs a run that ignores SIGINT past the timeout', async () => {
    const { run } = await bootVm(sim, 'base');
    await sim.fault('base', 'freeze');
    run.child.kill('SIGSTOP'); // a wedged tart run: SIGINT stays pending
    const started = Date.now();
    expect((await sim.tart(['stop', 'base', '--timeout', '1'])).code).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(await run.exited).toMatchObject({ signal: 'SIGKILL' });
    await waitUntil('guest processes to die', () => guestProcesses().length === 0, 30_000);
  });
});
