/**
 * Host caches on the real system: a controller, the real agent with two slots and a cache, and
 * the tart simulator, whose guests see `tart run --dir` shares at `~/My Shared Files/<name>`
 * (the agent's `vmSharedFilesRoot`). The guests' filesystem is the host's, so the builds meet
 * at a rendezvous directory of the host to be sure they run at once.
 */
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CLI } from '../support/controller-process.ts';
import { E2E_TEST_TIMEOUT_MS, FINAL, startFarm, WAIT, type Farm } from '../support/farm.ts';

vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

let farm: Farm;
let rendezvous: string;
let cacheDir: string;
let agentUrl: string;

beforeAll(async () => {
  farm = await startFarm({ agent: false });
  rendezvous = join(farm.sim.dir, 'rendezvous');
  cacheDir = join(farm.sim.dir, 'caches');
  mkdirSync(rendezvous);
  const agent = await farm.startAgent({
    maxConcurrentBuilds: 2,
    cacheDir,
    vmSharedFilesRoot: '~/My Shared Files',
    // 3000 bytes: room for a couple of small variants, not for two of 2000 bytes.
    caches: [{ name: 'pods', guestPath: '~/Library/Caches/CocoaPods', key: '$LOCK', maxSizeGb: 3000 / 1e9 }],
  });
  agentUrl = String((await agent.waitFor('status server listening', WAIT.logMs)).url);
});
afterAll(async () => {
  await farm?.stop();
});

const CACHE = '~/Library/Caches/CocoaPods';

/** Submits, waits for the end and for the agent to finish with it (the cache is promoted after the VM is gone). */
async function build(steps: { name: string; run: string }[], env: Record<string, string> = {}): Promise<{ id: string; status: string; log: string }> {
  const id = await farm.submit({ steps, env });
  return finish(id);
}
async function finish(id: string): Promise<{ id: string; status: string; log: string }> {
  const done = await farm.waitBuild(id, FINAL);
  await farm.agents[0]!.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
  return { id, status: String(done.status), log: await farm.log(id) };
}

/** A step that writes its mark into the cache, waits for the other build to have written, then checks it sees none of its files. */
function side(me: string, other: string): { name: string; run: string }[] {
  const r = `'${rendezvous}'`;
  return [
    {
      name: `write ${me}`,
      run: [
        `echo half-written > ${CACHE}/${me}.partial`,
        `echo from-${me} > ${CACHE}/shared.txt`,
        `touch ${r}/${me}-wrote`,
        `i=0; while [ ! -f ${r}/${other}-wrote ] && [ $i -lt 900 ]; do sleep 0.2; i=$((i+1)); done`,
        `test -f ${r}/${other}-wrote || { echo "the other build never wrote"; exit 7; }`,
        `echo "${me} sees: $(ls ${CACHE} | tr '\\n' ' ')"`,
        `test ! -e ${CACHE}/${other}.partial && grep -qx from-${me} ${CACHE}/shared.txt`,
        `mv ${CACHE}/${me}.partial ${CACHE}/${me}.done`,
      ].join('\n'),
    },
  ];
}

async function cacheCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'cache', ...args, '--config', farm.configPath], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : Number((err as { code?: number }).code ?? 1), stdout, stderr });
    });
  });
}

describe('host caches', () => {
  it('two builds at once each write their own copy and never see the other\'s files; the next build finds one of them whole', async () => {
    const [a, b] = await Promise.all([farm.submit({ steps: side('a', 'b') }), farm.submit({ steps: side('b', 'a') })]);
    const [ra, rb] = await Promise.all([finish(a), finish(b)]);
    expect(ra.status, ra.log).toBe('succeeded');
    expect(rb.status, rb.log).toBe('succeeded');
    expect(ra.log).toContain('cache pods: miss (starts empty)');
    expect(ra.log).toMatch(/a sees: (a\.partial shared\.txt|shared\.txt a\.partial) \n/);
    const next = await build([{ name: 'read', run: `echo "found: $(ls ${CACHE} | tr '\\n' ' ')"; cat ${CACHE}/shared.txt` }]);
    expect(next.status, next.log).toBe('succeeded');
    expect(next.log).toContain('cache pods: hit');
    // The later promotion won, whole: its mark and its shared.txt, nothing of the other.
    const winner = /found: ([ab])\.done shared\.txt \nfrom-([ab])\n/.exec(next.log);
    expect(winner, next.log).not.toBeNull();
    expect(winner![1]).toBe(winner![2]);
    const metrics = await (await request(`${agentUrl}/metrics`)).body.text();
    expect(metrics).toContain('expo_worker_agent_cache_total{cache="pods",result="hit"} 1');
    expect(metrics).toContain('expo_worker_agent_cache_total{cache="pods",result="miss"} 2');
    expect(metrics).toMatch(/expo_worker_agent_cache_bytes\{cache="pods"\} [1-9]\d*/);
  });

  it('a failed build leaves the cache as it was', async () => {
    const before = await build([{ name: 'read', run: `cat ${CACHE}/shared.txt` }]);
    const shared = /\n(from-[ab])\n/.exec(before.log)?.[1];
    expect(shared, before.log).toBeDefined();
    const failed = await build([{ name: 'break', run: `echo broken > ${CACHE}/shared.txt; echo junk > ${CACHE}/junk; exit 3` }]);
    expect(failed.status).toBe('failed');
    const after = await build([{ name: 'read', run: `cat ${CACHE}/shared.txt; test ! -e ${CACHE}/junk && echo no-junk` }]);
    expect(after.status, after.log).toBe('succeeded');
    expect(after.log).toContain(`${shared}\nno-junk\n`);
  });

  it('keys pick variants; past maxSizeGb the least recently used go; cache list and clear work as child processes', async () => {
    const write = [{ name: 'fill', run: `head -c 2000 /dev/zero > ${CACHE}/blob` }];
    expect((await build(write, { LOCK: 'one' })).status).toBe('succeeded');
    const listed = await cacheCli(['list', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as { key: string }[]).map((v) => v.key).sort()).toEqual(['default', 'one']);
    expect((await build(write, { LOCK: 'two' })).status).toBe('succeeded');
    // 2000 + 2000 > 3000 bytes: the default variant and then "one" went (least recently used first).
    const after = await cacheCli(['list', '--json']);
    expect((JSON.parse(after.stdout) as { key: string; bytes: number }[]).map((v) => [v.key, v.bytes])).toEqual([['two', 2000]]);
    const text = await cacheCli(['list', 'pods']);
    expect(text.stdout).toContain('pods: 1 variant, 2.0 KB (limit 3.0 KB, guest ~/Library/Caches/CocoaPods)');
    const unknown = await cacheCli(['clear', 'nope']);
    expect(unknown.code).toBe(64);
    const cleared = await cacheCli(['clear', 'pods']);
    expect(cleared).toMatchObject({ code: 0, stdout: 'pods: removed 1 variant\n' });
    expect(JSON.parse((await cacheCli(['list', '--json'])).stdout)).toEqual([]);
    const fresh = await build([{ name: 'read', run: 'true' }], { LOCK: 'two' });
    expect(fresh.log).toContain('cache pods (');
    expect(fresh.log).toContain('miss (starts empty)');
  });
});
