import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultWorkerId, expandHome, loadAgentConfig, parseAgentConfig } from '../../../src/agent/config.ts';
import type { ExpoError } from '../../../src/protocol/errors.ts';

const home = mkdtempSync(join(tmpdir(), 'cfg-'));
writeFileSync(join(home, 'key'), 'not a real key');
afterAll(() => rmSync(home, { recursive: true, force: true }));

const SEED = {
  vmName: 'expo-build-vm',
  vmUser: 'builder',
  vmSshKey: '~/key',
  vmIp: '192.168.64.2',
  controllerUrl: 'https://builds.example.com',
  apiKey: 'your-api-key',
};

function problems(raw: unknown, opts = {}): string[] {
  try {
    parseAgentConfig(raw, { home, hostName: 'Mac-mini.local', ...opts });
  } catch (err) {
    expect((err as ExpoError).code).toBe('CFG_INVALID');
    return ((err as ExpoError).details as { problems: string[] }).problems;
  }
  throw new Error('expected CFG_INVALID');
}

describe('agent config', () => {
  it("accepts the seed's six fields verbatim and fills defaults", () => {
    const c = parseAgentConfig(SEED, { home, hostName: 'Mac-mini.local' });
    expect(c).toMatchObject({
      ...SEED,
      vmSshKey: join(home, 'key'),
      workerId: 'Mac-mini',
      minFreeDiskGb: 20,
      maxConcurrentBuilds: 1,
      heartbeatIntervalS: 30,
      sshReadyTimeoutS: 120,
      vmIpWaitS: 120,
      metricsAddress: '127.0.0.1:9464',
      vmControllerUrl: 'https://builds.example.com',
      clonePrefix: 'expo',
      tartPath: undefined,
      tartHome: undefined,
      logDir: join(home, '.expo-worker', 'logs'),
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('names every bad field in one error', () => {
    const p = problems({
      vmName: '',
      vmSshKey: '~/missing',
      vmIp: '999.1.1.1',
      controllerUrl: 'ftp://x',
      workerId: '-bad id',
      maxConcurrentBuilds: 3,
      minFreeDiskGb: -1,
      heartbeatIntervalS: 0,
      sshReadyTimeoutS: 'soon',
      metricsAddress: 'nope',
      vmControllerUrl: 'not a url',
      clonePrefix: 'has-dash',
      vmUsr: 'typo',
    });
    const fields = p.map((s) => s.split(':')[0]);
    expect(fields.sort()).toEqual(
      [
        'vmUsr', 'vmName', 'vmUser', 'vmSshKey', 'vmIp', 'controllerUrl', 'apiKey', 'workerId', 'maxConcurrentBuilds',
        'metricsAddress', 'vmControllerUrl', 'clonePrefix', 'minFreeDiskGb', 'heartbeatIntervalS', 'sshReadyTimeoutS',
      ].sort(),
    );
    expect(p).toContain('vmUser: is required');
    expect(p).toContain('maxConcurrentBuilds: must be ≥ 1 and ≤ 2 (got 3)');
    expect(p.find((s) => s.startsWith('vmSshKey'))).toContain(join(home, 'missing'));
  });

  it('lets the doctor go without a controller', () => {
    const { controllerUrl: _c, apiKey: _a, ...rest } = SEED;
    expect(problems(rest)).toEqual(['controllerUrl: is required', 'apiKey: is required']);
    expect(parseAgentConfig(rest, { home, requireController: false }).controllerUrl).toBe('');
  });

  it('never puts the api key in an error', () => {
    try {
      parseAgentConfig({ ...SEED, apiKey: 'sekrit-123', vmUser: 5 }, { home });
    } catch (err) {
      expect(JSON.stringify({ m: (err as Error).message, d: (err as ExpoError).details })).not.toContain('sekrit-123');
    }
  });

  it('reads the file with conf and reports a missing or broken file', () => {
    const path = join(home, 'config.json');
    writeFileSync(path, JSON.stringify({ ...SEED, maxConcurrentBuilds: 2, tartHome: '~/th' }));
    const c = loadAgentConfig(path, { home });
    expect(c.maxConcurrentBuilds).toBe(2);
    expect(c.tartHome).toBe(join(home, 'th'));
    expect(() => loadAgentConfig(join(home, 'nope.json'), { home })).toThrow(expect.objectContaining({ code: 'CFG_INVALID', message: expect.stringContaining('not found') }));
    writeFileSync(path, '{ broken');
    expect(() => loadAgentConfig(path, { home })).toThrow(expect.objectContaining({ code: 'CFG_INVALID' }));
  });

  it('expands ~ and sanitizes host names', () => {
    expect(expandHome('~/x', '/h')).toBe('/h/x');
    expect(expandHome('/abs', '/h')).toBe('/abs');
    expect(defaultWorkerId('Jane’s MacBook Pro.local')).toBe('Jane-s-MacBook-Pro');
    expect(defaultWorkerId('---')).toBe('worker');
  });
});
