import { afterEach, describe, expect, it } from 'vitest';
import { startFarm, type Farm } from '../support/farm.ts';

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
    const done = await farm.waitBuild(id, (b) => ['succeeded', 'failed', 'cancelled'].includes(b.status), 60_000);
    const log = await farm.log(id);
    expect(done, log).toMatchObject({ status: 'succeeded', exitCode: 0, workerId: 'mac-1' });
    expect(log).toContain('hello expo');
    // Values reach the step exactly as submitted: no shell expansion, quotes and newlines intact.
    expect(log).toContain(`tricky=[it's "quoted" $HOME \`x\`\nEXPO_EOF_line]`);
    expect(log).toContain('line 3');
    expect(log).toContain('[expo-worker] step 2/2: work');
    expect(done.progress).toBeGreaterThanOrEqual(90);
    // The clone is deleted once the result is in; the slot is free again.
    await farm.agents[0]!.waitFor('build done', 20_000, (e) => e.buildId === id);
    expect(await farm.vms()).toEqual(['base']);
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
    const done = await farm.waitBuild(id, (b) => ['succeeded', 'failed', 'cancelled'].includes(b.status), 30_000);
    const log = await farm.log(id);
    expect(done, log).toMatchObject({ status: 'succeeded' });
    expect(log).toContain('server started');
    expect(log).toContain('second step ran');
    await farm.agents[0]!.waitFor('build done', 20_000, (e) => e.buildId === id);
    expect(await farm.vms()).toEqual(['base']);
  });
});
