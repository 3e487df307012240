/**
 * Contract of `tart ip` (docs/tart.md §2 ip, §5): the 1-s wait loop, failure texts, leases
 * that appear after the boot delay, stale leases after stop/restart, and the IP faults.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BUSY_SLACK_MS } from '../support/busy.ts';
import { createTartSim, type TartSim, type TartSimOptions } from '../support/tart-sim.ts';
import { bootVm, ssh } from './test-helpers.ts';

let sim: TartSim | undefined;
async function setup(opts: TartSimOptions = {}): Promise<TartSim> {
  sim = await createTartSim(opts);
  await sim.createBaseVm('base');
  return sim;
}
afterEach(async () => {
  await sim?.cleanup();
  sim = undefined;
});

describe('tart ip', () => {
  it('tries once and sleeps 1 s with --wait 0; waits up to wait+1 s; exact failure texts', async () => {
    const s = await setup();
    let t = Date.now();
    expect(await s.tart(['ip', 'base'])).toMatchObject({ code: 1, stdout: '', stderr: 'no IP address found, is your VM running?\n' });
    expect(Date.now() - t).toBeGreaterThanOrEqual(1000);
    const waitS = 2;
    t = Date.now();
    expect((await s.tart(['ip', 'base', '--wait', String(waitS)])).code).toBe(1);
    expect(Date.now() - t).toBeGreaterThanOrEqual(waitS * 1000);
    // At most wait+1 s of its own; the slack is a Node start on a busy machine, not the loop's.
    expect(Date.now() - t).toBeLessThan((waitS + 1) * 1000 + BUSY_SLACK_MS);
    expect((await s.tart(['ip', 'base', '--resolver', 'agent'])).stderr).toBe(
      'no IP address found, is your VM running? (also make sure that Guest agent for Tart is running inside of a VM)\n');
  });

  it('answers after the boot delay with a stable loopback address', async () => {
    const s = await setup({ bootDelayS: 1.5 });
    s.startRun('base');
    const t = Date.now();
    const r = await s.tart(['ip', 'base', '--wait', '10']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^127\.64\.\d+\.2\n$/);
    expect(Date.now() - t).toBeGreaterThanOrEqual(700);
  });

  it('returns the stale lease of a stopped or restarted VM at once', async () => {
    const s = await setup();
    const { ip, run } = await bootVm(s, 'base');
    await s.tart(['stop', 'base']);
    await run.exited;
    expect(await s.tart(['ip', 'base'])).toMatchObject({ code: 0, stdout: `${ip}\n` });
    // The restart boots for longer than this test runs, so `tart ip` (one try without --wait) can
    // only answer from the old lease, and SSH cannot answer yet — however slow the machine.
    await s.fault('base', 'slow-boot', '600');
    const again = s.startRun('base');
    expect(await s.tart(['ip', 'base'])).toMatchObject({ code: 0, stdout: `${ip}\n` });
    expect((await ssh(s, ip, 'true', 30_000)).stderr).toMatch(/Connection refused/); // nothing answers yet
    // The agent resolver answers only once this run's guest has booted.
    expect((await s.tart(['ip', 'base', '--resolver', 'agent'])).code).toBe(1);
    await s.tart(['stop', 'base']);
    await again.exited;
  });

  it('gives a clone with a new MAC a new address', async () => {
    const s = await setup({ bootDelayS: 0.1 });
    await s.tart(['clone', 'base', 'c1']);
    const a = await bootVm(s, 'base');
    const b = await bootVm(s, 'c1');
    expect(a.ip).not.toBe(b.ip);
    expect((await ssh(s, b.ip, 'echo alive')).stdout).toBe('alive\n');
  });

  it('no-ip: ip never answers; stale-ip: answers at once with a dead address', async () => {
    const s = await setup({ bootDelayS: 0.1 });
    await s.tart(['clone', 'base', 'c1']);
    await s.fault('base', 'no-ip');
    const run = s.startRun('base');
    expect(await s.tart(['ip', 'base', '--wait', '2'])).toMatchObject({ code: 1, stderr: 'no IP address found\n' });
    await s.tart(['stop', 'base']);
    await run.exited;

    await s.fault('c1', 'stale-ip');
    const c1 = s.startRun('c1');
    const ip = (await s.tart(['ip', 'c1'])).stdout.trim();
    expect(ip).toMatch(/^127\.64\./);
    const r = await ssh(s, ip, 'true', 5000);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Connection refused/);
    await s.tart(['stop', 'c1']);
    await c1.exited;
  });
});
