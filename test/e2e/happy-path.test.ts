import { afterEach, describe, expect, it, vi } from 'vitest';
import { FINAL, startFarm, type Farm, WAIT, E2E_TEST_TIMEOUT_MS } from '../support/farm.ts';

// Builds on the simulator are slow on a busy machine: see WAIT in test/support/farm.ts.
vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

let farm: Farm | undefined;
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
});

describe('a build on the real system', () => {
  it('runs in a fresh VM with its env, streams logs and progress, succeeds, and deletes the clone', async () => {
    farm = await startFarm();
    const id = await farm.submit({
      steps: [
        { name: 'hello', run: 'echo "hello $WHO"; echo "tricky=[$TRICKY]"; echo ::progress 40' },
        { name: 'work', run: 'for i in 1 2 3; do echo "line $i"; sleep 0.3; done; echo ::progress 90; sleep 1.5' },
      ],
      env: { WHO: 'expo', TRICKY: `it's "quoted" $HOME \`x\`\nEXPO_EOF_line` },
    });
    const done = await farm.waitBuild(id, (b) => ['succeeded', 'failed', 'cancelled'].includes(b.status));
    const log = await farm.log(id);
    expect(done, log).toMatchObject({ status: 'succeeded', exitCode: 0, workerId: 'mac-1' });
    expect(log).toContain('hello expo');
    // Values reach the step exactly as submitted: no shell expansion, quotes and newlines intact.
    expect(log).toContain(`tricky=[it's "quoted" $HOME \`x\`\nEXPO_EOF_line]`);
    expect(log).toContain('line 3');
    expect(log).toContain('[expo-worker] step 2/2: work');
    expect(done.progress).toBeGreaterThanOrEqual(90);
    // The agent reported each step's start: in order, within the run, each with a duration
    // (the second one's spans at least its sleeps).
    const starts = (done.stepTimes as { startedAt: string | null; durationS: number | null }[]).map((t) => Date.parse(t.startedAt ?? ''));
    expect(starts.every((t) => Number.isFinite(t)), JSON.stringify(done.stepTimes)).toBe(true);
    expect(Date.parse(done.startedAt)).toBeLessThanOrEqual(starts[0]!);
    expect(starts[0]!).toBeLessThanOrEqual(starts[1]!);
    expect(starts[1]!).toBeLessThanOrEqual(Date.parse(done.finishedAt));
    expect(done.stepTimes[1].durationS).toBeGreaterThanOrEqual(1.5);
    // The clone is deleted once the result is in; the slot is free again.
    await farm.agents[0]!.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
    expect(await farm.vms()).toEqual(['base']);
  });

  it('logs no warning for a clean build: no false "aborting build … vm_crashed" once its VM is deleted', async () => {
    farm = await startFarm();
    const id = await farm.submit();
    expect(await farm.waitBuild(id, FINAL)).toMatchObject({ status: 'succeeded' });
    const agent = farm.agents[0]!;
    await agent.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
    // The VM's exit after its release used to be taken for a crash; give such a late line its moment.
    await new Promise((r) => setTimeout(r, 1500));
    const warnings = agent.lines.filter((l) => {
      try {
        return (JSON.parse(l) as { level: number }).level >= 40; // pino: 40 warn, 50 error
      } catch {
        return true; // anything not from the logger (a stack trace) counts too
      }
    });
    expect(warnings).toEqual([]);
  });
});

describe('a step that leaves a process behind', () => {
  it('ends when the step exits, not when the background process does', async () => {
    farm = await startFarm();
    const id = await farm.submit({
      steps: [
        { name: 'start server', run: '(sleep 300; echo never) & echo server started' },
        { name: 'use it', run: 'echo second step ran' },
      ],
    });
    const done = await farm.waitBuild(id, (b) => ['succeeded', 'failed', 'cancelled'].includes(b.status));
    const log = await farm.log(id);
    expect(done, log).toMatchObject({ status: 'succeeded' });
    expect(log).toContain('server started');
    expect(log).toContain('second step ran');
    await farm.agents[0]!.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
    expect(await farm.vms()).toEqual(['base']);
  });
});
