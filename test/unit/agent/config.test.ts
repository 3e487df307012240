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

  it('pins the VM host key from a fingerprint or a list; a malformed fingerprint is refused by name', () => {
    const fp = 'SHA256:' + 'A'.repeat(43);
    const fp2 = 'SHA256:' + 'b/+'.repeat(14) + 'c';
    expect(parseAgentConfig(SEED, { home }).vmHostKey).toEqual([]);
    expect(parseAgentConfig({ ...SEED, vmHostKey: fp }, { home }).vmHostKey).toEqual([fp]);
    expect(parseAgentConfig({ ...SEED, vmHostKey: [fp, fp2] }, { home }).vmHostKey).toEqual([fp, fp2]);
    for (const bad of ['SHA256:short', 'MD5:aa:bb', [], [fp, 'nope'], 42]) {
      expect(problems({ ...SEED, vmHostKey: bad })).toEqual([expect.stringMatching(/^vmHostKey: must be an OpenSSH fingerprint/)]);
    }
  });

  it('isolates VMs with softnet: CIDRs checked, the controller address allowed by itself', () => {
    expect(parseAgentConfig(SEED, { home }).vmNetwork).toEqual({ isolation: 'shared' });
    const c = parseAgentConfig(
      { ...SEED, vmControllerUrl: 'http://10.0.0.5:3000', vmNetwork: { isolation: 'softnet', allow: ['192.168.1.0/24', '10.0.0.5/32'] } },
      { home },
    );
    expect(c.vmNetwork).toEqual({ isolation: 'softnet', allow: ['192.168.1.0/24', '10.0.0.5/32'] });
    // A host name cannot be allowed by address: only the listed CIDRs.
    expect(parseAgentConfig({ ...SEED, vmNetwork: { isolation: 'softnet', allow: ['10.0.0.5/32'] } }, { home }).vmNetwork).toEqual({ isolation: 'softnet', allow: ['10.0.0.5/32'] });
    expect(problems({ ...SEED, vmNetwork: { isolation: 'softnet', allow: ['npm.example.com', '10.0.0.0/33', '10.0.0.5'] } })).toEqual([
      expect.stringContaining('vmNetwork.allow: "npm.example.com" is not an IPv4 CIDR'),
      expect.stringContaining('vmNetwork.allow: "10.0.0.0/33" is not an IPv4 CIDR'),
      expect.stringContaining('vmNetwork.allow: "10.0.0.5" is not an IPv4 CIDR'),
    ]);
    expect(problems({ ...SEED, vmNetwork: { isolation: 'bridged' } })).toEqual(['vmNetwork.isolation: must be "shared" or "softnet"']);
    expect(problems({ ...SEED, vmNetwork: { isolation: 'shared', allow: ['10.0.0.5/32'] } })).toEqual(['vmNetwork.allow: needs "isolation": "softnet"']);
    expect(problems({ ...SEED, vmNetwork: { isolation: 'softnet', allow: ['10.0.0.5/32'], alow: [] } })).toEqual(['vmNetwork.alow: unknown field (isolation, allow)']);
  });

  it('a softnet allow list of 0.0.0.0/0 or 1.2.3.4/0 is refused: prefix length 0 silently defeated isolation', () => {
    for (const everything of ['0.0.0.0/0', '1.2.3.4/0']) {
      expect(problems({ ...SEED, vmNetwork: { isolation: 'softnet', allow: ['10.0.0.5/32', everything] } })).toEqual([
        `vmNetwork.allow: "${everything}" allows everything (prefix length 0), which defeats isolation: use "isolation": "shared" instead`,
      ]);
    }
    expect(parseAgentConfig({ ...SEED, vmNetwork: { isolation: 'softnet', allow: ['10.0.0.0/1'] } }, { home }).vmNetwork).toEqual({ isolation: 'softnet', allow: ['10.0.0.0/1'] });
  });

  it('a softnet allow entry with a leading zero (010.0.0.1/8) is refused, not read as 10.0.0.1/8', () => {
    for (const zero of ['010.0.0.1/8', '10.0.0.01/32', '10.0.0.1/08']) {
      expect(problems({ ...SEED, vmNetwork: { isolation: 'softnet', allow: [zero] } })).toEqual([
        `vmNetwork.allow: "${zero}" has a number with a leading zero (read as octal by some tools): write it without`,
      ]);
    }
    expect(parseAgentConfig({ ...SEED, vmNetwork: { isolation: 'softnet', allow: ['10.0.0.0/8', '0.0.0.0/1'] } }, { home }).vmNetwork).toEqual({
      isolation: 'softnet',
      allow: ['10.0.0.0/8', '0.0.0.0/1'],
    });
  });

  it('softnet with a controller named by host name or IPv6 and no allow list is refused: its VMs could not reach the controller', () => {
    for (const [key, url, host] of [
      ['controllerUrl', 'https://builds.example.com', 'builds.example.com'],
      ['vmControllerUrl', 'http://[fd00::5]:3000', '[fd00::5]'],
    ] as const) {
      expect(problems({ ...SEED, [key]: url, vmNetwork: { isolation: 'softnet' } })).toEqual([
        `vmNetwork.allow: the controller (${host}) is not an IPv4 address, so softnet cannot allow it by itself and build VMs could not reach it: add the controller's IPv4 CIDR to "allow" (e.g. "10.0.0.5/32"), or set vmControllerUrl to a URL with an IPv4 literal`,
      ]);
    }
    // The fixes the message names both work.
    expect(parseAgentConfig({ ...SEED, vmControllerUrl: 'http://10.0.0.5:3000', vmNetwork: { isolation: 'softnet' } }, { home }).vmNetwork).toEqual({
      isolation: 'softnet',
      allow: ['10.0.0.5/32'],
    });
    expect(parseAgentConfig({ ...SEED, vmNetwork: { isolation: 'softnet', allow: ['10.0.0.5/32'] } }, { home }).vmNetwork).toMatchObject({ allow: ['10.0.0.5/32'] });
  });

  it('bounds the tart run logs: 7 days, 100 files by default', () => {
    expect(parseAgentConfig(SEED, { home })).toMatchObject({ vmLogRetentionDays: 7, vmLogMaxFiles: 100 });
    expect(parseAgentConfig({ ...SEED, vmLogRetentionDays: 0.5, vmLogMaxFiles: 0 }, { home })).toMatchObject({ vmLogRetentionDays: 0.5, vmLogMaxFiles: 0 });
    expect(problems({ ...SEED, vmLogRetentionDays: -1, vmLogMaxFiles: 1.5 }).map((p) => p.split(':')[0])).toEqual(['vmLogRetentionDays', 'vmLogMaxFiles']);
  });

  it('takes standby 0 or 1 (default 0) and a positive standbyMaxAgeS (default 3600), naming a bad field', () => {
    expect(parseAgentConfig(SEED, { home })).toMatchObject({ standby: 0, standbyMaxAgeS: 3600 });
    expect(parseAgentConfig({ ...SEED, standby: 1, standbyMaxAgeS: 90 }, { home })).toMatchObject({ standby: 1, standbyMaxAgeS: 90 });
    expect(problems({ ...SEED, standby: 2, standbyMaxAgeS: 59 }).map((p) => p.split(':')[0])).toEqual(['standby', 'standbyMaxAgeS']);
    expect(problems({ ...SEED, standby: true })).toEqual([expect.stringMatching(/^standby: must be a number/)]);
    // A standby boots with its caches' shares (empty until the claim): the two combine.
    expect(parseAgentConfig({ ...SEED, standby: 1, caches: [{ name: 'npm', guestPath: '~/.npm' }] }, { home })).toMatchObject({ standby: 1, caches: [{ name: 'npm' }] });
  });

    it('lets the doctor go without a controller', () => {
    const { controllerUrl: _c, apiKey: _a, ...rest } = SEED;
    expect(problems(rest)).toEqual(['controllerUrl: is required', 'apiKey: is required']);
    expect(parseAgentConfig(rest, { home, requireController: false }).controllerUrl).toBe('');
  });

  it('takes a list of controllers: the first is controllerUrl, the VM list defaults to it', () => {
    const urls = ['http://10.0.0.5:3000', 'http://10.0.0.6:3000/'];
    const c = parseAgentConfig({ ...SEED, controllerUrl: urls }, { home });
    expect(c.controllerUrl).toBe('http://10.0.0.5:3000');
    expect(c.controllerUrls).toEqual(urls);
    expect(c.vmControllerUrls).toEqual(urls);
    expect(c.vmControllerUrl).toBe('http://10.0.0.5:3000');
    expect(Object.isFrozen(c.controllerUrls)).toBe(true);
    // One URL is a list of one, for old configs and new code alike.
    expect(parseAgentConfig(SEED, { home }).controllerUrls).toEqual(['https://builds.example.com']);
    const vm = parseAgentConfig({ ...SEED, controllerUrl: urls, vmControllerUrl: ['http://192.168.64.1:3000', 'http://192.168.64.1:3001'] }, { home });
    expect(vm.vmControllerUrls).toEqual(['http://192.168.64.1:3000', 'http://192.168.64.1:3001']);
    expect(vm.vmControllerUrl).toBe('http://192.168.64.1:3000');
  });

  it('refuses an empty controller list, a bad URL in it and the same controller twice', () => {
    expect(problems({ ...SEED, controllerUrl: [] })).toEqual(['controllerUrl: must be a URL or a non-empty list of URLs']);
    expect(problems({ ...SEED, controllerUrl: ['http://a:1', 'ftp://b', 7] })).toEqual([
      'controllerUrl[1]: must be an http(s) URL (got ftp:)',
      'controllerUrl[2]: must be a non-empty string',
    ]);
    expect(problems({ ...SEED, controllerUrl: ['http://a:1', 'http://A:1/'] })).toEqual(['controllerUrl[1]: "http://A:1/" is listed twice']);
    // vm-monitor.sh gets the list space-separated: a blank inside one URL would make two words.
    expect(problems({ ...SEED, controllerUrl: ['http://a:1', 'http://b:1/x y'] })).toEqual([expect.stringMatching(/^controllerUrl\[1\]: must be an http\(s\) URL without whitespace/)]);
    expect(problems({ ...SEED, controllerUrl: ' http://a:1' })).toEqual([expect.stringMatching(/^controllerUrl: must be an http\(s\) URL without whitespace/)]);
    expect(problems({ ...SEED, vmControllerUrl: [] })).toEqual(['vmControllerUrl: must be a URL or a non-empty list of URLs']);
    expect(problems({ ...SEED, vmControllerUrl: ['not a url'] })).toEqual(['vmControllerUrl[0]: must be an http(s) URL (got "not a url")']);
  });

  it('lets softnet VMs reach every controller of the list', () => {
    const c = parseAgentConfig({ ...SEED, controllerUrl: ['http://10.0.0.5:3000', 'http://10.0.0.6:3000'], vmNetwork: { isolation: 'softnet' } }, { home });
    expect(c.vmNetwork).toEqual({ isolation: 'softnet', allow: ['10.0.0.5/32', '10.0.0.6/32'] });
    expect(problems({ ...SEED, controllerUrl: ['http://10.0.0.5:3000', 'https://b.example.com'], vmNetwork: { isolation: 'softnet' } })).toEqual([
      expect.stringContaining('vmNetwork.allow: the controller (b.example.com) is not an IPv4 address'),
    ]);
  });

  it('never puts the api key in an error', () => {
    try {
      parseAgentConfig({ ...SEED, apiKey: 'sekrit-123', vmUser: 5 }, { home });
    } catch (err) {
      expect(JSON.stringify({ m: (err as Error).message, d: (err as ExpoError).details })).not.toContain('sekrit-123');
    }
  });

  it('reads the file and reports a missing or broken file', () => {
    const path = join(home, 'config.json');
    writeFileSync(path, JSON.stringify({ ...SEED, maxConcurrentBuilds: 2, tartHome: '~/th' }));
    const c = loadAgentConfig(path, { home });
    expect(c.maxConcurrentBuilds).toBe(2);
    expect(c.tartHome).toBe(join(home, 'th'));
    expect(() => loadAgentConfig(join(home, 'nope.json'), { home })).toThrow(expect.objectContaining({ code: 'CFG_INVALID', message: expect.stringContaining('not found') }));
    writeFileSync(path, '{ broken');
    expect(() => loadAgentConfig(path, { home })).toThrow(expect.objectContaining({ code: 'CFG_INVALID' }));
  });

  it('reads a file saved with a byte order mark, and never quotes a broken file (it may hold the key) in the error', () => {
    const path = join(home, 'config.json');
    writeFileSync(path, `\uFEFF${JSON.stringify({ ...SEED, maxConcurrentBuilds: 2 })}`);
    expect(loadAgentConfig(path, { home }).maxConcurrentBuilds).toBe(2);
    writeFileSync(path, '{ "apiKey": "sekrit-123", broken');
    let err: ExpoError | undefined;
    try {
      loadAgentConfig(path, { home });
    } catch (e) {
      err = e as ExpoError;
    }
    expect(err).toMatchObject({ code: 'CFG_INVALID', message: expect.stringContaining('not valid JSON') });
    expect(JSON.stringify({ m: err!.message, d: err!.details })).not.toContain('sekrit-123');
  });

  it('expands ~ and sanitizes host names', () => {
    expect(expandHome('~/x', '/h')).toBe('/h/x');
    expect(expandHome('/abs', '/h')).toBe('/abs');
    expect(defaultWorkerId('Jane’s MacBook Pro.local')).toBe('Jane-s-MacBook-Pro');
    expect(defaultWorkerId('---')).toBe('worker');
  });
});
