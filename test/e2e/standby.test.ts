/**
 * Standby VMs (issue 15): the real agent with `standby: 1`, the real controller and the tart
 * simulator. A claim runs on the pre-booted VM (no clone after the claim), a dead or outdated
 * standby is deleted and replaced (a dead one before any claim; one found dead by the claim's
 * SSH re-check is the unit test's), two slots share one standby without a third VM, a drain
 * leaves no VM and no simulator process behind, and host caches work on standbys: a standby
 * boots with its (empty) cache shares and gets the build's copy at the claim.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { E2E_TEST_TIMEOUT_MS, FINAL, startFarm, WAIT, type AgentProcess, type Farm } from '../support/farm.ts';
import { sampleValue } from '../support/prom-text.ts';

vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

let farm: Farm | undefined;
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
});

const STANDBY = /^expo-mac-1-standby[a-z0-9]+-0$/;

async function metricsOf(agent: AgentProcess): Promise<string> {
  const url = String((await agent.waitFor('status server listening', WAIT.logMs)).url);
  return (await request(`${url}/metrics`)).body.text();
}

/** The name of the next standby VM that is ready and is none of `except`. */
async function standbyReady(agent: AgentProcess, except: string[] = []): Promise<string> {
  const e = await agent.waitFor('standby VM ready', WAIT.logMs, (x) => !except.includes(String(x.vm)));
  const name = String(e.vm);
  expect(name).toMatch(STANDBY);
  return name;
}

async function succeeded(f: Farm, id: string): Promise<string> {
  const b = await f.waitBuild(id, FINAL);
  const log = await f.log(id);
  expect(b.status, log).toBe('succeeded');
  await f.agents[0]!.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
  return log;
}

describe('standby VMs', () => {
  it('runs a claim on the pre-booted standby, clones nothing after the claim, counts a hit, and makes the next standby', async () => {
    farm = await startFarm({ agentConfig: { standby: 1 } });
    const agent = farm.agents[0]!;
    const standby = await standbyReady(agent);
    expect(await farm.vms()).toEqual(['base', standby]);
    const id = await farm.submit();
    const log = await succeeded(farm, id);
    expect(log).toContain(`using the standby VM ${standby}`);
    expect(log).toContain(`VM ${standby} is healthy`);
    expect(log).not.toContain('cloning base');
    // No clone in the agent's log between the claim and the build's end either.
    const claimed = agent.lines.findIndex((l) => l.includes('build claimed') && l.includes(id));
    const ended = agent.lines.findIndex((l) => l.includes('build done') && l.includes(id));
    expect(agent.lines.slice(claimed, ended).filter((l) => l.includes('cloning'))).toEqual([]);
    const next = await standbyReady(agent, [standby]);
    expect(await farm.vms()).toEqual(['base', next]);
    const text = await metricsOf(agent);
    expect(sampleValue(text, 'expo_worker_agent_standby_total', { result: 'hit' })).toBe(1);
    expect(sampleValue(text, 'expo_worker_agent_standby_total', { result: 'miss' }) ?? 0).toBe(0);
    expect(sampleValue(text, 'expo_worker_agent_claim_to_first_step_seconds_count')).toBe(1);
  });

  it('deletes a standby whose tart run exited and boots the next one without waiting for a claim, which then runs on it (a hit)', async () => {
    farm = await startFarm({ agentConfig: { standby: 1 } });
    const agent = farm.agents[0]!;
    const standby = await standbyReady(agent);
    await farm.sim.fault(standby, 'crash');
    const next = await standbyReady(agent, [standby]);
    expect(agent.lines.some((l) => l.includes('deleting the standby VM') && l.includes(standby) && l.includes('its tart run exited'))).toBe(true);
    expect(await farm.vms()).toEqual(['base', next]);
    const id = await farm.submit();
    const log = await succeeded(farm, id);
    expect(log).toContain(`using the standby VM ${next}`);
    const text = await metricsOf(agent);
    expect(sampleValue(text, 'expo_worker_agent_standby_total', { result: 'hit' })).toBe(1);
    expect(sampleValue(text, 'expo_worker_agent_standby_total', { result: 'miss' }) ?? 0).toBe(0);
  });

  it('replaces a standby whose base image changed: the build never runs on the old one', async () => {
    farm = await startFarm({ agentConfig: { standby: 1 } });
    const agent = farm.agents[0]!;
    const standby = await standbyReady(agent);
    // An operator updating the image: `tart clone NEW base` replaces the base's directory.
    await farm.sim.createBaseVm('base2');
    const r = await farm.sim.tart(['clone', 'base2', 'base']);
    expect(r.code, r.stderr).toBe(0);
    const id = await farm.submit();
    const log = await succeeded(farm, id);
    expect(log).not.toContain(`using the standby VM ${standby}`);
    // Found at the claim, or by the pool's own check if it came first.
    expect(`${log}\n${agent.lines.join('\n')}`).toContain('the base image changed since it was cloned');
    const next = await standbyReady(agent, [standby]);
    expect((await farm.vms()).sort()).toEqual(['base', 'base2', next].sort());
  });

  it('keeps one standby for two slots and never runs a third VM', async () => {
    farm = await startFarm({ agentConfig: { standby: 1, maxConcurrentBuilds: 2 } });
    const agent = farm.agents[0]!;
    await standbyReady(agent);
    let most = { running: 0, standbys: 0 };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const res = await farm!.sim.tart(['list', '--format', 'json', '--source', 'local']);
        if (res.code === 0) {
          const vms = JSON.parse(res.stdout) as { Name: string; State: string }[];
          const running = vms.filter((v) => v.State === 'running').length;
          // A standby not yet taken: its name, and no build log says it was taken.
          const standbys = vms.filter((v) => STANDBY.test(v.Name) && !agent.lines.some((l) => l.includes('standby VM taken') && l.includes(v.Name))).length;
          most = { running: Math.max(most.running, running), standbys: Math.max(most.standbys, standbys) };
        }
      }
    })();
    const steps = [{ name: 'hold', run: 'sleep 3; echo held' }];
    const a = await farm.submit({ steps });
    const b = await farm.submit({ steps });
    await succeeded(farm, a);
    await succeeded(farm, b);
    await standbyReady(agent, agent.lines.filter((l) => l.includes('standby VM taken')).map((l) => String(JSON.parse(l).vm)));
    sampling = false;
    await sampler;
    expect(most.running).toBeLessThanOrEqual(2);
    expect(most.standbys).toBeLessThanOrEqual(1);
    const text = await metricsOf(agent);
    const hits = sampleValue(text, 'expo_worker_agent_standby_total', { result: 'hit' }) ?? 0;
    const misses = sampleValue(text, 'expo_worker_agent_standby_total', { result: 'miss' }) ?? 0;
    expect(hits + misses).toBe(2);
    expect(hits).toBeGreaterThanOrEqual(1);
  });

  it("lets the second slot's build take the standby while the first runs: the host preflight does not count it as one VM too many", async () => {
    // The preflight every second: with the standby beside a build, two VMs run all the time.
    farm = await startFarm({ agentConfig: { standby: 1, maxConcurrentBuilds: 2, maintenanceCron: '* * * * * *' } });
    const agent = farm.agents[0]!;
    const first = await standbyReady(agent);
    const a = await farm.submit({ steps: [{ name: 'hold', run: 'sleep 300' }] });
    expect((await farm.waitBuild(a, (x) => x.status === 'running' || FINAL(x))).status).toBe('running');
    const second = await standbyReady(agent, [first]);
    // A preflight that ran while both VMs (a's and the standby) were up.
    const vmLimitChecks = async () => sampleValue(await metricsOf(agent), 'expo_worker_agent_health_checks_total', { check: 'vm-limit' }) ?? 0;
    const before = await vmLimitChecks();
    while ((await vmLimitChecks()) < before + 2) await new Promise((r) => setTimeout(r, 200));
    expect(sampleValue(await metricsOf(agent), 'expo_worker_agent_health_checks_total', { check: 'vm-limit', result: 'failed' }) ?? 0).toBe(0);
    const b = await farm.submit();
    const log = await succeeded(farm, b);
    expect(log).toContain(`using the standby VM ${second}`);
    expect((await farm.build(a)).status).toBe('running');
    await farm.api('POST', `/api/v1/builds/${a}/cancel`);
    expect((await farm.waitBuild(a, FINAL)).status).toBe('cancelled');
  });

  it('deletes the standby on a drain, ready or still booting, and leaves no VM or process', async () => {
    farm = await startFarm({ agentConfig: { standby: 1 } });
    const ready = farm.agents[0]!;
    await standbyReady(ready);
    ready.signal('SIGTERM');
    expect(await ready.exited).toBe(0);
    expect(await farm.vms()).toEqual(['base']);

    // Booting: the drain aborts the preparation and deletes the half-made clone.
    await farm.sim.fault('base', 'slow-boot', '30');
    const booting = await farm.startAgent({ standby: 1 });
    await booting.waitFor('preparing a standby VM', WAIT.logMs);
    await booting.waitFor(`starting expo-mac-1-standby`, WAIT.logMs);
    booting.signal('SIGTERM');
    expect(await booting.exited).toBe(0);
    expect(await farm.vms()).toEqual(['base']);
    // A stopped VM's supervisor and sshd take a moment to go; the harness's cleanup then checks again.
    let left = farm.sim.listProcesses();
    for (let i = 0; i < 100 && left.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = farm.sim.listProcesses();
    }
    expect(left.map((p) => p.cmdline)).toEqual([]);
  });
});

describe('standby VMs with host caches', () => {
  const CACHE = '~/Library/Caches/CocoaPods';

  it("a standby booted before the last build ended finds that build's files; a failed build on a standby leaves the cache as it was; each VM's shares go with it", async () => {
    farm = await startFarm({ agent: false });
    const cacheDir = join(farm.sim.dir, 'caches');
    const gate = join(farm.sim.dir, 'gate');
    // Two slots: the standby taken by one build is replaced while that build still runs.
    const agent = await farm.startAgent({ standby: 1, maxConcurrentBuilds: 2, cacheDir, vmSharedFilesRoot: '~/My Shared Files', caches: [{ name: 'pods', guestPath: CACHE }] });
    const s1 = await standbyReady(agent);
    const one = await farm.submit({
      steps: [{ name: 'write', run: `echo one > ${CACHE}/f\ni=0; while [ ! -f '${gate}' ] && [ $i -lt 900 ]; do sleep 0.2; i=$((i+1)); done` }],
    });
    // The next standby boots, its share mounted, while build one runs: before one's cache exists.
    const s2 = await standbyReady(agent, [s1]);
    writeFileSync(gate, '');
    const log1 = await succeeded(farm, one);
    expect(log1).toContain(`using the standby VM ${s1}`);
    expect(log1).toContain('cache pods: miss (starts empty)');

    const two = await farm.submit({ steps: [{ name: 'read', run: `cat ${CACHE}/f; echo two >> ${CACHE}/f` }] });
    const log2 = await succeeded(farm, two);
    expect(log2).toContain(`using the standby VM ${s2}`);
    expect(log2).toContain('cache pods: hit');
    expect(log2).toContain('\none\n');

    const three = await farm.submit({ steps: [{ name: 'break', run: `echo broken > ${CACHE}/f; echo junk > ${CACHE}/junk; exit 3` }] });
    expect((await farm.waitBuild(three, FINAL)).status).toBe('failed');
    await agent.waitFor('build done', WAIT.logMs, (e) => e.buildId === three);
    const log3 = await farm.log(three);
    expect(log3).toMatch(/using the standby VM expo-mac-1-standby/);

    const four = await farm.submit({ steps: [{ name: 'read', run: `cat ${CACHE}/f; test ! -e ${CACHE}/junk && echo no-junk` }] });
    const log4 = await succeeded(farm, four);
    expect(log4).toMatch(/using the standby VM expo-mac-1-standby/);
    expect(log4).toContain('\none\ntwo\nno-junk\n');

    // Of every VM's shares only the standby's that waits for the next claim is left.
    const taken = agent.lines.filter((l) => l.includes('standby VM taken')).map((l) => String(JSON.parse(l).vm));
    expect(taken).toHaveLength(4);
    const waiting = await standbyReady(agent, taken);
    expect(readdirSync(join(cacheDir, '.vm'))).toEqual([waiting]);
    const text = await metricsOf(agent);
    expect(sampleValue(text, 'expo_worker_agent_standby_total', { result: 'hit' })).toBe(4);
    expect(sampleValue(text, 'expo_worker_agent_cache_total', { cache: 'pods', result: 'hit' })).toBe(3);
    expect(sampleValue(text, 'expo_worker_agent_cache_total', { cache: 'pods', result: 'miss' })).toBe(1);
  });
});
