/**
 * Contract of `tart run`'s Softnet flags (specs/tart-cli.md §2 run): what the simulator accepts,
 * records (`tart sim net NAME`) and refuses as real tart does.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTartSim, type TartSim } from '../support/tart-sim.ts';
import { bootVm, stateOf } from './test-helpers.ts';

const FAKE_BIN = join(import.meta.dirname, 'fake-bin');
let sim: TartSim;
let noSoftnet: TartSim;

beforeAll(async () => {
  sim = await createTartSim({ bootDelayS: 0.1, extraEnv: { PATH: `${FAKE_BIN}:${process.env.PATH ?? ''}` } });
  noSoftnet = await createTartSim({ bootDelayS: 0.1 });
  for (const s of [sim, noSoftnet]) await s.createBaseVm('base');
});
afterAll(async () => {
  await Promise.all([sim, noSoftnet].map((s) => s?.cleanup()));
});

async function net(s: TartSim, name: string): Promise<unknown> {
  return JSON.parse((await s.tart(['sim', 'net', name])).stdout) as unknown;
}

describe('tart run --net-softnet', () => {
  it('records softnet and its allow list; a plain run is shared NAT', async () => {
    await sim.tart(['clone', 'base', 'iso']);
    await sim.tart(['clone', 'base', 'plain']);
    await bootVm(sim, 'iso', ['--net-softnet', '--net-softnet-allow', '10.0.0.5/32,192.168.1.0/24']);
    await bootVm(sim, 'plain');
    expect(await net(sim, 'iso')).toEqual({ mode: 'softnet', allow: ['10.0.0.5/32', '192.168.1.0/24'] });
    expect(await net(sim, 'plain')).toEqual({ mode: 'shared' });
    for (const n of ['iso', 'plain']) await sim.tart(['stop', n]);
  });

  it('refuses softnet without the softnet executable on PATH, before taking the VM', async () => {
    await noSoftnet.tart(['clone', 'base', 'vm']);
    const r = await noSoftnet.tart(['run', 'vm', '--no-graphics', '--net-softnet']);
    expect(r).toMatchObject({ code: 1, stderr: 'InitializationFailed(why: "softnet not found in PATH")\n' });
    expect(await stateOf(noSoftnet, 'vm')).toBe('stopped');
  });
});
