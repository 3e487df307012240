/**
 * Log format: JSON for machines, readable lines on a terminal (logs used to be JSON even on a
 * terminal), with secrets redacted in both.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, logDestination, resolveLogFormat } from '../../../src/sys/logger.ts';
import { killAllControllers, startControllerProcess } from '../../support/controller-process.ts';

const dirs: string[] = [];
afterEach(async () => {
  await killAllControllers();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('log format', () => {
  it('auto is pretty on a terminal and JSON otherwise; an explicit format wins either way', () => {
    expect(resolveLogFormat('auto', true)).toBe('pretty');
    expect(resolveLogFormat('auto', false)).toBe('json');
    expect(resolveLogFormat('json', true)).toBe('json');
    expect(resolveLogFormat('pretty', false)).toBe('pretty');
  });

  it('logs on a terminal are readable lines, not JSON, and still redact secrets', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    const log = createLogger('expo-worker-test', 'info', await logDestination('pretty', out));
    log.info({ buildId: 'b1', lease: 'lease-secret-123', env: { EXPO_TOKEN: 'tok-secret' } }, 'build claimed');
    expect(text).toMatch(/INFO.*build claimed/);
    expect(text).toContain('buildId: "b1"');
    expect(() => JSON.parse(text.split('\n')[0]!)).toThrow();
    expect(text).not.toContain('lease-secret-123');
    expect(text).not.toContain('tok-secret');
  });

  it('the controller process prints readable lines with --log-format pretty, JSON with the default on a pipe', async () => {
    for (const [extra, json] of [
      [['--log-format', 'pretty'], false],
      [[], true],
    ] as const) {
      const dir = mkdtempSync(join(tmpdir(), 'expo-log-format-'));
      dirs.push(dir);
      const p = await startControllerProcess({ dbPath: join(dir, 'c.db'), apiKey: 'log-format-admin-key-0', extraArgs: [...extra] });
      const line = p.output.find((l) => l.includes('controller listening on'))!;
      expect(p.output.some((l) => l.startsWith('{')), p.output.join('\n')).toBe(json);
      if (json) expect(JSON.parse(line)).toMatchObject({ service: 'expo-worker-controller' });
      else expect(line).toMatch(/INFO.*controller listening on http:\/\/127\.0\.0\.1:\d+/);
      expect(await p.stop()).toBe(0);
    }
  });
});
