/**
 * Clone names: `<prefix>-<workerId>-<buildId>-<attempt>`. They must be tart-safe (tart keeps a
 * VM in a directory of that name and rejects `/`), and parseable back so that the reaper can tell
 * this worker's clones from anyone else's. The build-id part never contains `-`, so a worker
 * `a` never mistakes worker `a-b`'s clones for its own.
 */
import { ExpoError } from '../protocol/errors.ts';

/** The characters tart-safe VM names are made of. */
export const VM_NAME_PATTERN = /^[A-Za-z0-9._-]{1,200}$/;
const PART_PATTERN = /^[A-Za-z0-9._]+$/;

/** Throws `VM_BAD_NAME` unless `name` is tart-safe. */
export function assertVmName(name: string): void {
  if (!VM_NAME_PATTERN.test(name) || name === '.' || name === '..') {
    throw new ExpoError('VM_BAD_NAME', `invalid VM name ${JSON.stringify(name)}: use letters, digits, '.', '_' and '-' (at most 200)`, {
      details: { name },
    });
  }
}

/** The parts of a clone name. */
export interface CloneNameParts {
  prefix: string;
  workerId: string;
  /** The build id, or any id without `-` (the doctor uses `doctor<random>`). */
  buildId: string;
  attempt: number;
}

/** Builds a clone name, or throws `VM_BAD_NAME`. */
export function cloneName(parts: CloneNameParts): string {
  if (!PART_PATTERN.test(parts.buildId)) {
    throw new ExpoError('VM_BAD_NAME', `invalid build id for a clone name: ${JSON.stringify(parts.buildId)}`, {
      details: { buildId: parts.buildId },
    });
  }
  if (!Number.isInteger(parts.attempt) || parts.attempt < 0) {
    throw new ExpoError('VM_BAD_NAME', `invalid attempt for a clone name: ${parts.attempt}`, { details: { attempt: parts.attempt } });
  }
  const name = `${parts.prefix}-${parts.workerId}-${parts.buildId}-${parts.attempt}`;
  assertVmName(name);
  return name;
}

/** The build id and attempt of one of this worker's clones, or null for any other name. */
export function parseCloneName(name: string, prefix: string, workerId: string): { buildId: string; attempt: number } | null {
  const head = `${prefix}-${workerId}-`;
  if (!name.startsWith(head)) return null;
  const m = /^([A-Za-z0-9._]+)-(\d+)$/.exec(name.slice(head.length));
  if (!m) return null;
  return { buildId: m[1] as string, attempt: Number(m[2]) };
}
