import { existsSync, readFileSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FINAL, startFarm, type Farm, E2E_TEST_TIMEOUT_MS } from '../support/farm.ts';

vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

let farm: Farm | undefined;
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
});

const TOKEN = 'ghp_S3cretValue0123456789abcdef';
const KEY = 'line-one-of-the-key\nline-two-of-the-key';

describe('secret env on the real system', () => {
  it('a secret a step prints (whole, split across two log chunks, line by line) is *** in the log, in no process log, and gone from the store at the end', async () => {
    farm = await startFarm();
    const id = await farm.submit({
      steps: [
        {
          name: 'leaky',
          // The second half comes after more than the agent's flush interval: two chunks.
          run: 'echo "token=$TOKEN"; printf "half=%s" "${TOKEN:0:12}"; sleep 1.5; printf "%s\\n" "${TOKEN:12}"; echo "$KEY"; echo "plain=$PLAIN"',
        },
      ],
      env: { PLAIN: 'visible' },
      secretEnv: { TOKEN, KEY },
    });
    const done = await farm.waitBuild(id, FINAL);
    const log = await farm.log(id);
    expect(done, log).toMatchObject({ status: 'succeeded', secretEnvNames: ['KEY', 'TOKEN'] });
    expect(log).toContain('token=***\n');
    expect(log).toContain('half=***\n');
    expect(log).toContain('***\n***\n');
    expect(log).toContain('plain=visible');
    for (const part of [TOKEN, TOKEN.slice(0, 12), TOKEN.slice(12), 'line-one-of-the-key', 'line-two-of-the-key']) {
      expect(log).not.toContain(part);
      expect(farm.agents[0]!.lines.join('\n')).not.toContain(part);
      expect(farm.controller.output.join('\n')).not.toContain(part);
    }
    const db = new DatabaseSync(farm.dbPath, { readOnly: true });
    try {
      expect(db.prepare('SELECT secret_env FROM builds WHERE id = ?').get(id)).toEqual({ secret_env: null });
    } finally {
      db.close();
    }
    const bytes = Buffer.concat([farm.dbPath, `${farm.dbPath}-wal`].filter((p) => existsSync(p)).map((p) => readFileSync(p)));
    expect(bytes.includes(TOKEN)).toBe(false);
  });
});
