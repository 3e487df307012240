/**
 * Contract of the simulator's non-running commands against docs/tart.md §1–3: output
 * formats, empty outputs, sort order, argument handling, and each error's text and exit code.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTartSim, type TartSim } from '../support/tart-sim.ts';
import { relativePhrase, textTable, type Row } from './format.ts';

let sim: TartSim;
beforeEach(async () => {
  sim = await createTartSim();
});
afterEach(async () => {
  await sim.cleanup();
});

const usageTail = (cmd: string): string => `  See 'tart ${cmd} --help' for more information.\n`;
const mac = (name: string): string =>
  (JSON.parse(readFileSync(join(sim.tartHome, 'vms', name, 'config.json'), 'utf8')) as { macAddress: string }).macAddress;

describe('process-wide conventions', () => {
  it('prints the version to stdout with exit 0', async () => {
    expect(await sim.tart(['--version'])).toMatchObject({ code: 0, stdout: '2.32.1\n' });
  });

  it('says what it does not simulate, exit 1; an unknown subcommand is a usage error (64)', async () => {
    expect(await sim.tart(['pull', 'ghcr.io/acme/macos:1'])).toMatchObject({ code: 1, stdout: '', stderr: "tart-sim: 'tart pull' is not simulated\n" });
    expect(await sim.tart(['list', '--help'])).toMatchObject({ code: 1, stderr: "tart-sim: 'tart --help' is not simulated\n" });
    for (const name of ['suspend', 'rename', 'prune', 'exec']) expect((await sim.tart([name, 'x'])).stderr).toContain(`'tart ${name}' is not simulated`);
    expect(await sim.tart(['frobnicate'])).toMatchObject({
      code: 64, stderr: "Error: Unexpected argument 'frobnicate'\nUsage: tart <subcommand>\n  See 'tart --help' for more information.\n",
    });
  });

  it('creates cache/ and tmp/ on every command', async () => {
    await sim.tart(['list']);
    expect(existsSync(join(sim.tartHome, 'cache'))).toBe(true);
    expect(existsSync(join(sim.tartHome, 'tmp'))).toBe(true);
  });

  it('reports usage errors with Error:, the usage line and the See line, exit 64', async () => {
    const r = await sim.tart(['list', '--bogus']);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(`Error: Unknown option '--bogus'\nUsage: tart list [--source <source>] [--format <format>] [--quiet]\n${usageTail('list')}`);
    expect((await sim.tart(['ip'])).stderr).toMatch(/^Error: Missing expected argument '<name>'\nUsage: tart ip/);
    const source = await sim.tart(['list', '--source', 'OCI']);
    expect(source).toMatchObject({ code: 64 });
    expect(source.stderr.split('\n')[0]).toBe("Error: 'OCI' is not a valid <source>");
    expect((await sim.tart(['ip', 'vm', '--wait'])).stderr).toMatch(/^Error: Missing value for '--wait <wait>'/);
  });

  it('accepts options before or after positionals and --opt=value', async () => {
    await sim.createBaseVm('base');
    const a = await sim.tart(['get', '--format=json', 'base']);
    const b = await sim.tart(['get', 'base', '--format', 'json']);
    expect(a.code).toBe(0);
    expect(JSON.parse(a.stdout)).toEqual(JSON.parse(b.stdout));
  });
});

describe('tart list', () => {
  it('prints exactly the empty outputs', async () => {
    expect(await sim.tart(['list'])).toMatchObject({ code: 0, stdout: '\n', stderr: '' });
    expect((await sim.tart(['list', '--format', 'json'])).stdout).toBe('[\n\n]\n');
    expect((await sim.tart(['list', '--quiet'])).stdout).toBe('');
  });

  it('prints the text table padded, trimmed at the end, sorted by name', async () => {
    await sim.createBaseVm('sequoia-base');
    await sim.createBaseVm('a');
    const stdout = (await sim.tart(['list'])).stdout;
    // The Accessed phrase follows the clock ("1 second ago", "15 seconds ago" on a busy host), so
    // its column width is taken from the rows; every other cell is fixed. The expected block is
    // then built by the spec's rule: each column padded to max(header, longest value), one space
    // apart, the block trimmed at its ends.
    const lines = stdout.split('\n');
    expect(lines.length).toBe(4); // header, two rows, the final newline
    expect(lines[3]).toBe('');
    const accessed = lines.slice(1, 3).map((line) => {
      const m = /^local +\S+ +50 +0 +(\d+ (?:second|minute)s? ago) +stopped *$/.exec(line);
      expect(m, line).not.toBeNull();
      return m?.[1] ?? '';
    });
    const cells = [
      ['Source', 'Name', 'Disk', 'Size', 'Accessed', 'State'],
      ['local', 'a', '50', '0', accessed[0] ?? '', 'stopped'],
      ['local', 'sequoia-base', '50', '0', accessed[1] ?? '', 'stopped'],
    ];
    const widths = (cells[0] ?? []).map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
    const block = cells.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(' ')).join('\n');
    expect(stdout).toBe(`${block.trim()}\n`);
    // The same rule read literally: the header and the inner row keep their pad, the last row not.
    expect(lines[0]).toBe(`Source Name         Disk Size ${'Accessed'.padEnd(widths[4] ?? 0)} State  `);
    expect(lines[1]?.length).toBe(lines[0]?.length);
    expect(lines[2]).not.toMatch(/\s$/);
    expect((await sim.tart(['list', '-q'])).stdout).toBe('a\nsequoia-base\n');
    expect((await sim.tart(['list', '--source', 'oci'])).stdout).toBe('\n');
  });

  it('pads to the longest value of each column: the spec example, clock-free', () => {
    const row = (name: string, size: number, accessed: string, state: string): Row => [
      ['Source', 'local'], ['Name', name], ['Disk', 50], ['Size', size], ['Accessed', accessed], ['State', state],
    ];
    const now = new Date('2026-05-12T21:45:18Z');
    const ago = (s: number): string => relativePhrase(new Date(now.getTime() - s * 1000), now);
    expect(textTable([row('runner-1', 21, ago(5 * 60), 'running'), row('sequoia-base', 21, ago(2 * 3600), 'stopped')])).toBe(
      'Source Name         Disk Size Accessed      State  \n' +
        'local  runner-1     50   21   5 minutes ago running\n' +
        'local  sequoia-base 50   21   2 hours ago   stopped',
    );
    expect([ago(0), ago(1), ago(59), ago(60), ago(3599), ago(86_400)]).toEqual([
      '0 seconds ago', '1 second ago', '59 seconds ago', '1 minute ago', '59 minutes ago', '1 day ago',
    ]);
  });

  it('prints JSON with spaced colons, typed fields and ISO dates', async () => {
    await sim.createBaseVm('base');
    const out = (await sim.tart(['list', '--format', 'json'])).stdout;
    expect(out).toContain('"Source" : "local"');
    expect(out).toMatch(/^\[\n {2}\{\n {4}"/);
    const [vm] = JSON.parse(out) as Array<Record<string, unknown>>;
    expect(vm).toEqual({ Source: 'local', Name: 'base', Disk: 50, Size: 0, Accessed: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/), Running: false, State: 'stopped' });
  });

  it('shuffles JSON key order when asked', async () => {
    const shuffled = await createTartSim({ shuffleKeys: true });
    try {
      await shuffled.createBaseVm('base');
      const orders = new Set<string>();
      for (let i = 0; i < 6; i++) {
        const out = (await shuffled.tart(['list', '--format', 'json'])).stdout;
        orders.add([...out.matchAll(/"(\w+)" :/g)].map((m) => m[1]).join(','));
      }
      expect(orders.size).toBeGreaterThan(1);
    } finally {
      await shuffled.cleanup();
    }
  });
});

describe('tart clone', () => {
  it('copies the three files with a sparse disk and a new MAC', async () => {
    await sim.createBaseVm('base');
    expect(await sim.tart(['clone', 'base', 'c1'])).toMatchObject({ code: 0, stdout: '', stderr: '' });
    const dir = join(sim.tartHome, 'vms', 'c1');
    for (const f of ['config.json', 'disk.img', 'nvram.bin', 'authorized_keys', 'ssh_host_ed25519_key']) {
      expect(existsSync(join(dir, f))).toBe(true);
    }
    expect(statSync(join(dir, 'disk.img')).size).toBe(50e9);
    expect(statSync(join(dir, 'disk.img')).blocks).toBeLessThan(100);
    expect(mac('c1')).not.toBe(mac('base'));
    expect(mac('c1')).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    expect(parseInt(mac('c1').slice(0, 2), 16) & 0b11).toBe(0b10); // locally administered unicast
  });

  it('overwrites an existing NAME silently', async () => {
    await sim.createBaseVm('base');
    await sim.createBaseVm('other', { diskSizeGb: 20 });
    await sim.tart(['clone', 'other', 'c1']);
    expect(await sim.tart(['clone', 'base', 'c1'])).toMatchObject({ code: 0, stderr: '' });
    expect(statSync(join(sim.tartHome, 'vms', 'c1', 'disk.img')).size).toBe(50e9);
  });

  it('refuses a NAME with a slash (64) and a missing source (2); a registry source is not simulated', async () => {
    await sim.createBaseVm('base');
    const slash = await sim.tart(['clone', 'base', 'a/b']);
    expect(slash.code).toBe(64);
    expect(slash.stderr).toMatch(/^Error: <new-name> should be a local name\nUsage: tart clone/);
    expect(await sim.tart(['clone', 'nope', 'c1'])).toMatchObject({ code: 2, stderr: 'the specified VM "nope" does not exist\n' });
    expect(await sim.tart(['clone', 'ghcr.io/acme/macos:1', 'c1'])).toMatchObject({
      code: 1, stderr: "tart-sim: 'tart clone ghcr.io/acme/macos:1' is not simulated\n",
    });
  });
});

describe('tart get / set', () => {
  it('prints get in text and JSON', async () => {
    await sim.createBaseVm('base', { os: 'linux' });
    const text = (await sim.tart(['get', 'base'])).stdout.split('\n');
    expect(text[0]).toBe('OS    CPU Memory Disk DiskFormat Size  Display  State  ');
    expect(text[1]).toBe('linux 4   8192   50   raw        0.000 1024x768 stopped');
    expect(JSON.parse((await sim.tart(['get', 'base', '--format', 'json'])).stdout)).toEqual({
      OS: 'linux', CPU: 4, Memory: 8192, Disk: 50, DiskFormat: 'raw', Size: '0.000', Display: '1024x768', Running: false, State: 'stopped',
    });
  });

  it('sets a random MAC; other set options are unknown (64)', async () => {
    await sim.createBaseVm('base');
    const before = mac('base');
    expect(await sim.tart(['set', 'base', '--random-mac'])).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(mac('base')).not.toBe(before);
    expect((await sim.tart(['set', 'base', '--cpu', '6'])).code).toBe(64);
    expect((await sim.tart(['set', 'nope', '--random-mac'])).code).toBe(2);
  });
});

describe('tart delete', () => {
  it('deletes in order and stops at the first error', async () => {
    await sim.createBaseVm('a');
    await sim.createBaseVm('c');
    expect(await sim.tart(['delete', 'a', 'b', 'c'])).toMatchObject({ code: 2, stderr: 'the specified VM "b" does not exist\n' });
    expect((await sim.tart(['list', '-q'])).stdout).toBe('c\n');
  });
});
