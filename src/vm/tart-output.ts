/**
 * Parsing tart's JSON output. Only JSON is parsed (the text table changes between versions).
 * Key order is unspecified and `/` arrives escaped as `\/` (JSON.parse undoes both); field sets
 * differ by version (docs/tart.md §2, `list` field history), so every field but `Name` is
 * optional: `State` (2.0+) is preferred, else `Running` (1.2+), else the state is `unknown`.
 * Unknown keys are ignored.
 */
import { ExpoError } from '../protocol/errors.ts';
import type { VmDetails, VmInfo, VmState } from './vm-driver.ts';

type Json = Record<string, unknown>;

function parseJson(stdout: string, what: string): unknown {
  try {
    return JSON.parse(stdout);
  } catch (err) {
    throw new ExpoError('VM_UNKNOWN', `${what}: output is not JSON: ${stdout.slice(0, 200)}`, { cause: err });
  }
}

function num(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return undefined;
}

function stateOf(o: Json): VmState {
  const s = typeof o.State === 'string' ? o.State.toLowerCase() : undefined;
  switch (s) {
    case 'running':
    case 'suspended':
    case 'stopped':
      return s;
    default:
      if (typeof o.Running === 'boolean') return o.Running ? 'running' : 'stopped';
      return 'unknown';
  }
}

/** Parses `tart list --format json`. */
export function parseTartList(stdout: string): VmInfo[] {
  // An empty list prints `[`, an empty line, `]`; some versions print nothing at all.
  if (stdout.trim() === '') return [];
  const data = parseJson(stdout, 'tart list');
  if (!Array.isArray(data)) throw new ExpoError('VM_UNKNOWN', 'tart list: expected a JSON array');
  const vms: VmInfo[] = [];
  for (const entry of data as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue;
    const o = entry as Json;
    if (typeof o.Name !== 'string') continue;
    const vm: VmInfo = {
      name: o.Name,
      source: typeof o.Source === 'string' && o.Source.toLowerCase() === 'oci' ? 'oci' : 'local',
      state: stateOf(o),
    };
    const disk = num(o.Disk);
    const size = num(o.Size);
    if (disk !== undefined) vm.diskGb = disk;
    if (size !== undefined) vm.sizeGb = size;
    if (typeof o.Accessed === 'string') vm.accessedAt = o.Accessed;
    vms.push(vm);
  }
  return vms;
}

/** Parses `tart get NAME --format json`. */
export function parseTartGet(stdout: string): VmDetails {
  const data = parseJson(stdout, 'tart get');
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ExpoError('VM_UNKNOWN', 'tart get: expected a JSON object');
  }
  const o = data as Json;
  const details: VmDetails = { state: stateOf(o) };
  if (typeof o.OS === 'string') details.os = o.OS;
  const cpu = num(o.CPU);
  const mem = num(o.Memory);
  const disk = num(o.Disk);
  if (cpu !== undefined) details.cpuCount = cpu;
  if (mem !== undefined) details.memoryMib = mem;
  if (disk !== undefined) details.diskGb = disk;
  return details;
}
