import { describe, expect, it } from 'vitest';
import { parseTartGet, parseTartList } from '../../../src/vm/tart-output.ts';

// Recorded `tart list --format json` outputs of several versions (pretty-printed by Foundation:
// `"key" : value`, `/` escaped, key order unspecified).
const V2_32 = `[
  {
    "State" : "running",
    "Accessed" : "2026-05-12T21:45:18Z",
    "Name" : "expo-w1-abcdefghijklmnop-1",
    "Size" : 21,
    "Running" : true,
    "Source" : "local",
    "Disk" : 50
  },
  {
    "Disk" : 50,
    "Source" : "local",
    "Name" : "sequoia-base",
    "Running" : false,
    "State" : "stopped",
    "Size" : 21,
    "Accessed" : "2026-05-10T08:00:00Z"
  },
  {
    "Name" : "ghcr.io\\/cirruslabs\\/macos-sequoia-base:latest",
    "Source" : "OCI",
    "Disk" : 50,
    "Size" : 25,
    "Accessed" : "2026-05-01T00:00:00Z",
    "Running" : false,
    "State" : "stopped"
  }
]`;

const V2_15 = `[
  {
    "Disk" : 50,
    "Name" : "base",
    "Running" : false,
    "Size" : 20,
    "SizeOnDisk" : 18,
    "Source" : "local",
    "State" : "suspended"
  }
]`;

const V1_8 = `[{"Name":"base","Running":true,"Size":20,"Source":"local"},{"Name":"ghcr.io\\/a\\/b:1","Running":false,"Size":20,"Source":"oci"}]`;
const V1_1 = `[{"Source":"local","Name":"old","Size":30}]`;
const EMPTY = '[\n\n]\n';

describe('parseTartList', () => {
  it('parses 2.31+ output with shuffled keys and escaped slashes', () => {
    const vms = parseTartList(V2_32);
    expect(vms).toEqual([
      { name: 'expo-w1-abcdefghijklmnop-1', source: 'local', state: 'running', diskGb: 50, sizeGb: 21, accessedAt: '2026-05-12T21:45:18Z' },
      { name: 'sequoia-base', source: 'local', state: 'stopped', diskGb: 50, sizeGb: 21, accessedAt: '2026-05-10T08:00:00Z' },
      { name: 'ghcr.io/cirruslabs/macos-sequoia-base:latest', source: 'oci', state: 'stopped', diskGb: 50, sizeGb: 25, accessedAt: '2026-05-01T00:00:00Z' },
    ]);
  });

  it('parses 2.15 output (SizeOnDisk, suspended) ignoring unknown keys', () => {
    expect(parseTartList(V2_15)).toEqual([{ name: 'base', source: 'local', state: 'suspended', diskGb: 50, sizeGb: 20 }]);
  });

  it('derives State from Running on 1.x (no State) and lower-case oci', () => {
    const vms = parseTartList(V1_8);
    expect(vms.map((v) => [v.name, v.source, v.state])).toEqual([
      ['base', 'local', 'running'],
      ['ghcr.io/a/b:1', 'oci', 'stopped'],
    ]);
  });

  it('reports state unknown on ≤1.1 (neither State nor Running)', () => {
    expect(parseTartList(V1_1)).toEqual([{ name: 'old', source: 'local', state: 'unknown', sizeGb: 30 }]);
  });

  it('parses empty lists', () => {
    expect(parseTartList(EMPTY)).toEqual([]);
    expect(parseTartList('')).toEqual([]);
    expect(parseTartList('[]')).toEqual([]);
  });

  it('prefers State over Running when they disagree', () => {
    expect(parseTartList('[{"Name":"x","Running":true,"State":"suspended"}]')[0]?.state).toBe('suspended');
  });

  it('rejects non-JSON output with VM_UNKNOWN', () => {
    expect(() => parseTartList('Source Name Disk\nlocal x 50')).toThrow(expect.objectContaining({ code: 'VM_UNKNOWN' }));
    expect(() => parseTartList('{"Name":"x"}')).toThrow(expect.objectContaining({ code: 'VM_UNKNOWN' }));
  });
});

describe('parseTartGet', () => {
  it('parses tart get JSON (Size is a string there)', () => {
    const out = `{\n  "Size" : "21.374",\n  "OS" : "darwin",\n  "CPU" : 4,\n  "Memory" : 8192,\n  "Disk" : 50,\n  "DiskFormat" : "raw",\n  "Display" : "1024x768",\n  "Running" : false,\n  "State" : "stopped"\n}`;
    expect(parseTartGet(out)).toEqual({ os: 'darwin', cpuCount: 4, memoryMib: 8192, diskGb: 50, state: 'stopped' });
  });
});
